"""Metrics against hand-computed answers (masks, analytic displacement fields)."""
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from gsmorph import metrics
from gsmorph.errors import GSMorphError


def square(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def disk(shape, center, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2


# ---------------------------------------------------------------- Dice
def test_dice_shifted_squares():
    a = square((32, 32), (10, 10), (20, 20))
    b = square((32, 32), (13, 10), (23, 20))  # shifted 3 along axis 0: overlap 7 x 10
    assert metrics.dice(a, b) == pytest.approx(2 * 70 / 200)
    assert metrics.dice(a, a) == 1.0
    assert metrics.dice(a, square((32, 32), (25, 25), (30, 30))) == 0.0


def test_dice_nested_disks_counts():
    big, small = disk((64, 64), (32, 32), 12), disk((64, 64), (32, 32), 6)
    expected = 2 * small.sum() / (small.sum() + big.sum())
    assert metrics.dice(small, big) == pytest.approx(expected)


def test_dice_is_nan_iff_the_reference_is_empty_and_0_for_an_erased_structure():
    a = square((16, 16), (2, 2), (6, 6))
    empty = np.zeros((16, 16), bool)
    assert math.isnan(metrics.dice(a, empty))      # nothing to find: undefined
    assert metrics.dice(empty, a) == 0.0           # the warp erased the structure: 0, not NaN
    assert math.isnan(metrics.dice(empty, empty))
    b = square((16, 16), (3, 2), (7, 6))
    batch = metrics.dice_batch(np.stack([a, empty, a, a]), np.stack([b, a, a, empty]))
    assert batch[0] == pytest.approx(metrics.dice(a, b))
    assert batch[1] == 0.0 and batch[2] == 1.0 and math.isnan(batch[3])


# ---------------------------------------------------------------- HD95
def test_hd95_identical_is_zero_and_empty_is_nan():
    a = disk((40, 40), (20, 20), 8)
    assert metrics.hd95(a, a, (1.0, 1.0)) == 0.0
    assert math.isnan(metrics.hd95(a, np.zeros_like(a), (1.0, 1.0)))
    assert math.isnan(metrics.hd95(np.zeros_like(a), a, (1.0, 1.0)))


def test_hd95_single_voxels_anisotropic_spacing():
    a = np.zeros((12, 12), bool)
    b = np.zeros((12, 12), bool)
    a[5, 5] = True
    b[5, 9] = True  # 4 voxels along axis 1
    assert metrics.hd95(a, b, (2.0, 0.5)) == pytest.approx(2.0)
    c = np.zeros((12, 12), bool)
    c[8, 5] = True  # 3 voxels along axis 0
    assert metrics.hd95(a, c, (2.0, 0.5)) == pytest.approx(6.0)


def test_hd95_lines_of_different_length_hand_computed():
    # Line A: row 0, cols 0..9; line B: row 4, cols 0..19 (1-voxel thick: surface = line).
    a = np.zeros((8, 24), bool)
    b = np.zeros((8, 24), bool)
    a[0, 0:10] = True
    b[4, 0:20] = True
    # A->B: 10 distances of 4. B->A: 10 of 4, then sqrt(16 + k^2), k = 1..10.
    pooled = sorted([4.0] * 20 + [math.sqrt(16 + k * k) for k in range(1, 11)])
    pos = 0.95 * (len(pooled) - 1)  # 27.55: linear interpolation between 27 and 28
    expected = pooled[27] + (pos - 27) * (pooled[28] - pooled[27])
    assert expected == pytest.approx(math.sqrt(80) + 0.55 * (math.sqrt(97) - math.sqrt(80)))
    assert metrics.hd95(a, b, (1.0, 1.0)) == pytest.approx(expected)
    assert metrics.hd95(b, a, (1.0, 1.0)) == pytest.approx(expected)


def test_hd95_parallel_lines_anisotropic():
    a = np.zeros((16, 16), bool)
    b = np.zeros((16, 16), bool)
    a[5, 2:13] = True
    b[8, 2:13] = True
    assert metrics.hd95(a, b, (1.5, 1.0)) == pytest.approx(4.5)
    assert metrics.hd95(a.T, b.T, (1.0, 1.5)) == pytest.approx(4.5)


def test_hd95_concentric_disks_close_to_radius_difference():
    a, b = disk((64, 64), (32, 32), 15), disk((64, 64), (32, 32), 10)
    assert metrics.hd95(a, b, (1.0, 1.0)) == pytest.approx(5.0, abs=1.0)
    assert metrics.hd95(a, b, (2.0, 2.0)) == pytest.approx(2 * metrics.hd95(a, b, (1.0, 1.0)))


def brute_force_hd95(a, b, spacing):
    sa, sb = metrics.surface(a), metrics.surface(b)
    pa = np.argwhere(sa) * np.asarray(spacing)
    pb = np.argwhere(sb) * np.asarray(spacing)
    d = cdist(pa, pb)
    return np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95)


@pytest.mark.parametrize("shape,spacing", [((40, 36), (1.3, 0.7)), ((20, 18, 9), (1.0, 1.2, 5.0))])
def test_hd95_equals_brute_force_pairwise(shape, spacing):
    rng = np.random.default_rng(0)
    from scipy import ndimage

    a = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    b = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    assert a.any() and b.any()
    assert metrics.hd95(a, b, spacing) == pytest.approx(brute_force_hd95(a, b, spacing))


def test_surface_is_xor_of_connectivity1_erosion():
    a = square((10, 10), (2, 2), (7, 7))  # 5x5: ring of 16 voxels
    assert metrics.surface(a).sum() == 16
    assert not metrics.surface(a)[4, 4]


def test_bad_spacing_and_shapes_raise():
    a = square((10, 10), (2, 2), (7, 7))
    with pytest.raises(GSMorphError, match="spacing"):
        metrics.hd95(a, a, (1.0,))
    with pytest.raises(GSMorphError, match="shapes"):
        metrics.dice(a, a[:5])


# ---------------------------------------------------------------- Jacobian
def quadratic_fold_field(n=32, c=-0.125):
    """u_0 = c x'^2 / 2 with x' = x_0 - n/2: det = 1 + c x' inside (central differences
    exact for quadratics), so det < 0 for x' > 8 and det == 0 exactly at x' = 8."""
    x = np.arange(n) - n // 2
    u0 = (c / 2) * x.astype(float) ** 2
    disp = np.zeros((2, n, n))
    disp[0] = u0[:, None]
    return disp, x


def test_njd_known_folded_region_2d():
    disp, x = quadratic_fold_field()
    det = metrics.jacobian_determinant(disp)
    inside = (x > -16) & (x < 15)
    assert np.allclose(det[inside, 0], 1 - 0.125 * x[inside])
    assert det[x == 8, 0][0] == 0.0  # zero, not counted as folding
    # folded rows x' = 9..15 (the last one by a one-sided difference): 7 of 32
    assert metrics.njd_percent(disp) == pytest.approx(100 * 7 / 32)


def test_njd_known_folded_region_3d_along_last_axis():
    disp2, x = quadratic_fold_field(n=16, c=-0.25)  # det = 1 - 0.25 x': folded for x' = 5..7
    disp = np.zeros((3, 4, 5, 16))
    disp[2] = disp2[0][:, 0][None, None, :]
    assert metrics.njd_percent(disp) == pytest.approx(100 * 3 / 16)


def test_jacobian_of_affine_field_is_constant_det():
    rng = np.random.default_rng(1)
    A = rng.normal(0, 0.2, (3, 3))
    grid = np.indices((6, 7, 8)).astype(float)
    disp = np.einsum("ij,j...->i...", A, grid)
    det = metrics.jacobian_determinant(disp)
    assert np.allclose(det, np.linalg.det(np.eye(3) + A))
    batch = metrics.jacobian_determinant_batch(np.stack([disp, -disp]))
    assert np.allclose(batch[1], np.linalg.det(np.eye(3) - A))


def test_identity_has_no_folding_and_sdlogj_zero():
    disp = np.zeros((2, 10, 12))
    assert metrics.njd_percent(disp) == 0.0
    assert metrics.sdlogj(disp) == 0.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_sdlogj_of_pure_scaling_is_zero(ndim):
    grid = np.indices((9,) * ndim).astype(float)
    disp = 0.3 * (grid - 4)  # phi(x) = 1.3 x about the centre: det = 1.3^ndim everywhere
    assert np.allclose(metrics.jacobian_determinant(disp), 1.3 ** ndim)
    assert metrics.sdlogj(disp) == pytest.approx(0.0, abs=1e-12)
    assert metrics.njd_percent(disp) == 0.0


def test_sdlogj_is_the_spread_over_the_unfolded_voxels():
    # u_0 along rows with steps -0.5 (rows 0-5), +1 (5-10), -3 (10-19); u_1 = 0, so det J
    # per row = 1 + numpy.gradient: 0.5 (rows 0-4), 1.25 (row 5), 2 (rows 6-9), 0 (row 10),
    # -2 (rows 11-19: folded). SDlogJ is the spread of log det J over the 10 rows with det > 0.
    steps = np.array([-0.5] * 5 + [1.0] * 5 + [-3.0] * 9)
    u0 = np.concatenate([[0.0], np.cumsum(steps)])
    disp = np.zeros((2, 20, 7))
    disp[0] = u0[:, None]
    expected = np.std(np.log([0.5] * 5 + [1.25] + [2.0] * 4))
    assert metrics.sdlogj(disp) == pytest.approx(expected, rel=1e-12)
    assert metrics.njd_percent(disp) == pytest.approx(100 * 9 / 20)
    assert metrics.sdlogj_batch(np.stack([disp, np.zeros_like(disp)])) == pytest.approx([expected, 0.0])
    fully_folded = np.zeros((2, 6, 6))
    fully_folded[0] = -3.0 * np.arange(6)[:, None]  # det = -2 everywhere
    assert math.isnan(metrics.sdlogj(fully_folded))


def test_jacobian_bad_shape_raises():
    with pytest.raises(GSMorphError, match="shape"):
        metrics.jacobian_determinant(np.zeros((3, 8, 8)))
    with pytest.raises(GSMorphError, match="2 or more"):
        metrics.jacobian_determinant(np.zeros((3, 8, 8, 1)))


# ---------------------------------------------------------------- MSE, EPE
def test_mse_hand_case():
    assert metrics.mse(np.array([[0.0, 1.0], [0.5, 0.5]]), np.zeros((2, 2))) == pytest.approx((1 + 0.25 + 0.25) / 4)


def test_epe_true_field_is_zero_and_offsets_in_mm():
    rng = np.random.default_rng(2)
    true = rng.normal(size=(2, 8, 9))
    assert metrics.epe_mm(true, true, (1.5, 2.0)) == 0.0
    off = true.copy()
    off[0] += 1.0
    assert metrics.epe_mm(off, true, (2.0, 3.0)) == pytest.approx(2.0)
    off[1] += 1.0
    assert metrics.epe_mm(off, true, (2.0, 3.0)) == pytest.approx(math.sqrt(13))
    mask = np.zeros((8, 9), bool)
    mask[2:4, 2:4] = True
    half = true.copy()
    half[1][mask] += 2.0
    assert metrics.epe_mm(half, true, (1.0, 1.0), mask=mask) == pytest.approx(2.0)
    assert metrics.epe_mm(half, true, (1.0, 1.0)) == pytest.approx(2.0 * 4 / 72)
    assert math.isnan(metrics.epe_mm(half, true, (1.0, 1.0), mask=np.zeros((8, 9), bool)))
