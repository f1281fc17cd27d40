"""Backbones (2D/3D, any size), the identity at initialisation, warping by known shifts."""
import pytest
import torch

from gsmorph.networks import RegistrationNet, available, build, integrate, warp_image, warp_label
from gsmorph.networks.voxelmorph import symmetric_channels

SMALL = {
    "voxelmorph": {"features": [4, 8, 8]},
    "transmorph": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [2, 2, 2, 2], "window_size": 4},
}


@pytest.mark.parametrize("name", ["voxelmorph", "transmorph"])
@pytest.mark.parametrize("spatial", [(32, 32), (37, 21), (20, 17, 9)])
def test_backbone_maps_pairs_to_a_field_of_the_same_size(name, spatial):
    torch.manual_seed(0)
    ndim = len(spatial)
    net = build(name, ndim, **SMALL[name])
    b = 2 if ndim == 2 else 1
    disp = net(torch.rand(b, 2, *spatial))
    assert disp.shape == (b, ndim, *spatial)
    # near-zero flow head: the initial field is tiny but not exactly zero
    assert 0 < disp.abs().max() < 1e-2
    # every parameter takes part (no unused Swin merging layer, no dead branch)
    disp.square().sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_paper_presets_build_in_2d():
    net = build("voxelmorph", 2, preset="paper")
    assert net(torch.rand(1, 2, 40, 24)).shape == (1, 2, 40, 24)
    assert net.backbone.multiple == 16  # four poolings
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 9  # 4 down, bottleneck, 4 up; none after the flow head
    ups = [m for m in net.modules() if isinstance(m, torch.nn.Upsample)]
    assert ups and all(m.mode == "bilinear" for m in ups)
    vxm = build("voxelmorph", 2, preset="voxelmorph")
    assert vxm.backbone.multiple == 8 and all(m.mode == "nearest" for m in vxm.modules() if isinstance(m, torch.nn.Upsample))


def test_symmetric_channels():
    assert symmetric_channels([16, 32, 64, 128, 256]) == (16, 32, 32, 64, 64, 128, 128, 256)
    assert symmetric_channels([8, 16]) == (8, 16)
    with pytest.raises(ValueError, match="at least 2"):
        symmetric_channels([8])


def test_transmorph_small_size_matches_the_paper():
    # TransMorph-Small (embed 48, depths 2-2-4-2) has about 12 M parameters in 3D
    net = build("transmorph", 3, preset="small")
    n = sum(p.numel() for p in net.parameters())
    assert 11e6 < n < 13e6


def flow_head(net):
    net = net.backbone
    return net.unet.net[1].final_conv_out if hasattr(net, "unet") else net.head


@pytest.mark.parametrize("name", ["voxelmorph", "transmorph"])
def test_zero_flow_head_gives_the_identity_warp(name):
    torch.manual_seed(0)
    net = build(name, 2, **SMALL[name])
    torch.nn.init.zeros_(flow_head(net).weight)
    moving = torch.rand(2, 1, 24, 28)
    labels = torch.randint(0, 4, (2, 1, 24, 28), dtype=torch.uint8)
    disp = net(torch.cat([moving, torch.rand_like(moving)], dim=1))
    assert torch.count_nonzero(disp) == 0
    torch.testing.assert_close(warp_image(moving, disp), moving, atol=1e-5, rtol=0)
    assert torch.equal(warp_label(labels, disp), labels)


def bump(shape):
    """A smooth, asymmetric test image with distinct values everywhere."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    return sum((i + 1) * g / s for i, (g, s) in enumerate(zip(grids, shape))) + grids[0] * grids[-1] / 100


@pytest.mark.parametrize("axis,shift", [(0, 3), (1, -2)])
def test_integer_shift_2d(axis, shift):
    img = bump((20, 24))[None, None]
    disp = torch.zeros(1, 2, 20, 24)
    disp[:, axis] = shift
    moved = warp_image(img, disp)
    # moved(x) = img(x + u): along `axis`, index i reads i + shift
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    n = img.shape[2 + axis]
    dst[axis] = slice(max(0, -shift), n - max(0, shift))
    src[axis] = slice(max(0, shift), n + min(0, shift))
    torch.testing.assert_close(moved[0, 0][tuple(dst)], img[0, 0][tuple(src)], atol=1e-5, rtol=0)
    labels = (img * 3).long() % 4
    moved_labels = warp_label(labels, disp)
    assert moved_labels.dtype == labels.dtype
    assert torch.equal(moved_labels[0, 0][tuple(dst)], labels[0, 0][tuple(src)])


def test_integer_shift_3d_last_axis():
    img = bump((8, 9, 10))[None, None]
    disp = torch.zeros(1, 3, 8, 9, 10)
    disp[:, 2] = 2
    torch.testing.assert_close(warp_image(img, disp)[..., :8], img[..., 2:], atol=1e-5, rtol=0)
    labels = (img * 2).to(torch.uint8) % 4
    assert torch.equal(warp_label(labels, disp)[..., :8], labels[..., 2:])


def test_integrate_constant_velocity_is_a_translation():
    assert torch.equal(integrate(torch.zeros(1, 2, 8, 8), 7), torch.zeros(1, 2, 8, 8))
    v = torch.zeros(1, 2, 24, 24)
    v[:, 0], v[:, 1] = 1.5, -0.75
    disp = integrate(v, 7)
    # exp of a constant field is the same translation (away from the zero-padded border)
    torch.testing.assert_close(disp[:, :, 4:-4, 4:-4], v[:, :, 4:-4, 4:-4], atol=1e-4, rtol=0)
    assert integrate(v, 0) is v


def test_registry_and_integration_inside_the_model():
    assert sorted(available()) == ["transmorph", "voxelmorph"]
    net = build("voxelmorph", 2, diffeomorphic=True, int_steps=4, **SMALL["voxelmorph"])
    assert isinstance(net, RegistrationNet) and net.int_steps == 4
    x = torch.rand(1, 2, 16, 16)
    disp, velocity = net(x, with_velocity=True)
    assert disp.shape == (1, 2, 16, 16) and torch.equal(velocity, net.backbone(x))
    torch.testing.assert_close(disp, integrate(velocity, 4))
    plain = build("voxelmorph", 2, **SMALL["voxelmorph"])
    assert plain.int_steps == 0 and torch.equal(plain(x, with_velocity=True)[0], plain(x, with_velocity=True)[1])
    with pytest.raises(ValueError, match="unknown backbone 'unet'"):
        build("unet", 2)
    with pytest.raises(ValueError, match="spatial_dims"):
        build("voxelmorph", 4)
    with pytest.raises(ValueError, match="bad keyword"):
        build("voxelmorph", 2, featurez=[8, 16])
    with pytest.raises(ValueError, match="preset"):
        build("transmorph", 2, preset="huge")
    with pytest.raises(ValueError, match="divisible"):
        build("transmorph", 2, embed_dim=10, num_heads=[4, 4, 4, 4])
    with pytest.raises(ValueError, match="window_size"):
        build("transmorph", 2, window_size=[4, 4, 4])
    with pytest.raises(ValueError, match="displacement"):
        warp_image(torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
