"""One evaluation path for every method: per-pair outputs -> long-format metrics table.

For each pairs folder (gsmorph/pairs.py format) and each registered pair, against the
moving and fixed frames of the prepared folder named in pairs.json (DESIGN.md):
- dice, hd95_mm per structure (LV, Myo, RV): a structure is evaluated when both the
  moving and the fixed label have it (else NaN: it cannot be registered); Dice is then 0
  when the warp erased it and HD95 NaN (a lost structure, counted by `undefined_counts`);
- mse (moved image vs fixed image), njd_pct, sdlogj (over det J > 0), runtime_s;
- with a true displacement (phantoms, registered ES onto ED, the direction it is stored
  in; for a 2D pair the slice's first two channels): epe_mm, the mean endpoint error
  over the fixed frame's heart (labels > 0), and epe_image_mm over the whole image;
- the metrics of the published conventions asked for (CONVENTIONS): Learn2Reg's
  (l2r_hd95_vox, l2r_sdlogj, l2r_num_foldings; its Dice is ours) and the GSMorph
  authors' code's (code_dice, code_hd95_px: 0 for a structure missing from the moved or
  the fixed map, so their mean over LV, Myo, RV divides by 3; code_njd_pct, 2D only).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gsmorph import metrics, pairs
from gsmorph.errors import GSMorphError
from gsmorph.workers import watch_parent

COLUMNS = ["dataset", "backbone", "method", "seed", "subject", "slice", "metric", "structure", "value"]
PER_STRUCTURE = ("dice", "hd95_mm")
PER_PAIR = ("mse", "njd_pct", "sdlogj", "epe_mm", "epe_image_mm", "runtime_s")
CONVENTIONS = {"learn2reg": ("l2r_hd95_vox", "l2r_sdlogj", "l2r_num_foldings"),
               "gsmorph-code": ("code_dice", "code_hd95_px", "code_njd_pct")}
# metric -> (lowest, highest) possible value; anything else in a metrics CSV is refused.
# Upper bounds of unbounded metrics: prepared images lie in [0, 1] (MSE <= 1); no heart
# image spans 10 m (HD95, EPE) nor 10^4 voxels; a day per pair (runtime); SDlogJ of a
# positive det J field.
RANGES = {"dice": (0.0, 1.0), "hd95_mm": (0.0, 1e4), "mse": (0.0, 1.0), "njd_pct": (0.0, 100.0),
          "sdlogj": (0.0, 1e3), "epe_mm": (0.0, 1e4), "epe_image_mm": (0.0, 1e4), "runtime_s": (0.0, 86400.0),
          "l2r_hd95_vox": (0.0, 1e4), "l2r_sdlogj": (0.0, 1e3), "l2r_num_foldings": (0.0, 1e12),
          "code_dice": (0.0, 1.0), "code_hd95_px": (0.0, 1e4), "code_njd_pct": (0.0, 100.0)}
GROUP = ["dataset", "backbone", "method", "seed"]
# metrics with one value per structure (the others have structure "")
STRUCTURE_METRICS = PER_STRUCTURE + ("l2r_hd95_vox", "code_dice", "code_hd95_px")


@dataclass
class Reference:
    """The frames of one prepared subject: fixed image (X,Y,Z) f32, fixed and moving labels
    (X,Y,Z) uint8, spacing (3,) mm, true_disp (3,X,Y,Z) voxel units or None."""

    image: np.ndarray
    label: np.ndarray
    moving_label: np.ndarray
    spacing: np.ndarray
    true_disp: np.ndarray | None


def read_reference(prepared: Path, subject: str, moving: str, fixed: str) -> Reference:
    """The fixed frame, the moving labels (and, for ES->ED, the true displacement) of a
    prepared subject, read (and checked) by the data loader."""
    from gsmorph.data.loader import load_subject

    subj = load_subject(prepared, subject)
    true_disp = subj.true_disp if (moving, fixed) == ("ES", "ED") else None
    return Reference(getattr(subj, fixed), getattr(subj, f"{fixed}_gt"), getattr(subj, f"{moving}_gt"),
                     np.asarray(subj.spacing, dtype=np.float64), true_disp)


def pair_metrics(sp: pairs.SubjectPairs, ref: Reference, where: str,
                 conventions: tuple[str, ...] = ()) -> dict[tuple[str, str], np.ndarray]:
    """All metrics of one subject's K pairs: {(metric, structure): (K,) values}."""
    ndim = sp.disp.shape[1]
    k = len(sp.slice_index)
    if ndim == 2:
        idx = np.asarray(sp.slice_index, dtype=int)
        if np.any(idx < 0) or np.any(idx >= ref.image.shape[2]):
            raise GSMorphError(f"{where}: slice_index {idx.tolist()} outside 0..{ref.image.shape[2] - 1}")
        frame = lambda volume: np.moveaxis(volume[:, :, idx], -1, 0)  # noqa: E731
        fixed_image, fixed_label, moving_label = frame(ref.image), frame(ref.label), frame(ref.moving_label)
        true_disp = None if ref.true_disp is None else np.moveaxis(ref.true_disp[:2][:, :, :, idx], -1, 0)
    else:
        fixed_image, fixed_label, moving_label = ref.image[None], ref.label[None], ref.moving_label[None]
        true_disp = None if ref.true_disp is None else ref.true_disp[None]
        if k != 1:
            raise GSMorphError(f"{where}: a 3D pairs file holds {k} pairs, expected 1")
    if fixed_image.shape[1:] != sp.disp.shape[2:]:
        raise GSMorphError(f"{where}: pairs of spatial shape {sp.disp.shape[2:]} but the prepared "
                           f"fixed frame is {fixed_image.shape[1:]}")
    spacing = ref.spacing[:ndim]
    if not np.allclose(sp.spacing, spacing, rtol=1e-4):
        raise GSMorphError(f"{where}: spacing {sp.spacing.tolist()} differs from the prepared {spacing.tolist()}")

    out: dict[tuple[str, str], np.ndarray] = {}
    for name, label_id in metrics.STRUCTURES.items():
        moved_mask, fixed_mask = sp.moved_label == label_id, fixed_label == label_id
        both = fixed_mask.reshape(k, -1).any(1) & (moving_label == label_id).reshape(k, -1).any(1)
        dice = metrics.dice_batch(moved_mask, fixed_mask)
        out[("dice", name)] = np.where(both, dice, np.nan)
        out[("hd95_mm", name)] = np.array([metrics.hd95(moved_mask[i], fixed_mask[i], spacing) if both[i] else np.nan
                                           for i in range(k)])
        if "learn2reg" in conventions:
            out[("l2r_hd95_vox", name)] = np.array([metrics.l2r_hd95_vox(moved_mask[i], fixed_mask[i]) if both[i]
                                                    else np.nan for i in range(k)])
        if "gsmorph-code" in conventions:  # labels in both the moved and the fixed map, else 0
            in_both = moved_mask.reshape(k, -1).any(1) & fixed_mask.reshape(k, -1).any(1)
            out[("code_dice", name)] = np.where(in_both, dice, 0.0)  # metrics.code_dice where in_both
            out[("code_hd95_px", name)] = np.array([metrics.code_hd95_px(moved_mask[i], fixed_mask[i]) if in_both[i]
                                                    else 0.0 for i in range(k)])
    out[("mse", "")] = metrics.mse_batch(sp.moved_image, fixed_image)
    det = metrics.jacobian_determinant_batch(sp.disp)
    out[("njd_pct", "")] = metrics.njd_percent_batch(sp.disp, det)
    out[("sdlogj", "")] = metrics.sdlogj_batch(sp.disp, det)
    if true_disp is not None:
        out[("epe_mm", "")] = metrics.epe_mm_batch(sp.disp, true_disp, spacing, mask=fixed_label > 0)
        out[("epe_image_mm", "")] = metrics.epe_mm_batch(sp.disp, true_disp, spacing)
    out[("runtime_s", "")] = np.asarray(sp.runtime_s, dtype=np.float64)
    if "learn2reg" in conventions:
        dets = [metrics.l2r_jacobian_determinant(sp.disp[i]) for i in range(k)]
        out[("l2r_sdlogj", "")] = np.array([metrics.l2r_sdlogj(sp.disp[i], d) for i, d in enumerate(dets)])
        out[("l2r_num_foldings", "")] = np.array([metrics.l2r_num_foldings(sp.disp[i], d)
                                                  for i, d in enumerate(dets)], float)
    if "gsmorph-code" in conventions and ndim == 2:
        out[("code_njd_pct", "")] = np.array([metrics.code_njd_pct(sp.disp[i]) for i in range(k)])
    return out


def _evaluate_subject(task: tuple) -> pd.DataFrame:
    """Every method's pairs of one prepared subject; its reference is read once."""
    prepared, subject, moving, fixed, conventions, entries = task
    ref = read_reference(Path(prepared), subject, moving, fixed)
    columns: dict[str, list] = {name: [] for name in COLUMNS}  # one frame per subject, built once
    for folder, file, meta in entries:
        where = str(Path(folder) / file)
        sp = pairs.load_subject(Path(folder) / file)
        if sp.subject != subject:
            raise GSMorphError(f"{Path(folder) / pairs.INDEX}: file {file} listed for subject {subject}")
        k = len(sp.slice_index)
        slices = np.asarray(sp.slice_index, dtype=int).tolist()
        for (metric, structure), vals in pair_metrics(sp, ref, where, conventions).items():
            for key in GROUP:
                columns[key] += [meta[key]] * k
            columns["subject"] += [subject] * k
            columns["slice"] += slices
            columns["metric"] += [metric] * k
            columns["structure"] += [structure] * k
            columns["value"] += np.asarray(vals, dtype=np.float64).reshape(k).tolist()
    frame = pd.DataFrame(columns, columns=COLUMNS)
    return frame.astype({"slice": np.int64, "value": np.float64})


def folder_meta(folder: str | os.PathLike, prepared: str | os.PathLike | None = None) -> dict:
    """pairs.json of a complete pairs folder, with backbone "none" for non-learned methods
    and `prepared` absolute: the recorded one (relative to the folder), or the given one
    (`evaluate --prepared`: data moved elsewhere), which must hold the same dataset."""
    meta = dict(pairs.read_meta(folder))  # checked against its schema (gsmorph.pairs.check_meta)
    meta["backbone"] = meta["backbone"] or "none"
    if prepared is not None:
        from gsmorph.data.loader import dataset_name

        if not (Path(prepared) / "subjects.csv").is_file():
            raise GSMorphError(f"{prepared}: not a prepared folder (no subjects.csv)")
        if dataset_name(Path(prepared)) != meta["dataset"]:
            raise GSMorphError(f"{prepared}: holds dataset '{dataset_name(Path(prepared))}', but "
                               f"{Path(folder) / pairs.META} has pairs of '{meta['dataset']}'")
        meta["prepared"] = str(Path(prepared).resolve())
    elif not Path(meta["prepared"]).is_dir():
        raise GSMorphError(f"{Path(folder) / pairs.META}: key 'prepared' names {meta['prepared']}, not a folder "
                           "(moved? give --prepared DIR)")
    return meta


def check_one_preparation(folder, meta: dict, preparations: dict[str, tuple[str, str]]) -> None:
    """Refuse pairs registered on another preparation than the prepared folder now holds
    (pairs.json's prepared_identity), and pairs of one dataset from two preparations
    (their metrics would merge into one table). `preparations` collects dataset ->
    (identity, folder) over the folders seen."""
    from gsmorph.data.loader import prepared_identity

    identity = pairs.check_identity(folder, meta, meta["prepared"]) or prepared_identity(meta["prepared"])
    first = preparations.setdefault(meta["dataset"], (identity, str(folder)))
    if first[0] != identity:
        raise GSMorphError(f"{folder} and {first[1]} hold pairs of {meta['dataset']} registered on two different "
                           f"preparations ({identity} and {first[0]}); evaluate the pairs of one preparation together")


def evaluate(folders: list[str | os.PathLike], workers: int = 1, split: str | None = "test",
             conventions: tuple[str, ...] = (), prepared: str | os.PathLike | None = None) -> pd.DataFrame:
    """Metrics of every pair in every folder, long format (COLUMNS), sorted. Every folder
    must hold the registered pairs of `split` (None: any); `conventions` adds the metrics
    of published conventions (keys of CONVENTIONS); `prepared` replaces the prepared
    folder the pairs.json files name (see folder_meta)."""
    unknown = sorted(set(conventions) - set(CONVENTIONS))
    if unknown:
        raise GSMorphError(f"unknown convention(s) {unknown}; known: {', '.join(CONVENTIONS)}")
    by_subject: dict[tuple, list] = {}
    seen: dict[tuple, str] = {}
    preparations: dict[str, tuple[str, str]] = {}  # dataset -> (prepared identity, first folder)
    for folder in folders:
        meta = folder_meta(folder, prepared)
        check_one_preparation(folder, meta, preparations)
        if split is not None and meta.get("split") != split:
            raise GSMorphError(f"{Path(folder) / pairs.META}: holds the '{meta.get('split')}' split, not '{split}'"
                               f" (give --split {meta.get('split')} to evaluate it)")
        key = tuple(meta[k] for k in GROUP)
        if key in seen:
            raise GSMorphError(f"{folder} and {seen[key]} both hold {dict(zip(GROUP, key))}")
        seen[key] = str(folder)
        index = pairs.read_index(folder)
        frames = (str(Path(meta["prepared"]).resolve()), meta.get("moving", "ES"), meta.get("fixed", "ED"))
        for subject, file in zip(index["subject"], index["file"]):
            by_subject.setdefault((frames[0], subject, *frames[1:]), []).append((str(folder), file, meta))
    tasks = [(*key, tuple(conventions), entries) for key, entries in sorted(by_subject.items())]
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=watch_parent, initargs=(os.getpid(),)) as pool:
            frames = list(pool.map(_evaluate_subject, tasks, chunksize=max(1, len(tasks) // (4 * workers))))
    else:
        frames = [_evaluate_subject(t) for t in tasks]
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["dataset", "backbone", "method", "seed", "subject", "slice", "metric", "structure"],
                             kind="stable", ignore_index=True)


def undefined_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, backbone, method, metric and structure with at least one NaN: the
    number of NaN values, of them the structures the warp lost (evaluated, Dice 0 and
    HD95 undefined: the moved labels lack a structure both frames have), and of all values."""
    keys = ["dataset", "backbone", "method", "metric", "structure"]
    pair = ["dataset", "backbone", "method", "seed", "subject", "slice", "structure"]
    dice = table[table["metric"] == "dice"]
    lost = dice.loc[dice["value"] == 0, pair].drop_duplicates().assign(lost_pair=True)
    flagged = table.merge(lost, on=pair, how="left")
    flagged["undefined"] = flagged["value"].isna()
    flagged["lost"] = flagged["undefined"] & flagged["lost_pair"].eq(True)
    grouped = flagged.groupby(keys, sort=True)
    counts = grouped.agg(n_undefined=("undefined", "sum"), n_lost=("lost", "sum"), n_values=("value", "size"))
    counts = counts.reset_index()
    counts[["n_undefined", "n_lost"]] = counts[["n_undefined", "n_lost"]].astype(int)
    return counts[counts["n_undefined"] > 0].reset_index(drop=True)


def check_values(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Refuse unknown metric names, structures (LV, Myo, RV for STRUCTURE_METRICS, empty
    for the others: a "mean" row or an "Aorta" would enter the mean Dice) and values that
    no metric can take: each value is NaN (undefined) or finite and inside its metric's
    range (RANGES). The error names the file, the CSV line and the value."""
    known = frame["metric"].isin(list(RANGES))
    if not known.all():
        i = int(np.flatnonzero(~known.to_numpy())[0])
        raise GSMorphError(f"{path}: line {i + 2}: unknown metric '{frame['metric'].iloc[i]}' "
                           f"(known: {', '.join(RANGES)})")
    per_structure = frame["metric"].isin(STRUCTURE_METRICS).to_numpy()
    structure = frame["structure"].fillna("").astype(str)
    wrong = np.where(per_structure, ~structure.isin(list(metrics.STRUCTURES)), structure != "")
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        expected = f"one of {', '.join(metrics.STRUCTURES)}" if per_structure[i] else "empty (a per-pair metric)"
        raise GSMorphError(f"{path}: line {i + 2}: structure '{structure.iloc[i]}' of {frame['metric'].iloc[i]} "
                           f"for {frame['method'].iloc[i]} is not {expected}")
    values = frame["value"].to_numpy(dtype=np.float64)
    low = frame["metric"].map(lambda m: RANGES[m][0]).to_numpy(dtype=np.float64)
    high = frame["metric"].map(lambda m: RANGES[m][1]).to_numpy(dtype=np.float64)
    bad = ~np.isnan(values) & (~np.isfinite(values) | (values < low) | (values > high))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = frame.iloc[i]
        raise GSMorphError(f"{path}: line {i + 2}: {row['metric']} = {float(row['value'])!r} for {row['method']}, "
                           f"subject {row['subject']}, is impossible (finite values in "
                           f"[{low[i]:g}, {high[i]:g}] or NaN only)")


def read_metrics(paths: list[str]) -> pd.DataFrame:
    """The metrics CSVs written by `evaluate` (one per dataset), checked (columns, numbers,
    metric names and ranges, duplicates) and concatenated: the one place metrics are read."""
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise GSMorphError(f"{path}: metrics file not found")
        try:
            frame = pd.read_csv(path, dtype={"subject": str, "structure": str, "backbone": str, "method": str,
                                             "dataset": str}, keep_default_na=False,
                                na_values={"value": ["", "nan", "NaN"]})
        except (OSError, ValueError) as err:
            raise GSMorphError(f"{path}: cannot read metrics CSV ({err})") from None
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise GSMorphError(f"{path}: missing columns {missing}")
        try:
            frame["value"] = frame["value"].astype(float)
            frame["seed"] = frame["seed"].astype(int)
            frame["slice"] = frame["slice"].astype(int)
        except ValueError as err:
            raise GSMorphError(f"{path}: non-numeric value, seed or slice ({err})") from None
        check_values(frame, path)
        frames.append(frame[COLUMNS].assign(file=str(path)))
    table = pd.concat(frames, ignore_index=True)
    if table.empty:
        raise GSMorphError(f"{', '.join(paths)}: no metric rows")
    keys = [c for c in COLUMNS if c != "value"]
    dup = table.duplicated(keys)
    if dup.any():
        first = table[dup].iloc[0]
        raise GSMorphError(f"metrics given twice across {', '.join(paths)}: e.g. {first[keys].to_dict()}")
    check_coverage(table)
    return table.drop(columns="file")


def check_coverage(table: pd.DataFrame) -> None:
    """Refuse a table whose rows would not compare like with like: per dataset, every
    method and seed holds every subject the dataset's metrics hold, and every learned
    method (backbone other than "none") the same seeds (Initial and the classical
    methods are deterministic: one seed is theirs). A method on 3 of 8 subjects would sit
    beside the others under a caption saying n = 8. `table` has a `file` column."""
    for dataset, part in table.groupby("dataset", sort=True):
        subjects = set(part["subject"])
        for (backbone, method, seed), group in part.groupby(["backbone", "method", "seed"], sort=True):
            missing = sorted(subjects - set(group["subject"]))
            if missing:
                files = ", ".join(sorted(set(group["file"])))
                raise GSMorphError(
                    f"{files}: {method} ({backbone or 'none'}, seed {seed}) on {dataset} holds "
                    f"{len(subjects) - len(missing)} of the {len(subjects)} subjects the other methods have "
                    f"(missing: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}); evaluate every "
                    f"method on the same subjects")
        learned = part[~part["backbone"].fillna("").isin(["", "none"])]
        seeds = {key: sorted(set(g["seed"])) for key, g in learned.groupby(["backbone", "method"], sort=True)}
        if len({tuple(v) for v in seeds.values()}) > 1:
            shown = "; ".join(f"{m} ({b}): {v}" for (b, m), v in seeds.items())
            files = ", ".join(sorted(set(learned["file"])))
            raise GSMorphError(f"{files}: the learned methods on {dataset} have different seeds ({shown}); "
                               f"a subject's value averages its seeds, so each method needs the same seeds")


def describe_data(folders: list[str | os.PathLike], prepared: str | os.PathLike | None = None) -> dict[str, dict]:
    """What the evaluated data are, per dataset, for honest labels in tables and figures:
    phantom or not (only phantoms have a true displacement), subjects per split, image
    size, and the epochs of the learned runs (from the pairs folders' provenance)."""
    import nibabel as nib

    from gsmorph.data.loader import prepared_identity, read_subjects

    out: dict[str, dict] = {}
    for folder in folders:
        meta = folder_meta(folder, prepared)
        entry = out.setdefault(meta["dataset"], {"epochs": set(), "prepared": meta["prepared"]})
        entry.setdefault(pairs.IDENTITY, prepared_identity(meta["prepared"]))
        config = (meta.get("provenance") or {}).get("config") or {}
        if meta["backbone"] != "none" and config.get("epochs") is not None:
            entry["epochs"].add(int(config["epochs"]))
    for dataset, entry in out.items():
        prepared = Path(entry.pop("prepared"))
        table = read_subjects(prepared)
        phantom = "has_true_disp" in table.columns and bool(table["has_true_disp"].astype(bool).all())
        first = prepared / str(table["subject"].iloc[0]) / "ED.nii.gz"
        entry.update(phantom=phantom, n_subjects=int(len(table)),
                     splits={k: int(v) for k, v in table["split"].value_counts().items()},
                     image_size=[int(n) for n in nib.load(str(first)).shape[:2]],
                     epochs=sorted(entry["epochs"]))
    return out
