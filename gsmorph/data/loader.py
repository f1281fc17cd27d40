"""Read a prepared folder: subjects, volumes, and 2D / 3D registration pairs (numpy only).

This is the one place every verb (train, tune, infer, register, evaluate, report) reads
prepared data, and where it is checked: a subject's ED, ES and label volumes have one
shape, whose slice count is the `n_slices` subjects.csv records; intensities are finite;
labels are canonical ids; a true displacement has that shape too. A mismatch is an error
naming the subject and the file.

A Pair's moving and fixed are float32 (*S) in [0, 1]; labels uint8 canonical (*S);
spacing (ndim,) float64 mm per array axis; true_disp (ndim, *S) float32 voxel units
(moved = moving sampled at x + true_disp(x)), given only for moving=ES, fixed=ED on
phantom data. 2D pairs are slices vol[:, :, k], so *S = (X, Y); 3D pairs have *S = (X, Y, Z).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsmorph.data.labels import STRUCTURES
from gsmorph.errors import GSMorphError

FRAMES = ("ED", "ES")
REQUIRED_COLUMNS = ("subject", "dataset", "group", "split", "n_slices", "spacing_x", "spacing_y", "spacing_z")
NUMERIC_COLUMNS = ("n_slices", "spacing_x", "spacing_y", "spacing_z")


@dataclass
class Subject:
    """One prepared subject: ED, ES float32 (X, Y, Z); ED_gt, ES_gt uint8 (X, Y, Z);
    spacing (3,) mm; true_disp (3, X, Y, Z) float32 voxel units or None."""

    subject: str
    ED: np.ndarray
    ES: np.ndarray
    ED_gt: np.ndarray
    ES_gt: np.ndarray
    spacing: np.ndarray
    true_disp: np.ndarray | None = None


@dataclass
class Pair:
    """One registration pair (see the module docstring for shapes and units)."""

    subject: str
    slice_index: int
    moving: np.ndarray
    fixed: np.ndarray
    moving_label: np.ndarray
    fixed_label: np.ndarray
    spacing: np.ndarray
    true_disp: np.ndarray | None = None


def read_subjects(prepared: str | Path):
    """subjects.csv of a prepared folder as a DataFrame (subject column as str), checked:
    each subject once, n_slices a positive integer, spacings positive numbers."""
    import pandas as pd

    path = Path(prepared) / "subjects.csv"
    if not path.is_file():
        raise GSMorphError(f"{path}: not found (is {prepared} a prepared folder?)")
    table = pd.read_csv(path, dtype={"subject": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise GSMorphError(f"{path}: missing column(s) {missing}")
    for column in NUMERIC_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64)) | (values.to_numpy(dtype=np.float64) <= 0)
        if column == "n_slices":
            bad |= values.to_numpy(dtype=np.float64) % 1 != 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GSMorphError(f"{path}: line {i + 2}: {column} = '{table[column].iloc[i]}' of subject "
                               f"{table['subject'].iloc[i]} is not a positive " +
                               ("integer" if column == "n_slices" else "number"))
        table[column] = values.astype(int) if column == "n_slices" else values
    from gsmorph.io import check_plain_name

    for subject in table["subject"]:  # ids name folders and output files: never a path
        check_plain_name(subject, path)
    dupes = table["subject"][table["subject"].duplicated()]
    if len(dupes):
        raise GSMorphError(f"{path}: subject {dupes.iloc[0]} is listed twice")
    return table


def prepared_identity(prepared: str | Path) -> str:
    """A digest of a prepared folder's subjects.csv and provenance.json (also the run's
    resume fingerprint, gsmorph.training.data_identity): it changes whenever the folder is
    prepared again."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("subjects.csv", "provenance.json"):
        path = Path(prepared) / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def recorded_slices(prepared: str | Path, subject: str) -> int | None:
    """The subject's `n_slices` in subjects.csv (None if the subject is not listed)."""
    table = read_subjects(prepared)
    row = table[table["subject"] == str(subject)]
    return int(row["n_slices"].iloc[0]) if len(row) else None


def load_subject(prepared: str | Path, subject: str, n_slices: int | None = None) -> Subject:
    """Read one prepared subject's volumes (and true displacement where present), checked
    against each other and against `n_slices` (default: subjects.csv's)."""
    from gsmorph.io import read_nifti

    folder = Path(prepared) / str(subject)
    expected = recorded_slices(prepared, subject) if n_slices is None else int(n_slices)
    arrays, spacing, shape = {}, None, None
    for name in ("ED", "ES", "ED_gt", "ES_gt"):
        path = folder / f"{name}.nii.gz"
        if not path.is_file():
            raise GSMorphError(f"{path}: not found (subject {subject})")
        raw, zooms, _ = read_nifti(path, dtype=np.float32)
        if shape is None:
            shape, spacing = raw.shape, np.asarray(zooms[:3], dtype=np.float64)
        _check_volume(raw, name, path, subject, shape, expected)
        arrays[name] = raw.astype(np.uint8) if name.endswith("_gt") else raw
    disp_path = folder / "true_disp.nii.gz"
    true_disp = None
    if disp_path.is_file():
        disp, _, _ = read_nifti(disp_path, dtype=np.float32)
        if disp.shape != (*shape, 3) or not np.isfinite(disp).all():
            raise GSMorphError(f"{disp_path}: subject {subject}: true displacement of shape {disp.shape}, expected "
                               f"{(*shape, 3)} and finite")
        true_disp = np.ascontiguousarray(np.moveaxis(disp, -1, 0))
    return Subject(str(subject), arrays["ED"], arrays["ES"], arrays["ED_gt"], arrays["ES_gt"], spacing, true_disp)


def _check_volume(array: np.ndarray, name: str, path: Path, subject: str, shape: tuple, n_slices: int | None) -> None:
    """One prepared volume: 3D, the subject's shape and slice count; finite intensities or
    canonical label ids."""
    where = f"{path}: subject {subject}"
    if array.ndim != 3:
        raise GSMorphError(f"{where}: a {array.ndim}-D array of shape {array.shape}, expected a 3-D volume")
    if array.shape != shape:
        raise GSMorphError(f"{where}: shape {array.shape} differs from the subject's ED frame {shape}")
    if n_slices is not None and array.shape[2] != n_slices:
        raise GSMorphError(f"{where}: {array.shape[2]} slices, but subjects.csv records n_slices = {n_slices}")
    if not name.endswith("_gt"):
        if not np.isfinite(array).all():
            raise GSMorphError(f"{where}: {int((~np.isfinite(array)).sum())} non-finite intensities")
    elif not np.isin(array, tuple(range(len(STRUCTURES) + 1))).all():
        bad = np.setdiff1d(np.unique(array), np.arange(len(STRUCTURES) + 1))[:5]
        raise GSMorphError(f"{where}: label values {bad.tolist()} are not canonical ids 0..{len(STRUCTURES)}")


def _check_frames(moving: str, fixed: str) -> None:
    for name, value in (("moving", moving), ("fixed", fixed)):
        if value not in FRAMES:
            raise GSMorphError(f"{name} frame must be one of {list(FRAMES)}, got '{value}'")
    if moving == fixed:
        raise GSMorphError(f"moving and fixed are both '{moving}'")


def _split_subjects(prepared: str | Path, split: str) -> list[tuple[str, int]]:
    """(subject, n_slices) of the subjects in `split`, in subjects.csv order."""
    table = read_subjects(prepared)
    if split not in ("train", "val", "test", "all"):
        raise GSMorphError(f"unknown split '{split}'; use train, val, test or all")
    if split != "all":
        table = table[table["split"] == split]
    return list(zip(table["subject"].tolist(), table["n_slices"].astype(int).tolist()))


def _has_all_structures(label: np.ndarray) -> bool:
    present = np.unique(label)
    return all(v in present for v in STRUCTURES.values())


def subject_pairs_2d(subj: Subject, moving: str = "ES", fixed: str = "ED", drop_missing: bool = False) -> list[Pair]:
    """The 2D pairs (one per slice) of one loaded subject."""
    _check_frames(moving, fixed)
    mov, fix = getattr(subj, moving), getattr(subj, fixed)
    mov_l, fix_l = getattr(subj, f"{moving}_gt"), getattr(subj, f"{fixed}_gt")
    with_disp = subj.true_disp is not None and (moving, fixed) == ("ES", "ED")
    out = []
    for k in range(mov.shape[2]):
        if drop_missing and not (_has_all_structures(mov_l[:, :, k]) and _has_all_structures(fix_l[:, :, k])):
            continue
        out.append(Pair(subj.subject, k, mov[:, :, k].copy(), fix[:, :, k].copy(), mov_l[:, :, k].copy(),
                        fix_l[:, :, k].copy(), subj.spacing[:2].astype(np.float64),
                        subj.true_disp[:2, :, :, k].copy() if with_disp else None))
    return out


def pairs_2d(prepared: str | Path, split: str, moving: str = "ES", fixed: str = "ED",
             drop_missing: bool = False) -> list[Pair]:
    """Every short-axis slice pair of the subjects in `split` (train, val, test or all),
    subjects in subjects.csv order, slices base to apex. With drop_missing, slices where
    LV, Myo or RV is absent in either frame are left out."""
    _check_frames(moving, fixed)
    out: list[Pair] = []
    for subject, n_slices in _split_subjects(prepared, split):
        out += subject_pairs_2d(load_subject(prepared, subject, n_slices), moving, fixed, drop_missing)
    return out


def pairs_3d(prepared: str | Path, split: str, moving: str = "ES", fixed: str = "ED") -> list[Pair]:
    """One whole-volume pair per subject in `split` (slice_index -1)."""
    _check_frames(moving, fixed)
    out = []
    for subject, n_slices in _split_subjects(prepared, split):
        s = load_subject(prepared, subject, n_slices)
        with_disp = s.true_disp is not None and (moving, fixed) == ("ES", "ED")
        out.append(Pair(s.subject, -1, getattr(s, moving), getattr(s, fixed), getattr(s, f"{moving}_gt"),
                        getattr(s, f"{fixed}_gt"), s.spacing.astype(np.float64), s.true_disp if with_disp else None))
    return out


def pairs(prepared: str | Path, split: str, mode: str = "2d", moving: str = "ES", fixed: str = "ED",
          drop_missing: bool = False) -> list[Pair]:
    """The pairs of `split` in registration `mode`: "2d" (slice pairs, see pairs_2d) or
    "3d" (volume pairs, see pairs_3d; drop_missing does not apply)."""
    if mode == "2d":
        return pairs_2d(prepared, split, moving=moving, fixed=fixed, drop_missing=drop_missing)
    if mode == "3d":
        return pairs_3d(prepared, split, moving=moving, fixed=fixed)
    raise GSMorphError(f"config key 'mode': unknown '{mode}', expected 2d or 3d")


def dataset_name(prepared: str | Path) -> str:
    """The dataset of a prepared folder, from subjects.csv ('a+b' if it mixes several)."""
    names = sorted(set(read_subjects(prepared)["dataset"].astype(str)))
    return names[0] if len(names) == 1 else "+".join(names)


def stack(pairs: list[Pair]) -> dict[str, np.ndarray]:
    """Batch pairs of one shape: moving, fixed, moving_label, fixed_label (N, *S), spacing
    (N, ndim), and true_disp (N, ndim, *S) when every pair has one."""
    if not pairs:
        raise GSMorphError("no pairs to stack")
    shapes = {p.moving.shape for p in pairs}
    if len(shapes) != 1:
        raise GSMorphError(f"pairs have different shapes {sorted(shapes)}; prepare with one --size")
    out = {key: np.stack([getattr(p, key) for p in pairs])
           for key in ("moving", "fixed", "moving_label", "fixed_label", "spacing")}
    if all(p.true_disp is not None for p in pairs):
        out["true_disp"] = np.stack([p.true_disp for p in pairs])
    return out
