"""Raw subjects -> the prepared folder every later step reads.

<out>/<subject>/ED.nii.gz, ES.nii.gz      float32 (X, Y, Z) in [0, 1], scaled together (`intensity`)
<out>/<subject>/ED_gt.nii.gz, ES_gt.nii.gz uint8 canonical labels (0 bg, 1 LV, 2 Myo, 3 RV)
<out>/<subject>/true_disp.nii.gz           phantoms only: (X, Y, Z, 3) voxel units, cropped alike
<out>/subjects.csv, <out>/excluded.csv, <out>/provenance.json

In-plane, each volume is cropped or zero-padded to size x size around the centre of the
bounding box of the ED labels; all slices are kept; the header keeps spacing and
orientation (the affine is shifted by the crop offset). The whole folder is written
atomically: on failure nothing is left.

Intensities (`intensity`, recorded in subjects.csv and provenance.json), computed over the
cropped ED and ES volumes of a subject together and mapped to [0, 1]:
- "percentile": the [0.5, 99.5] percentile range, clipped (robust to bright outliers);
- "minmax": the minimum and maximum (the paper's code: min-max scaling to [0, 1]).

Which subjects (`subjects_file`, recorded in provenance.json): every labelled subject of the
folders read, or only those a file lists (`read_subject_list`); a listed id that is not a
labelled subject there is an error naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gsmorph import datasets
from gsmorph.data.raw import RawSubject, SubjectError
from gsmorph.data.splits import read_split_file, split_counts, stratified_split
from gsmorph.errors import GSMorphError

DATASETS = tuple(datasets.ids())
PERCENTILES = (0.5, 99.5)  # robust intensity range mapped to [0, 1]
INTENSITIES = ("percentile", "minmax")


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


def check_intensity(intensity: str) -> str:
    if intensity not in INTENSITIES:
        raise GSMorphError(f"intensity normalisation (--intensity, config prepare.intensity) must be one of "
                           f"{', '.join(INTENSITIES)}, got '{intensity}'")
    return intensity


def scale_intensity(images: list[np.ndarray], intensity: str = "percentile") -> list[np.ndarray]:
    """`images` mapped to [0, 1] together: their joint [0.5, 99.5] percentile range, clipped
    ("percentile"), or their joint minimum and maximum ("minmax"). A constant input gives zeros."""
    values = np.concatenate([im.ravel() for im in images])
    if check_intensity(intensity) == "minmax":
        lo, hi = float(values.min()), float(values.max())
    else:
        lo, hi = np.percentile(values, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return [np.clip((im - lo) / (hi - lo), 0.0, 1.0).astype(np.float32) for im in images]


def read_subject_list(path: str | Path, dataset: str | None = None) -> list[str]:
    """Subject ids from a file: a CSV with a `subject` column (rows of another dataset left
    out when it has a `dataset` column), or text with one id per line (blank lines and
    lines starting with # ignored). Order kept, repeats dropped."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise GSMorphError(f"{path}: subjects file not found")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise GSMorphError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise GSMorphError(f"{path}: the subjects file lists no subjects")
    header = [c.strip().lower() for c in lines[0].split(",")]
    if "," in lines[0] or header == ["subject"]:
        if "subject" not in header:
            raise GSMorphError(f"{path}: a CSV subjects file needs a 'subject' column, found {header}")
        try:
            table = pd.read_csv(path, dtype=str, comment="#", skip_blank_lines=True)
        except Exception as err:
            raise GSMorphError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from None
        table.columns = [str(c).strip().lower() for c in table.columns]
        if dataset is not None and "dataset" in table.columns:
            table = table[table["dataset"].str.strip().str.lower() == dataset]
        ids = [str(s).strip() for s in table["subject"].dropna()]
    else:
        ids = lines
    ids = list(dict.fromkeys(s for s in ids if s))
    if not ids:
        raise GSMorphError(f"{path}: the subjects file lists no subjects" + (f" of {dataset}" if dataset else ""))
    return ids


def prepare_subject(raw: RawSubject, size: int, intensity: str = "percentile") -> dict[str, Any]:
    """Crop, scale and check one subject; returns the arrays to write and its subjects.csv row."""
    x0, y0 = crop_window(raw.ED_gt, size, raw.subject, "ED labels")
    for name in ("ES", "ED_gt", "ES_gt"):
        if getattr(raw, name).shape != raw.ED.shape:
            raise SubjectError(raw.subject, name, f"shape {getattr(raw, name).shape} differs from ED {raw.ED.shape}")
    ed, es = (crop_inplane(v, x0, y0, size) for v in (raw.ED, raw.ES))
    ed, es = scale_intensity([ed, es], intensity)
    arrays = {"ED": ed, "ES": es, "ED_gt": crop_inplane(raw.ED_gt, x0, y0, size).astype(np.uint8),
              "ES_gt": crop_inplane(raw.ES_gt, x0, y0, size).astype(np.uint8)}
    if raw.true_disp is not None:
        arrays["true_disp"] = crop_inplane(raw.true_disp.astype(np.float32), x0, y0, size)
    lost = int((raw.ED_gt > 0).sum() - (arrays["ED_gt"] > 0).sum())
    row = {"subject": raw.subject, "dataset": raw.dataset, "group": raw.group,
           "n_slices": int(raw.ED.shape[2]), "spacing_x": raw.spacing[0], "spacing_y": raw.spacing[1],
           "spacing_z": raw.spacing[2], "raw_shape_x": raw.ED.shape[0], "raw_shape_y": raw.ED.shape[1],
           "crop_x0": x0, "crop_y0": y0, "labelled_voxels_outside_crop": lost,
           "has_true_disp": raw.true_disp is not None, "intensity": intensity}
    row.update({k: v for k, v in raw.meta.items() if k not in row})
    return {"arrays": arrays, "affine": shifted_affine(raw.affine, x0, y0), "row": row}


def layout_folders(dataset: str, folders=None) -> tuple[str, ...]:
    """The top-level folders of the raw layout to read: all by default (ACDC: training,
    testing; M&Ms-1: Training, Validation, Testing), or the named subset."""
    known = datasets.get(dataset).folders
    if not folders:
        return tuple(known)
    unknown = [f for f in folders if f not in known]
    if unknown:
        raise GSMorphError(f"--folders: {unknown} are not folders of the {dataset} layout; use some of {list(known)}")
    return tuple(folders)


def list_subjects(dataset: str, raw_dir: str | Path, folders=None):
    """(subject, read function) for every labelled subject, and the unlabelled subject ids."""
    folders = layout_folders(dataset, folders)
    items = datasets.reader(dataset).list_subjects(raw_dir, folders)
    readers = [(s, read) for s, read, lab in items if lab]
    names = [s for s, _, _ in items]
    dupes = sorted({s for s in names if names.count(s) > 1})
    if dupes:
        raise GSMorphError(f"{raw_dir}: subject id(s) found twice: {dupes[:10]}")
    return readers, [s for s, _, lab in items if not lab]


def select_subjects(readers: list, unlabelled: list[str], subjects_file: str | Path, dataset: str,
                    raw_dir: Path, folders) -> tuple[list, list[str]]:
    """The readers of the subjects `subjects_file` lists (in the download's order), and the
    list; GSMorphError naming every listed id that is not a labelled subject of the folders read."""
    wanted = read_subject_list(subjects_file, dataset)
    known = {subject for subject, _ in readers}
    missing = [s for s in wanted if s not in known]
    if missing:
        unlabelled = set(unlabelled)
        shown = ", ".join(f"{s} (unlabelled)" if s in unlabelled else s for s in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise GSMorphError(f"{subjects_file}: {len(missing)} listed subject(s) are not labelled {dataset} subjects "
                           f"of {raw_dir} (folders read: {', '.join(layout_folders(dataset, folders))}): "
                           f"{shown}{more}")
    chosen = set(wanted)
    return [r for r in readers if r[0] in chosen], wanted


def prepare(dataset: str, raw_dir: str | Path, out: str | Path, size: int = 128, on_error: str = "fail",
            seed: int = 0, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
            split_file: str | Path | None = None, progress=None, folders=None, intensity: str = "percentile",
            subjects_file: str | Path | None = None) -> dict[str, Any]:
    """Prepare every labelled subject of a raw folder into `out` (replaced whole, atomically).

    folders: the layout's top-level folders to read (None: all; e.g. ["training"] for the
    100 ACDC subjects the paper used). subjects_file: read only the subjects it lists
    (`read_subject_list`). intensity: "percentile" or "minmax" (module docstring).

    on_error "fail": the first bad subject raises GSMorphError naming subject and file, and
    nothing is written; "skip": bad subjects are left out and listed in excluded.csv.
    Returns a summary (counts, excluded subjects).
    """
    import pandas as pd

    from gsmorph.io import atomic_dir, sha256, write_csv, write_nifti
    from gsmorph.provenance import write_provenance

    if on_error not in ("fail", "skip"):
        raise GSMorphError(f"--on-error must be 'fail' or 'skip', got '{on_error}'")
    if size < 8:
        raise GSMorphError(f"--size must be at least 8, got {size}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GSMorphError(f"--seed must be an integer >= 0, got {seed!r}")
    split_counts(1, ratios)  # finite, non-negative, positive sum: refused before any subject is read
    check_intensity(intensity)
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise GSMorphError(f"{raw_dir}: raw folder not found")
    readers, unlabelled = list_subjects(dataset, raw_dir, folders)
    listed = None
    if subjects_file is not None:
        readers, listed = select_subjects(readers, unlabelled, subjects_file, dataset, raw_dir, folders)
    rows, excluded = [], []
    with atomic_dir(out, inputs=[raw_dir, split_file, subjects_file], made_by="prepare") as tmp:
        for subject, read in readers:
            try:
                prepared = prepare_subject(read(), size, intensity)
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
                   "intensity": intensity, "folders": list(layout_folders(dataset, folders)),
                   "split_ratios": list(ratios), "split_file": str(split_file) if split_file else None,
                   "subjects_file": str(subjects_file) if subjects_file else None,
                   "subjects_file_sha256": sha256(subjects_file) if subjects_file else None,
                   "n_listed": len(listed) if listed is not None else None,
                   "n_prepared": len(rows), "n_excluded": len(excluded), "unlabelled": unlabelled,
                   "split_counts": table["split"].value_counts().to_dict()}
        write_provenance(tmp / "provenance.json", config=summary, seed=seed)
    return {**summary, "excluded": excluded}
