"""Bad raw input: a clear error naming subject and file and no output (fail), or a listed exclusion (skip)."""
from __future__ import annotations

import gzip
import shutil
import struct
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


def _set_info(folder: Path, key: str, value: str) -> None:
    lines = (folder / "Info.cfg").read_text().splitlines()
    (folder / "Info.cfg").write_text("\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line
                                               for line in lines) + "\n")


def _resave(path: Path, data=None, affine=None, zooms=None) -> None:
    img = nib.load(str(path))
    out = nib.Nifti1Image(np.asarray(img.dataobj) if data is None else data,
                          img.affine if affine is None else affine, img.header)
    if zooms is not None:
        out.header.set_zooms(zooms)
    nib.save(out, str(path))


def _es_image(folder: Path) -> Path:
    return folder / f"{folder.name}_frame{_frames(folder)['ES']:02d}.nii.gz"


def _ed_image(folder: Path) -> Path:
    return folder / f"{folder.name}_frame{_frames(folder)['ED']:02d}.nii.gz"


def _refused(raw: Path, tmp_path: Path, capsys, *expected: str) -> str:
    out = tmp_path / "prepared"
    assert _prepare(raw, out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gsmorph prepare: error: "), err
    for text in expected:
        assert text in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("value, reason", [("nan", "not a 1-based frame number"),
                                           ("inf", "not a 1-based frame number"),
                                           ("twelve", "not a frame number"), ("0", "not a 1-based")])
def test_info_cfg_frame_that_is_not_a_frame_number(value, reason, raw_acdc, tmp_path, capsys):
    raw = _copy(raw_acdc, tmp_path / "raw", 1)
    _set_info(raw / "training" / "patient001", "ES", value)
    _refused(raw, tmp_path, capsys, "patient001", "Info.cfg", f"'ES: {value}'", reason)


def test_info_cfg_ed_equal_to_es_is_refused(raw_acdc, tmp_path, capsys):
    raw = _copy(raw_acdc, tmp_path / "raw", 1)
    folder = raw / "training" / "patient001"
    _set_info(folder, "ES", str(_frames(folder)["ED"]))
    _refused(raw, tmp_path, capsys, "patient001", "Info.cfg", "ED and ES are the same frame")


@pytest.mark.parametrize("change, reason", [
    ("spacing", "voxel spacing"), ("orientation", "orientation"), ("origin", "origin differs")])
def test_es_frame_on_another_grid_than_ed_is_refused(change, reason, raw_acdc, tmp_path, capsys):
    """ES is cropped and written with ED's affine: an ES of other spacing, orientation or
    origin would be registered on the wrong grid."""
    raw = _copy(raw_acdc, tmp_path / "raw", 1)
    es = _es_image(raw / "training" / "patient001")
    affine = nib.load(str(es)).affine.copy()
    if change == "spacing":
        affine[:3, 0] *= 1.1
    elif change == "orientation":
        affine[:3, :2] = affine[:3, [1, 0]]  # x and y swapped: the same sizes, another orientation
    else:
        affine[:3, 3] += 2.0
    _resave(es, affine=affine)
    _refused(raw, tmp_path, capsys, "patient001", es.name, reason)


def test_es_frame_within_the_header_tolerance_is_accepted(raw_acdc, tmp_path):
    raw = _copy(raw_acdc, tmp_path / "raw", 2)
    es = _es_image(raw / "training" / "patient001")
    affine = nib.load(str(es)).affine.copy()
    affine[:3, 3] += 1e-5  # float32 header rounding of one scan
    _resave(es, affine=affine)
    assert _prepare(raw, tmp_path / "prepared") == 0


@pytest.mark.parametrize("fill", [0.0, 7.0])
def test_constant_image_is_refused(fill, raw_acdc, tmp_path, capsys):
    raw = _copy(raw_acdc, tmp_path / "raw", 1)
    ed = _ed_image(raw / "training" / "patient001")
    shape = nib.load(str(ed)).shape
    _resave(ed, data=np.full(shape, fill, np.float32))
    _refused(raw, tmp_path, capsys, "patient001", ed.name, "constant image")


@pytest.mark.parametrize("pixdim", [0.0, float("nan")])
def test_zero_or_non_finite_voxel_size_is_refused(pixdim, raw_acdc, tmp_path, capsys):
    raw = _copy(raw_acdc, tmp_path / "raw", 1)
    ed = _ed_image(raw / "training" / "patient001")
    data = bytearray(gzip.decompress(ed.read_bytes()))
    struct.pack_into("<f", data, 80, pixdim)  # pixdim[1] of the NIfTI-1 header (nibabel reads 0 as 1)
    ed.write_bytes(gzip.compress(bytes(data)))
    _refused(raw, tmp_path, capsys, "patient001", ed.name, "voxel size (pixdim)")


def test_mnm_duplicate_rows_of_a_subject_are_refused(raw_mnm, tmp_path, capsys):
    """Two rows of one code with ED and ES swapped: the first used to win silently."""
    raw, table, csv = _mnm_copy(raw_mnm, tmp_path / "raw")
    code = sorted(p.parent.name for p in raw.rglob("*_sa_gt.nii.gz"))[0]
    row = table[table["External code"] == code].copy()
    row[["ED", "ES"]] = row[["ES", "ED"]].to_numpy()
    pd.concat([row, table], ignore_index=True).to_csv(csv, index=False)
    assert _prepare(raw, tmp_path / "prepared", "mnm") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and csv.name in err and code in err and "2 rows" in err, err
    assert not (tmp_path / "prepared").exists()


def test_mnm_ed_equal_to_es_is_refused(raw_mnm, tmp_path, capsys):
    raw, table, csv = _mnm_copy(raw_mnm, tmp_path / "raw")
    code = sorted(p.parent.name for p in raw.rglob("*_sa_gt.nii.gz"))[0]
    table.loc[table["External code"] == code, "ES"] = table.loc[table["External code"] == code, "ED"]
    table.to_csv(csv, index=False)
    assert _prepare(raw, tmp_path / "prepared", "mnm") == 1
    err = capsys.readouterr().err.strip()
    assert csv.name in err and code in err and "ED and ES are the same frame" in err, err


def test_mnm_two_information_csvs_are_refused_as_ambiguous(raw_mnm, tmp_path, capsys):
    """A second information CSV that sorts first used to be read, unrecorded."""
    raw, table, csv = _mnm_copy(raw_mnm, tmp_path / "raw")
    other = raw / "000_M&Ms_Dataset_Information_old.csv"
    table.to_csv(other, index=False)
    assert _prepare(raw, tmp_path / "prepared", "mnm") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and csv.name in err and other.name in err and "2 dataset information" in err
    other.unlink()
    assert _prepare(raw, tmp_path / "prepared", "mnm") == 0
