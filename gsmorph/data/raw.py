"""What a raw-dataset reader returns for one subject, and the checks every reader applies."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gsmorph.errors import GSMorphError


class SubjectError(GSMorphError):
    """Bad input of one subject: names the subject and the file at fault."""

    def __init__(self, subject: str, path: str | Path, reason: str):
        self.subject, self.path, self.reason = subject, str(path), reason
        super().__init__(f"subject {subject}: {path}: {reason}")


@dataclass
class RawSubject:
    """One subject's ED and ES frames as read from a raw download.

    Images are float32 (X, Y, Z) in the file's array order; labels uint8 (X, Y, Z)
    already mapped to canonical ids; spacing is mm per array axis; affine is the
    file's 4x4 voxel-to-world matrix; true_disp (X, Y, Z, 3) float32 voxel units
    (phantoms only, else None).
    """

    subject: str
    dataset: str
    group: str
    ED: np.ndarray
    ES: np.ndarray
    ED_gt: np.ndarray
    ES_gt: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    true_disp: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def squeeze_to_3d(array: np.ndarray, subject: str, path: Path) -> np.ndarray:
    """Drop trailing singleton axes of a (X, Y, Z[, 1...]) array; reject anything else."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise SubjectError(subject, path, f"expected a 3D volume, got shape {array.shape}")
    return array


def check_image(image: np.ndarray, subject: str, path: Path) -> np.ndarray:
    """Finite, non-constant float32 image (a constant one, e.g. all zeros, holds no heart)."""
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise SubjectError(subject, path, f"{int((~np.isfinite(image)).sum())} non-finite intensities")
    if image.size and image.min() == image.max():
        raise SubjectError(subject, path, f"constant image (every voxel is {float(image.min()):g})")
    return image


# Two frames of one subject share a grid when their voxel sizes agree within this fraction
# and their affines (direction cosines, origin in voxels) within these: float32 headers of
# one scan differ by ~1e-6, a different acquisition by far more.
SPACING_RTOL = 1e-3
DIRECTION_ATOL = 1e-3
ORIGIN_ATOL_VOXELS = 1e-2


def check_same_geometry(ed: tuple[tuple[float, ...], np.ndarray], es: tuple[tuple[float, ...], np.ndarray],
                        subject: str, path: Path) -> None:
    """The ES frame's (spacing, 4x4 affine) equal the ED frame's within the tolerances
    above; else a SubjectError naming the ES file (ES would be read on ED's grid)."""
    (ed_zooms, ed_affine), (es_zooms, es_affine) = ed, es
    ed_zooms, es_zooms = np.asarray(ed_zooms[:3], float), np.asarray(es_zooms[:3], float)
    if ed_zooms.shape != es_zooms.shape or not np.allclose(es_zooms, ed_zooms, rtol=SPACING_RTOL, atol=0):
        raise SubjectError(subject, path, f"voxel spacing {es_zooms.tolist()} differs from the ED frame's "
                                          f"{ed_zooms.tolist()}")
    ed_dir = ed_affine[:3, :3] / np.linalg.norm(ed_affine[:3, :3], axis=0)
    es_dir = es_affine[:3, :3] / np.linalg.norm(es_affine[:3, :3], axis=0)
    if not np.allclose(es_dir, ed_dir, rtol=0, atol=DIRECTION_ATOL):
        raise SubjectError(subject, path, "orientation (affine direction cosines) differs from the ED frame's")
    shift = np.abs(es_affine[:3, 3] - ed_affine[:3, 3]).max()
    if shift > ORIGIN_ATOL_VOXELS * float(ed_zooms.min()):
        raise SubjectError(subject, path, f"origin differs from the ED frame's by {shift:.3g} mm")


# a header's voxel sizes (pixdim) and its affine's column lengths agree within this fraction
HEADER_RTOL = 1e-2


def check_spacing(zooms: tuple[float, ...], affine: np.ndarray, subject: str, path: Path) -> None:
    """Voxel sizes (pixdim) of the spatial axes are finite, positive and those of the
    affine (nibabel reads a zero pixdim as 1: the affine then tells another size)."""
    zooms = [float(z) for z in zooms[:3]]
    if not zooms or not all(np.isfinite(z) and z > 0 for z in zooms):
        raise SubjectError(subject, path, f"voxel size (pixdim) {zooms} is not finite and positive")
    lengths = np.linalg.norm(np.asarray(affine, float)[:3, :len(zooms)], axis=0)
    if not np.allclose(zooms, lengths, rtol=HEADER_RTOL, atol=0):
        raise SubjectError(subject, path, f"voxel size (pixdim) {zooms} disagrees with the affine's "
                                          f"{[round(float(v), 6) for v in lengths]} (a zero or damaged pixdim)")


def check_distinct_frames(ed: int, es: int, subject: str, path: Path) -> None:
    """ED and ES name different frames (one frame registered onto itself measures nothing)."""
    if ed == es:
        raise SubjectError(subject, path, f"ED and ES are the same frame ({ed})")


def check_labels(labels: np.ndarray, subject: str, path: Path) -> np.ndarray:
    """Integer-valued labels in {0, 1, 2, 3} as uint8 (raw ids, not yet mapped)."""
    labels = np.asarray(labels)
    if not np.isfinite(labels).all():
        raise SubjectError(subject, path, "non-finite label values")
    rounded = np.rint(labels)
    if np.abs(labels - rounded).max(initial=0) > 1e-3:
        raise SubjectError(subject, path, "label values are not integers")
    bad = np.setdiff1d(np.unique(rounded), [0, 1, 2, 3])
    if bad.size:
        raise SubjectError(subject, path, f"label values outside {{0,1,2,3}}: {bad[:10].tolist()}")
    return rounded.astype(np.uint8)


def check_same_shape(image: np.ndarray, labels: np.ndarray, subject: str, path: Path) -> None:
    if image.shape != labels.shape:
        raise SubjectError(subject, path, f"label shape {labels.shape} differs from image shape {image.shape}")


def read_volume(path: Path, subject: str) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Read a NIfTI file; any failure, and a zero or non-finite voxel size, becomes a
    SubjectError naming subject and file."""
    from gsmorph.io import read_nifti

    path = Path(path)
    if not path.is_file():
        raise SubjectError(subject, path, "file not found")
    nibabel_log = logging.getLogger("nibabel.global")  # its header fixes are reported below instead
    level = nibabel_log.level
    nibabel_log.setLevel(logging.ERROR)
    try:
        volume = read_nifti(path, dtype=np.float32)
    except GSMorphError as err:
        raise SubjectError(subject, path, str(err).replace(f"{path}: ", "")) from None
    finally:
        nibabel_log.setLevel(level)
    check_spacing(volume[1], volume[2], subject, path)
    return volume
