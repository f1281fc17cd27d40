"""Raw phantom -> reader -> prepare: round trip, canonical labels, crop, true displacement."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from gsmorph.data import acdc, mnm
from gsmorph.data.labels import LV, MYO, RV
from gsmorph.data.loader import load_subject, read_subjects
from gsmorph.data.prepare import crop_inplane, crop_window
from gsmorph.data.synth import acdc_phantom, mnm_phantom


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _read_raw(fmt, raw, subject):
    if fmt == "acdc":
        return acdc.read_subject(next(d for d in acdc.subject_dirs(raw) if d.name == subject))
    root = mnm.find_root(raw)
    csv = mnm.find_info_csv(root)
    folder = next(d for d in mnm.subject_dirs(root) if d.name == subject)
    return mnm.read_subject(folder, mnm.read_info(csv), csv)


@pytest.mark.parametrize("fmt", ["acdc", "mnm"])
def test_round_trip_reader_to_prepared(fmt, request):
    raw_dir, prepared = request.getfixturevalue(f"raw_{fmt}"), request.getfixturevalue(f"prepared_{fmt}")
    table = read_subjects(prepared)
    assert len(table) == 8 and set(table["split"]) == {"train", "val", "test"}
    assert table["dataset"].eq(fmt).all()
    row = table.iloc[0]
    raw = _read_raw(fmt, raw_dir, row["subject"])
    subj = load_subject(prepared, row["subject"])
    x0, y0 = crop_window(raw.ED_gt, 64)
    assert (x0, y0) == (row["crop_x0"], row["crop_y0"])
    np.testing.assert_array_equal(subj.ED_gt, crop_inplane(raw.ED_gt, x0, y0, 64))
    np.testing.assert_array_equal(subj.ES_gt, crop_inplane(raw.ES_gt, x0, y0, 64))
    assert subj.ED.shape == (64, 64, raw.ED.shape[2]) == (64, 64, row["n_slices"])
    assert subj.ED.dtype == np.float32 and 0 <= subj.ED.min() and subj.ED.max() <= 1 and subj.ED.max() == 1
    # intensities are an increasing affine map of the raw ones (up to clipping)
    crop = crop_inplane(raw.ES, x0, y0, 64)
    inside = (subj.ES > 0) & (subj.ES < 1)
    assert np.corrcoef(crop[inside], subj.ES[inside])[0, 1] > 0.999
    np.testing.assert_allclose(subj.spacing, raw.spacing, rtol=1e-5)
    np.testing.assert_allclose(subj.spacing, row[["spacing_x", "spacing_y", "spacing_z"]].astype(float), rtol=1e-5)
    # the header keeps orientation: voxel (0,0,k) of the crop is at raw voxel (x0,y0,k) in the world
    affine = nib.load(str(prepared / row["subject"] / "ED.nii.gz")).affine
    np.testing.assert_allclose(affine @ [0, 0, 1, 1], raw.affine @ [x0, y0, 1, 1], atol=1e-3)


@pytest.mark.parametrize("fmt", ["acdc", "mnm"])
def test_canonical_labels_where_the_phantom_put_them(fmt, request):
    raw_dir, prepared = request.getfixturevalue(f"raw_{fmt}"), request.getfixturevalue(f"prepared_{fmt}")
    table = read_subjects(prepared).set_index("subject")
    if fmt == "acdc":
        subject, ph, _, _ = acdc_phantom(0, 0)
        gt_file = raw_dir / "training" / subject / f"{subject}_frame01_gt.nii.gz"
        stored = {LV: 3, MYO: 2, RV: 1}  # ACDC ids
        raw_ed = np.asarray(nib.load(str(gt_file)).dataobj)
    else:
        subject, ph, row, _, _ = mnm_phantom(0, 0)
        gt_file = next(raw_dir.rglob(f"{subject}_sa_gt.nii.gz"))
        stored = {LV: 1, MYO: 2, RV: 3}  # M&Ms ids
        raw_ed = np.asarray(nib.load(str(gt_file)).dataobj)[..., row["ED"]]
    for canonical, raw_id in stored.items():
        np.testing.assert_array_equal(raw_ed == raw_id, ph.labels_ed == canonical)
    subj = load_subject(prepared, subject)
    x0, y0 = int(table.loc[subject, "crop_x0"]), int(table.loc[subject, "crop_y0"])
    np.testing.assert_array_equal(subj.ED_gt, crop_inplane(ph.labels_ed, x0, y0, 64))
    assert (subj.ED_gt > 0).sum() == (ph.labels_ed > 0).sum()  # nothing labelled was cropped away
    # anatomy check independent of id tables: LV is the bright pool enclosed by Myo; RV is outside Myo
    lv, myo, rv = (subj.ED_gt == k for k in (LV, MYO, RV))
    assert subj.ED[lv].mean() > 1.5 * subj.ED[myo].mean()
    assert set(np.unique(subj.ED_gt[ndimage.binary_dilation(lv) & ~lv])) == {MYO}
    assert (ndimage.binary_fill_holes(lv | myo) & rv).sum() == 0


@pytest.mark.parametrize("fmt", ["acdc", "mnm"])
def test_crop_keeps_every_labelled_voxel(fmt, request):
    prepared = request.getfixturevalue(f"prepared_{fmt}")
    table = read_subjects(prepared)
    assert (table["labelled_voxels_outside_crop"] == 0).all()
    for subject in table["subject"]:
        subj = load_subject(prepared, subject)
        # the labels leave a background border inside the window: nothing touches the edge
        for gt in (subj.ED_gt, subj.ES_gt):
            edge = np.concatenate([gt[0].ravel(), gt[-1].ravel(), gt[:, 0].ravel(), gt[:, -1].ravel()])
            assert (edge == 0).all(), subject


def test_crop_window_pads_outside_the_image():
    labels = np.zeros((10, 12, 2), np.uint8)
    labels[0:3, 9:12, 1] = 2  # a structure in the corner
    x0, y0 = crop_window(labels, 8)
    assert (x0, y0) == (-3, 6)  # centre (1.5, 10.5) - 4
    out = crop_inplane(labels, x0, y0, 8)
    assert out.shape == (8, 8, 2) and (out == 2).sum() == 9
    np.testing.assert_array_equal(out[3:6, 3:6, 1], 2)
    assert out[:3].sum() == 0 and out[:, 6:].sum() == 0  # zero padding outside the image


@pytest.mark.parametrize("fmt", ["acdc", "mnm"])
def test_true_disp_warps_es_labels_onto_ed(fmt, request):
    prepared = request.getfixturevalue(f"prepared_{fmt}")
    for subject in read_subjects(prepared)["subject"][:3]:
        s = load_subject(prepared, subject)
        assert s.true_disp.shape == (3,) + s.ED.shape and np.all(s.true_disp[2] == 0)
        coords = np.indices(s.ED.shape, dtype=np.float32) + s.true_disp
        moved = ndimage.map_coordinates(s.ES_gt, coords, order=0, mode="nearest")
        for k in (LV, MYO, RV):
            assert _dice(moved == k, s.ED_gt == k) > 0.95, (subject, k)
        moved_img = ndimage.map_coordinates(s.ES, coords, order=1, mode="nearest")
        heart = ndimage.binary_dilation(s.ED_gt > 0, iterations=3)
        assert ((moved_img - s.ED)[heart] ** 2).mean() < 0.6 * ((s.ES - s.ED)[heart] ** 2).mean()


def test_provenance_and_excluded_written(prepared_mnm):
    import json

    prov = json.loads((prepared_mnm / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["config"]["n_prepared"] == 8
    assert len(prov["config"]["unlabelled"]) == 1  # Training/Unlabeled is skipped, not prepared
    assert pd.read_csv(prepared_mnm / "excluded.csv").empty
    table = read_subjects(prepared_mnm)
    assert set(table["group"]) == {"A", "B", "C", "D"}
    assert {"vendor_name", "centre"} <= set(table.columns)


# ------------------------------------------------------------------ intensity normalisation

def test_scale_intensity_known_answers():
    from gsmorph.data.prepare import scale_intensity

    ed, es = np.array([[2.0, 4.0], [6.0, 8.0]]), np.array([[3.0, 10.0]])
    a, b = scale_intensity([ed, es], "minmax")  # joint min 2, max 10
    np.testing.assert_allclose(a, [[0.0, 0.25], [0.5, 0.75]])
    np.testing.assert_allclose(b, [[0.125, 1.0]])
    assert a.dtype == b.dtype == np.float32
    # the percentile range clips a bright outlier that min-max keeps
    values = np.arange(1000, dtype=np.float64)
    values[-1] = 1e6
    (p,), (m,) = scale_intensity([values], "percentile"), scale_intensity([values], "minmax")
    assert p[-1] == 1.0 and p[-2] == 1.0 and p[500] == pytest.approx(0.5, abs=0.01)
    assert m[-1] == 1.0 and m[500] == pytest.approx(500 / 1e6)
    np.testing.assert_array_equal(scale_intensity([np.full((2, 2), 7.0)], "minmax")[0], 0.0)  # constant: zeros


def test_unknown_intensity_is_a_clear_error(raw_acdc, tmp_path):
    from gsmorph.cli import main
    from gsmorph.data.prepare import prepare
    from gsmorph.errors import GSMorphError

    with pytest.raises(GSMorphError, match=r"prepare.intensity.*percentile, minmax.*'zscore'"):
        prepare("acdc", raw_acdc, tmp_path / "p", size=16, intensity="zscore")
    assert not (tmp_path / "p").exists()
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(tmp_path / "p"),
              "--intensity", "zscore"])


def test_minmax_prepares_the_papers_scaling_and_records_it(raw_acdc, prepared_acdc, tmp_path):
    import json

    from gsmorph.cli import main

    out = tmp_path / "minmax"
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(out), "--size", "64",
                 "--intensity", "minmax"]) == 0
    table = read_subjects(out)
    assert (table["intensity"] == "minmax").all()
    assert (read_subjects(prepared_acdc)["intensity"] == "percentile").all()  # the default
    assert json.loads((out / "provenance.json").read_text())["config"]["intensity"] == "minmax"
    for _, row in table.head(3).iterrows():
        raw = _read_raw("acdc", raw_acdc, row["subject"])
        x0, y0 = int(row["crop_x0"]), int(row["crop_y0"])
        ed, es = (crop_inplane(v, x0, y0, 64).astype(np.float64) for v in (raw.ED, raw.ES))
        lo, hi = min(ed.min(), es.min()), max(ed.max(), es.max())
        subj = load_subject(out, row["subject"])
        np.testing.assert_allclose(subj.ED, (ed - lo) / (hi - lo), atol=1e-6)
        np.testing.assert_allclose(subj.ES, (es - lo) / (hi - lo), atol=1e-6)
        assert min(subj.ED.min(), subj.ES.min()) == 0.0 and max(subj.ED.max(), subj.ES.max()) == 1.0


# ------------------------------------------------------------------ the cohort: subjects_file

def test_subjects_file_limits_the_subjects_and_is_recorded(raw_acdc, raw_mnm, tmp_path):
    import hashlib
    import json

    from gsmorph.data.prepare import prepare

    acdc_ids = sorted(p.name for p in (raw_acdc / "training").iterdir())
    mnm_ids = sorted(read_subjects_of(raw_mnm))
    # one CSV for both datasets: its `dataset` column leaves the other dataset's rows out
    listing = tmp_path / "cohort.csv"
    pd.DataFrame({"subject": [acdc_ids[5], acdc_ids[1], acdc_ids[2], acdc_ids[3], mnm_ids[0]],
                  "dataset": ["acdc"] * 4 + ["mnm"], "note": "x"}).to_csv(listing, index=False)
    summary = prepare("acdc", raw_acdc, tmp_path / "acdc", size=16, subjects_file=listing)
    table = read_subjects(tmp_path / "acdc")
    assert sorted(table["subject"]) == sorted([acdc_ids[1], acdc_ids[2], acdc_ids[3], acdc_ids[5]])
    assert summary["n_prepared"] == 4 and summary["n_listed"] == 4
    prov = json.loads((tmp_path / "acdc" / "provenance.json").read_text())["config"]
    assert prov["subjects_file"] == str(listing) and prov["n_listed"] == 4
    assert prov["subjects_file_sha256"] == hashlib.sha256(listing.read_bytes()).hexdigest()
    # the same file for M&Ms-1, and a text file (one id a line, comments and blanks ignored)
    assert prepare("mnm", raw_mnm, tmp_path / "mnm", size=16, subjects_file=listing)["n_prepared"] == 1
    text = tmp_path / "ids.txt"
    text.write_text(f"# the cohort\n{acdc_ids[0]}\n\n{acdc_ids[4]}\n{acdc_ids[0]}\n")
    prepare("acdc", raw_acdc, tmp_path / "acdc2", size=16, subjects_file=text)
    assert sorted(read_subjects(tmp_path / "acdc2")["subject"]) == [acdc_ids[0], acdc_ids[4]]


def read_subjects_of(raw_mnm):
    """Labelled M&Ms-1 subject ids of a raw folder."""
    from gsmorph.data.prepare import list_subjects

    readers, _ = list_subjects("mnm", raw_mnm)
    return [s for s, _ in readers]


def test_subjects_file_errors_name_the_file_and_the_subject(raw_acdc, raw_mnm, tmp_path):
    from gsmorph.cli import main
    from gsmorph.data.prepare import list_subjects, prepare
    from gsmorph.errors import GSMorphError

    acdc_ids = sorted(p.name for p in (raw_acdc / "training").iterdir())
    listing = tmp_path / "ids.txt"
    listing.write_text(f"{acdc_ids[0]}\npatient999\n")
    with pytest.raises(GSMorphError, match=rf"{listing}: 1 listed subject\(s\) are not labelled acdc subjects.*"
                                           r"patient999"):
        prepare("acdc", raw_acdc, tmp_path / "p", size=16, subjects_file=listing)
    assert not (tmp_path / "p").exists()
    assert main(["prepare", "--dataset", "acdc", "--raw", str(raw_acdc), "--out", str(tmp_path / "p"),
                 "--subjects-file", str(listing)]) != 0
    # a subject of a folder not read: one phantom subject moved to testing/
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(raw_acdc, raw)
    (raw / "testing").mkdir()
    shutil.move(raw / "training" / acdc_ids[0], raw / "testing" / acdc_ids[0])
    listing.write_text(f"{acdc_ids[0]}\n")
    with pytest.raises(GSMorphError, match=rf"folders read: training\): {acdc_ids[0]}"):
        prepare("acdc", raw, tmp_path / "p", size=16, subjects_file=listing, folders=["training"])
    assert prepare("acdc", raw, tmp_path / "p", size=16, subjects_file=listing)["n_prepared"] == 1
    # an unlabelled M&Ms-1 subject is named as such
    _, unlabelled = list_subjects("mnm", raw_mnm)
    listing.write_text(f"{unlabelled[0]}\n")
    with pytest.raises(GSMorphError, match=rf"{unlabelled[0]} \(unlabelled\)"):
        prepare("mnm", raw_mnm, tmp_path / "p", size=16, subjects_file=listing)
    # a missing file, an empty one, a CSV without a subject column
    with pytest.raises(GSMorphError, match=r"nope.txt: subjects file not found"):
        prepare("acdc", raw_acdc, tmp_path / "p", size=16, subjects_file=tmp_path / "nope.txt")
    listing.write_text("# nobody\n\n")
    with pytest.raises(GSMorphError, match=r"lists no subjects"):
        prepare("acdc", raw_acdc, tmp_path / "p", size=16, subjects_file=listing)
    listing.write_text("id,split\npatient001,train\n")
    with pytest.raises(GSMorphError, match=r"needs a 'subject' column"):
        prepare("acdc", raw_acdc, tmp_path / "p", size=16, subjects_file=listing)
