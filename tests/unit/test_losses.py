"""Losses against hand-computed values on analytic fields."""
import numpy as np
import pytest
import torch

from gsmorph.errors import GSMorphError
from gsmorph.losses import GradientL1Loss, build_losses, similarity_loss, smoothness_loss

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def _ramp(shape, axis, fn=lambda x: x):
    """A (1, 1, *shape) tensor whose value is fn(index along `axis`)."""
    idx = torch.arange(shape[axis], dtype=torch.float32)
    view = [1] * len(shape)
    view[axis] = -1
    return fn(idx).view(1, 1, *view).expand(1, 1, *shape).clone()


def test_l1_gradient_of_linear_field_is_slope_over_ndim():
    # u_0 = 3 x_0, u_1 = 0 on a 4x5 grid: forward differences are 3 along axis 0 in
    # channel 0 and 0 elsewhere. Mean over the 2 channels: 1.5; averaged over the 2
    # directions (0 along axis 1): 0.75.
    ramp = _ramp((4, 5), 0, lambda x: 3 * x)
    field = torch.cat([ramp, torch.zeros_like(ramp)], dim=1)
    assert GradientL1Loss()(field).item() == pytest.approx(0.75)


def test_l1_gradient_matches_explicit_loop_on_random_3d_field():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, 3, 4, 5, 3)).astype(np.float32)
    expected = 0.0
    for axis in (2, 3, 4):
        n = u.shape[axis]
        diffs = [np.abs(np.take(u, i + 1, axis=axis) - np.take(u, i, axis=axis)) for i in range(n - 1)]
        expected += np.mean(np.stack(diffs))
    expected /= 3
    assert GradientL1Loss()(torch.from_numpy(u)).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["l1", "l2", "bending"])
def test_smoothness_of_constant_field_is_zero(name):
    field = torch.full((2, 2, 6, 7), 2.5)
    assert smoothness_loss(name)(field).item() == pytest.approx(0.0, abs=1e-7)


def test_l2_and_bending_on_quadratic_field():
    # u_0 = x_0^2 on 6 rows: central differences 2x at interior rows x = 1..4 give
    # squares 4, 16, 36, 64 (mean 30), averaged with the zero channel: 15.
    # Second differences are 2 everywhere: bending 2^2 / 2 channels = 2.
    quad = _ramp((6, 5), 0, lambda x: x**2)
    field = torch.cat([quad, torch.zeros_like(quad)], dim=1)
    assert smoothness_loss("l2")(field).item() == pytest.approx(15.0)
    assert smoothness_loss("bending")(field).item() == pytest.approx(2.0)


def test_similarities_are_minimal_for_identical_images():
    img = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    other = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    mse = similarity_loss("mse", 2)
    assert mse(img, img).item() == 0.0
    assert mse(img, torch.zeros_like(img)).item() == pytest.approx(float((img**2).mean()))
    lncc = similarity_loss("lncc", 2, lncc_kernel=5)
    assert lncc(img, img).item() == pytest.approx(-1.0, abs=1e-3)
    assert lncc(img, other).item() > -0.5


def test_build_losses_from_config_and_unknown_names():
    sim, reg = build_losses({"similarity": "mse", "smoothness": "l1", "lncc_kernel": 9}, 2)
    assert isinstance(reg, GradientL1Loss)
    with pytest.raises(GSMorphError, match="similarity"):
        similarity_loss("ssim", 2)
    with pytest.raises(GSMorphError, match="smoothness"):
        smoothness_loss("tv")
