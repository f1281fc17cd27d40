"""The raw ACDC layout: reader, and the writer the phantom uses.

<root>/training/patientNNN/ and <root>/testing/patientNNN/ (root may also be the folder
above, holding `database/`), each with
  Info.cfg                          `ED: 1`, `ES: 12`, `Group: DCM`, `Height:`, `NbFrame:`, `Weight:`
  patientNNN_frameYY.nii.gz         YY = 1-based frame index from Info.cfg, two digits
  patientNNN_frameYY_gt.nii.gz      labels 1 RV, 2 Myo, 3 LV
  patientNNN_4d.nii.gz              (optional, not read)
  patientNNN_true_disp.nii.gz       (phantom only) (X, Y, Z, 3) voxel units, ED grid
A subject with neither gt file (an unlabelled test subject) is not registrable and is
reported as unlabelled; one gt file without the other is an error.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gsmorph import datasets
from gsmorph.data.labels import from_canonical, to_canonical
from gsmorph.data.raw import (
    RawSubject, SubjectError, check_distinct_frames, check_image, check_labels, check_same_geometry,
    check_same_shape, read_volume, squeeze_to_3d,
)
from gsmorph.errors import GSMorphError

DATASET = "acdc"
SPLIT_FOLDERS = datasets.get(DATASET).folders
SUBJECT_RE = re.compile(r"^patient\d+$")


def find_root(root: str | Path) -> Path:
    """The folder holding `training/` and/or `testing/` (root itself or root/database)."""
    root = Path(root)
    for candidate in (root, root / "database", root / "ACDC" / "database"):
        if any((candidate / f).is_dir() for f in SPLIT_FOLDERS):
            return candidate
    raise GSMorphError(f"{root}: not an ACDC folder (no training/ or testing/ in it or in {root / 'database'})")


def subject_dirs(root: str | Path, folders: tuple[str, ...] = SPLIT_FOLDERS) -> list[Path]:
    """Every patientNNN folder of `folders` (default training then testing), each sorted by name."""
    base = find_root(root)
    out: list[Path] = []
    for folder in folders:
        if (base / folder).is_dir():
            out += sorted(p for p in (base / folder).iterdir() if p.is_dir() and SUBJECT_RE.match(p.name))
    if not out:
        raise GSMorphError(f"{base}: no patientNNN folders in {' or '.join(folders)}")
    return out


def read_info(path: Path, subject: str) -> dict[str, str]:
    """Info.cfg as a dict of `key: value` lines; ED and ES must be present, 1-based frame
    numbers and different."""
    if not path.is_file():
        raise SubjectError(subject, path, "file not found")
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise SubjectError(subject, path, f"cannot read ({err})") from None
    info = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in info:
            raise SubjectError(subject, path, f"no '{key}:' line")
        try:
            value = float(info[key])
        except ValueError:
            raise SubjectError(subject, path, f"'{key}: {info[key]}' is not a frame number") from None
        if not np.isfinite(value) or value != int(value) or value < 1:
            raise SubjectError(subject, path, f"'{key}: {info[key]}' is not a 1-based frame number")
    check_distinct_frames(int(float(info["ED"])), int(float(info["ES"])), subject, path)
    return info


def _frame_file(folder: Path, subject: str, frame: int, suffix: str = "") -> Path:
    stem = f"{subject}_frame{frame:02d}{suffix}"
    for ext in (".nii.gz", ".nii"):
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    return folder / (stem + ".nii.gz")


def is_labelled(folder: Path) -> bool:
    """False for a subject without any ground-truth file (e.g. an unlabelled test subject)."""
    return any(folder.glob(f"{folder.name}_frame*_gt.nii*"))


def read_subject(folder: str | Path) -> RawSubject:
    """Read one patient folder: ED/ES images and canonical labels, spacing, group."""
    folder = Path(folder)
    subject = folder.name
    info = read_info(folder / "Info.cfg", subject)
    frames = {key: int(float(info[key])) for key in ("ED", "ES")}
    images, labels = {}, {}
    spacing, affine = None, None
    for key, frame in frames.items():
        img_path = _frame_file(folder, subject, frame)
        gt_path = _frame_file(folder, subject, frame, "_gt")
        if not img_path.is_file():
            raise SubjectError(subject, img_path, f"{key} frame {frame} (from Info.cfg) not found")
        if not gt_path.is_file():
            raise SubjectError(subject, gt_path, f"{key} ground truth of frame {frame} not found")
        img, zooms, aff = read_volume(img_path, subject)
        img = check_image(squeeze_to_3d(img, subject, img_path), subject, img_path)
        gt, _, _ = read_volume(gt_path, subject)
        gt = check_labels(squeeze_to_3d(gt, subject, gt_path), subject, gt_path)
        check_same_shape(img, gt, subject, gt_path)
        if spacing is None:
            spacing, affine, ed_geometry = _spacing3(zooms), aff, (zooms, aff)
        elif img.shape != images["ED"].shape:
            raise SubjectError(subject, img_path, f"ES shape {img.shape} differs from ED shape {images['ED'].shape}")
        else:  # ES is written and read on ED's grid: it must be that grid
            check_same_geometry(ed_geometry, (zooms, aff), subject, img_path)
        if not gt.any():
            raise SubjectError(subject, gt_path, f"no labelled voxels in the {key} frame {frame}")
        images[key], labels[key] = img, to_canonical(gt, DATASET)
    true_disp = read_true_disp(folder / f"{subject}_true_disp.nii.gz", subject, images["ED"].shape)
    meta = {"source": folder.parent.name, "ed_frame": frames["ED"], "es_frame": frames["ES"]}
    for key in ("NbFrame", "Height", "Weight"):
        if key in info:
            meta[key.lower()] = info[key]
    return RawSubject(subject, DATASET, info.get("Group", "unknown"), images["ED"], images["ES"],
                      labels["ED"], labels["ES"], spacing, affine, true_disp, meta)


def _spacing3(zooms: tuple[float, ...]) -> tuple[float, float, float]:
    z = list(zooms) + [1.0] * (3 - len(zooms))
    return (float(z[0]), float(z[1]), float(z[2]))


def read_true_disp(path: Path, subject: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A phantom's (X, Y, Z, 3) true displacement, or None when the file is absent."""
    if not path.is_file():
        return None
    disp, _, _ = read_volume(path, subject)
    if disp.shape != tuple(shape) + (3,):
        raise SubjectError(subject, path, f"shape {disp.shape}, expected {tuple(shape) + (3,)}")
    if not np.isfinite(disp).all():
        raise SubjectError(subject, path, "non-finite displacement values")
    return disp


def iter_subjects(root: str | Path, folders: tuple[str, ...] = SPLIT_FOLDERS) -> Iterator[tuple[str, Path, bool]]:
    """(subject, folder, labelled) for every patient folder of `folders`."""
    for folder in subject_dirs(root, folders):
        yield folder.name, folder, is_labelled(folder)


# ---------------------------------------------------------------- the reader's face (gsmorph.datasets.reader)

def check_root(root: str | Path) -> None:
    """GSMorphError unless `root` looks like an ACDC download."""
    find_root(root)


def list_subjects(root: str | Path, folders: tuple[str, ...] = SPLIT_FOLDERS
                  ) -> list[tuple[str, Callable[[], RawSubject], bool]]:
    """(subject, a call reading it, labelled) for every patient folder of `folders`."""
    return [(subject, partial(read_subject, folder), labelled) for subject, folder, labelled in iter_subjects(root, folders)]


# ---------------------------------------------------------------- writing (phantom)

def write_subject(folder: Path, subject: str, ed_image: np.ndarray, es_image: np.ndarray,
                  ed_labels: np.ndarray, es_labels: np.ndarray, affine: np.ndarray, info: dict[str, object],
                  true_disp: np.ndarray | None = None) -> None:
    """Write one patient folder in the ACDC layout. Labels are canonical; stored as ACDC ids.
    `info` holds ED and ES (1-based), Group, Height, NbFrame, Weight."""
    from gsmorph.io import atomic_path, write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"ED: {int(info['ED'])}", f"ES: {int(info['ES'])}", f"Group: {info['Group']}",
             f"Height: {float(info['Height']):.1f}", f"NbFrame: {int(info['NbFrame'])}",
             f"Weight: {float(info['Weight']):.1f}"]
    with atomic_path(folder / "Info.cfg") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    for key, image, labels in (("ED", ed_image, ed_labels), ("ES", es_image, es_labels)):
        frame = int(info[key])
        write_nifti(folder / f"{subject}_frame{frame:02d}.nii.gz", image, affine=affine)
        write_nifti(folder / f"{subject}_frame{frame:02d}_gt.nii.gz",
                    from_canonical(labels, DATASET).astype(np.uint8), affine=affine)
    if true_disp is not None:
        write_nifti(folder / f"{subject}_true_disp.nii.gz", true_disp.astype(np.float32), affine=affine)
