"""NIfTI copies of registration results, to open in a viewer (ITK-SNAP, 3D Slicer, FSLeyes).

For one subject, on the fixed frame's grid and with its affine (the prepared
`<subject>/<fixed>.nii.gz`, or a user's fixed image):

    <name>_moved_image.nii.gz  float32 (X, Y, Z)  the moving image warped onto the fixed grid
    <name>_moved_label.nii.gz  uint8 (X, Y, Z)    the moving labels warped (0 bg, 1 LV, 2 Myo, 3 RV)
    <name>_disp.nii.gz         float32 (X, Y, Z, 1, 3), intent NIFTI_INTENT_DISPVECT (1006):
                               the displacement in mm along the affine's world axes (RAS+, the
                               NIfTI convention), a resampling field: the moved image at world
                               point p is the moving image at p + d(p)

A displacement u in voxels (channel i along array axis i, moved = moving at x + u(x)) is
d = A u in world mm, A the affine's 3 x 3 part (for a 2D pair u has no component along
the slice axis). 2D pairs fill the slices they hold (their slice_index); a slice without
a pair is 0 in all three files (no image, no labels, no displacement).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_path

INTENT_DISPVECT = 1006
SUFFIXES = ("moved_image", "moved_label", "disp")


def world_displacement(disp_vox: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(ndim, *S) voxel displacement (ndim 2 or 3) -> (*S, 3) world mm (module docstring)."""
    ndim = disp_vox.shape[0]
    linear = np.asarray(affine, dtype=np.float64)[:3, :ndim]
    return np.einsum("wi,i...->...w", linear, disp_vox.astype(np.float64)).astype(np.float32)


def volumes(slice_index: np.ndarray, disp: np.ndarray, moved_image: np.ndarray, moved_label: np.ndarray,
            shape: tuple[int, ...], affine: np.ndarray, where: str = "") -> dict[str, np.ndarray]:
    """The three volumes of one subject's K pairs (gsmorph/pairs.py shapes) on a grid of
    `shape` (X, Y, Z): 2D pairs put at their slice, one 3D pair (slice_index -1) whole."""
    shape = tuple(int(n) for n in shape)
    image = np.zeros(shape, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    field = np.zeros(shape + (3,), dtype=np.float32)
    spatial = tuple(disp.shape[2:])
    for k, index in enumerate(np.asarray(slice_index).tolist()):
        if index < 0:
            if spatial != shape:
                raise GSMorphError(f"{where}: 3D pairs of shape {spatial}, the fixed frame has {shape}")
            image[...], label[...] = moved_image[k], moved_label[k]
            field[...] = world_displacement(disp[k], affine)
        else:
            if spatial != shape[:2] or not 0 <= index < shape[2]:
                raise GSMorphError(f"{where}: slice {index} of shape {spatial} does not fit the fixed frame {shape}")
            image[:, :, index], label[:, :, index] = moved_image[k], moved_label[k]
            field[:, :, index] = world_displacement(disp[k], affine)
    return {"moved_image": image, "moved_label": label, "disp": field[:, :, :, None, :]}


def save(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write one volume (a displacement when 5D) with `affine` as sform and qform, atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(array.dtype)
    if array.ndim == 5:
        img.header.set_intent(INTENT_DISPVECT)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def write_volumes(out_dir: str | os.PathLike, name: str, vols: dict[str, np.ndarray], affine: np.ndarray) -> list[Path]:
    """`<out_dir>/<name>_<moved_image|moved_label|disp>.nii.gz` (those of `vols`; no
    prefix for an empty name)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{name}_" if name else ""
    return [save(out_dir / f"{prefix}{key}.nii.gz", vols[key], affine) for key in SUFFIXES if key in vols]


def reference_grid(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape (X, Y, Z), 4 x 4 affine) of a NIfTI file (header only)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for corrupt files
        raise GSMorphError(f"{path}: cannot read NIfTI ({type(err).__name__}: {err})") from None
    return tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)


def export_subject(pairs, prepared: str | os.PathLike, fixed: str, out_dir: str | os.PathLike) -> list[Path]:
    """The NIfTI files of one subject's pairs (gsmorph.pairs.SubjectPairs) on the grid of
    the prepared `<subject>/<fixed>.nii.gz`."""
    reference = Path(prepared) / pairs.subject / f"{fixed}.nii.gz"
    if not reference.is_file():
        raise GSMorphError(f"{reference}: not found (the fixed frame of subject {pairs.subject})")
    shape, affine = reference_grid(reference)
    vols = volumes(pairs.slice_index, pairs.disp, pairs.moved_image, pairs.moved_label, shape, affine,
                   where=f"subject {pairs.subject}")
    return write_volumes(out_dir, pairs.subject, vols, affine)
