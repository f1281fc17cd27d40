"""Gradient surgery: every mode against hand-computed vectors, the engine against `combine`."""
from fractions import Fraction

import pytest
import torch

from gsmorph import aggregators
from gsmorph.losses import GradientL1Loss
from gsmorph.networks import build, warp_image
from gsmorph.surgery import MODES, ConflictTracker, GradientSurgery, combine, module_groups


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def assert_list_close(got, want, atol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            torch.testing.assert_close(g, torch.as_tensor(w, dtype=g.dtype), atol=atol, rtol=0)


# three tensors: conflicting, agreeing, and one without smoothness gradient
G_SIM = [t(1, 0), t(1, 1), t(2, 0)]
G_REG = [t(-1, 1), t(0.5, 0), t(0, 0)]


def test_layerwise_by_hand():
    # tensor 0: <s,r> = -1, |r|^2 = 2 -> s + 0.5 r = (0.5, 0.5); tensor 1: <s,r> = 0.5 >= 0 keeps s;
    # tensor 2: zero smoothness gradient keeps s
    assert_list_close(combine(G_SIM, G_REG, "layerwise"), [[0.5, 0.5], [1, 1], [2, 0]])


def test_network_by_hand():
    # one group: <s,r> = -1 + 0.5 = -0.5, |r|^2 = 2.25 -> s + (2/9) r
    c = Fraction(2, 9)
    want = [[1 - c, c], [1 + c / 2, 1], [2, 0]]
    assert_list_close(combine(G_SIM, G_REG, "network"), [[float(x) for x in w] for w in want])


def test_module_by_hand():
    # groups {0} and {1, 2}: group 0 as layerwise; group {1,2}: <s,r> = 0.5 >= 0 keeps s
    assert_list_close(combine(G_SIM, G_REG, "module", groups=[[0], [1, 2]]), [[0.5, 0.5], [1, 1], [2, 0]])
    # groups {0, 1} and {2}: as in the network case for the first two tensors
    c = 2 / 9
    assert_list_close(combine(G_SIM, G_REG, "module", groups=[[0, 1], [2]]),
                      [[1 - c, c], [1 + c / 2, 1], [2, 0]])


def test_agr_by_hand():
    s = [t(1, -2, 3, 0, -1), t(4, -5)]
    r = [t(1, 2, -3, 5, -2), t(0, 0)]
    # signs agree only at 0, 3 (both 0 -> s is 0 there) and 4; a zero g_reg keeps g_sim
    assert_list_close(combine(s, r, "agr"), [[1, 0, 0, 0, -1], [4, -5]])


def test_weighted_by_hand():
    assert_list_close(combine(G_SIM, G_REG, "weighted", lam=0.5), [[0.5, 0.5], [1.25, 1], [2, 0]])


def test_non_conflicting_and_orthogonal_keep_g_sim():
    s, r = [t(1, 0), t(3, 4)], [t(0, 1), t(1, 1)]  # <s,r> == 0 and > 0
    for mode in ("layerwise", "network", "module"):
        groups = [[0], [1]] if mode == "module" else None
        assert_list_close(combine(s, r, mode, groups=groups), [[1, 0], [3, 4]])


def test_zero_norm_threshold_is_relative():
    s = [t(1, 0)]
    # |r|^2 = 2e-14 <= 1e-12 |s|^2: rounding noise, keep s although <s,r> < 0
    assert_list_close(combine(s, [t(-1e-7, 1e-7)], "layerwise"), [[1, 0]])
    # |r|^2 = 2e-10 > 1e-12 |s|^2: a real gradient, projected (direction as for (-1, 1))
    assert_list_close(combine(s, [t(-1e-5, 1e-5)], "layerwise"), [[0.5, 0.5]], atol=1e-9)
    # both zero: keep (zero) s; the same rule for a larger s scale
    assert_list_close(combine([t(0, 0)], [t(0, 0)], "layerwise"), [[0, 0]])
    assert_list_close(combine([t(1e6, 0)], [t(-1e-1, 1e-1)], "layerwise"), [[1e6, 0]])


def test_missing_gradients():
    s, r = [None, None, t(1, 0)], [None, t(1, 1), None]
    # None where neither exists; zeros where only the smoothness gradient exists
    assert_list_close(combine(s, r, "layerwise"), [None, [0, 0], [1, 0]])
    assert_list_close(combine(s, r, "weighted", lam=2.0), [None, [2, 2], [1, 0]])


def test_smoothness_gradient_never_added():
    # with no conflict the update is exactly g_sim, not g_sim + anything
    out = combine([t(1, 2)], [t(3, 4)], "layerwise")
    assert torch.equal(out[0], t(1, 2))


def test_combine_does_not_modify_its_inputs():
    s, r = [x.clone() for x in G_SIM], [x.clone() for x in G_REG]
    for mode in ("layerwise", "network", "agr"):
        combine(s, r, mode)
    assert all(torch.equal(a, b) for a, b in zip(s + r, G_SIM + G_REG))


def test_layerwise_update_never_opposes_smoothness():
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (8,), (2, 8, 3, 3), (2,), (5,)]
    for _ in range(20):
        s = [torch.randn(sh, generator=gen, dtype=torch.float64) for sh in shapes]
        r = [torch.randn(sh, generator=gen, dtype=torch.float64) for sh in shapes]
        out = combine(s, r, "layerwise")
        for u, gs, gr in zip(out, s, r):
            dot = torch.vdot(u.flatten(), gr.flatten())
            assert dot >= -1e-12 * gr.norm() * gs.norm()
            if torch.vdot(gs.flatten(), gr.flatten()) < 0:  # projected: orthogonal to g_reg
                assert abs(dot) <= 1e-12 * gr.norm() * gs.norm()
        # network mode: the whole update does not oppose the whole smoothness gradient
        net = combine(s, r, "network")
        assert sum(torch.vdot(u.flatten(), gr.flatten()) for u, gr in zip(net, r)) >= -1e-10


def small_net(seed=0):
    torch.manual_seed(seed)
    return build("voxelmorph", 2, features=[4, 8, 8], norm=None)


def batch(seed=1, size=16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 2, size, size, generator=gen)
    return x


def losses(net, x):
    """(similarity, smoothness) of a real registration step: MSE of the warp, l1 gradient."""
    disp = net(x)
    sim = ((warp_image(x[:, :1], disp) - x[:, 1:]) ** 2).mean()
    return sim, GradientL1Loss()(disp)


def separate_grads(net, x):
    sim, reg = losses(net, x)
    params = list(net.parameters())
    return (list(torch.autograd.grad(sim, params, retain_graph=True)),
            list(torch.autograd.grad(reg, params)))


def test_float_noise_bias_of_flow_head_keeps_g_sim():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    g_sim, g_reg = separate_grads(net, batch())
    i = names.index("backbone.unet.net.1.final_conv_out.bias")
    s, r = g_sim[i], g_reg[i]
    # a constant shift of the field leaves the smoothness loss unchanged: its bias gradient is
    # zero analytically, but float rounding leaves a tiny noise of random sign
    assert 0 < r.square().sum() <= 1e-12 * s.square().sum()
    assert torch.equal(combine(g_sim, g_reg, "layerwise")[i], s)
    # force that noise into conflict: a naive projection (eps = 0) removes the component of
    # g_sim along a random direction (coefficient <s,r>/|r|^2 huge), the threshold keeps g_sim
    flipped = list(g_reg)
    flipped[i] = -r if torch.vdot(s, r) > 0 else r
    assert abs(torch.vdot(s, r)) / r.square().sum() > 1e5
    naive = combine(g_sim, flipped, "layerwise", eps=0.0)[i]
    assert (naive - s).norm() > 0.1 * s.norm()
    assert torch.equal(combine(g_sim, flipped, "layerwise")[i], s)


@pytest.mark.parametrize("mode", ["layerwise", "module", "network", "agr"])
def test_engine_equals_combine_of_separate_gradients(mode):
    net, x = small_net(), batch()
    g_sim, g_reg = separate_grads(net, x)
    groups = module_groups([n for n, _ in net.named_parameters()]) if mode == "module" else None
    want = combine(g_sim, g_reg, mode, groups=groups)
    surgery = GradientSurgery(net, mode=mode)
    stats = surgery.backward(*losses(net, x))
    for p, w in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-5, atol=1e-9)
    n_groups = {"network": 1, "module": len(groups or [])}.get(mode, len(g_sim))
    assert stats.cosine.shape == stats.conflict.shape == (1, n_groups)
    assert len(stats.names) == n_groups


def test_engine_weighted_is_one_backward_of_the_weighted_loss():
    net, x = small_net(), batch()
    sim, reg = losses(net, x)
    want = torch.autograd.grad(sim + 0.3 * reg, list(net.parameters()))
    surgery = GradientSurgery(net, mode="weighted", lam=0.3)
    stats = surgery.backward(*losses(net, x))
    assert stats.cosine is None
    for p, w in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, w)


def test_batched_vjp_gives_the_same_update():
    x = batch()
    grads = []
    for batched in (False, True):
        net = small_net()
        GradientSurgery(net, batched_vjp=batched).backward(*losses(net, x))
        grads.append([p.grad for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def linear_losses(w, *vectors):
    """Scalar losses <v, w>: their gradients with respect to w are exactly the vectors."""
    return [torch.dot(torch.tensor(v, dtype=w.dtype), w) for v in vectors]


def test_several_aux_losses_are_projected_in_turn():
    s, a1, a2 = (1.0, 0.0), (-1.0, 1.0), (0.0, -1.0)
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    # a1 first: (1,0) -> (0.5,0.5); then <(0.5,0.5),(0,-1)> < 0 -> (0.5, 0)
    stats = GradientSurgery([w]).backward(*linear_losses(w, s, a1, a2))
    torch.testing.assert_close(w.grad, t(0.5, 0.0))
    assert stats.conflict.tolist() == [[True], [True]]
    # a2 first: <(1,0),(0,-1)> = 0 keeps s; then a1 -> (0.5, 0.5)
    w.grad = None
    stats = GradientSurgery([w]).backward(*linear_losses(w, s, a2, a1))
    torch.testing.assert_close(w.grad, t(0.5, 0.5))
    assert stats.conflict.tolist() == [[False], [True]]
    torch.testing.assert_close(stats.cosine[1], t(-0.5 ** 0.5))


def test_stats_and_tracker():
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    v = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    surgery = GradientSurgery([w, v])
    tracker = ConflictTracker()
    for s_v, r_v in [(1.0, -1.0), (1.0, 2.0)]:  # v conflicts in step 1 only
        w.grad = v.grad = None
        sim = torch.dot(t(1, 0), w) + s_v * v.sum()
        reg = torch.dot(t(-1, 1), w) + r_v * v.sum()
        stats = surgery.backward(sim, reg)
        tracker.add(stats)
    assert stats.names == ["param0", "param1"]
    rows = tracker.rows(epoch=3)
    assert [r["group"] for r in rows] == ["param0", "param1"]
    assert rows[0]["n_steps"] == 2 and rows[0]["epoch"] == 3
    assert rows[0]["conflict_frac"] == pytest.approx(1.0)
    assert rows[0]["cosine_mean"] == pytest.approx(-(0.5 ** 0.5))
    assert rows[1]["conflict_frac"] == pytest.approx(0.5)
    assert rows[1]["cosine_mean"] == pytest.approx(0.0)  # (-1 + 1) / 2
    assert tracker.rows(epoch=4) == []  # reset after reading


def test_cosine_of_tiny_float32_gradients():
    # |s|^2 |r|^2 = 1e-51 underflows in float32; the cosine must still be 1 / sqrt(10)
    w = torch.nn.Parameter(torch.zeros(2))
    s, r = torch.tensor([1e-13, 2e-13]), torch.tensor([-1e-13, 1e-13])
    stats = GradientSurgery([w]).backward(torch.dot(s, w), torch.dot(r, w))
    assert stats.cosine.item() == pytest.approx(10 ** -0.5, rel=1e-5)


def test_grad_accumulates_and_unused_parameters_stay_none():
    used = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    unused = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    surgery = GradientSurgery([used, unused])
    surgery.backward(*linear_losses(used, (1.0, 0.0), (1.0, 1.0)))
    assert unused.grad is None
    surgery.backward(*linear_losses(used, (1.0, 0.0), (1.0, 1.0)))
    torch.testing.assert_close(used.grad, t(2.0, 0.0))


def test_module_groups_by_owner():
    names = ["enc.0.weight", "enc.0.bias", "enc.1.weight", "head.weight", "head.bias", "scale"]
    assert module_groups(names) == [[0, 1], [2], [3, 4], [5]]
    net = small_net()
    surgery = GradientSurgery(net, mode="module")
    assert "backbone.unet.net.1.final_conv_out" in surgery.group_names


def test_bad_input():
    with pytest.raises(ValueError, match="unknown surgery mode"):
        combine(G_SIM, G_REG, "gs-pcgrad")  # a method id, not a mode
    with pytest.raises(ValueError, match="needs lam"):
        combine(G_SIM, G_REG, "weighted")
    with pytest.raises(ValueError, match="needs `groups`"):
        combine(G_SIM, G_REG, "module")
    with pytest.raises(ValueError, match="in no group"):
        combine(G_SIM, G_REG, "module", groups=[[0, 1]])
    with pytest.raises(ValueError, match="two groups"):
        combine(G_SIM, G_REG, "module", groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="same number"):
        combine(G_SIM, G_REG[:2], "layerwise")
    with pytest.raises(ValueError, match="only used by mode 'module'"):
        combine(G_SIM, G_REG, "layerwise", groups=[[0], [1], [2]])
    w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="needs lam"):
        GradientSurgery([w], mode="weighted")
    with pytest.raises(ValueError, match="at least one auxiliary"):
        GradientSurgery([w]).backward(w.sum())
    with pytest.raises(ValueError, match="no parameters"):
        GradientSurgery([])
    assert set(MODES) == {"layerwise", "module", "network", "agr", "weighted"} | set(aggregators.MODES)
