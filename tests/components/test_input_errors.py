"""Inputs that used to end in a Python traceback: each is one line
`gsmorph <verb>: error: <path or key>: <reason>`, exit status 1, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsmorph.cli import main
from gsmorph.config import load_config, non_finite_messages
from gsmorph.errors import GSMorphError

REPO = Path(__file__).resolve().parents[2]


def one_error_line(capsys, verb: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"gsmorph {verb}: error: "), err
    return err


def train(prepared, out, *extra) -> int:
    return main(["train", "--prepared", str(prepared), "--backbone", "voxelmorph", "--method", "gsmorph",
                 "--seed", "0", "--out", str(out), *extra])


@pytest.mark.parametrize("overrides, reason", [
    ('[1]', "must be a JSON object of config keys"),
    ('"epochs"', "must be a JSON object of config keys"),
    ('{"lr": Infinity}', "Infinity is not a finite number"),
    ('{"lambdas": {"s": NaN}}', "NaN is not a finite number"),
    ('{"tune": {"lam_high": -Infinity}}', "-Infinity is not a finite number"),
])
def test_bad_set_overrides(overrides, reason, prepared_acdc, tmp_path, capsys):
    """`--set '{"lr": Infinity}'` passed the schema: the run exited 0 with non-finite weights."""
    out = tmp_path / "run"
    assert train(prepared_acdc, out, "--set", overrides) == 1
    assert reason in one_error_line(capsys, "train")
    assert not out.exists()


@pytest.mark.parametrize("text, reason", [
    (b"method:\n", "the 'method:' section must be a mapping of config keys, got nothing"),
    (b"method: [1, 2]\n", "the 'method:' section must be a mapping of config keys, got list"),
    (b"epochs: 1  # caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 16)"),
    (b"lr: .inf\n", "config key 'lr': inf is not a finite number"),
    (b"method:\n  optim:\n    voxelmorph: {lr: .nan}\n", "config key 'optim.voxelmorph.lr': nan is not a finite"),
    (b"epochs: [\n", "not valid YAML"),
])
def test_bad_config_files(text, reason, prepared_acdc, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_bytes(text)
    out = tmp_path / "run"
    assert train(prepared_acdc, out, "--config", str(config)) == 1
    err = one_error_line(capsys, "train")
    assert f"{config}: " in err or "config key" in err
    assert reason in err, err
    assert not out.exists()


def test_non_finite_numbers_are_found_anywhere_in_a_config():
    data = {"lr": 1e-3, "a": {"b": [1.0, float("nan")], "c": float("-inf")}, "n": None, "s": "inf"}
    assert non_finite_messages(data) == ["config key 'a.b.1': nan is not a finite number",
                                         "config key 'a.c': -inf is not a finite number"]
    with pytest.raises(GSMorphError, match="config key 'lambdas.m': inf is not a finite number"):
        load_config(overrides={"lambdas": {"m": float("inf")}})
    assert load_config(overrides={"lr": 1e-3})["lr"] == 1e-3


def test_a_workflow_config_with_a_non_finite_number_is_refused():
    import yaml

    from gsmorph.workflow_config import check

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["prepare"]["split_ratios"] = [0.7, float("nan"), 0.2]
    with pytest.raises(GSMorphError, match=r"'prepare.split_ratios.1': nan is not a finite number"):
        check(config, REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.parametrize("ratios", [["nan", "0.1", "0.2"], ["0.7", "inf", "0.2"]])
def test_non_finite_split_ratios(ratios, raw_acdc, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(out), "--size", "32",
                 "--split-ratios", *ratios]) == 1
    assert "split ratios must be three finite non-negative numbers" in one_error_line(capsys, "prepare")
    assert not out.exists()


def test_negative_seeds(raw_acdc, tmp_path, capsys):
    assert main(["synth", "--format", "acdc", "--out", str(tmp_path / "s"), "--subjects", "2", "--seed", "-1"]) == 1
    assert "--seed must be >= 0, got -1" in one_error_line(capsys, "synth")
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(tmp_path / "p"), "--size",
                 "32", "--seed", "-3"]) == 1
    assert "--seed must be an integer >= 0, got -3" in one_error_line(capsys, "prepare")
    assert not (tmp_path / "s").exists() and not (tmp_path / "p").exists()


def test_out_dot_is_refused_for_folders_and_files(raw_acdc, prepared_acdc, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("a user's file")
    monkeypatch.chdir(work)
    for out in (".", "sub/.."):
        assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", out, "--size", "32"]) == 1
        assert f"--out {out}: is the working directory or a folder above it" in one_error_line(capsys, "prepare")
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", "..",
                 "--split", "test"]) == 1
    assert ".." in one_error_line(capsys, "register")  # the folder above holds files gsmorph did not write
    pairs = tmp_path / "pairs"
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(pairs),
                 "--split", "test"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--pairs", str(pairs), "--out", "."]) == 1
    assert f"{work}: is a folder; give the file to write" in one_error_line(capsys, "evaluate")
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]


def test_a_broken_plugin_is_one_error_line(tmp_path):
    (tmp_path / "brokenplugin.py").write_text("import os\n\nraise RuntimeError('boom')\n")
    env = {**os.environ, "GSMORPH_PLUGINS": "brokenplugin",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    run = subprocess.run([sys.executable, "-m", "gsmorph.cli", "train", "--help"], env=env, capture_output=True,
                         text=True, timeout=120)
    err = run.stderr.strip()
    assert run.returncode == 1 and len(err.splitlines()) == 1, err
    assert err == (f"gsmorph train: error: GSMORPH_PLUGINS: plugin 'brokenplugin' failed on import at "
                   f"{tmp_path / 'brokenplugin.py'}:3 (RuntimeError: boom)")


def test_a_file_that_is_not_a_journal_as_storage(prepared_acdc, tmp_path, capsys):
    storage = tmp_path / "study.log"
    storage.write_text("these are a user's notes, not an Optuna journal\n")
    out = tmp_path / "tune"
    assert main(["tune", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--trials", "1",
                 "--storage", str(storage), "--study", "s", "--seed", "0", "--out", str(out),
                 "--set", '{"epochs": 1}']) == 1
    err = one_error_line(capsys, "tune")
    assert f"--storage {storage}: not an Optuna journal file" in err, err
    assert storage.read_text() == "these are a user's notes, not an Optuna journal\n"
    assert not out.exists()


def test_a_subjects_file_that_is_not_utf8(raw_acdc, tmp_path, capsys):
    listed = tmp_path / "subjects.txt"
    listed.write_bytes(b"patient001\n\xff\xfe\n")
    out = tmp_path / "prepared"
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(out), "--size", "32",
                 "--subjects-file", str(listed)]) == 1
    assert f"{listed}: not UTF-8 text (byte 0xff at offset 11)" in one_error_line(capsys, "prepare")
    assert not out.exists()
