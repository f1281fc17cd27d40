"""Every writer replaces only what its own verb wrote: train and tune refuse a folder holding
a user's files (also with --fresh-if-changed), evaluate never writes onto its inputs or a
file it did not write, one verb never replaces another verb's folder, and two trainings
never share a run folder."""
from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from gsmorph.cli import main
from gsmorph.errors import GSMorphError
from gsmorph.io import MARKER, check_file_replaceable, claim_folder, folder_lock, write_with_sidecar

from tiny import NARROW_RUN

SET = json.dumps(NARROW_RUN)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_args(prepared: Path, out: Path) -> list[str]:
    return ["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared", str(prepared),
            "--out", str(out), "--set", SET]


def one_error(capsys, verb: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"gsmorph {verb}: error: ")]
    assert len(lines) == 1, lines
    return lines[0]


USER_FILES = {"tensorboard": {"tensorboard/events.out.tfevents.1": b"my curves"},
              "summary.json": {"summary.json": b'{"mine": 1}'},
              "provenance.json": {"provenance.json": b'{"mine": 2}'},
              "best.pt": {"best.pt": b"my weights"}}


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("kind", sorted(USER_FILES))
def test_train_refuses_a_folder_of_a_users_files(prepared_acdc, tmp_path, capsys, kind, fresh):
    out = tmp_path / "mine"
    for name, data in USER_FILES[kind].items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    before = tree(out)
    args = train_args(prepared_acdc, out) + (["--fresh-if-changed"] if fresh else [])
    assert main(args) == 1
    assert str(out) in one_error(capsys, "train")
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == sorted({n.split("/")[0] for n in before})


@pytest.mark.parametrize("name", ["study.json", "trials.csv", "provenance.json"])
def test_tune_refuses_a_folder_of_a_users_files(prepared_acdc, tmp_path, capsys, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("mine")
    rc = main(["tune", "--backbone", "voxelmorph", "--seed", "0", "--trials", "1", "--prepared", str(prepared_acdc),
               "--storage", str(tmp_path / "s.db"), "--study", "s", "--out", str(out), "--set", SET])
    assert rc == 1 and str(out) in one_error(capsys, "tune")
    assert tree(out) == {name: b"mine"}


def test_train_writes_beside_nothing_but_its_own_files(prepared_acdc, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(prepared_acdc, out)) == 0
    assert json.loads((out / MARKER).read_text())["made_by"] == "train"
    assert main(train_args(prepared_acdc, out) + ["--fresh-if-changed"]) == 0  # its own folder: rerun is fine
    (out / "notes.txt").write_text("mine")  # a user's file beside a gsmorph run: left alone
    assert main(train_args(prepared_acdc, out) + ["--fresh-if-changed"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    (out / MARKER).unlink()  # without the marker (and with a file train does not write): not adopted
    capsys.readouterr()
    assert main(train_args(prepared_acdc, out)) == 1
    assert "holds notes.txt" in one_error(capsys, "train") and (out / "notes.txt").is_file()


@pytest.fixture(scope="module")
def initial_pairs(prepared_acdc, tmp_path_factory):
    out = tmp_path_factory.mktemp("guards") / "pairs"
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("target", ["pairs/index.csv", "pairs/pairs.json", "prepared/subjects.csv", "pairs"])
def test_evaluate_never_writes_onto_its_inputs(initial_pairs, prepared_acdc, capsys, target):
    where, _, name = target.partition("/")
    folder = initial_pairs if where == "pairs" else prepared_acdc
    out = folder / name if name else folder
    before_pairs, before_prepared = tree(initial_pairs), tree(prepared_acdc)
    assert main(["evaluate", "--pairs", str(initial_pairs), "--out", str(out), "--workers", "1"]) == 1
    assert "input folder" in one_error(capsys, "evaluate")
    assert tree(initial_pairs) == before_pairs and tree(prepared_acdc) == before_prepared


def test_evaluate_replaces_only_its_own_metrics(initial_pairs, tmp_path, capsys):
    out = tmp_path / "metrics.csv"
    args = ["evaluate", "--pairs", str(initial_pairs), "--out", str(out), "--workers", "1"]
    assert main(args) == 0 and main(args) == 0  # its own file: replaced
    side = json.loads((tmp_path / "metrics.csv.provenance.json").read_text())
    assert side["made_by"] == "evaluate" and side["replaces"] == side["sha256"]  # the same table twice
    out.write_text(out.read_text() + "edited by hand\n")
    capsys.readouterr()
    assert main(args) == 1 and "changed since" in one_error(capsys, "evaluate")
    user = tmp_path / "thesis.csv"
    user.write_text("years of work")
    assert main(["evaluate", "--pairs", str(initial_pairs), "--out", str(user), "--workers", "1"]) == 1
    assert str(user) in one_error(capsys, "evaluate") and user.read_text() == "years of work"


def test_a_verb_never_replaces_another_verbs_folder(initial_pairs, prepared_acdc, raw_acdc, tmp_path, capsys):
    other = tmp_path / "prepared_b"
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(other), "--size", "32"]) == 0
    before = tree(other)
    capsys.readouterr()
    rc = main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(other)])
    assert rc == 1 and "`gsmorph prepare`, not `gsmorph register`" in one_error(capsys, "register")
    assert tree(other) == before
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(initial_pairs),
                 "--size", "32"]) == 1
    assert "`gsmorph register`, not `gsmorph prepare`" in one_error(capsys, "prepare")


def test_a_full_disk_leaves_no_file_without_its_sidecar(tmp_path, monkeypatch):
    out = tmp_path / "metrics.csv"
    write_with_sidecar(out, lambda tmp: tmp.write_text("old"), {}, made_by="evaluate")

    def disk_full(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(GSMorphError, match="No space left"):
        write_with_sidecar(out, disk_full, {}, made_by="evaluate")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.csv", "metrics.csv.provenance.json"]
    check_file_replaceable(out, "evaluate")  # still the pair it was


def test_a_kill_between_the_two_renames_leaves_a_replaceable_pair(tmp_path, monkeypatch):
    import os

    out = tmp_path / "metrics.csv"
    write_with_sidecar(out, lambda tmp: tmp.write_text("old"), {}, made_by="evaluate")
    real, calls = os.replace, []

    def killed_at_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill: the sidecar is new, the file still old
        real(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        write_with_sidecar(out, lambda tmp: tmp.write_text("new"), {}, made_by="evaluate")
    monkeypatch.setattr(os, "replace", real)
    check_file_replaceable(out, "evaluate")
    write_with_sidecar(out, lambda tmp: tmp.write_text("new"), {}, made_by="evaluate")
    assert out.read_text() == "new"


def _hold_lock(folder: str, ready, release) -> None:
    with folder_lock(folder, "gsmorph train"):
        ready.set()
        release.wait(30)


def test_two_trainings_never_share_a_run_folder(prepared_acdc, tmp_path, capsys):
    out = tmp_path / "run"
    claim_folder(out, "train", ["run.json"])
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert main(train_args(prepared_acdc, out)) == 1
        assert "another gsmorph train is writing into this folder" in one_error(capsys, "train")
        assert not (out / "last.pt").exists()
    finally:
        release.set()
        holder.join(30)
    # the holder is gone (as a killed training would be): its lock is taken over
    holder = context.Process(target=_hold_lock, args=(str(out), ready, release))
    ready.clear(), release.clear()
    holder.start()
    assert ready.wait(60)
    holder.kill()
    holder.join(30)
    assert main(train_args(prepared_acdc, out)) == 0 and (out / "summary.json").is_file()


def test_a_run_folder_of_an_earlier_version_is_adopted(prepared_acdc, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(prepared_acdc, out)) == 0
    (out / MARKER).unlink()  # as written before run folders had a marker
    assert main(train_args(prepared_acdc, out)) == 0 and (out / MARKER).is_file()
    shutil.copy(out / "best.pt", out / "last.pt")  # run.json no longer vouches for last.pt: not adopted
    (out / MARKER).unlink()
    before = tree(out)
    capsys.readouterr()
    assert main(train_args(prepared_acdc, out) + ["--fresh-if-changed"]) == 1
    assert "not written by `gsmorph train`" in one_error(capsys, "train") and tree(out) == before
