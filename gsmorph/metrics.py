"""Every registration metric, defined once: numpy forms for evaluation (scalar and
batch-first) and torch forms for validation during training (`*_torch`, torch imported
lazily, so evaluation and the report never import it). 2D and 3D.

Conventions (see DESIGN.md):
- masks are boolean arrays of shape *S; `spacing` is mm per array axis of *S.
- a displacement `disp` has shape (ndim, *S), voxel units, channel i along array axis i;
  the transformation is phi(x) = x + disp(x).
- A pair's structure is evaluated when both the moving and the fixed label have it
  (Learn2Reg's rule; evaluation and validation decide this, NaN otherwise). Then
  `dice(pred, ref)` is NaN iff `ref` is empty and 0 when only `pred` is (the warp erased
  the structure); `hd95` is NaN when either is empty: a structure the warp lost has Dice
  0 and HD95 NaN, and evaluation counts it.
- `sdlogj` is the spread of log det J over the voxels with det J > 0 (folding is NJD's
  job); `epe_mm` may be restricted to a mask (evaluation: the fixed frame's heart).
- Published conventions, offered beside ours (see README "Metric conventions"):
  `l2r_*` as in Learn2Reg's evaluation code, `code_*` as in the GSMorph authors' code.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from gsmorph.data.labels import STRUCTURES  # canonical label ids after `gsmorph prepare`
from gsmorph.errors import GSMorphError

# Learn2Reg: the determinant is shifted by 3 and clipped to this range before the log
L2R_SHIFT, L2R_CLIP, L2R_BORDER = 3.0, (1e-9, 1e9), 2


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks (*S); NaN iff `ref` is
    empty, 0 when only `pred` is."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    return float(dice_batch(pred[None], ref[None])[0])


def dice_batch(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Dice of K mask pairs at once: pred, ref (K, *S) bool -> (K,) float; NaN where `ref`
    is empty, 0 where only `pred` is."""
    pred = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    ref = np.asarray(ref, dtype=bool).reshape(len(ref), -1)
    n_pred = pred.sum(axis=1)
    n_ref = ref.sum(axis=1)
    inter = np.logical_and(pred, ref).sum(axis=1)
    out = np.full(len(pred), np.nan)
    ok = n_ref > 0
    out[ok] = 2.0 * inter[ok] / (n_pred[ok] + n_ref[ok])
    return out


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: mask XOR its one-step erosion with the connectivity-1 structure.

    scipy's erosion treats outside the array as background, so mask voxels on the
    array border belong to the surface.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing) -> np.ndarray:
    """Distances (mm) from each surface voxel of one mask to the other mask's surface,
    both directions pooled into one 1D array. Empty if either mask is empty."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    spacing = _spacing(spacing, pred.ndim)
    s_pred, s_ref = surface(pred), surface(ref)
    if not s_pred.any() or not s_ref.any():
        return np.zeros(0)
    # Distances only involve surface voxels, so the transform can run on the bounding
    # box of both surfaces: exact and much faster than on the whole image.
    both = s_pred | s_ref
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(both))
    s_pred, s_ref = s_pred[box], s_ref[box]
    to_ref = ndimage.distance_transform_edt(~s_ref, sampling=spacing)[s_pred]
    to_pred = ndimage.distance_transform_edt(~s_pred, sampling=spacing)[s_ref]
    return np.concatenate([to_ref, to_pred])


def hd95(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    """95th percentile (numpy's linear interpolation) of the pooled symmetric surface
    distances, in mm; NaN if either mask is empty."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    if not pred.any() or not ref.any():
        return float("nan")
    return float(np.percentile(surface_distances(pred, ref, spacing), 95))


def jacobian_determinant(disp: np.ndarray) -> np.ndarray:
    """det(I + grad u) of phi(x) = x + u(x); disp (ndim, *S) voxel units -> (*S).

    Derivatives by numpy.gradient: central differences inside, one-sided first
    differences on the array border. The determinant is the same in voxel and in mm
    coordinates, so no spacing is needed.
    """
    disp = np.asarray(disp, dtype=np.float64)
    ndim = disp.ndim - 1
    if ndim not in (2, 3) or disp.shape[0] != ndim:
        raise GSMorphError(f"displacement has shape {disp.shape}, expected (ndim, *S) with ndim 2 or 3")
    return _jacobian_det(disp[None], ndim)[0]


def jacobian_determinant_batch(disp: np.ndarray) -> np.ndarray:
    """Jacobian determinants of K fields at once: disp (K, ndim, *S) -> (K, *S)."""
    disp = np.asarray(disp, dtype=np.float64)
    ndim = disp.ndim - 2
    if ndim not in (2, 3) or disp.shape[1] != ndim:
        raise GSMorphError(f"displacements have shape {disp.shape}, expected (K, ndim, *S) with ndim 2 or 3")
    return _jacobian_det(disp, ndim)


def _jacobian_det(disp: np.ndarray, ndim: int) -> np.ndarray:
    spatial = disp.shape[2:]
    if min(spatial) < 2:
        raise GSMorphError(f"displacement spatial shape {spatial}: every axis needs 2 or more voxels")
    # J[i][j] = d phi_i / d x_j = delta_ij + d u_i / d x_j
    J = [[np.gradient(disp[:, i], axis=1 + j) + (1.0 if i == j else 0.0) for j in range(ndim)]
         for i in range(ndim)]
    if ndim == 2:
        return J[0][0] * J[1][1] - J[0][1] * J[1][0]
    return (J[0][0] * (J[1][1] * J[2][2] - J[1][2] * J[2][1])
            - J[0][1] * (J[1][0] * J[2][2] - J[1][2] * J[2][0])
            + J[0][2] * (J[1][0] * J[2][1] - J[1][1] * J[2][0]))


def njd_percent(disp: np.ndarray) -> float:
    """Percentage of voxels with a negative Jacobian determinant (det < 0, not <= 0)."""
    return float(100.0 * np.mean(jacobian_determinant(disp) < 0))


def sdlogj(disp: np.ndarray) -> float:
    """Standard deviation of log(det J) over the voxels with det J > 0 (unitless); NaN if
    there is none. Folded voxels are left out: NJD counts them."""
    return float(sdlogj_batch(np.asarray(disp)[None])[0])


def mse(moved: np.ndarray, fixed: np.ndarray) -> float:
    """Mean squared intensity difference between the moved and the fixed image."""
    moved = np.asarray(moved, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64)
    _same_shape(moved, fixed)
    return float(np.mean((moved - fixed) ** 2))


def epe_mm(disp: np.ndarray, true_disp: np.ndarray, spacing, mask: np.ndarray | None = None) -> float:
    """Mean endpoint error in mm: mean over voxels of ||(u - u_true) * spacing||.

    disp, true_disp (ndim, *S) voxel units; mask (*S) bool selects voxels (None: all
    voxels; `gsmorph evaluate` reports both: epe_mm inside the fixed frame's heart,
    epe_image_mm over the image). NaN if the mask is empty.
    """
    disp = np.asarray(disp, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        _same_shape(mask, disp[0])
        mask = mask[None]
    return float(epe_mm_batch(disp[None], np.asarray(true_disp)[None], spacing, mask)[0])


def mse_batch(moved: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """MSE of K image pairs at once: moved, fixed (K, *S) -> (K,)."""
    moved = np.asarray(moved, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64)
    _same_shape(moved, fixed)
    return np.mean((moved - fixed).reshape(len(moved), -1) ** 2, axis=1)


def njd_percent_batch(disp: np.ndarray, det: np.ndarray | None = None) -> np.ndarray:
    """NJD % of K fields at once: disp (K, ndim, *S) voxels -> (K,); det: their
    jacobian_determinant_batch when already computed."""
    det = (jacobian_determinant_batch(disp) if det is None else det).reshape(len(disp), -1)
    return 100.0 * np.mean(det < 0, axis=1)


def sdlogj_batch(disp: np.ndarray, det: np.ndarray | None = None) -> np.ndarray:
    """SDlogJ of K fields at once: disp (K, ndim, *S) voxels -> (K,); std of log det J over
    each field's voxels with det J > 0, NaN for a field without any; det: their
    jacobian_determinant_batch when already computed."""
    det = (jacobian_determinant_batch(disp) if det is None else det).reshape(len(disp), -1)
    positive = det > 0
    logs = np.where(positive, np.log(np.where(positive, det, 1.0)), np.nan)
    out = np.full(len(det), np.nan)
    some = positive.any(axis=1)
    out[some] = np.nanstd(logs[some], axis=1)
    return out


def epe_mm_batch(disp: np.ndarray, true_disp: np.ndarray, spacing, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean endpoint error (mm) of K fields: disp, true_disp (K, ndim, *S) voxel units,
    spacing (ndim,) mm, mask (K, *S) bool or None (all voxels) -> (K,); NaN where a
    field's mask is empty."""
    disp = np.asarray(disp, dtype=np.float64)
    true_disp = np.asarray(true_disp, dtype=np.float64)
    _same_shape(disp, true_disp)
    k, ndim = disp.shape[:2]
    spacing = _spacing(spacing, ndim)
    err = (disp - true_disp) * spacing.reshape((1, ndim) + (1,) * ndim)
    norm = np.sqrt(np.sum(err ** 2, axis=1)).reshape(k, -1)
    if mask is None:
        return norm.mean(axis=1)
    mask = np.asarray(mask, dtype=bool).reshape(k, -1)
    if mask.shape != norm.shape:
        raise GSMorphError(f"mask of shape {mask.shape} does not fit {k} fields of {norm.shape[1]} voxels")
    count = mask.sum(axis=1)
    total = np.where(mask, norm, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ----------------------------------------------------------------------------- published conventions
# Learn2Reg's evaluation code (MDL-UzL/L2R evaluation/utils.py, evaluation.py) and the GSMorph
# authors' code (wulalago/GSMorph source/eval_func.py), re-implemented from their definitions
# so a user can set numbers next to published ones knowing what differs.

def l2r_jacobian_determinant(disp: np.ndarray) -> np.ndarray:
    """Learn2Reg's det J: derivatives by correlation with [-0.5, 0, 0.5] along each axis,
    zero outside the field, identity added, then a 2-voxel border cropped from every side.
    disp (ndim, *S) voxels -> (*S - 4); empty when an axis has 4 voxels or fewer."""
    disp = np.asarray(disp, dtype=np.float64)
    ndim = disp.ndim - 1
    if ndim not in (2, 3) or disp.shape[0] != ndim:
        raise GSMorphError(f"displacement has shape {disp.shape}, expected (ndim, *S) with ndim 2 or 3")
    if min(disp.shape[1:]) <= 2 * L2R_BORDER:
        return np.zeros((0,) * ndim)
    kernel = np.array([-0.5, 0.0, 0.5])
    jac = np.empty((ndim, ndim) + disp.shape[1:])
    for j in range(ndim):  # d u_i / d x_j
        weights = kernel.reshape([3 if a == j else 1 for a in range(ndim)])
        for i in range(ndim):
            jac[i, j] = ndimage.correlate(disp[i], weights, mode="constant", cval=0.0) + (i == j)
    crop = (slice(None), slice(None)) + (slice(L2R_BORDER, -L2R_BORDER),) * ndim
    jac = jac[crop]
    if ndim == 2:
        return jac[0, 0] * jac[1, 1] - jac[0, 1] * jac[1, 0]
    return (jac[0, 0] * (jac[1, 1] * jac[2, 2] - jac[1, 2] * jac[2, 1])
            - jac[0, 1] * (jac[1, 0] * jac[2, 2] - jac[1, 2] * jac[2, 0])
            + jac[0, 2] * (jac[1, 0] * jac[2, 1] - jac[1, 1] * jac[2, 0]))


def l2r_sdlogj(disp: np.ndarray, det: np.ndarray | None = None) -> float:
    """Learn2Reg's SDlogJ: std of log(clip(det J + 3, 1e-9, 1e9)) over the cropped field
    (NaN when the crop leaves nothing); det: its l2r_jacobian_determinant when already computed."""
    det = l2r_jacobian_determinant(disp) if det is None else det
    return float(np.std(np.log(np.clip(det + L2R_SHIFT, *L2R_CLIP)))) if det.size else float("nan")


def l2r_num_foldings(disp: np.ndarray, det: np.ndarray | None = None) -> int:
    """Learn2Reg's folding count as its code computes it: voxels of the cropped field where
    clip(det J + 3, 1e-9, 1e9) <= 0. The clip makes this 0 for every field (a quirk of the
    published code, reproduced: use NJD for folding). det: as l2r_sdlogj's."""
    det = l2r_jacobian_determinant(disp) if det is None else det
    return int((np.clip(det + L2R_SHIFT, *L2R_CLIP) <= 0).sum())


def l2r_hd95_vox(pred: np.ndarray, ref: np.ndarray) -> float:
    """Learn2Reg's HD95: DeepMind surface_distance's robust Hausdorff (95th percentile of the
    surfel-area-weighted surface distances, both directions) with unit spacing: voxels.
    NaN where either mask is empty (Learn2Reg's code gives infinity when the warp erased
    the structure; evaluation counts it as lost)."""
    import warnings

    import surface_distance

    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    if not pred.any() or not ref.any():
        return float("nan")
    with warnings.catch_warnings():  # it imports from scipy namespaces scipy deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = surface_distance.compute_surface_distances(ref, pred, np.ones(ref.ndim))
    return float(surface_distance.compute_robust_hausdorff(distances, 95.0))


def code_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """The authors' code's Dice: 2|A∩B| / (|A| + |B|), 0 when both masks are empty."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    total = int(pred.sum() + ref.sum())
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total if total else 0.0


def code_hd95_px(pred: np.ndarray, ref: np.ndarray) -> float:
    """The authors' code's HD95: our pooled-boundary HD95 with no voxel spacing (pixels)."""
    return hd95(pred, ref, np.ones(np.asarray(ref).ndim))


def code_njd_pct(disp: np.ndarray) -> float:
    """The authors' code's NJD %: SimpleITK's DisplacementFieldJacobianDeterminant of the
    (H, W, 2) field made a vector image as it stands (so SimpleITK reads component 0, the
    displacement along H, as the one along W), det < 0 counted over H x W, times 100.
    disp (2, H, W) voxels (2D only, as the code)."""
    import SimpleITK as sitk

    disp = np.asarray(disp, dtype=np.float64)
    if disp.ndim != 3 or disp.shape[0] != 2:
        raise GSMorphError(f"the authors' NJD is defined for 2D fields (2, H, W), got {disp.shape}")
    image = sitk.GetImageFromArray(np.moveaxis(disp, 0, -1), isVector=True)
    det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(image))
    return float(100.0 * np.count_nonzero(det < 0) / det.size)


# ----------------------------------------------------------------------------- torch forms
# The same definitions on tensors, for validation inside training (no host sync per batch).

def dice_torch(moved_label, fixed_label, moving_label):
    """(B, 1, *S) integer label maps (warped moving, fixed, moving) -> (B, 3) Dice of LV,
    Myo, RV (STRUCTURES order), as evaluation computes it: NaN where the moving or the
    fixed map lacks the structure, else `dice_batch` (0 where the warp erased it)."""
    import torch

    out = []
    for value in STRUCTURES.values():
        a = (moved_label == value).flatten(1)
        b = (fixed_label == value).flatten(1)
        present = b.any(1) & (moving_label == value).flatten(1).any(1)
        inter = (a & b).sum(1).float()
        total = (a.sum(1) + b.sum(1)).float()
        out.append(torch.where(present, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan"))))
    return torch.stack(out, dim=1)


def njd_percent_torch(disp):
    """(B, ndim, *S) displacement (voxels) -> (B,) % of voxels with det(I + grad u) < 0
    (central differences inside, one-sided at the border, as `jacobian_determinant`)."""
    import torch

    ndim = disp.shape[1]
    grads = torch.gradient(disp, dim=tuple(range(2, 2 + ndim)))  # ndim x (B, ndim, *S): d/dx_j
    jac = torch.stack(grads, dim=2)  # (B, i, j, *S) = du_i / dx_j
    jac = jac + torch.eye(ndim, dtype=disp.dtype, device=disp.device).view(1, ndim, ndim, *([1] * ndim))
    jac = jac.movedim(1, -1).movedim(1, -1)  # (B, *S, i, j)
    det = torch.linalg.det(jac)
    return 100.0 * (det < 0).flatten(1).float().mean(1)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise GSMorphError(f"arrays of shapes {a.shape} and {b.shape} cannot be compared")


def _spacing(spacing, ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if spacing.shape != (ndim,) or not np.all(spacing > 0):
        raise GSMorphError(f"spacing {spacing.tolist()} must be {ndim} positive numbers (mm per axis)")
    return spacing
