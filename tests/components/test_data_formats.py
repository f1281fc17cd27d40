"""Variants a real download has: folder nesting, testing/ subjects, 4D singleton axes, CSV shapes."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gsmorph.data import acdc, mnm
from gsmorph.data.prepare import prepare
from gsmorph.errors import GSMorphError

REAL_INFO = "ED: 1\nES: 12\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n"


def _rename_patient(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.rename(f.with_name(f.name.replace(src.name, dst.name)))


def test_info_cfg_as_shipped(tmp_path):
    (tmp_path / "Info.cfg").write_text(REAL_INFO)
    info = acdc.read_info(tmp_path / "Info.cfg", "patient001")
    assert (info["ED"], info["ES"], info["Group"], info["NbFrame"]) == ("1", "12", "DCM", "30")


def test_acdc_download_layout_variants(raw_acdc, tmp_path):
    base = tmp_path / "ACDC" / "database"
    shutil.copytree(raw_acdc / "training" / "patient001", base / "training" / "patient001")
    _rename_patient(raw_acdc / "training" / "patient002", base / "testing" / "patient101")
    _rename_patient(raw_acdc / "training" / "patient003", base / "testing" / "patient102")
    for gt in (base / "testing" / "patient102").glob("*_gt.nii.gz"):
        gt.unlink()  # an unlabelled test subject
    (base / "MANDATORY_CITATION.md").write_text("cite\n")
    p1 = base / "training" / "patient001"
    frame = p1 / "patient001_frame01.nii.gz"
    img = nib.load(str(frame))
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(data[..., None], img.affine), str(frame))  # (X, Y, Z, 1)
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), str(p1 / "patient001_4d.nii.gz"))
    gt = p1 / "patient001_frame01_gt.nii.gz"
    lab = nib.load(str(gt))
    nib.save(nib.Nifti1Image(np.asarray(lab.dataobj).astype(np.float32), lab.affine), str(gt))  # float labels

    raw = acdc.read_subject(p1)
    assert raw.ED.shape == raw.ED_gt.shape and raw.ED.ndim == 3
    out = tmp_path / "prepared"
    summary = prepare("acdc", tmp_path / "ACDC", out, size=32, seed=1)  # root one level above database/
    assert summary["unlabelled"] == ["patient102"]
    table = pd.read_csv(out / "subjects.csv", dtype={"subject": str})
    assert table["subject"].tolist() == ["patient001", "patient101"]
    assert table["source"].tolist() == ["training", "testing"]
    assert acdc.find_root(tmp_path / "ACDC" / "database") == base


def test_mnm_csv_without_index_column_and_with_extra_columns(raw_mnm, tmp_path):
    root = tmp_path / "OpenDataset"
    shutil.copytree(raw_mnm, root)
    csv = mnm.find_info_csv(root)
    table = pd.read_csv(csv, dtype={"External code": str}).drop(columns=["Unnamed: 0"])
    table["Notes"] = "x"
    table = table[["Notes"] + [c for c in table.columns if c != "Notes"]]
    table.to_csv(csv, index=False)
    info = mnm.read_info(csv)
    assert info.loc[table["External code"][0], "Vendor"] == table["Vendor"][0]
    # the user may point at the folder above the download
    assert mnm.find_root(tmp_path) == root
    code = table.loc[table["ED"] > table["ES"], "External code"].iloc[0]  # vendors whose ED is the last frame
    folder = next(p.parent for p in root.rglob(f"{code}_sa.nii.gz"))
    subj = mnm.read_subject(folder, info, csv)
    sa = np.asarray(nib.load(str(folder / f"{code}_sa.nii.gz")).dataobj)
    ed = int(table.loc[table["External code"] == code, "ED"].iloc[0])
    np.testing.assert_array_equal(subj.ED, sa[..., ed].astype(np.float32))
    assert subj.group in "ABCD" and subj.meta["vendor_name"]
    zooms = nib.load(str(folder / f"{code}_sa.nii.gz")).header.get_zooms()
    assert len(zooms) == 4 and subj.spacing == tuple(float(z) for z in zooms[:3])


def test_phantom_independent_of_worker_count(raw_acdc, tmp_path):
    from gsmorph.data.synth import write_acdc

    write_acdc(tmp_path, 1, 0, workers=1)  # the fixture was written by 2 worker processes
    name = "patient001/patient001_frame01.nii.gz"
    one = np.asarray(nib.load(str(tmp_path / "training" / name)).dataobj)
    two = np.asarray(nib.load(str(raw_acdc / "training" / name)).dataobj)
    np.testing.assert_array_equal(one, two)


def test_mnm_frame_without_labels_is_an_error(raw_mnm, tmp_path):
    import pytest

    from gsmorph.data.raw import SubjectError

    root = tmp_path / "m"
    shutil.copytree(raw_mnm, root)
    csv = mnm.find_info_csv(root)
    table = pd.read_csv(csv, dtype={"External code": str})
    code = table["External code"][0]
    # point ES at a frame that has no labels (as when the CSV and the labels disagree)
    table.loc[0, "ES"] = (int(table.loc[0, "ES"]) + 1)
    table.to_csv(csv, index=False)
    folder = next(p.parent for p in root.rglob(f"{code}_sa.nii.gz"))
    with pytest.raises(SubjectError, match="no labelled voxels in the ES frame"):
        mnm.read_subject(folder, mnm.read_info(csv), csv)


def test_folders_limit_the_layout_read(raw_acdc, raw_mnm, tmp_path):
    base = tmp_path / "database"
    shutil.copytree(raw_acdc / "training" / "patient001", base / "training" / "patient001")
    _rename_patient(raw_acdc / "training" / "patient002", base / "testing" / "patient101")
    both = prepare("acdc", base, tmp_path / "both", size=32, split_file=None)
    only = prepare("acdc", base, tmp_path / "only", size=32, folders=["training"])
    assert both["n_prepared"] == 2 and only["n_prepared"] == 1
    table = pd.read_csv(tmp_path / "only" / "subjects.csv", dtype={"subject": str})
    assert table["subject"].tolist() == ["patient001"]

    every = mnm.subject_dirs(raw_mnm)
    training = mnm.subject_dirs(raw_mnm, ("Training",))
    testing = mnm.subject_dirs(raw_mnm, ("Testing",))
    assert training and testing and len(training) + len(testing) < len(every)  # Validation left out
    assert all(p.relative_to(raw_mnm).parts[0] == "Training" for p in training)
    assert set(training) | set(testing) <= set(every)

    with pytest.raises(GSMorphError, match=r"--folders: \['Training'\] are not folders of the acdc layout"):
        prepare("acdc", base, tmp_path / "bad", size=32, folders=["Training"])
    assert not (tmp_path / "bad").exists()
