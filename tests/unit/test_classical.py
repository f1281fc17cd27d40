"""Demons (SimpleITK), SyN (ANTsPy) and Initial on cases with known answers.

The displacement convention: u (ndim, *S) in voxels, channel i along array axis i,
moved(x) = moving(x + u(x)). If moving is fixed shifted by +s voxels along an axis
(moving[y] = fixed[y - s]), then moving(x + s) = fixed(x): u = +s on that axis.
"""
from __future__ import annotations

import numpy as np
import pytest

from baselines import classical
from baselines.registration import register_pair
from baselines.identity import identity
from gsmorph.errors import GSMorphError

SPACING = (1.5, 0.8)  # anisotropic on purpose: conversions divide by the right axis
DEMONS = {"iterations": 100, "smoothing_sigma": 1.5, "variant": "diffeomorphic", "histogram_matching": False}
# Mean squares for the affine stage: right for one modality, and deterministic in a
# multi-threaded process (the Mattes metric is reproducible only single-threaded).
SYN = {"type_of_transform": "SyN", "reg_iterations": [40, 20, 0], "aff_iterations": [200, 100, 50, 10],
       "aff_metric": "meansquares"}


def texture(shape=(64, 64)) -> np.ndarray:
    """Smooth periodic random texture in [0, 1] (periodic, so np.roll only shifts it)."""
    from scipy import ndimage

    noise = np.random.default_rng(3).random(shape)
    img = ndimage.gaussian_filter(noise, 2.0, mode="wrap")
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def heart(shape=(64, 64)):
    """Labels (LV disk, Myo ring, RV crescent) and a smooth image made from them."""
    from scipy import ndimage

    x, y = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r_lv = np.hypot(x - 32, y - 34)
    r_rv = np.hypot((x - 30) / 1.3, y - 20)
    label = np.zeros(shape, np.uint8)
    label[(r_rv < 11) & (r_lv >= 13)] = 3
    label[r_lv < 13] = 2
    label[r_lv < 8] = 1
    intensity = np.array([0.15, 0.9, 0.35, 0.75], np.float32)[label]
    image = ndimage.gaussian_filter(intensity, 1.0).astype(np.float32)
    return image, label


def smooth_field(shape=(64, 64)) -> np.ndarray:
    """A smooth in-plane deformation (voxels, at most about 2.5): contraction toward the
    LV centre plus a gentle sinusoidal shear; zero far from the heart."""
    x, y = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    weight = np.exp(-((x - 32) ** 2 + (y - 34) ** 2) / (2 * 14.0 ** 2))
    u = np.stack([0.12 * (x - 32) * weight + 1.0 * np.sin(y / 10.0) * weight,
                  0.12 * (y - 34) * weight])
    return u.astype(np.float32)


def centre_mean(disp: np.ndarray, half: int = 8) -> np.ndarray:
    c = [n // 2 for n in disp.shape[1:]]
    region = (slice(None),) + tuple(slice(k - half, k + half) for k in c)
    return disp[region].reshape(disp.shape[0], -1).mean(axis=1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def mean_dice(moved: np.ndarray, fixed: np.ndarray) -> float:
    return float(np.mean([dice(moved == k, fixed == k) for k in (1, 2, 3)]))


def register(method: str, moving, fixed, spacing=SPACING) -> np.ndarray:
    if method == "demons":
        return classical.demons(moving, fixed, spacing, DEMONS)
    return classical.syn(moving, fixed, spacing, SYN, seed=0)


# ------------------------------------------------------------------ known integer shifts


@pytest.mark.parametrize("method", ["demons", "syn"])
@pytest.mark.parametrize("axis", [0, 1])
def test_known_shift_gives_right_channel_sign_and_size(method, axis):
    fixed = texture()
    shift = 3
    moving = np.roll(fixed, shift, axis=axis)
    disp = register(method, moving, fixed)
    assert disp.shape == (2, 64, 64) and disp.dtype == np.float32
    centre = centre_mean(disp)
    assert centre[axis] == pytest.approx(shift, abs=0.15)
    assert abs(centre[1 - axis]) < 0.1
    # and the warped moving image matches the fixed one near the centre
    moved = classical.warp(moving, disp, order=1)
    inner = (slice(16, 48), slice(16, 48))
    err_before = np.mean((moving - fixed)[inner] ** 2)
    assert np.mean((moved - fixed)[inner] ** 2) < 0.1 * err_before


@pytest.mark.parametrize("method", ["demons", "syn"])
def test_negative_shift_gives_negative_displacement(method):
    fixed = texture()
    moving = np.roll(fixed, -2, axis=1)
    centre = centre_mean(register(method, moving, fixed))
    assert centre[1] == pytest.approx(-2, abs=0.15)
    assert abs(centre[0]) < 0.1


def texture_3d(shape=(32, 28, 12)) -> np.ndarray:
    from scipy import ndimage

    noise = np.random.default_rng(4).random(shape)
    img = ndimage.gaussian_filter(noise, 2.0, mode="wrap")
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


@pytest.mark.parametrize("method,axis", [("demons", 0), ("demons", 2), ("syn", 2)])
def test_known_shift_in_3d_with_anisotropic_spacing(method, axis):
    """Volumes: the slice axis (last, 3 mm) comes out as channel 2, in voxels."""
    fixed = texture_3d()
    moving = np.roll(fixed, 2, axis=axis)
    spacing = (1.2, 0.9, 3.0)
    if method == "demons":
        disp = classical.demons(moving, fixed, spacing, DEMONS)
    else:
        disp = classical.syn(moving, fixed, spacing, SYN, seed=0)
    assert disp.shape == (3, 32, 28, 12)
    centre = disp[:, 10:22, 8:20, 3:9].reshape(3, -1).mean(axis=1)
    assert centre[axis] == pytest.approx(2, abs=0.15)
    assert np.all(np.abs(np.delete(centre, axis)) < 0.1)


# ------------------------------------------- our conversion agrees with the libraries' own warp


def test_demons_field_conversion_matches_simpleitk_resample():
    import SimpleITK as sitk

    fixed = texture()
    moving = np.roll(fixed, (2, -1), axis=(0, 1))
    reg = sitk.DiffeomorphicDemonsRegistrationFilter()
    reg.SetNumberOfIterations(50)
    reg.SetStandardDeviations(1.5)
    fixed_img, moving_img = classical.to_sitk(fixed, SPACING), classical.to_sitk(moving, SPACING)
    field = reg.Execute(fixed_img, moving_img)
    disp = classical.sitk_field_to_disp(field, SPACING)
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    theirs = sitk.GetArrayFromImage(sitk.Resample(moving_img, fixed_img, transform, sitk.sitkLinear, 0.0)).T
    ours = classical.warp(moving, disp, order=1)
    assert np.abs(disp).max() > 1.0  # a real deformation, not a trivial agreement
    np.testing.assert_allclose(ours[8:-8, 8:-8], theirs[8:-8, 8:-8], atol=1e-5)


def test_syn_field_conversion_matches_ants_apply_transforms(tmp_path):
    import ants

    fixed = texture()
    moving = np.roll(fixed, (-2, 2), axis=(0, 1))
    fixed_img = ants.from_numpy(fixed, spacing=SPACING)
    moving_img = ants.from_numpy(moving, spacing=SPACING)
    result = ants.registration(fixed_img, moving_img, type_of_transform="SyN", outprefix=str(tmp_path / "r_"),
                               reg_iterations=(40, 20, 0), aff_iterations=(200, 100, 50, 10))
    composed = ants.apply_transforms(fixed_img, moving_img, result["fwdtransforms"], compose=str(tmp_path / "c_"))
    disp = classical.ants_field_to_disp(ants.image_read(composed), SPACING)
    theirs = result["warpedmovout"].numpy()
    ours = classical.warp(moving, disp, order=1)
    assert np.abs(disp).max() > 1.0
    np.testing.assert_allclose(ours[8:-8, 8:-8], theirs[8:-8, 8:-8], atol=1e-4)


def _field_3d():
    """A smooth 3D field (voxels) on a non-cubic grid with an anisotropic spacing."""
    shape, spacing = (20, 16, 6), (1.25, 0.75, 4.0)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    disp = np.stack([1.5 * np.sin(y / 5.0), -1.0 * np.cos(x / 6.0), 0.4 * np.sin(x / 7.0 + y / 9.0)])
    rng = np.random.default_rng(0)
    from scipy import ndimage

    moving = ndimage.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
    return moving, disp.astype(np.float32), spacing


def test_3d_field_conversion_round_trip_through_simpleitk():
    import SimpleITK as sitk

    moving, disp, spacing = _field_3d()
    mm = disp * np.asarray(spacing).reshape(3, 1, 1, 1)
    # an ITK displacement image: index axis i = array axis i, component i along it, in mm
    field = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(mm, 0, -1).transpose(2, 1, 0, 3)), isVector=True)
    field.SetSpacing(spacing)
    np.testing.assert_allclose(classical.sitk_field_to_disp(field, spacing), disp, atol=1e-5)
    moving_img = classical.to_sitk(moving, spacing)
    transform = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    theirs = sitk.GetArrayFromImage(sitk.Resample(moving_img, moving_img, transform, sitk.sitkLinear, 0.0)).T
    ours = classical.warp(moving, disp, order=1)
    inside = np.all([(c + d >= 0) & (c + d <= n - 1) for c, d, n in
                     zip(np.indices(moving.shape), disp, moving.shape)], axis=0)
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-5)


def test_3d_field_conversion_round_trip_through_ants(tmp_path):
    import ants

    moving, disp, spacing = _field_3d()
    mm = disp * np.asarray(spacing).reshape(3, 1, 1, 1)
    field = ants.from_numpy(np.moveaxis(mm, 0, -1).astype(np.float32), spacing=spacing, has_components=True)
    path = str(tmp_path / "field.nii.gz")
    ants.image_write(field, path)
    np.testing.assert_allclose(classical.ants_field_to_disp(ants.image_read(path), spacing), disp, atol=1e-5)
    moving_img = ants.from_numpy(moving, spacing=spacing)
    theirs = ants.apply_transforms(moving_img, moving_img, [path]).numpy()
    ours = classical.warp(moving, disp, order=1)
    inside = np.all([(c + d >= 0) & (c + d <= n - 1) for c, d, n in
                     zip(np.indices(moving.shape), disp, moving.shape)], axis=0)
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-4)


# ------------------------------------------------- a known smooth warp, better than identity


@pytest.mark.parametrize("method", ["demons", "syn"])
def test_recovers_known_smooth_warp_better_than_identity(method):
    moving, moving_label = heart()
    u_true = smooth_field()
    fixed = classical.warp(moving, u_true, order=1)  # moving(x + u_true(x)) = fixed(x)
    fixed_label = classical.warp(moving_label, u_true, order=0)
    disp = register(method, moving, fixed)
    moved_label = classical.warp(moving_label, disp, order=0)

    dice_before, dice_after = mean_dice(moving_label, fixed_label), mean_dice(moved_label, fixed_label)
    heart_mask = fixed_label > 0
    mm = np.asarray(SPACING).reshape(2, 1, 1)
    epe_identity = np.linalg.norm(u_true * mm, axis=0)[heart_mask].mean()
    epe = np.linalg.norm((disp - u_true) * mm, axis=0)[heart_mask].mean()
    assert dice_before < 0.9  # the warp is large enough to matter
    assert dice_after > dice_before + 0.03
    assert epe < 0.6 * epe_identity


# ----------------------------------------------------------------------- initial (identity)


def test_identity_gives_zero_displacement():
    moving, _ = heart((24, 20))
    disp = identity(moving, moving)
    assert disp.shape == (2, 24, 20) and disp.dtype == np.float32 and not disp.any()
    assert identity(np.zeros((5, 6, 3)), np.zeros((5, 6, 3))).shape == (3, 5, 6, 3)
    with pytest.raises(GSMorphError, match="one shape"):
        identity(np.zeros((5, 6)), np.zeros((6, 5)))


def test_initial_pair_keeps_moving_image_and_labels():
    moving, label = heart((32, 28))
    fixed = np.roll(moving, 2, axis=0)
    disp, moved, moved_label, runtime = register_pair("initial", {}, 0, "s1", 3, moving, fixed, label,
                                                      np.array(SPACING))
    assert not disp.any()
    np.testing.assert_array_equal(moved, moving)
    np.testing.assert_array_equal(moved_label, label)
    assert moved_label.dtype == np.uint8 and runtime >= 0


def test_registered_pair_is_consistent_with_its_displacement():
    moving, label = heart()
    fixed = classical.warp(moving, smooth_field(), order=1)
    disp, moved, moved_label, runtime = register_pair("demons", DEMONS, 0, "s1", 0, moving, fixed, label,
                                                      np.array(SPACING))
    np.testing.assert_array_equal(moved, classical.warp(moving, disp, order=1))
    np.testing.assert_array_equal(moved_label, classical.warp(label, disp, order=0))
    assert set(np.unique(moved_label)) <= {0, 1, 2, 3} and runtime > 0


# ------------------------------------------------------------------------------ bad input


def test_warp_and_demons_reject_bad_input():
    import SimpleITK as sitk

    img = texture((16, 16))
    with pytest.raises(GSMorphError, match="does not fit"):
        classical.warp(img, np.zeros((2, 16, 15), np.float32), order=1)
    with pytest.raises(GSMorphError, match="demons.variant"):
        classical.demons(img, img, (1.0, 1.0), {**DEMONS, "variant": "thirion"})
    with pytest.raises(GSMorphError, match="one shape"):
        classical.demons(img, img[:8], (1.0, 1.0), DEMONS)
    with pytest.raises(GSMorphError, match="positive"):
        classical.syn(img, img, (1.0, 0.0), SYN)
    with pytest.raises(GSMorphError, match="components"):
        classical.sitk_field_to_disp(classical.to_sitk(img, (1.0, 1.0)), (1.0, 1.0))
    field = sitk.GetImageFromArray(np.zeros((16, 16, 2)), isVector=True)
    with pytest.raises(GSMorphError, match="spacing"):
        classical.sitk_field_to_disp(field, (1.0, 1.0, 1.0))
    import ants

    with pytest.raises(GSMorphError, match="components"):
        classical.ants_field_to_disp(ants.from_numpy(img), (1.0, 1.0))


def test_syn_reports_a_bad_transform_type():
    img = texture((16, 16))
    with pytest.raises(GSMorphError, match="ANTs registration failed"):
        classical.syn(img, img, (1.0, 1.0), {**SYN, "type_of_transform": "NoSuchTransform"})


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 6)])
def test_the_classical_warper_equals_the_learned_one_on_random_fields(shape):
    """Evaluation sees classical methods' moved images and labels warped by scipy
    (classical.warp) and learned ones' by MONAI (gsmorph.networks): both sample the moving
    array at x + u(x), linear for images and nearest for labels, border values outside."""
    import torch

    from gsmorph.networks import warp_image, warp_label

    rng = np.random.default_rng(3)
    image = rng.random(shape).astype(np.float32)
    labels = rng.integers(0, 4, size=shape).astype(np.uint8)
    disp = (rng.normal(size=(len(shape), *shape)) * 2.5).astype(np.float32)  # reaches past the border too
    as_batch = lambda a, dtype=torch.float32: torch.from_numpy(a)[None, None].to(dtype)  # noqa: E731
    monai_image = warp_image(as_batch(image), torch.from_numpy(disp)[None])[0, 0].numpy()
    np.testing.assert_allclose(classical.warp(image, disp, order=1), monai_image, atol=2e-5)
    monai_labels = warp_label(as_batch(labels, torch.uint8), torch.from_numpy(disp)[None])[0, 0].numpy()
    # nearest neighbour: identical except where a coordinate sits within float error of a .5 tie
    agree = classical.warp(labels, disp, order=0) == monai_labels
    frac = (disp - np.floor(disp)).reshape(len(shape), -1)
    near_tie = (np.abs(frac - 0.5) < 1e-4).any(axis=0).reshape(shape)
    assert agree[~near_tie].all()
