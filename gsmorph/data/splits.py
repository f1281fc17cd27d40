"""Subject-level train/val/test splits: deterministic for a seed, stratified by group."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gsmorph.errors import GSMorphError

SPLITS = ("train", "val", "test")


def split_counts(n: int, ratios: tuple[float, float, float]) -> dict[str, int]:
    """How many subjects go to each split: largest remainders of n * ratio, every split
    with a positive ratio getting at least one subject when n allows it."""
    r = np.asarray(ratios, dtype=float)
    if r.shape != (3,) or not np.isfinite(r).all() or (r < 0).any() or r.sum() <= 0:
        raise GSMorphError(f"split ratios must be three finite non-negative numbers with a positive sum, got {list(ratios)}")
    r = r / r.sum()
    exact = n * r
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero((counts == 0) & (r > 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return dict(zip(SPLITS, counts.tolist()))


def stratified_split(subjects: list[str], groups: list[str], seed: int,
                     ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> dict[str, str]:
    """subject -> split. Subjects are shuffled within each group and the groups laid end to
    end; the split labels are spread evenly along that order, so every group is divided
    in about the given ratios and the overall counts are exact."""
    if len(set(subjects)) != len(subjects):
        raise GSMorphError("duplicate subject ids")
    rng = np.random.default_rng(seed)
    order: list[str] = []
    by_group: dict[str, list[str]] = {}
    for subject, group in zip(subjects, groups):
        by_group.setdefault(str(group), []).append(subject)
    for group in sorted(by_group):
        members = sorted(by_group[group])
        order += [members[i] for i in rng.permutation(len(members))]
    counts = split_counts(len(order), ratios)
    # each split's k-th member sits at position (k + 0.5) * n / count: an even interleave
    slots = sorted((((k + 0.5) * len(order) / c, SPLITS.index(s)), s)
                   for s, c in counts.items() for k in range(c))
    return {subject: split for subject, (_, split) in zip(order, slots)}


def read_split_file(path: str | Path, subjects: list[str]) -> dict[str, str]:
    """subject -> split from a CSV with columns subject, split; every subject must be in it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise GSMorphError(f"{path}: split file not found")
    try:
        table = pd.read_csv(path, dtype={"subject": str})
    except Exception as err:
        raise GSMorphError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from None
    missing_cols = [c for c in ("subject", "split") if c not in table.columns]
    if missing_cols:
        raise GSMorphError(f"{path}: missing column(s) {missing_cols}")
    table["split"] = table["split"].astype(str).str.strip().str.lower()
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise GSMorphError(f"{path}: unknown split value(s) {bad}; use {list(SPLITS)}")
    mapping = dict(zip(table["subject"].str.strip(), table["split"]))
    missing = [s for s in subjects if s not in mapping]
    if missing:
        raise GSMorphError(f"{path}: no split for subject(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return {s: mapping[s] for s in subjects}
