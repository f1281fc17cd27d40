"""Every registration metric, defined once: numpy forms for evaluation (scalar and
batch-first) and torch forms for validation during training (`*_torch`, torch imported
lazily, so evaluation and the report never import it). 2D and 3D.

Conventions (see DESIGN.md):
- masks are boolean arrays of shape *S; `spacing` is mm per array axis of *S.
- a displacement `disp` has shape (ndim, *S), voxel units, channel i along array axis i;
  the transformation is phi(x) = x + disp(x).
- Undefined values are NaN, never 0 or 1: Dice and HD95 are NaN when the structure is
  empty in either mask. Dice is NaN (not 0) when only one mask is empty so that Dice
  and HD95 are averaged over the same pairs; evaluation counts and reports every NaN,
  so a method that loses a structure stays visible.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from gsmorph.data.labels import STRUCTURES  # canonical label ids after `gsmorph prepare`
from gsmorph.errors import GSMorphError

# clip range of the Jacobian determinant before the log in SDlogJ
LOGJ_CLIP = (1e-9, 1e9)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks; NaN if either is empty."""
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    _same_shape(pred, ref)
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 or n_ref == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred, ref).sum()) / (n_pred + n_ref)


def dice_batch(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Dice of K mask pairs at once: pred, ref (K, *S) bool -> (K,) float, NaN if empty."""
    pred = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    ref = np.asarray(ref, dtype=bool).reshape(len(ref), -1)
    n_pred = pred.sum(axis=1)
    n_ref = ref.sum(axis=1)
    inter = np.logical_and(pred, ref).sum(axis=1)
    out = np.full(len(pred), np.nan)
    ok = (n_pred > 0) & (n_ref > 0)
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
    """Standard deviation of log(det J), the determinant clipped to [1e-9, 1e9]."""
    return float(np.std(np.log(np.clip(jacobian_determinant(disp), *LOGJ_CLIP))))


def mse(moved: np.ndarray, fixed: np.ndarray) -> float:
    """Mean squared intensity difference between the moved and the fixed image."""
    moved = np.asarray(moved, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64)
    _same_shape(moved, fixed)
    return float(np.mean((moved - fixed) ** 2))


def epe_mm(disp: np.ndarray, true_disp: np.ndarray, spacing, mask: np.ndarray | None = None) -> float:
    """Mean endpoint error in mm: mean over voxels of ||(u - u_true) * spacing||.

    disp, true_disp (ndim, *S) voxel units; mask (*S) bool selects voxels (None: all
    voxels, which is what `gsmorph evaluate` reports). NaN if the mask is empty.
    """
    disp = np.asarray(disp, dtype=np.float64)
    true_disp = np.asarray(true_disp, dtype=np.float64)
    _same_shape(disp, true_disp)
    spacing = _spacing(spacing, disp.ndim - 1)
    err = (disp - true_disp) * spacing.reshape((-1,) + (1,) * (disp.ndim - 1))
    norm = np.sqrt(np.sum(err ** 2, axis=0))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        _same_shape(mask, norm)
        if not mask.any():
            return float("nan")
        norm = norm[mask]
    return float(np.mean(norm))


def mse_batch(moved: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """MSE of K image pairs at once: moved, fixed (K, *S) -> (K,)."""
    moved = np.asarray(moved, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64)
    _same_shape(moved, fixed)
    return np.mean((moved - fixed).reshape(len(moved), -1) ** 2, axis=1)


def njd_percent_batch(disp: np.ndarray) -> np.ndarray:
    """NJD % of K fields at once: disp (K, ndim, *S) voxels -> (K,)."""
    det = jacobian_determinant_batch(disp).reshape(len(disp), -1)
    return 100.0 * np.mean(det < 0, axis=1)


def sdlogj_batch(disp: np.ndarray) -> np.ndarray:
    """SDlogJ of K fields at once: disp (K, ndim, *S) voxels -> (K,)."""
    det = jacobian_determinant_batch(disp).reshape(len(disp), -1)
    return np.std(np.log(np.clip(det, *LOGJ_CLIP)), axis=1)


def epe_mm_batch(disp: np.ndarray, true_disp: np.ndarray, spacing) -> np.ndarray:
    """Mean endpoint error (mm) of K fields over all voxels: disp, true_disp (K, ndim, *S)
    voxel units, spacing (ndim,) mm -> (K,)."""
    disp = np.asarray(disp, dtype=np.float64)
    true_disp = np.asarray(true_disp, dtype=np.float64)
    _same_shape(disp, true_disp)
    ndim = disp.shape[1]
    spacing = _spacing(spacing, ndim)
    err = (disp - true_disp) * spacing.reshape((1, ndim) + (1,) * ndim)
    return np.sqrt(np.sum(err ** 2, axis=1)).reshape(len(disp), -1).mean(axis=1)


# ----------------------------------------------------------------------------- torch forms
# The same definitions on tensors, for validation inside training (no host sync per batch).

def dice_torch(moved_label, fixed_label):
    """(B, 1, *S) integer label maps -> (B, 3) Dice of LV, Myo, RV (STRUCTURES order);
    NaN where the structure is empty in both (as `dice` / `dice_batch`, which are NaN when
    either is empty: a structure empty in one map gives 0 here)."""
    import torch

    out = []
    for value in STRUCTURES.values():
        a = (moved_label == value).flatten(1)
        b = (fixed_label == value).flatten(1)
        inter = (a & b).sum(1).float()
        total = (a.sum(1) + b.sum(1)).float()
        out.append(torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan"))))
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
