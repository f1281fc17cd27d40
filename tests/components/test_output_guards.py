"""Never lose a user's data: every verb that writes a folder replaces only a folder gsmorph
made (an empty one, or one whose marker lists every file in it), and never one that is,
holds or lies inside an input folder."""
from __future__ import annotations

import json

import pytest

from gsmorph.cli import main
from gsmorph.errors import GSMorphError
from gsmorph.io import MARKER, atomic_dir, check_not_input


def test_a_user_folder_is_never_replaced(tmp_path):
    target = tmp_path / "important"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(GSMorphError, match="was not written by gsmorph"):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text("x")
    assert (target / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["important"]  # no temporary left


def test_a_file_added_to_a_gsmorph_folder_stops_the_replacement(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.csv").write_text("a")
    assert json.loads((target / MARKER).read_text())["files"] == ["sub/a.csv"]
    (target / "sub" / "notes.txt").write_text("mine")
    with pytest.raises(GSMorphError, match="sub/notes.txt"):
        with atomic_dir(target) as tmp:
            (tmp / "b.csv").write_text("b")
    assert (target / "sub" / "notes.txt").read_text() == "mine"
    (target / "sub" / "notes.txt").unlink()
    with atomic_dir(target) as tmp:  # the normal rerun: no flag needed
        (tmp / "b.csv").write_text("b")
    assert not (target / "sub").exists() and (target / "b.csv").read_text() == "b"


def test_an_empty_folder_may_be_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty") as tmp:
        (tmp / "a").write_text("a")
    assert (tmp_path / "empty" / "a").is_file()


@pytest.mark.parametrize("relation, out", [("is", "raw"), ("contains", "."), ("lies inside", "raw/sub")])
def test_out_may_not_overlap_an_input(tmp_path, relation, out):
    (tmp_path / "raw").mkdir()
    with pytest.raises(GSMorphError, match=f"--out .*: {relation} the input folder"):
        check_not_input(tmp_path / out, [tmp_path / "raw"])
    check_not_input(tmp_path / "elsewhere", [tmp_path / "raw"])  # disjoint: fine


def test_synth_keeps_a_user_file_in_out(tmp_path, capsys):
    out = tmp_path / "important"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["synth", "--format", "acdc", "--out", str(out), "--subjects", "1", "--seed", "0", "--workers", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("gsmorph synth: error:") and str(out) in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_synth_reruns_into_its_own_folder(tmp_path):
    args = ["synth", "--format", "acdc", "--out", str(tmp_path / "raw"), "--subjects", "1", "--seed", "0",
            "--workers", "1"]
    assert main(args) == 0
    assert main(args) == 0
    assert (tmp_path / "raw" / "training" / "patient001").is_dir()


@pytest.mark.parametrize("out", ["raw", ".", "raw/prepared"])
def test_prepare_refuses_out_overlapping_raw(raw_acdc, tmp_path, capsys, out):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(raw_acdc, raw)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    rc = main(["prepare", "--dataset", "acdc", "--raw", str(raw), "--out", str(tmp_path / out), "--size", "32"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("gsmorph prepare: error: --out") and "input folder" in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_register_refuses_out_equal_to_prepared(prepared_acdc, capsys):
    before = sorted(p.name for p in prepared_acdc.iterdir())
    rc = main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(prepared_acdc)])
    assert rc == 1 and "is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in prepared_acdc.iterdir()) == before


@pytest.mark.parametrize("verb", ["train", "tune"])
def test_train_and_tune_refuse_out_inside_prepared(prepared_acdc, capsys, verb):
    before = sorted(p.name for p in prepared_acdc.iterdir())
    out = prepared_acdc / "run"
    args = {"train": ["train", "--method", "gsmorph"],
            "tune": ["tune", "--trials", "1", "--storage", str(prepared_acdc.parent / "s.db"), "--study", "s"]}[verb]
    rc = main([*args, "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--seed", "0", "--out", str(out)])
    assert rc == 1 and "lies inside the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in prepared_acdc.iterdir()) == before
