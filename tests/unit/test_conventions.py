"""Published metric conventions beside ours, each on a hand-computed case: Learn2Reg's
evaluation code and the GSMorph authors' code (README "Metric conventions")."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gsmorph import metrics, pairs
from gsmorph.evaluate import Reference, pair_metrics


def linear_field(shape, a, b):
    """u_0 = a x_0, u_1 = b x_1 (voxels): det(I + grad u) = (1 + a)(1 + b) everywhere."""
    x0, x1 = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return np.stack([a * x0, b * x1])


# ------------------------------------------------------------------------------ Learn2Reg

def test_l2r_jacobian_of_a_linear_field_after_its_border_crop():
    det = metrics.l2r_jacobian_determinant(linear_field((12, 10), 0.5, -0.2))
    assert det.shape == (8, 6)  # 2 voxels cropped from every side: the zero padding is gone
    np.testing.assert_allclose(det, 1.5 * 0.8)
    # 3D: the same with the z-derivative
    x = np.meshgrid(*[np.arange(n, dtype=float) for n in (7, 8, 9)], indexing="ij")
    det3 = metrics.l2r_jacobian_determinant(np.stack([0.1 * x[0], 0.0 * x[1], -0.5 * x[2]]))
    assert det3.shape == (3, 4, 5)
    np.testing.assert_allclose(det3, 1.1 * 1.0 * 0.5)


def test_l2r_sdlogj_shifts_by_three_and_its_folding_count_is_always_zero():
    assert metrics.l2r_sdlogj(linear_field((12, 10), 0.5, -0.2)) == pytest.approx(0.0, abs=1e-12)
    # rows of det 0.5 and det 2 in the cropped interior: std of log(det + 3) over them
    steps = np.array([-0.5] * 8 + [1.0] * 8)
    disp = np.zeros((2, 17, 9))
    disp[0] = np.concatenate([[0.0], np.cumsum(steps)])[:, None]
    det = metrics.l2r_jacobian_determinant(disp)  # rows 2..14 of the field
    assert sorted(np.unique(np.round(det, 12))) == [0.5, 1.25, 2.0]
    expected = np.std(np.log(det + 3.0))
    assert metrics.l2r_sdlogj(disp) == pytest.approx(expected)
    # a folding field (det -3 inside): clip(det + 3, 1e-9, 1e9) is never <= 0
    folded = linear_field((12, 10), -2.0, -2.0)
    assert metrics.njd_percent(linear_field((12, 10), 0.0, -3.0)) == 100.0
    assert metrics.l2r_num_foldings(linear_field((12, 10), 0.0, -3.0)) == 0
    assert metrics.l2r_num_foldings(folded) == 0


def test_l2r_hd95_is_in_voxels():
    a = np.zeros((20, 20), bool)
    a[2:12, 4:14] = True
    b = np.roll(a, 3, axis=0)  # the square moved by 3 rows
    assert metrics.l2r_hd95_vox(b, a) == pytest.approx(3.0)
    assert metrics.hd95(b, a, (2.0, 1.0)) == pytest.approx(6.0)  # ours: mm, rows 2 mm apart
    assert math.isnan(metrics.l2r_hd95_vox(np.zeros_like(a), a))


# ------------------------------------------------------------------------------ the authors' code

def test_code_dice_hd95_in_pixels_and_empty_masks():
    a = np.zeros((20, 20), bool)
    a[2:12, 4:14] = True
    assert metrics.code_dice(np.zeros_like(a), np.zeros_like(a)) == 0.0
    assert metrics.code_dice(a, a) == 1.0
    assert metrics.code_hd95_px(np.roll(a, 3, axis=0), a) == pytest.approx(3.0)


def test_code_njd_reads_the_first_component_along_w():
    # u_0 = -2 x_0, u_1 = -2 x_1: det (1 - 2)(1 - 2) = 1 > 0, no folding in our convention;
    # SimpleITK, reading component 0 as the displacement along W, finds
    # (1 + 0)(1 + 0) - (-2)(-2) = -3 < 0 at every voxel away from the corners
    disp = linear_field((12, 10), -2.0, -2.0)
    assert metrics.njd_percent(disp) == 0.0
    assert metrics.code_njd_pct(disp) >= 100.0 * (12 * 10 - 4) / (12 * 10)
    with pytest.raises(Exception, match="2D"):
        metrics.code_njd_pct(np.zeros((3, 4, 4, 4)))


# ------------------------------------------------------------------------------ in evaluation

def _pair(moved_label, fixed_label, moving_label, disp=None, true_disp=None, spacing=(1.0, 1.0)):
    shape = fixed_label.shape
    disp = np.zeros((2, *shape), np.float32) if disp is None else disp.astype(np.float32)
    sp = pairs.SubjectPairs("s", np.array([0], np.int32), disp[None], np.zeros((1, *shape), np.float32),
                            moved_label[None].astype(np.uint8), np.zeros(1), np.array(spacing))
    ref = Reference(np.zeros((*shape, 1), np.float32), fixed_label[..., None].astype(np.uint8),
                    moving_label[..., None].astype(np.uint8), np.array([*spacing, 8.0]),
                    None if true_disp is None else np.concatenate([true_disp, np.zeros((1, *shape))])[..., None])
    return sp, ref


def labels(*boxes):
    out = np.zeros((16, 16), np.uint8)
    for value, (r0, r1, c0, c1) in boxes:
        out[r0:r1, c0:c1] = value
    return out


def test_structure_rules_dice_zero_when_erased_nan_when_a_frame_lacks_it():
    fixed = labels((1, (2, 8, 2, 8)), (2, (8, 12, 2, 8)))            # LV, Myo; no RV
    moving = labels((1, (2, 8, 2, 8)), (3, (10, 14, 10, 14)))        # LV, RV; no Myo
    moved = labels((3, (10, 14, 10, 14)))                            # the warp erased LV
    out = pair_metrics(*_pair(moved, fixed, moving), "here", ("learn2reg", "gsmorph-code"))
    assert out[("dice", "LV")][0] == 0.0 and math.isnan(out[("hd95_mm", "LV")][0])  # lost
    assert math.isnan(out[("dice", "Myo")][0]) and math.isnan(out[("hd95_mm", "Myo")][0])  # moving lacks it
    assert math.isnan(out[("dice", "RV")][0]) and math.isnan(out[("hd95_mm", "RV")][0])  # fixed lacks it
    assert math.isnan(out[("l2r_hd95_vox", "LV")][0])
    # the authors' code: a structure not in both the moved and the fixed map counts 0
    assert [out[("code_dice", s)][0] for s in ("LV", "Myo", "RV")] == [0.0, 0.0, 0.0]


def test_code_convention_divides_the_structure_mean_by_three():
    fixed = labels((1, (2, 8, 2, 8)), (2, (8, 12, 2, 8)))            # no RV
    out = pair_metrics(*_pair(fixed, fixed, fixed), "here", ("gsmorph-code",))
    code = [out[("code_dice", s)][0] for s in ("LV", "Myo", "RV")]
    assert code == [1.0, 1.0, 0.0] and np.mean(code) == pytest.approx(2 / 3)  # the paper's divisor 3
    ours = [out[("dice", s)][0] for s in ("LV", "Myo", "RV")]
    assert ours[:2] == [1.0, 1.0] and math.isnan(ours[2])                       # ours: mean 1.0


def test_epe_inside_the_heart_and_over_the_image_on_an_analytic_field():
    fixed = labels((1, (4, 8, 4, 8)))                                # 16 heart voxels
    true = np.zeros((2, 16, 16))
    true[0, :8] = 1.0                                                # the top half moves 1 voxel
    disp = np.zeros((2, 16, 16))                                     # the identity: error = |true|
    out = pair_metrics(*_pair(fixed, fixed, fixed, disp, true, spacing=(2.0, 1.0)), "here")
    assert out[("epe_mm", "")][0] == pytest.approx(2.0)             # every heart voxel is in the top half
    assert out[("epe_image_mm", "")][0] == pytest.approx(2.0 * 128 / 256)
