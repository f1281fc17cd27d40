"""Subject-level splits: exact counts, stratified, deterministic, overridable by a file."""
from __future__ import annotations

import collections

import pytest

from gsmorph.data.splits import read_split_file, split_counts, stratified_split
from gsmorph.errors import GSMorphError


def test_counts_follow_ratios_and_keep_every_split():
    assert split_counts(100, (0.7, 0.1, 0.2)) == {"train": 70, "val": 10, "test": 20}
    assert split_counts(8, (0.7, 0.1, 0.2)) == {"train": 5, "val": 1, "test": 2}
    assert split_counts(3, (0.7, 0.1, 0.2)) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(10, (1, 0, 0)) == {"train": 10, "val": 0, "test": 0}
    with pytest.raises(GSMorphError):
        split_counts(10, (0.5, -0.1, 0.6))


def test_stratified_and_deterministic():
    subjects = [f"s{i:03d}" for i in range(100)]
    groups = [("DCM", "HCM", "MINF", "NOR", "RV")[i // 20] for i in range(100)]  # ACDC: 20 per group
    split = stratified_split(subjects, groups, seed=3)
    assert split == stratified_split(list(reversed(subjects)), list(reversed(groups)), seed=3)
    assert split != stratified_split(subjects, groups, seed=4)
    per_group = collections.Counter((g, split[s]) for s, g in zip(subjects, groups))
    for g in set(groups):
        assert (per_group[(g, "train")], per_group[(g, "val")], per_group[(g, "test")]) == (14, 2, 4)


def test_split_file_overrides(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("subject,split\na,train\nb,TEST\nc,val\n")
    assert read_split_file(path, ["a", "b", "c"]) == {"a": "train", "b": "test", "c": "val"}
    with pytest.raises(GSMorphError, match="no split for subject"):
        read_split_file(path, ["a", "d"])
    path.write_text("subject,split\na,training\n")
    with pytest.raises(GSMorphError, match="unknown split"):
        read_split_file(path, ["a"])
    path.write_text("id,split\na,train\n")
    with pytest.raises(GSMorphError, match="missing column"):
        read_split_file(path, ["a"])


def test_prepare_uses_split_file(raw_acdc, tmp_path):
    import pandas as pd

    from gsmorph.data.loader import read_subjects
    from gsmorph.data.prepare import prepare

    subjects = sorted(p.name for p in (raw_acdc / "training").iterdir())
    wanted = {s: ("test" if i % 2 else "train") for i, s in enumerate(subjects)}
    pd.DataFrame({"subject": list(wanted), "split": list(wanted.values())}).to_csv(tmp_path / "s.csv", index=False)
    prepare("acdc", raw_acdc, tmp_path / "p", size=16, split_file=tmp_path / "s.csv")
    table = read_subjects(tmp_path / "p")
    assert dict(zip(table["subject"], table["split"])) == wanted
