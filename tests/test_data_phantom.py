"""The synthetic phantom: anatomy, a known invertible motion, reproducibility, the raw layouts."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gsmorph.data import phantom as P
from gsmorph.data.labels import LV, MYO, RV
from gsmorph.data.synth import acdc_phantom, mnm_phantom


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def _warp(volume, disp, order):
    """volume (X, Y, Z) sampled at x + disp(x), disp (X, Y, Z, 3) channel-last."""
    idx = np.indices(volume.shape, dtype=np.float32)
    coords = idx + np.moveaxis(disp, -1, 0)
    return ndimage.map_coordinates(volume, coords, order=order, mode="nearest")


@pytest.fixture(scope="module")
def nor():
    return P.make_phantom(np.random.default_rng(5), "NOR", "A", n_frames=8, ed_index=0, es_index=3)


def test_true_disp_maps_es_back_onto_ed(nor):
    assert nor.true_disp.shape == nor.labels_ed.shape + (3,)
    assert np.all(nor.true_disp[..., 2] == 0)  # in-plane motion
    assert np.abs(nor.true_disp).max() > 1.0  # it really moves
    moved = _warp(nor.labels_es, nor.true_disp, 0)
    for k in (LV, MYO, RV):
        assert _dice(moved == k, nor.labels_ed == k) > 0.95
        # the identity does clearly worse on the contracting LV
    assert _dice(nor.labels_es == LV, nor.labels_ed == LV) < 0.9


def test_inverse_is_accurate_and_fold_free():
    p = P.sample_params(np.random.default_rng(1), "HCM", "B")  # strongest contraction
    v = P.backward_map(p)
    u = P.invert(v)
    residual = u + np.stack([P._sample(v[i], u, 1) for i in range(2)])  # x + u + v(x + u) = x
    assert np.abs(residual).max() < 0.05
    gx, gy = np.gradient(u[0], axis=(0, 1)), np.gradient(u[1], axis=(0, 1))
    det = (1 + gx[0]) * (1 + gy[1]) - gx[1] * gy[0]
    assert det.min() > 0.3


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


def test_acquisition_realistic_and_seeded():
    sid, ph, info, affine = acdc_phantom(3, 4)
    sx, sy, sz = ph.spacing
    assert 1.2 <= sx <= 1.9 and sx == sy and 5 <= sz <= 10
    nx, ny, _ = ph.labels_ed.shape
    assert nx != ny
    centre = np.array(ndimage.center_of_mass(ph.labels_ed > 0))[:2]
    assert np.linalg.norm(centre - np.array([nx, ny]) / 2) > 5  # heart off-centre
    assert not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # oblique
    assert info["ES"] > info["ED"] == 1 and info["NbFrame"] >= info["ES"]
    _, again, _, _ = acdc_phantom(3, 4)
    np.testing.assert_array_equal(ph.frames, again.frames)


def test_vendors_shift_the_intensity_domain():
    noise = {}
    for vendor in "AC":
        ph = P.make_phantom(np.random.default_rng(0), "NOR", vendor)
        blood = ph.ED[ph.labels_ed == LV]
        noise[vendor] = blood.std() / blood.mean()
    assert noise["C"] > 1.3 * noise["A"]
