"""Raw subjects -> the prepared folder every later step reads.

<out>/<subject>/ED.nii.gz, ES.nii.gz      float32 (X, Y, Z) in [0, 1], robustly scaled together
<out>/<subject>/ED_gt.nii.gz, ES_gt.nii.gz uint8 canonical labels (0 bg, 1 LV, 2 Myo, 3 RV)
<out>/<subject>/true_disp.nii.gz           phantoms only: (X, Y, Z, 3) voxel units, cropped alike
<out>/subjects.csv, <out>/excluded.csv, <out>/provenance.json

In-plane, each volume is cropped or zero-padded to size x size around the centre of the
bounding box of the ED labels; all slices are kept; the header keeps spacing and
orientation (the affine is shifted by the crop offset). The whole folder is written
atomically: on failure nothing is left.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gsmorph.data import acdc, mnm
from gsmorph.data.raw import RawSubject, SubjectError
from gsmorph.data.splits import read_split_file, stratified_split
from gsmorph.errors import GSMorphError

DATASETS = ("acdc", "mnm")
PERCENTILES = (0.5, 99.5)  # robust intensity range mapped to [0, 1]


def crop_window(labels: np.ndarray, size: int, subject: str = "", path: str = "") -> tuple[int, int]:
    """Start indices (x0, y0) of the size x size window centred on the labels' in-plane
    bounding box (may be negative or run past the image: that part is zero-padded)."""
    xs, ys = np.nonzero(labels.any(axis=2))
    if xs.size == 0:
        raise SubjectError(subject, path, "ED labels are empty: no heart to centre the crop on")
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    return int(np.floor(cx - size / 2)), int(np.floor(cy - size / 2))


def crop_inplane(volume: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """volume[x0:x0+size, y0:y0+size, ...] with zeros where the window leaves the image."""
    out = np.zeros((size, size) + volume.shape[2:], dtype=volume.dtype)
    nx, ny = volume.shape[:2]
    sx0, sx1 = max(x0, 0), min(x0 + size, nx)
    sy0, sy1 = max(y0, 0), min(y0 + size, ny)
    if sx1 > sx0 and sy1 > sy0:
        out[sx0 - x0: sx1 - x0, sy0 - y0: sy1 - y0] = volume[sx0:sx1, sy0:sy1]
    return out


def shifted_affine(affine: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The affine of the cropped grid: voxel (0, 0, k) of the crop is voxel (x0, y0, k)."""
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = affine[:3, :3] @ np.array([x0, y0, 0.0]) + affine[:3, 3]
    return out


def robust_scale(images: list[np.ndarray]) -> list[np.ndarray]:
    """Map the joint [0.5, 99.5] percentile range of `images` to [0, 1] and clip."""
    lo, hi = np.percentile(np.concatenate([im.ravel() for im in images]), PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return [np.clip((im - lo) / (hi - lo), 0.0, 1.0).astype(np.float32) for im in images]


def prepare_subject(raw: RawSubject, size: int) -> dict[str, Any]:
    """Crop, scale and check one subject; returns the arrays to write and its subjects.csv row."""
    x0, y0 = crop_window(raw.ED_gt, size, raw.subject, "ED labels")
    for name in ("ES", "ED_gt", "ES_gt"):
        if getattr(raw, name).shape != raw.ED.shape:
            raise SubjectError(raw.subject, name, f"shape {getattr(raw, name).shape} differs from ED {raw.ED.shape}")
    ed, es = (crop_inplane(v, x0, y0, size) for v in (raw.ED, raw.ES))
    ed, es = robust_scale([ed, es])
    arrays = {"ED": ed, "ES": es, "ED_gt": crop_inplane(raw.ED_gt, x0, y0, size).astype(np.uint8),
              "ES_gt": crop_inplane(raw.ES_gt, x0, y0, size).astype(np.uint8)}
    if raw.true_disp is not None:
        arrays["true_disp"] = crop_inplane(raw.true_disp.astype(np.float32), x0, y0, size)
    lost = int((raw.ED_gt > 0).sum() - (arrays["ED_gt"] > 0).sum())
    row = {"subject": raw.subject, "dataset": raw.dataset, "group": raw.group,
           "n_slices": int(raw.ED.shape[2]), "spacing_x": raw.spacing[0], "spacing_y": raw.spacing[1],
           "spacing_z": raw.spacing[2], "raw_shape_x": raw.ED.shape[0], "raw_shape_y": raw.ED.shape[1],
           "crop_x0": x0, "crop_y0": y0, "labelled_voxels_outside_crop": lost,
           "has_true_disp": raw.true_disp is not None}
    row.update({k: v for k, v in raw.meta.items() if k not in row})
    return {"arrays": arrays, "affine": shifted_affine(raw.affine, x0, y0), "row": row}


def layout_folders(dataset: str, folders=None) -> tuple[str, ...]:
    """The top-level folders of the raw layout to read: all by default (ACDC: training,
    testing; M&Ms-1: Training, Validation, Testing), or the named subset."""
    known = {"acdc": acdc.SPLIT_FOLDERS, "mnm": mnm.LAYOUT_FOLDERS}.get(dataset)
    if known is None:
        raise GSMorphError(f"unknown dataset '{dataset}'; use one of {list(DATASETS)}")
    if not folders:
        return tuple(known)
    unknown = [f for f in folders if f not in known]
    if unknown:
        raise GSMorphError(f"--folders: {unknown} are not folders of the {dataset} layout; use some of {list(known)}")
    return tuple(folders)


def list_subjects(dataset: str, raw_dir: str | Path, folders=None):
    """(subject, read function) for every labelled subject, and the unlabelled subject ids."""
    folders = layout_folders(dataset, folders)
    if dataset == "acdc":
        items = list(acdc.iter_subjects(raw_dir, folders))
        readers = [(s, (lambda f=f: acdc.read_subject(f))) for s, f, lab in items if lab]
    else:  # mnm (layout_folders rejected any other name)
        root = mnm.find_root(raw_dir)
        csv_path = mnm.find_info_csv(root)
        info = mnm.read_info(csv_path)
        items = list(mnm.iter_subjects(root, folders))
        readers = [(s, (lambda f=f: mnm.read_subject(f, info, csv_path))) for s, f, lab in items if lab]
    names = [s for s, _, _ in items]
    dupes = sorted({s for s in names if names.count(s) > 1})
    if dupes:
        raise GSMorphError(f"{raw_dir}: subject id(s) found twice: {dupes[:10]}")
    return readers, [s for s, _, lab in items if not lab]


def prepare(dataset: str, raw_dir: str | Path, out: str | Path, size: int = 128, on_error: str = "fail",
            seed: int = 0, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
            split_file: str | Path | None = None, progress=None, folders=None) -> dict[str, Any]:
    """Prepare every labelled subject of a raw folder into `out` (replaced whole, atomically).

    folders: the layout's top-level folders to read (None: all; e.g. ["training"] for the
    100 ACDC subjects the paper used).

    on_error "fail": the first bad subject raises GSMorphError naming subject and file, and
    nothing is written; "skip": bad subjects are left out and listed in excluded.csv.
    Returns a summary (counts, excluded subjects).
    """
    import pandas as pd

    from gsmorph.io import atomic_dir, write_csv, write_nifti
    from gsmorph.provenance import write_provenance

    if on_error not in ("fail", "skip"):
        raise GSMorphError(f"--on-error must be 'fail' or 'skip', got '{on_error}'")
    if size < 8:
        raise GSMorphError(f"--size must be at least 8, got {size}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise GSMorphError(f"{raw_dir}: raw folder not found")
    readers, unlabelled = list_subjects(dataset, raw_dir, folders)
    rows, excluded = [], []
    with atomic_dir(out, inputs=[raw_dir, split_file], made_by="prepare") as tmp:
        for subject, read in readers:
            try:
                prepared = prepare_subject(read(), size)
            except SubjectError as err:
                if on_error == "fail":
                    raise
                excluded.append({"subject": subject, "file": err.path, "reason": err.reason})
                continue
            folder = tmp / subject
            for name, array in prepared["arrays"].items():
                write_nifti(folder / f"{name}.nii.gz", array, affine=prepared["affine"])
            rows.append(prepared["row"])
            if progress:
                progress(subject)
        if not rows:
            raise GSMorphError(f"{raw_dir}: no subject could be prepared ({len(excluded)} excluded, "
                               f"{len(unlabelled)} unlabelled)")
        table = pd.DataFrame(rows)
        subjects = table["subject"].tolist()
        if split_file is not None:
            splits = read_split_file(split_file, subjects)
        else:
            splits = stratified_split(subjects, table["group"].astype(str).tolist(), seed, ratios)
        table.insert(3, "split", [splits[s] for s in subjects])
        write_csv(tmp / "subjects.csv", table)
        write_csv(tmp / "excluded.csv", pd.DataFrame(excluded, columns=["subject", "file", "reason"]))
        summary = {"dataset": dataset, "raw": str(raw_dir.resolve()), "size": size, "on_error": on_error,
                   "split_ratios": list(ratios), "split_file": str(split_file) if split_file else None,
                   "n_prepared": len(rows), "n_excluded": len(excluded), "unlabelled": unlabelled,
                   "split_counts": table["split"].value_counts().to_dict()}
        write_provenance(tmp / "provenance.json", config=summary, seed=seed)
    return {**summary, "excluded": excluded}
