"""The shared foundations: atomic writes, NIfTI round trip, config merge, pairs format, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.config import DEFAULTS, load_config
from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_dir, atomic_path, read_nifti, write_nifti
from gsmorph.provenance import provenance, sidecar


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole_folder_it_made(tmp_path):
    target = tmp_path / "d"
    with atomic_dir(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [".gsmorph-output.json", "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_nifti_round_trip_keeps_spacing_and_dtype(tmp_path):
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) % 4
    write_nifti(tmp_path / "lab.nii.gz", arr, spacing=(1.5, 1.25, 8.0))
    back, spacing, affine = read_nifti(tmp_path / "lab.nii.gz", dtype=np.uint8)
    np.testing.assert_array_equal(back, arr)
    assert spacing == pytest.approx((1.5, 1.25, 8.0))
    assert np.diag(affine)[:3] == pytest.approx([1.5, 1.25, 8.0])


def test_read_nifti_names_the_corrupt_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(GSMorphError, match="broken.nii.gz"):
        read_nifti(bad)
    with pytest.raises(GSMorphError, match="missing.nii.gz: file not found"):
        read_nifti(tmp_path / "missing.nii.gz")


def test_config_merge_and_unknown_keys(tmp_path):
    cfg = load_config(overrides={"lr": 1e-3, "tune": {"trials": 3}})
    assert cfg["lr"] == 1e-3 and cfg["tune"]["trials"] == 3
    assert cfg["tune"]["lam_low"] == DEFAULTS["tune"]["lam_low"]
    with pytest.raises(GSMorphError, match="unknown config key 'tune.trails'"):
        load_config(overrides={"tune": {"trails": 3}})
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  epochs: 7\n  backbones:\n    voxelmorph: {features: [8, 16]}\n")
    cfg = load_config(path, overrides=json.dumps({"batch_size": 4}))
    assert cfg["epochs"] == 7 and cfg["batch_size"] == 4
    assert cfg["backbones"]["voxelmorph"] == {"features": [8, 16]}
    assert "transmorph" in cfg["backbones"]
    path.write_text("epochz: 3\n")
    with pytest.raises(GSMorphError, match="c.yaml: unknown config key 'epochz'"):
        load_config(path)


def _subject(name="s1", k=2, shape=(6, 5)):
    return pairs.SubjectPairs(
        subject=name,
        slice_index=np.arange(k),
        disp=np.zeros((k, 2, *shape), np.float32),
        moved_image=np.ones((k, *shape), np.float32),
        moved_label=np.zeros((k, *shape), np.uint8),
        runtime_s=np.full(k, 0.01),
        spacing=np.array([1.5, 1.5]),
    )


def test_pairs_round_trip_and_index(tmp_path):
    pairs.save_subject(tmp_path, _subject("s1"))
    pairs.save_subject(tmp_path, _subject("s2", k=3))
    with pytest.raises(GSMorphError, match="no index.csv"):
        pairs.read_meta(tmp_path)
    meta = {"dataset": "acdc", "backbone": "none", "method": "initial", "seed": 0,
            "split": "test", "prepared": "p"}
    pairs.finish(tmp_path, meta, ["s1", "s2"])
    assert pairs.read_meta(tmp_path)["method"] == "initial"
    loaded = list(pairs.iter_subjects(tmp_path))
    assert [p.subject for p in loaded] == ["s1", "s2"]
    assert loaded[1].disp.shape == (3, 2, 6, 5)


def test_pairs_validation_names_subject(tmp_path):
    bad = _subject("s9")
    bad.moved_label = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(GSMorphError, match="subject s9: moved_label has shape"):
        pairs.save_subject(tmp_path, bad)
    nan = _subject("s8")
    nan.disp[0, 0, 0, 0] = np.nan
    with pytest.raises(GSMorphError, match="non-finite"):
        pairs.save_subject(tmp_path, nan)
    assert not any(tmp_path.iterdir())


def test_provenance_records_versions_and_seed(tmp_path):
    rec = provenance({"a": 1}, seed=3)
    assert rec["seed"] == 3 and rec["config"] == {"a": 1}
    assert rec["packages"]["numpy"] == np.__version__
    assert sidecar(tmp_path / "m.csv").name == "m.csv.provenance.json"


def test_cli_unknown_verb_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "gsmorph.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout and "report" in out.stdout
