"""What happens when things go wrong: damaged inputs are refused by every verb that reads
them, impossible metric values never reach a table, damaged checkpoints are never loaded,
a full disk is one clear line, and bad --set values get the schema's message."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gsmorph.cli import main
from gsmorph.data.loader import read_subjects
from gsmorph.evaluate import COLUMNS

from tiny import NARROW_RUN

SET = json.dumps(NARROW_RUN)  # the set-up of the gsmorph_run fixture, so that a rerun on its copy resumes


def two_slice_counts(prepared: Path, split: str) -> tuple[str, str]:
    """A subject of `split` and another subject with a different number of slices."""
    table = read_subjects(prepared)
    target = table[table["split"] == split].iloc[0]
    other = table[table["n_slices"] != target["n_slices"]].iloc[0]
    return str(target["subject"]), str(other["subject"])


@pytest.fixture()
def damaged(prepared_acdc, tmp_path):
    """A copy of the prepared phantom in which one test and one train subject got another
    subject's ES.nii.gz (a valid NIfTI with another number of slices)."""
    copy = tmp_path / "prepared"
    shutil.copytree(prepared_acdc, copy)
    victims = {}
    for split in ("test", "train"):
        subject, donor = two_slice_counts(copy, split)
        shutil.copy(prepared_acdc / donor / "ES.nii.gz", copy / subject / "ES.nii.gz")
        victims[split] = subject
    return copy, victims


def test_a_wrong_shape_frame_is_refused_by_every_verb_that_reads_it(prepared_acdc, gsmorph_run, damaged, tmp_path,
                                                                    capsys):
    copy, victims = damaged
    test_message = f"{copy / victims['test'] / 'ES.nii.gz'}: subject {victims['test']}: shape"
    train_message = f"{copy / victims['train'] / 'ES.nii.gz'}: subject {victims['train']}: shape"
    # evaluate: pairs registered on the intact data, evaluated against the damaged copy
    good = tmp_path / "pairs_good"
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(good)]) == 0
    meta = json.loads((good / "pairs.json").read_text())
    (good / "pairs.json").write_text(json.dumps({**meta, "prepared": str(copy)}))
    capsys.readouterr()
    runs = {
        "register": ["register", "--method", "initial", "--prepared", str(copy), "--out", str(tmp_path / "r")],
        "evaluate": ["evaluate", "--pairs", str(good), "--out", str(tmp_path / "m.csv"), "--workers", "1"],
        "train": ["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                  str(copy), "--out", str(tmp_path / "t"), "--set", SET],
        "tune": ["tune", "--backbone", "voxelmorph", "--seed", "0", "--trials", "1", "--prepared", str(copy),
                 "--storage", str(tmp_path / "s.db"), "--study", "s", "--out", str(tmp_path / "u"), "--set", SET],
    }
    for verb, args in runs.items():
        assert main(args) == 1, verb
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"gsmorph {verb}: error: ")]
        assert len(err) == 1, verb
        assert (train_message if verb in ("train", "tune") else test_message) in err[0], (verb, err)
    # infer: a run trained on the intact data, applied to the damaged copy
    capsys.readouterr()
    assert main(["infer", "--run", str(gsmorph_run), "--prepared", str(copy), "--out", str(tmp_path / "i")]) == 1
    assert test_message in capsys.readouterr().err
    for out in ("r", "m.csv", "i"):
        assert not (tmp_path / out).exists()


def test_slices_that_disagree_with_subjects_csv_are_refused(prepared_acdc, tmp_path, capsys):
    copy = tmp_path / "prepared"
    shutil.copytree(prepared_acdc, copy)
    table = read_subjects(copy)
    subject = str(table[table["split"] == "test"].iloc[0]["subject"])
    table.loc[table["subject"] == subject, "n_slices"] += 1
    table.to_csv(copy / "subjects.csv", index=False)
    assert main(["register", "--method", "initial", "--prepared", str(copy), "--out", str(tmp_path / "r")]) == 1
    assert f"subject {subject}: " in (err := capsys.readouterr().err) and "subjects.csv records n_slices" in err


# ----------------------------------------------------------------------------- metrics

@pytest.fixture()
def metrics_csv(tmp_path):
    rows = [dict(dataset="acdc", backbone=b, method=m, seed=0, subject=f"s{i}", slice=0, metric="dice",
                 structure="LV", value=0.5 + 0.01 * i)
            for m, b in (("initial", "none"), ("gsmorph", "voxelmorph")) for i in range(3)]
    path = tmp_path / "metrics.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column, value, message", [
    ("value", "inf", "dice = inf"),
    ("value", "-5", "dice = -5.0"),
    ("value", "1e308", "dice = 1e+308"),
    ("metric", "dicee", "unknown metric 'dicee'"),
])
def test_report_refuses_impossible_values_naming_file_and_line(metrics_csv, tmp_path, capsys, column, value, message):
    text = metrics_csv.read_text().splitlines()
    header = text[0].split(",")
    cells = text[3].split(",")  # line 4 of the file
    cells[header.index(column)] = value
    text[3] = ",".join(cells)
    metrics_csv.write_text("\n".join(text) + "\n")
    out = tmp_path / "results"
    assert main(["report", "--metrics", str(metrics_csv), "--no-runs", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{metrics_csv}: line 4: " in err and message in err
    assert not out.exists()


# ----------------------------------------------------------------------------- checkpoints

def test_a_flipped_byte_in_best_pt_is_refused_by_infer(prepared_acdc, gsmorph_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(gsmorph_run, run)
    data = bytearray((run / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: torch.load alone would not notice
    (run / "best.pt").write_bytes(bytes(data))
    assert main(["infer", "--run", str(run), "--prepared", str(prepared_acdc), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert f"{run / 'best.pt'}: damaged or replaced" in err and not (tmp_path / "p").exists()


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_train_rerun_never_promotes_last_weights_over_a_lost_best(prepared_acdc, gsmorph_run, tmp_path, capsys,
                                                                  damage):
    run = tmp_path / "run"
    shutil.copytree(gsmorph_run, run)
    summary = (run / "summary.json").read_text()
    if damage == "delete":
        (run / "best.pt").unlink()
    else:
        (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:100])
    args = ["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
            str(prepared_acdc), "--out", str(run), "--set", SET]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{run / 'best.pt'}: " in err and ("not found" in err or "damaged" in err)
    assert (run / "summary.json").read_text() == summary
    assert damage == "truncate" or not (run / "best.pt").exists()


def test_a_truncated_last_pt_is_named(prepared_acdc, gsmorph_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(gsmorph_run, run)
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:64])
    assert main(["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                 str(prepared_acdc), "--out", str(run), "--set", SET]) == 1
    assert f"{run / 'last.pt'}: damaged or replaced" in capsys.readouterr().err


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("overrides, message", [
    ({"epochs": "ten"}, "config key 'epochs': 'ten' is not of type 'integer'"),
    ({"lr": -1}, "config key 'lr': -1 is less than or equal to the minimum of 0"),
    ({"tune": {"trials": 0}}, "config key 'tune.trials': 0 is less than the minimum of 1"),
])
def test_set_values_get_the_schema_message(prepared_acdc, tmp_path, capsys, overrides, message):
    assert main(["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                 str(prepared_acdc), "--out", str(tmp_path / "r"), "--set", json.dumps(overrides)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"gsmorph train: error: {message}"


# ----------------------------------------------------------------------------- a full disk

@pytest.fixture()
def full_disk(tmp_path):
    """A small tmpfs (root only; skipped elsewhere), filled to its last 2 KiB."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); needs root")
    try:
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 2048))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_path(raw_acdc, prepared_acdc, gsmorph_run, metrics_csv, full_disk,
                                                 capsys):
    pairs = full_disk.parent / "pairs"
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(pairs)]) == 0
    verbs = {
        "synth": ["--format", "acdc", "--subjects", "2", "--seed", "0", "--workers", "1", "--out", "raw"],
        "prepare": ["--dataset", "acdc", "--raw", str(raw_acdc), "--out", "prepared"],
        "train": ["--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                  str(prepared_acdc), "--set", SET, "--out", "run"],
        "infer": ["--run", str(gsmorph_run), "--prepared", str(prepared_acdc), "--out", "pairs"],
        "register": ["--method", "initial", "--prepared", str(prepared_acdc), "--out", "registered"],
        "evaluate": ["--pairs", str(pairs), "--workers", "1", "--out", "metrics.csv"],
        "report": ["--metrics", str(metrics_csv), "--no-runs", "--out", "results"],
    }
    for verb, args in verbs.items():
        args[-1] = str(full_disk / args[-1])
        capsys.readouterr()
        assert main([verb, *args]) == 1, verb
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"gsmorph {verb}: error: {full_disk}"), (verb, err)
        assert "No space left on device" in err[0], (verb, err)
    # nothing partial: no file but the filler (the verbs may have made their empty folders)
    assert [p.name for p in full_disk.rglob("*") if p.is_file()] == ["filler"]
