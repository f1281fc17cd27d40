"""Classical registration baselines: Demons (SimpleITK) and SyN (ANTsPy), in the project's
displacement convention.

Every function here takes one pair as numpy arrays in NIfTI array order:
    moving, fixed   (*S) float32, S = (X, Y) for a slice or (X, Y, Z) for a volume
    spacing         (ndim,) mm per array axis
and returns a displacement u of shape (ndim, *S), float32, in voxel units, channel i
along array axis i, such that moved(x) = moving(x + u(x)).

How the libraries' fields are converted:
- SimpleITK: images are built from the TRANSPOSED array, so ITK index axis i is array
  axis i (sitk.GetImageFromArray otherwise reads the last numpy axis as x). Demons
  returns a displacement image in physical units (mm) with component i along ITK axis
  i; we transpose it back and divide component i by spacing[i].
- ANTsPy: ants.from_numpy keeps numpy's axis order (identity direction, zero origin),
  so physical point = index * spacing and the components of the composed displacement
  field are along array axes, in mm; dividing by spacing gives voxels.
Both libraries map fixed-space points to moving-space points (x -> x + d(x)), which is
our convention. tests/unit/test_classical.py checks the conversion against each library's
own resampling.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from scipy import ndimage

from gsmorph.errors import GSMorphError

DEMONS_VARIANTS = ("diffeomorphic", "fast-symmetric")


# ----------------------------------------------------------------------------- warping


def warp(array: np.ndarray, disp: np.ndarray, order: int) -> np.ndarray:
    """Sample `array` (*S) at x + disp(x); disp (ndim, *S) in voxels.

    order 1: (bi/tri)linear for images; order 0: nearest for labels. Outside the grid
    the nearest border value is used (as MONAI's Warp with padding_mode="border").
    """
    array = np.asarray(array)
    if disp.shape != (array.ndim, *array.shape):
        raise GSMorphError(f"displacement of shape {disp.shape} does not fit an array of shape {array.shape}")
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in array.shape], indexing="ij")
    coords = np.stack([g + d for g, d in zip(grid, disp)])
    source = array.astype(np.float32) if order > 0 else array
    out = ndimage.map_coordinates(source, coords, order=order, mode="nearest")
    return out.astype(array.dtype, copy=False)


# ----------------------------------------------------------------------- SimpleITK / Demons


def to_sitk(array: np.ndarray, spacing) -> "SimpleITK.Image":  # noqa: F821
    """A SimpleITK image whose index axis i is array axis i, with spacing in mm."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype=np.float32).T))
    image.SetSpacing([float(s) for s in spacing])
    return image


def sitk_field_to_disp(field, spacing) -> np.ndarray:
    """SimpleITK displacement image (mm, component i along ITK axis i, built by `to_sitk`)
    -> (ndim, *S) float32 voxel displacement in array order."""
    import SimpleITK as sitk

    ndim = field.GetDimension()
    if field.GetNumberOfComponentsPerPixel() != ndim:
        raise GSMorphError(f"a {ndim}-D displacement field needs {ndim} components per voxel, "
                           f"got {field.GetNumberOfComponentsPerPixel()}")
    arr = sitk.GetArrayFromImage(field)  # (*reversed S, ndim)
    arr = np.moveaxis(arr, -1, 0)  # (ndim, *reversed S)
    arr = arr.transpose(0, *range(ndim, 0, -1))  # (ndim, *S)
    return (arr / _per_channel(spacing, ndim)).astype(np.float32)


def demons(moving: np.ndarray, fixed: np.ndarray, spacing, cfg: dict[str, Any], seed: int = 0) -> np.ndarray:
    """Demons registration of moving onto fixed; returns u (ndim, *S) in voxels (deterministic:
    `seed` is accepted for the common registrar signature and not used).

    cfg (the "demons" config section, checked by the method schema): variant "diffeomorphic" (DiffeomorphicDemons) or
    "fast-symmetric" (FastSymmetricForcesDemons), iterations, smoothing_sigma (Gaussian
    smoothing of the displacement field, standard deviation in voxels, as ITK applies
    it), histogram_matching (match the moving histogram to the fixed one first).
    """
    import SimpleITK as sitk

    _check_pair(moving, fixed, spacing)
    variant = cfg.get("variant", "diffeomorphic")
    if variant == "diffeomorphic":
        reg = sitk.DiffeomorphicDemonsRegistrationFilter()
    elif variant == "fast-symmetric":
        reg = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    else:
        raise GSMorphError(f"config key 'demons.variant' is '{variant}', expected one of {list(DEMONS_VARIANTS)}")
    iterations = int(cfg.get("iterations", 100))  # >= 1 and >= 0: the method schema's
    sigma = float(cfg.get("smoothing_sigma", 1.5))
    reg.SetNumberOfIterations(iterations)
    reg.SetSmoothDisplacementField(sigma > 0)
    if sigma > 0:
        reg.SetStandardDeviations(sigma)
    fixed_img = to_sitk(fixed, spacing)
    moving_img = to_sitk(moving, spacing)
    if cfg.get("histogram_matching", False):
        moving_img = sitk.HistogramMatching(moving_img, fixed_img, numberOfHistogramLevels=256,
                                            numberOfMatchPoints=7, thresholdAtMeanIntensity=True)
    field = reg.Execute(fixed_img, moving_img)
    return sitk_field_to_disp(field, spacing)


# ------------------------------------------------------------------------------ ANTs / SyN


def ants_field_to_disp(field, spacing) -> np.ndarray:
    """ANTs displacement image (mm, channel-last, components along array axes, built from
    ants.from_numpy) -> (ndim, *S) float32 voxel displacement."""
    ndim = field.dimension
    if field.components != ndim:
        raise GSMorphError(f"a {ndim}-D displacement field needs {ndim} components per voxel, got {field.components}")
    arr = np.asarray(field.numpy())  # (*S, ndim)
    arr = np.moveaxis(arr, -1, 0)
    return (arr / _per_channel(spacing, ndim)).astype(np.float32)


def syn(moving: np.ndarray, fixed: np.ndarray, spacing, cfg: dict[str, Any], seed: int = 0) -> np.ndarray:
    """ANTs registration (SyN by default) of moving onto fixed; returns u (ndim, *S) in voxels.

    cfg (the "syn" config section): keyword arguments of ants.registration named in
    _SYN_OPTIONS (type_of_transform, grad_step, flow_sigma, total_sigma, reg_iterations,
    syn_metric, syn_sampling, aff_metric, aff_sampling, aff_random_sampling_rate,
    aff_iterations, aff_shrink_factors, aff_smoothing_sigmas). All stages (the initial
    affine too) are composed into one displacement field. ANTs is seeded from `seed`; with
    the Mattes metric it is reproducible only single-threaded
    (ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 set before ants is imported, as
    `gsmorph register` does in its workers).
    """
    import ants

    _check_pair(moving, fixed, spacing)
    spacing_t = tuple(float(s) for s in spacing)
    fixed_img = ants.from_numpy(np.asarray(fixed, dtype=np.float32), spacing=spacing_t)
    moving_img = ants.from_numpy(np.asarray(moving, dtype=np.float32), spacing=spacing_t)
    if int(seed) < 0:
        raise GSMorphError(f"seed must be >= 0, got {seed}")
    # ants.registration reads the seed from its module configuration; ANTs takes a seed
    # of 0 to mean "seed from the clock", so our seed k is ANTs seed k + 1.
    ants.config._random_seed = int(seed) + 1
    options = {k: cfg[k] for k in _SYN_OPTIONS if k in cfg}
    for key in ("reg_iterations", "aff_iterations", "aff_shrink_factors", "aff_smoothing_sigmas"):
        if key in options:
            options[key] = tuple(int(v) for v in options[key])
    with tempfile.TemporaryDirectory(prefix="gsmorph-syn-") as tmp:
        try:
            result = ants.registration(fixed_img, moving_img, outprefix=os.path.join(tmp, "reg_"), **options)
            composed = ants.apply_transforms(fixed_img, moving_img, result["fwdtransforms"],
                                             compose=os.path.join(tmp, "composed_"))
        except Exception as err:  # ANTs raises RuntimeError/ValueError for bad parameters or sizes
            raise GSMorphError(f"ANTs registration failed with config 'syn' {options}: {err}") from None
        if not isinstance(composed, str) or not os.path.isfile(composed):
            raise GSMorphError(f"ANTs did not write a composed displacement field (got {composed!r})")
        field = ants.image_read(composed)
        return ants_field_to_disp(field, spacing_t)


_SYN_OPTIONS = (
    "type_of_transform", "grad_step", "flow_sigma", "total_sigma", "reg_iterations", "syn_metric",
    "syn_sampling", "aff_metric", "aff_sampling", "aff_random_sampling_rate", "aff_iterations",
    "aff_shrink_factors", "aff_smoothing_sigmas",
)


# ----------------------------------------------------------------------------- utilities


def _per_channel(spacing, ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (ndim,):
        raise GSMorphError(f"spacing {spacing.tolist()} does not match a {ndim}-D displacement field")
    return spacing.reshape(ndim, *([1] * ndim))


def _check_pair(moving: np.ndarray, fixed: np.ndarray, spacing) -> None:
    moving, fixed = np.asarray(moving), np.asarray(fixed)
    if moving.shape != fixed.shape or moving.ndim not in (2, 3):
        raise GSMorphError(f"moving {moving.shape} and fixed {fixed.shape} must be 2D or 3D arrays of one shape")
    if np.asarray(spacing).shape != (moving.ndim,) or np.any(np.asarray(spacing, dtype=float) <= 0):
        raise GSMorphError(f"spacing {list(np.asarray(spacing).tolist())} must be {moving.ndim} positive numbers")
