"""What a raw-dataset reader returns for one subject, and the checks every reader applies."""
from __future__ import annotations

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
    """Finite float32 image."""
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise SubjectError(subject, path, f"{int((~np.isfinite(image)).sum())} non-finite intensities")
    return image


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
    """Read a NIfTI file; any failure becomes a SubjectError naming subject and file."""
    from gsmorph.io import read_nifti

    path = Path(path)
    if not path.is_file():
        raise SubjectError(subject, path, "file not found")
    try:
        return read_nifti(path, dtype=np.float32)
    except GSMorphError as err:
        raise SubjectError(subject, path, str(err).replace(f"{path}: ", "")) from None
