"""`gsmorph report` replaces stats/, tables/, figures/ and report/ as one unit: a failure
while building leaves all four as they were, and a killed run's temporary folders are
removed by the next run."""
from __future__ import annotations

import pytest

from gsmorph.cli import main
from gsmorph.io import FolderSet


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def metrics(prepared_acdc, tmp_path_factory):
    base = tmp_path_factory.mktemp("unit")
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(base / "p")]) == 0
    assert main(["evaluate", "--pairs", str(base / "p"), "--out", str(base / "metrics.csv"), "--workers", "1"]) == 0
    return base / "metrics.csv"


def test_a_failure_midway_leaves_the_old_report_whole(metrics, tmp_path, monkeypatch, capsys):
    from gsmorph.report import figures

    out = tmp_path / "results"
    args = ["report", "--metrics", str(metrics), "--no-runs", "--out", str(out), "--n-boot", "50", "--workers", "1"]
    assert main(args) == 0
    before = tree(out)
    assert {p.split("/")[0] for p in before} == {"stats", "tables", "figures", "report"}

    def broken(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "dice_boxplots", broken)  # the figures come after stats/ and tables/
    capsys.readouterr()
    assert main(args) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["figures", "report", "stats", "tables"]


def test_a_killed_reports_temporary_folder_is_removed_next_time(tmp_path):
    out = tmp_path / "results"
    dead = FolderSet(out, ["stats"], made_by="report")
    with dead.part("stats") as tmp:
        (tmp / "a.csv").write_text("a")
    stale = dead.staging
    dead._remove.detach()  # as a kill: no clean-up ran
    del dead
    stale.rename(stale.with_name(stale.name.replace(stale.name.split("-")[1], "999999999", 1)))  # a dead pid
    leftover = next(out.iterdir())
    assert leftover.name.startswith(".tmp-999999999-")
    unit = FolderSet(out, ["stats"], made_by="report")
    assert not leftover.exists()
    with unit.part("stats") as tmp:
        (tmp / "b.csv").write_text("b")
    unit.commit()
    assert sorted(p.name for p in out.iterdir()) == ["stats"] and (out / "stats" / "b.csv").is_file()
