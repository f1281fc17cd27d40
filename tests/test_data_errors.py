"""Bad raw input: a clear error naming subject and file and no output (fail), or a listed exclusion (skip)."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gsmorph.cli import main
from gsmorph.data import mnm


def _frames(folder: Path) -> dict[str, int]:
    info = dict(line.split(":", 1) for line in (folder / "Info.cfg").read_text().splitlines() if ":" in line)
    return {k: int(info[k]) for k in ("ED", "ES")}


def _rewrite(path: Path, fn) -> None:
    img = nib.load(str(path))
    data = fn(np.asarray(img.dataobj))
    nib.save(nib.Nifti1Image(data, img.affine), str(path))


def _fault(folder: Path, kind: str) -> str:
    """Damage one ACDC patient folder; returns the file name the error must name."""
    s, f = folder.name, _frames(folder)
    ed_img, ed_gt = folder / f"{s}_frame{f['ED']:02d}.nii.gz", folder / f"{s}_frame{f['ED']:02d}_gt.nii.gz"
    es_img, es_gt = folder / f"{s}_frame{f['ES']:02d}.nii.gz", folder / f"{s}_frame{f['ES']:02d}_gt.nii.gz"
    if kind == "corrupt":
        ed_img.write_bytes(b"\x1f\x8b this is not a NIfTI file")
        return ed_img.name
    if kind == "missing_frame":
        es_img.unlink()
        return es_img.name
    if kind == "info_without_es":
        text = (folder / "Info.cfg").read_text()
        (folder / "Info.cfg").write_text("".join(line for line in text.splitlines(True) if not line.startswith("ES")))
        return "Info.cfg"
    if kind == "bad_label":
        _rewrite(ed_gt, lambda a: np.where(a == 2, 7, a).astype(np.uint8))
        return ed_gt.name
    if kind == "shape_mismatch":
        _rewrite(es_gt, lambda a: np.ascontiguousarray(a[:-3]))
        return es_gt.name
    if kind == "non_finite":
        _rewrite(ed_img, lambda a: np.where(a > 900, np.nan, a.astype(np.float32)).astype(np.float32))
        return ed_img.name
    raise ValueError(kind)


ACDC_FAULTS = ["corrupt", "missing_frame", "info_without_es", "bad_label", "shape_mismatch", "non_finite"]


def _copy(raw: Path, dst: Path, n: int) -> Path:
    for folder in sorted((raw / "training").iterdir())[:n]:
        shutil.copytree(folder, dst / "training" / folder.name)
    return dst


def _prepare(raw: Path, out: Path, fmt="acdc", mode="fail") -> int:
    return main(["prepare", "--dataset", fmt, "--raw", str(raw), "--out", str(out), "--size", "32",
                 "--on-error", mode])


@pytest.mark.parametrize("kind", ACDC_FAULTS)
def test_fail_names_subject_and_file_and_writes_nothing(kind, raw_acdc, tmp_path, capsys):
    raw = _copy(raw_acdc, tmp_path / "raw", 2)
    name = _fault(raw / "training" / "patient001", kind)
    out = tmp_path / "prepared"
    assert _prepare(raw, out) == 1
    err = capsys.readouterr().err
    assert "patient001" in err and name in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_skip_lists_each_bad_subject_with_its_reason(raw_acdc, tmp_path):
    raw = _copy(raw_acdc, tmp_path / "raw", 8)
    folders = sorted((raw / "training").iterdir())
    expected = {folder.name: _fault(folder, kind) for folder, kind in zip(folders, ACDC_FAULTS)}
    out = tmp_path / "prepared"
    assert _prepare(raw, out, mode="skip") == 0
    excluded = pd.read_csv(out / "excluded.csv")
    assert dict(zip(excluded["subject"], excluded["file"].map(lambda p: Path(p).name))) == expected
    assert excluded["reason"].str.len().gt(5).all()
    kept = pd.read_csv(out / "subjects.csv", dtype={"subject": str})["subject"].tolist()
    assert kept == [f.name for f in folders[len(ACDC_FAULTS):]]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == kept


def _mnm_copy(raw_mnm: Path, dst: Path) -> tuple[Path, pd.DataFrame, Path]:
    shutil.copytree(raw_mnm, dst)
    csv = mnm.find_info_csv(dst)
    return dst, pd.read_csv(csv, dtype={"External code": str}), csv


def test_mnm_csv_row_without_es_and_frame_beyond_the_image(raw_mnm, tmp_path, capsys):
    raw, table, csv = _mnm_copy(raw_mnm, tmp_path / "raw")
    labelled = sorted(p.parent.name for p in raw.rglob("*_sa_gt.nii.gz"))
    no_es, too_late = labelled[0], labelled[1]
    table.loc[table["External code"] == no_es, "ES"] = np.nan
    table.loc[table["External code"] == too_late, "ES"] = 99
    table.to_csv(csv, index=False)
    assert _prepare(raw, tmp_path / "fail", "mnm") == 1
    err = capsys.readouterr().err
    assert csv.name in err and (no_es in err or too_late in err)
    assert not (tmp_path / "fail").exists()
    assert _prepare(raw, tmp_path / "skip", "mnm", "skip") == 0
    excluded = pd.read_csv(tmp_path / "skip" / "excluded.csv").set_index("subject")
    assert set(excluded.index) == {no_es, too_late}
    assert Path(excluded.loc[no_es, "file"]).name == csv.name and "ES" in excluded.loc[no_es, "reason"]
    assert Path(excluded.loc[too_late, "file"]).name == f"{too_late}_sa.nii.gz"
    assert "99" in excluded.loc[too_late, "reason"]


def test_mnm_csv_without_ed_column_fails_in_both_modes(raw_mnm, tmp_path, capsys):
    raw, table, csv = _mnm_copy(raw_mnm, tmp_path / "raw")
    table.drop(columns=["ED"]).to_csv(csv, index=False)
    for mode in ("fail", "skip"):
        assert _prepare(raw, tmp_path / mode, "mnm", mode) == 1
        err = capsys.readouterr().err
        assert csv.name in err and "ED" in err
        assert not (tmp_path / mode).exists()


def test_not_a_dataset_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _prepare(tmp_path / "empty", tmp_path / "out") == 1
    assert "not an ACDC folder" in capsys.readouterr().err
    assert _prepare(tmp_path / "missing", tmp_path / "out", "mnm") == 1
    assert "missing" in capsys.readouterr().err
