"""The raw M&Ms-1 layout: reader, and the writer the phantom uses.

<root>/Training/Labeled/<code>/<code>_sa.nii.gz      4D (x, y, z, t) cine stack
                               <code>_sa_gt.nii.gz   4D labels, only ED and ES labelled (1 LV, 2 Myo, 3 RV)
<root>/Training/Unlabeled/<code>/<code>_sa.nii.gz    no labels: skipped
<root>/Validation/<code>/..., <root>/Testing/<code>/...
<root>/*M&Ms*Dataset*nformation*.csv                 `External code`, `VendorName`, `Vendor`,
                                                     `Centre`, `ED`, `ES` (0-based frames), ...
(phantom only) <code>_true_disp.nii.gz               (X, Y, Z, 3) voxel units on the ED grid
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gsmorph.data.acdc import read_true_disp
from gsmorph import datasets
from gsmorph.data.labels import from_canonical, to_canonical
from gsmorph.data.raw import (
    RawSubject, SubjectError, check_distinct_frames, check_image, check_labels, check_same_shape, read_volume,
)
from gsmorph.errors import GSMorphError

DATASET = "mnm"
CODE_COLUMN = "External code"
INFO_NAME = "201014_M&Ms_Dataset_Information_-_opendataset.csv"
LAYOUT_FOLDERS = datasets.get(DATASET).folders


def find_root(root: str | Path) -> Path:
    """The folder holding Training/, Validation/ or Testing/ (root or one level below)."""
    root = Path(root)
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [root]
    for candidate in candidates:
        if any((candidate / f).is_dir() for f in LAYOUT_FOLDERS):
            return candidate
    raise GSMorphError(f"{root}: not an M&Ms-1 folder (no Training/, Validation/ or Testing/)")


def find_info_csv(root: Path) -> Path:
    """The dataset-information CSV at the root (or, if none is there, the folder above it).
    Two candidates in one folder are refused: which one holds the frames is not ours to guess."""
    for folder in (root, root.parent):
        hits = sorted(folder.glob("*M&M*nformation*.csv")) or sorted(folder.glob("*[Ii]nformation*.csv"))
        if len(hits) > 1:
            raise GSMorphError(f"{folder}: {len(hits)} dataset information CSVs ({', '.join(h.name for h in hits)}); "
                               f"keep the one that holds the ED and ES frames")
        if hits:
            return hits[0]
    raise GSMorphError(f"{root}: no M&Ms dataset information CSV (*M&Ms*Dataset*nformation*.csv) found")


def read_info(path: Path):
    """The information CSV as a DataFrame indexed by code (str), with integer ED and ES."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={CODE_COLUMN: str})
    except Exception as err:  # pandas raises several types for malformed files
        raise GSMorphError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    table = table.loc[:, [c for c in table.columns if not c.startswith("Unnamed")]]
    missing = [c for c in (CODE_COLUMN, "ED", "ES") if c not in table.columns]
    if missing:
        raise GSMorphError(f"{path}: missing column(s) {missing}; columns are {list(table.columns)}")
    table = table[table[CODE_COLUMN].notna()].copy()  # rows without a code (e.g. trailing ",,,") name no subject
    table[CODE_COLUMN] = table[CODE_COLUMN].astype(str).str.strip()
    repeated = table.loc[table[CODE_COLUMN].duplicated(keep=False), CODE_COLUMN]
    if len(repeated):
        code = repeated.iloc[0]
        lines = [i + 2 for i in repeated.index[repeated == code]]
        raise GSMorphError(f"{path}: subject {code} has {len(lines)} rows (lines {', '.join(map(str, lines))}); "
                           f"which gives its ED and ES is ambiguous")
    return table.set_index(CODE_COLUMN)


def subject_dirs(root: Path, folders: tuple[str, ...] = LAYOUT_FOLDERS) -> list[Path]:
    """Every folder of `folders` holding a `<code>_sa.nii.gz`, in layout order then by code."""
    out = []
    for folder in folders:
        if (root / folder).is_dir():
            out += sorted({p.parent for p in (root / folder).rglob("*_sa.nii*")}, key=lambda p: (str(p.parent), p.name))
    if not out:
        raise GSMorphError(f"{root}: no <code>/<code>_sa.nii.gz files under {', '.join(folders)}")
    return out


def _file(folder: Path, suffix: str) -> Path:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{folder.name}{suffix}{ext}").is_file():
            return folder / f"{folder.name}{suffix}{ext}"
    return folder / f"{folder.name}{suffix}.nii.gz"


def is_labelled(folder: Path) -> bool:
    return _file(folder, "_sa_gt").is_file()


def _frame_index(info, code: str, key: str, csv_path: Path) -> int:
    value = info.loc[code, key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SubjectError(code, csv_path, f"{key} of {code} is '{value}', not a frame index") from None
    if not np.isfinite(value) or value != int(value) or value < 0:
        raise SubjectError(code, csv_path, f"{key} of {code} is missing or not a 0-based frame index ({value})")
    return int(value)


def _as_4d(array: np.ndarray, code: str, path: Path) -> np.ndarray:
    """(X, Y, Z, T) from a 4D file; singleton extra axes are dropped, a 3D file is one frame."""
    if array.ndim == 3:
        return array[..., None]
    if array.ndim > 4:
        extra = array.shape[3:]
        if sum(s > 1 for s in extra) > 1:
            raise SubjectError(code, path, f"expected 4D (x, y, z, t), got shape {array.shape}")
        array = array.reshape(array.shape[:3] + (-1,))
    if array.ndim != 4:
        raise SubjectError(code, path, f"expected 4D (x, y, z, t), got shape {array.shape}")
    return array


def read_subject(folder: str | Path, info, csv_path: Path) -> RawSubject:
    """Read one subject folder; `info` is read_info(csv_path)."""
    folder = Path(folder)
    code = folder.name
    if code not in info.index:
        raise SubjectError(code, csv_path, f"no row with {CODE_COLUMN} = {code}")
    ed, es = (_frame_index(info, code, key, csv_path) for key in ("ED", "ES"))
    check_distinct_frames(ed, es, code, csv_path)
    img_path, gt_path = _file(folder, "_sa"), _file(folder, "_sa_gt")
    image, zooms, affine = read_volume(img_path, code)
    image = _as_4d(image, code, img_path)
    labels, _, _ = read_volume(gt_path, code)
    labels = _as_4d(labels, code, gt_path)
    check_same_shape(image, labels, code, gt_path)
    for key, frame in (("ED", ed), ("ES", es)):
        if frame >= image.shape[3]:
            raise SubjectError(code, img_path, f"{key} frame {frame} (from {csv_path.name}) is beyond the "
                                               f"{image.shape[3]} frames of the image")
    frames = {key: check_image(image[..., t], code, img_path) for key, t in (("ED", ed), ("ES", es))}
    gts = {key: to_canonical(check_labels(labels[..., t], code, gt_path), DATASET) for key, t in (("ED", ed), ("ES", es))}
    for key, t in (("ED", ed), ("ES", es)):
        if not gts[key].any():
            raise SubjectError(code, gt_path, f"no labelled voxels in the {key} frame {t} (from {csv_path.name})")
    row = info.loc[code]
    parts = folder.parts[:-1]
    top = max((i for i, part in enumerate(parts) if part in LAYOUT_FOLDERS), default=len(parts) - 1)
    meta = {"source": "/".join(parts[top:]), "ed_frame": ed, "es_frame": es, "n_frames": int(image.shape[3])}
    for column, key in (("VendorName", "vendor_name"), ("Vendor", "vendor"), ("Centre", "centre"), ("Pathology", "pathology")):
        if column in info.columns and not _isnan(row[column]):
            meta[key] = row[column].item() if hasattr(row[column], "item") else row[column]
    spacing = tuple(float(z) for z in (list(zooms) + [1.0] * 3)[:3])
    true_disp = read_true_disp(_file(folder, "_true_disp"), code, frames["ED"].shape)
    return RawSubject(code, DATASET, str(meta.get("vendor", "unknown")), frames["ED"], frames["ES"],
                      gts["ED"], gts["ES"], spacing, affine, true_disp, meta)


def _isnan(value) -> bool:
    try:
        return bool(np.isnan(value))
    except TypeError:
        return False


def iter_subjects(root: str | Path, folders: tuple[str, ...] = LAYOUT_FOLDERS) -> Iterator[tuple[str, Path, bool]]:
    """(code, folder, labelled) for every subject folder of `folders`."""
    for folder in subject_dirs(find_root(root), folders):
        yield folder.name, folder, is_labelled(folder)


# ---------------------------------------------------------------- the reader's face (gsmorph.datasets.reader)

def check_root(root: str | Path) -> None:
    """GSMorphError unless `root` looks like an M&Ms-1 download (its layout and information CSV)."""
    find_info_csv(find_root(root))


def list_subjects(root: str | Path, folders: tuple[str, ...] = LAYOUT_FOLDERS
                  ) -> list[tuple[str, Callable[[], RawSubject], bool]]:
    """(code, a call reading it, labelled) for every subject folder of `folders`; the
    information CSV (ED and ES frames) is read once, first."""
    base = find_root(root)
    csv_path = find_info_csv(base)
    info = read_info(csv_path)
    return [(code, partial(read_subject, folder, info, csv_path), labelled)
            for code, folder, labelled in iter_subjects(base, folders)]


# ---------------------------------------------------------------- writing (phantom)

def write_subject(folder: Path, code: str, frames: np.ndarray, labels: dict[int, np.ndarray] | None,
                  affine: np.ndarray, frame_ms: float, true_disp: np.ndarray | None = None) -> None:
    """Write `<code>_sa.nii.gz` (frames (T, X, Y, Z) stored as (X, Y, Z, T)) and, when labels
    (frame index -> canonical (X, Y, Z)) are given, `<code>_sa_gt.nii.gz` with those frames labelled."""
    from gsmorph.io import write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    spacing = tuple(float(np.linalg.norm(affine[:3, i])) for i in range(3)) + (float(frame_ms),)
    write_nifti(folder / f"{code}_sa.nii.gz", np.moveaxis(frames, 0, -1), spacing=spacing, affine=affine)
    if labels is not None:
        gt = np.zeros(frames.shape[1:] + (frames.shape[0],), np.uint8)
        for t, canonical in labels.items():
            gt[..., t] = from_canonical(canonical, DATASET)
        write_nifti(folder / f"{code}_sa_gt.nii.gz", gt, spacing=spacing, affine=affine)
    if true_disp is not None:
        write_nifti(folder / f"{code}_true_disp.nii.gz", true_disp.astype(np.float32), affine=affine)
