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
