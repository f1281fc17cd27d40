"""The synthetic phantom: anatomy, a known invertible motion, realism per group and vendor,
reproducibility, parameters in the provenance, the raw layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from gsmorph.data import phantom as P
from gsmorph.data.labels import LV, MYO, RV
from gsmorph.data.synth import SUBJECTS_CSV, acdc_phantom, flat_params, mnm_phantom, read_subjects_csv


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _warp(volume, disp, order):
    """volume (X, Y, Z) sampled at x + disp(x), disp (X, Y, Z, 3) channel-last."""
    idx = np.indices(volume.shape, dtype=np.float32)
    coords = idx + np.moveaxis(disp, -1, 0)
    return ndimage.map_coordinates(volume, coords, order=order, mode="nearest")


def _thickness(labels):
    """Myocardial wall thickness per slice (voxels), from the equivalent-circle radii."""
    lv, myo = (labels == LV).sum((0, 1)), (labels == MYO).sum((0, 1))
    return np.sqrt((lv + myo) / np.pi) - np.sqrt(lv / np.pi)


@pytest.fixture(scope="module")
def nor():
    return P.make_phantom(np.random.default_rng(5), "NOR", "A", n_frames=8, ed_index=0, es_index=3)


@pytest.fixture(scope="module")
def groups():
    """One ACDC-like phantom per pathology group (seed 0)."""
    return {g: P.make_phantom(np.random.default_rng(0), g) for g in P.ACDC_GROUPS}


def test_true_disp_maps_es_back_onto_ed(nor):
    assert nor.true_disp.shape == nor.labels_ed.shape + (3,)
    assert np.all(nor.true_disp[..., 2] == 0)  # in-plane motion
    assert np.abs(nor.true_disp).max() > 1.0  # it really moves
    moved = _warp(nor.labels_es, nor.true_disp, 0)
    for k in (LV, MYO, RV):
        assert _dice(moved == k, nor.labels_ed == k) > 0.95
        # the identity does clearly worse on the contracting LV
    assert _dice(nor.labels_es == LV, nor.labels_ed == LV) < 0.9


@pytest.mark.parametrize("vendor", [None, "C"])
def test_true_disp_is_exact_for_every_group(groups, vendor):
    for group in P.ACDC_GROUPS:
        ph = groups[group] if vendor is None else P.make_phantom(np.random.default_rng(1), group, vendor)
        moved = _warp(ph.labels_es, ph.true_disp, 0)
        for k in (LV, MYO, RV):
            assert _dice(moved == k, ph.labels_ed == k) > 0.95, (group, vendor, k)


def test_inverse_is_accurate_and_fold_free():
    p = P.sample_params(np.random.default_rng(1), "HCM", "B")  # strongest contraction
    box = P.heart_box(p)
    x, y, _ = P._grid(p, *box)
    z = (np.arange(p["n_slices"], dtype=np.float32) * p["spacing"][2])[None, None, :]
    ex, ey = P.forward(p, x, y, z)
    back = P.backward(p, ex, ey, z, 1.0)  # ED -> ES -> ED is the identity
    assert max(np.abs(back["ex"] - x).max(), np.abs(back["ey"] - y).max()) < 0.01  # mm
    u = P.true_displacement(p, box)[box]
    gx, gy = np.gradient(u[..., 0], axis=(0, 1)), np.gradient(u[..., 1], axis=(0, 1))
    det = (1 + gx[0]) * (1 + gy[1]) - gx[1] * gy[0]
    # fold-free; the HCM cavity (EF 65-80 %) shrinks to a quarter of its area, so det goes well below 1
    assert det.min() > 0.02 and det.max() < 3


def test_anatomy_is_base_to_apex_with_fading_rv(nor):
    lab = nor.labels_ed
    assert 6 <= lab.shape[2] <= 12
    lv_area = [(lab[:, :, k] == LV).sum() for k in range(lab.shape[2])]
    assert lv_area[0] > 2 * lv_area[-1] > 0  # tapers toward the apex
    assert (lab[:, :, 0] == RV).sum() > 0 and (lab[:, :, -1] == RV).sum() == 0
    # the myocardium encloses the LV: dilating the LV by one voxel only meets Myo
    ring = ndimage.binary_dilation(lab == LV) & (lab != LV)
    assert set(np.unique(lab[ring])) <= {MYO}
    # LV blood bright, myocardium dark
    ed = nor.ED
    assert ed[lab == LV].mean() > 1.8 * ed[lab == MYO].mean()


def test_rv_is_a_crescent_wrapping_the_septum(nor):
    lab = nor.labels_ed[:, :, 1]
    rv, heart = lab == RV, ndimage.binary_fill_holes(lab > 0)
    assert ndimage.label(rv)[1] == 1  # one piece
    # RV touches the myocardium (septum) but not the LV, and covers well under half its own hull
    assert (ndimage.binary_dilation(rv) & (lab == MYO)).any() and not (ndimage.binary_dilation(rv) & (lab == LV)).any()
    assert not (ndimage.binary_fill_holes(lab == MYO) & rv).any()
    assert heart.sum() > rv.sum() + (lab == LV).sum()


def test_frames_move_from_ed_to_es(nor):
    diffs = [np.abs(f - nor.ED)[nor.labels_ed > 0].mean() for f in nor.frames]
    assert diffs[3] == max(diffs)  # ES differs most from ED
    assert diffs[1] < diffs[2] < diffs[3]  # several frames in between, moving progressively


def test_groups_change_anatomy_and_motion():
    def stats(group):
        ph = P.make_phantom(np.random.default_rng(0), group)
        lab_ed, lab_es = ph.labels_ed, ph.labels_es
        return (lab_ed == MYO).sum() / (lab_ed == LV).sum(), 1 - (lab_es == LV).sum() / (lab_ed == LV).sum()

    myo_ratio_hcm, ef_hcm = stats("HCM")
    myo_ratio_dcm, ef_dcm = stats("DCM")
    myo_ratio_rv, _ = stats("RV")
    assert myo_ratio_hcm > 2 * myo_ratio_dcm  # thick wall
    assert ef_dcm < 0.5 * ef_hcm  # weak contraction


@pytest.mark.parametrize("seed", [0, 1])
def test_ejection_fraction_lands_in_the_group_range(seed, groups):
    for group in P.ACDC_GROUPS:
        ph = groups[group] if seed == 0 else P.make_phantom(np.random.default_rng(seed), group, "B")
        lo, hi = P.GROUPS[group]["ef"]
        ef = 1 - (ph.labels_es == LV).sum() / (ph.labels_ed == LV).sum()  # from the labels
        assert lo - 0.03 <= ef <= hi + 0.03, (group, ef)
        assert ph.params["ef_lv"] == pytest.approx(ef)
        assert abs(ef - ph.params["ef_target"]) < 0.03


def test_rv_group_has_a_dilated_weak_rv(groups):
    def rv_to_lv(ph):
        return (ph.labels_ed == RV).sum() / (ph.labels_ed == LV).sum()

    assert rv_to_lv(groups["RV"]) > 1.5 * rv_to_lv(groups["NOR"])
    assert groups["RV"].params["ef_rv"] < groups["NOR"].params["ef_rv"]


def test_wall_thickens_at_es(groups):
    ratio = {g: np.median(_thickness(groups[g].labels_es) / _thickness(groups[g].labels_ed)) for g in groups}
    assert ratio["NOR"] > 1.3 and ratio["HCM"] > 1.2  # normal systolic thickening
    assert 1.0 < ratio["DCM"] < ratio["NOR"] and ratio["MINF"] < ratio["NOR"]  # weak in DCM, MINF


def test_longitudinal_shortening(groups):
    p = groups["NOR"].params
    apex = p["cavity_length"] + p["base_gap"]
    z = np.array([0.0, 0.5 * apex, apex])
    src = P.source_level(p, z, 1.0)
    # ES level z shows ED tissue from higher up: the base moved toward the fixed apex by
    # shortening x its distance to the apex
    np.testing.assert_allclose(z - src, p["shortening"] * (apex - src), atol=1e-9)
    assert src[0] < z[0] and src[2] == pytest.approx(apex)
    # that tissue's myocardium is squeezed into the slice: ES/ED myocardial volume ~ 1 / (1 - shortening)
    for g, ph in groups.items():
        expected = 1 / (1 - ph.params["shortening"])
        assert abs(ph.params["myo_ratio"] - expected) < 0.06, g


def test_twist_turns_base_and_apex_opposite_ways(nor):
    p, u = nor.params, nor.true_disp
    turn = []
    for k in range(nor.labels_ed.shape[2]):  # mean rotation (rad) of the myocardium about the LV centroid
        cx, cy = np.argwhere(nor.labels_ed[..., k] == LV).mean(axis=0)
        x, y = np.nonzero(nor.labels_ed[..., k] == MYO)
        dx, dy = x - cx, y - cy
        turn.append(np.mean((dx * u[x, y, k, 1] - dy * u[x, y, k, 0]) / (dx**2 + dy**2)))
    expected = P.twist_angle(p, P.profiles(p, np.arange(p["n_slices"]) * p["spacing"][2])["s"])
    np.testing.assert_allclose(turn, expected, atol=0.03)
    assert turn[0] < 0 < turn[-1]


def test_papillary_muscles_darker_than_blood_inside_the_lv_label(nor):
    p = nor.params
    box = P.heart_box(p)
    static = P.render_static(p, box)
    clean, mid = P.render_heart(p, box, 0.0, static)
    lab = P.labels_from(mid)
    k = int(np.argmin(np.abs(P.profiles(p, np.arange(p["n_slices"]) * p["spacing"][2])["s"] - 0.5)))
    pool = clean[..., k][lab[..., k] == LV]  # mid-ventricle, clean ED intensities inside the LV label
    dark = pool < (p["blood"] + p["myo"]) / 2
    assert 0.03 < dark.mean() < 0.35  # papillary muscles and trabeculations, labelled LV
    assert pool[dark].mean() < 0.6 * np.median(pool)


def test_noise_level_per_vendor():
    sigma, snr = {}, {}
    for vendor in "AC":
        ph = P.make_phantom(np.random.default_rng(0), "NOR", vendor)
        air = P.render_static(ph.params, P.heart_box(ph.params)) == 0  # outside the body: Rayleigh noise
        sigma[vendor] = ph.ED[air].mean() / np.sqrt(np.pi / 2)
        assert sigma[vendor] == pytest.approx(ph.params["noise"], rel=0.1)
        lo, hi = P.VENDORS[vendor]["snr"]
        assert lo <= ph.params["snr"] <= hi
        snr[vendor] = ph.params["blood"] ** ph.params["gamma"] / sigma[vendor]
    assert snr["A"] > 1.5 * snr["C"]


def test_acquisition_realistic_and_seeded():
    sid, ph, info, affine = acdc_phantom(3, 4)
    sx, sy, sz = ph.spacing
    assert 1.2 <= sx <= 1.9 and sx == sy and 5 <= sz <= 10
    assert 0 < ph.params["thickness"] <= sz
    nx, ny, _ = ph.labels_ed.shape
    assert nx != ny
    centre = np.array(ndimage.center_of_mass(ph.labels_ed > 0))[:2]
    assert np.linalg.norm(centre - np.array([nx, ny]) / 2) > 5  # heart off-centre
    assert not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # oblique
    assert info["ES"] > info["ED"] == 1 and info["NbFrame"] >= info["ES"]
    _, again, _, _ = acdc_phantom(3, 4)
    np.testing.assert_array_equal(ph.frames, again.frames)


def test_images_and_parameters_reproducible_by_seed():
    one, two, other = mnm_phantom(7, 2), mnm_phantom(7, 2), mnm_phantom(8, 2)
    assert one[0] == two[0] and one[2] == two[2]
    for name in ("frames", "labels_ed", "labels_es", "true_disp"):
        np.testing.assert_array_equal(getattr(one[1], name), getattr(two[1], name))
    assert one[1].params == two[1].params
    assert one[1].params != other[1].params


def test_vendors_shift_the_intensity_domain():
    noise = {}
    for vendor in "AC":
        ph = P.make_phantom(np.random.default_rng(0), "NOR", vendor)
        blood = ph.ED[ph.labels_ed == LV]
        noise[vendor] = blood.std() / blood.mean()
    assert noise["C"] > 1.3 * noise["A"]


def test_subjects_differ_in_contrast_bias_and_resolution():
    params = [mnm_phantom(0, i)[1].params for i in range(4)]  # vendors A, B, C, D
    assert len({p["spacing"][0] for p in params}) == 4 and len({p["gamma"] for p in params}) == 4
    assert len({round(p["myo"] / p["blood"], 4) for p in params}) == 4
    assert all(max(abs(b) for b in p["bias"]) > 0 for p in params)


@pytest.mark.parametrize("fmt", ["acdc", "mnm"])
def test_parameters_in_the_subjects_csv_and_provenance(fmt, request):
    raw = request.getfixturevalue(f"raw_{fmt}")
    table = read_subjects_csv(raw).set_index("subject")
    assert table["labelled"].sum() == 8
    subject, ph = (acdc_phantom(0, 0)[:2] if fmt == "acdc" else mnm_phantom(0, 0)[:2])
    for key, value in flat_params(ph.params).items():  # the CSV row is the phantom's parameters
        stored = table.loc[subject, key]
        if value is None:
            assert stored != stored  # empty (NaN)
        elif isinstance(value, str):
            assert stored == value
        else:
            assert float(stored) == pytest.approx(float(value), rel=1e-6), key
    prov = json.loads((raw / "phantom_provenance.json").read_text())["phantom"]
    assert prov["subjects_csv"] == SUBJECTS_CSV
    assert set(prov["model"]["groups"]) == set(P.ACDC_GROUPS) and set(prov["model"]["vendors"]) == set("ABCD")
    group = table.loc[subject, "group"] if fmt == "acdc" else f"{table.loc[subject, 'vendor']}/{table.loc[subject, 'group']}"
    summary = prov["per_group"][group]
    ef = summary["ef_lv"]
    assert summary["n"] >= 1 and ef["min"] - 1e-9 <= ph.params["ef_lv"] <= ef["max"] + 1e-9
    assert {"snr", "noise", "gamma", "contraction", "twist", "shortening"} <= set(summary)
