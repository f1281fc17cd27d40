"""The flat-buffer surgery engine against a plain per-group reference of each rule.

The reference below follows DESIGN.md ("Gradient surgery, precisely") one group at a time
in float64. The engine sums in another order (rows of 256 elements, then groups) and, for
float32 inputs, in float32, so the two agree up to rounding of those sums only. For the
projection u = s - c r, with c = <s, r> / |r|^2 summed over a group G, a relative error
gamma in the sums gives |du| <= gamma (|s| + (|s_G| / |r_G| + 2 |c|) |r|) element-wise
(Cauchy-Schwarz bounds |<s, r>| by |s_G| |r_G|); `gamma` is 1e-5 for float32 (about 170
ulps) and 1e-12 for float64 (about 4500 ulps), ample for blocked sums of up to 10^4 terms.
Sign agreement (``agr``) selects elements and is exact; ``weighted`` is one multiply-add.
"""
from __future__ import annotations

import math

import pytest
import torch

from gsmorph.surgery import ROW, ZERO_EPS, GradientSurgery, combine, module_groups

GAMMA = {torch.float32: 1e-5, torch.float64: 1e-12}

# weight/bias pairs of varied sizes: 1-element tensors, tensors ending exactly on a row,
# one element past a row, several rows, and an empty one
SHAPES = {
    "enc.0.weight": (8, 2, 3, 3), "enc.0.bias": (8,),
    "enc.1.weight": (ROW,), "enc.1.bias": (1,),
    "mid.weight": (ROW + 1,), "mid.bias": (3,),
    "dec.weight": (16, 8, 3, 3), "dec.bias": (16,),
    "gate.scale": (1,), "skip.weight": (5, 7), "empty.weight": (0, 3),
    "head.weight": (2, 16, 3, 3), "head.bias": (2,),
}
NAMES = list(SHAPES)
SIM_NONE, REG_NONE, BOTH_NONE = NAMES.index("mid.bias"), NAMES.index("gate.scale"), NAMES.index("skip.weight")
ZERO_REG, TINY_REG = NAMES.index("enc.1.bias"), NAMES.index("head.bias")
# groups for mode 'module': by owner, and an arbitrary partition that is not contiguous
CUSTOM_GROUPS = [[0, 7, 12], [1, 2], [3, 4, 5, 6], [8, 9], [10, 11]]
SEEDS = (0, 1, 2, 6, 8, 11)  # the whole network conflicts for seeds 6 and 11 only


def random_gradients(seed: int, dtype, n_aux: int = 1):
    """(g_sim, [g_reg, ...]): correlated random gradients of varied scale, with None entries,
    an exactly zero and a rounding-noise-sized smoothness gradient (both below the guard)."""
    gen = torch.Generator().manual_seed(seed)
    sims, regs = [], [[] for _ in range(n_aux)]
    for i, shape in enumerate(SHAPES.values()):
        scale = 10.0 ** (4 * torch.rand((), generator=gen).item() - 2)
        s = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
        sims.append(s)
        for reg in regs:
            a = 2 * torch.rand((), generator=gen).item() - 1  # -1..1: agreeing or conflicting
            reg.append(a * s + scale * torch.randn(shape, generator=gen, dtype=torch.float64))
    for reg in regs:
        reg[ZERO_REG] = torch.zeros(SHAPES[NAMES[ZERO_REG]], dtype=torch.float64)
        reg[TINY_REG] = -1e-9 * sims[TINY_REG] + 1e-10 * reg[TINY_REG]  # conflicting, |r|^2 ~ 1e-18 |s|^2
    sims[SIM_NONE] = sims[BOTH_NONE] = None
    for reg in regs:
        reg[REG_NONE] = reg[BOTH_NONE] = None

    def cast(ts):
        return [None if t is None else t.to(dtype) for t in ts]
    return cast(sims), [cast(reg) for reg in regs]


def partition(mode: str, n: int, groups=None) -> list[list[int]]:
    return {"layerwise": [[i] for i in range(n)], "agr": [[i] for i in range(n)],
            "network": [list(range(n))], "module": groups}[mode]


def reference(g_sim, g_reg, mode, lam=None, groups=None, eps=ZERO_EPS):
    """(updates, per-group (dot, |s|^2, |r|^2, c), error scale per tensor) in float64.

    The update is None where both gradients are None; a missing gradient counts as zeros.
    """
    n = len(g_sim)
    s = [None if a is None and b is None else (a if a is not None else torch.zeros_like(b)).double()
         for a, b in zip(g_sim, g_reg)]
    r = [None if a is None and b is None else (b if b is not None else torch.zeros_like(a)).double()
         for a, b in zip(g_sim, g_reg)]
    if mode == "weighted":
        return ([None if x is None else x + lam * y for x, y in zip(s, r)], [],
                [None if x is None else x.abs() + abs(lam) * y.abs() for x, y in zip(s, r)])
    out, err, stats = list(s), [None] * n, []
    for members in partition(mode, n, groups):
        m = [i for i in members if s[i] is not None]
        dot = sum(float((s[i] * r[i]).sum()) for i in m)
        ss = sum(float((s[i] * s[i]).sum()) for i in m)
        rr = sum(float((r[i] * r[i]).sum()) for i in m)
        c = dot / rr if rr > eps * ss and dot < 0 else 0.0
        stats.append((dot, ss, rr, c))
        for i in m:
            if mode == "agr":
                out[i] = s[i] if rr <= eps * ss else torch.where(torch.sign(s[i]) == torch.sign(r[i]), s[i], 0.0)
                err[i] = torch.zeros_like(s[i])
            else:
                out[i] = s[i] - c * r[i]
                ratio = math.sqrt(ss / rr) if rr > 0 else 0.0
                err[i] = s[i].abs() + (ratio + 2 * abs(c)) * r[i].abs()
    return out, stats, err


def assert_within(got, want, err, dtype):
    """Element-wise |got - want| <= gamma * err (+ a few float64 ulps)."""
    assert len(got) == len(want)
    for i, (g, w, e) in enumerate(zip(got, want, err)):
        if w is None:
            assert g is None, NAMES[i]
            continue
        assert g is not None and g.shape == w.shape and g.dtype == dtype, NAMES[i]
        bound = GAMMA[dtype] * e + 1e-300
        excess = ((g.double() - w).abs() - bound).max().item() if w.numel() else 0.0
        assert excess <= 0, f"{NAMES[i]}: off by {excess:.3g} beyond the rounding bound"


MODES_GROUPS = [("layerwise", None), ("module", "owner"), ("module", "custom"), ("network", None),
                ("agr", None), ("weighted", None)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode,grouping", MODES_GROUPS)
def test_combine_equals_reference(mode, grouping, dtype):
    groups = {"owner": module_groups(NAMES), "custom": CUSTOM_GROUPS, None: None}[grouping]
    for seed in SEEDS:
        g_sim, (g_reg,) = random_gradients(seed, dtype)
        lam = 0.37 if mode == "weighted" else None
        got = combine(g_sim, g_reg, mode, lam=lam, groups=groups)
        want, _, err = reference(g_sim, g_reg, mode, lam=lam, groups=groups)
        assert_within(got, want, err, dtype)


def test_the_random_cases_cover_both_branches_and_the_guard():
    projected, kept = set(), set()
    for seed in SEEDS:
        g_sim, (g_reg,) = random_gradients(seed, torch.float64)
        for mode in ("layerwise", "network"):
            _, stats, _ = reference(g_sim, g_reg, mode)
            for k, (dot, ss, rr, c) in enumerate(stats):
                (projected if c != 0 else kept).add((mode, k if mode == "layerwise" else 0))
        _, stats, _ = reference(g_sim, g_reg, "layerwise")
        for i in (ZERO_REG, TINY_REG):  # below the guard although <s, r> < 0 for the tiny one
            dot, ss, rr, c = stats[i]
            assert rr <= ZERO_EPS * ss and c == 0
        assert stats[TINY_REG][0] < 0
    assert ("network", 0) in projected and ("network", 0) in kept
    assert len({k for m, k in projected if m == "layerwise"}) >= 6


def linear_setup(dtype, n_aux: int, seed: int):
    """Parameters, random gradients, and a function making losses with exactly those gradients."""
    g_sim, g_regs = random_gradients(seed, dtype, n_aux)
    params = [torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in SHAPES.values()]
    return params, g_sim, g_regs, lambda: linear_losses_on(params, g_sim, g_regs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode,grouping", MODES_GROUPS)
def test_engine_with_two_aux_losses_and_accumulation_equals_reference(mode, grouping, dtype):
    groups = {"owner": module_groups(NAMES), "custom": CUSTOM_GROUPS, None: None}[grouping]
    for seed in SEEDS[2:5]:
        params, g_sim, g_regs, losses = linear_setup(dtype, 2, seed)
        held = {0: 1.5, 6: -2.0}  # two parameters already hold a gradient: it is added to
        for i, value in held.items():
            params[i].grad = torch.full_like(params[i], value)
        lam = [0.3, 0.05] if mode == "weighted" else None
        surgery = GradientSurgery(params, mode=mode, lam=lam, groups=groups)
        stats = surgery.backward(*losses())
        cur, err = g_sim, None
        for k, g_reg in enumerate(g_regs):  # in turn: the first projection feeds the second
            cur, ref_stats, step_err = reference(cur, g_reg, mode, lam=lam and lam[k], groups=groups)
            # the second step's input carries the first step's error, bounded the same way
            err = step_err if err is None else [None if e is None else e + (p if p is not None else 0)
                                                for e, p in zip(step_err, err)]
            if mode != "weighted":
                check_stats(stats, k, ref_stats, dtype)
        want = [None if w is None else w + held.get(i, 0.0) for i, w in enumerate(cur)]
        err = [None if e is None else e + abs(held.get(i, 0.0)) for i, e in enumerate(err)]
        assert_within([p.grad for p in params], want, err, dtype)
        assert params[BOTH_NONE].grad is None


def check_stats(stats, k, ref_stats, dtype):
    """Cosine and conflict of auxiliary loss k against the reference's group sums."""
    tol = 100 * GAMMA[dtype]
    assert stats.cosine.shape == stats.conflict.shape == (2, len(ref_stats))
    for g, (dot, ss, rr, c) in enumerate(ref_stats):
        has_reg = rr > ZERO_EPS * ss
        cos = dot / math.sqrt(ss * rr) if has_reg and ss > 0 else 0.0
        assert stats.cosine[k, g].item() == pytest.approx(cos, abs=tol)
        if abs(cos) > tol:  # a sign decided by rounding is not checked
            assert stats.conflict[k, g].item() == (dot < 0 and has_reg)


def count_kernels(fn) -> dict[str, int]:
    """Non-view ATen ops dispatched by fn(), by name (a fused `_foreach_` op counts once)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                counts[str(func)] = counts.get(str(func), 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


def kernels_of_one_step(n_tensors: int, mode: str, held: bool) -> dict[str, int]:
    """Kernels of GradientSurgery.backward once its layout is built, gradients given."""
    gen = torch.Generator().manual_seed(n_tensors)
    sizes = torch.randint(1, 3 * ROW, (n_tensors,), generator=gen).tolist()
    params = [torch.nn.Parameter(torch.zeros(n)) for n in sizes]
    grads = [[torch.randn(n, generator=gen) for n in sizes] for _ in range(2)]
    groups = [list(range(i, min(i + 3, n_tensors))) for i in range(0, n_tensors, 3)]
    surgery = GradientSurgery(params, mode=mode, groups=groups if mode == "module" else None)
    surgery._grads = lambda losses: [list(g) for g in grads]  # the VJPs are not counted
    surgery.backward(None, None)  # builds the layout
    for p in params:
        p.grad = torch.zeros_like(p) if held else None
    return count_kernels(lambda: surgery.backward(None, None))


@pytest.mark.parametrize("held", [False, True], ids=["grad-none", "grad-held"])
@pytest.mark.parametrize("mode", ["layerwise", "module", "network", "agr"])
def test_kernel_count_does_not_grow_with_the_number_of_tensors(mode, held):
    few, many = kernels_of_one_step(10, mode, held), kernels_of_one_step(200, mode, held)
    assert few == many
    assert sum(few.values()) <= 48, few


def test_grads_are_views_of_one_buffer_and_inputs_untouched():
    g_sim, (g_reg,) = random_gradients(0, torch.float32)
    copies = [None if t is None else t.clone() for t in g_sim + g_reg]
    out = combine(g_sim, g_reg, "layerwise")
    bases = {t._base.data_ptr() for t in out if t is not None and t.numel()}
    assert len(bases) == 1
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(copies, g_sim + g_reg))


def test_mixed_dtypes_are_one_group_in_network_mode():
    g_sim, (g_reg,) = random_gradients(1, torch.float64)
    mixed = [None if t is None else (t.float() if i % 2 else t) for i, t in enumerate(g_sim)]
    mixed_reg = [None if t is None else (t.float() if i % 2 else t) for i, t in enumerate(g_reg)]
    got = combine(mixed, mixed_reg, "network")
    want, _, err = reference(mixed, mixed_reg, "network")
    for i, (g, w, e) in enumerate(zip(got, want, err)):
        if w is not None:
            assert g.dtype == mixed[i].dtype if mixed[i] is not None else True
            assert ((g.double() - w).abs() <= GAMMA[torch.float32] * e + 1e-300).all(), NAMES[i]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none present)")


@cuda
@pytest.mark.parametrize("mode,grouping", MODES_GROUPS)
def test_cuda_equals_cpu(mode, grouping):
    groups = {"owner": module_groups(NAMES), "custom": CUSTOM_GROUPS, None: None}[grouping]
    lam = 0.37 if mode == "weighted" else None
    for dtype in (torch.float32, torch.float64):
        g_sim, (g_reg,) = random_gradients(2, dtype)
        on_cpu = combine(g_sim, g_reg, mode, lam=lam, groups=groups)
        on_gpu = combine([None if t is None else t.cuda() for t in g_sim],
                         [None if t is None else t.cuda() for t in g_reg], mode, lam=lam, groups=groups)
        _, _, err = reference(g_sim, g_reg, mode, lam=lam, groups=groups)
        for i, (a, b, e) in enumerate(zip(on_cpu, on_gpu, err)):
            assert (a is None) == (b is None), NAMES[i]
            if a is not None:
                assert b.is_cuda
                assert ((a.double() - b.cpu().double()).abs() <= 2 * GAMMA[dtype] * e + 1e-300).all(), NAMES[i]


@cuda
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "cuda-graph"])
@pytest.mark.parametrize("mode", ["layerwise", "module", "network", "agr"])
def test_cuda_step_never_synchronises(mode, graph):
    params, g_sim, g_regs, losses = linear_setup(torch.float32, 1, 3)
    params = [torch.nn.Parameter(p.detach().cuda()) for p in params]
    g_sim = [None if t is None else t.cuda() for t in g_sim]
    g_reg = [None if t is None else t.cuda() for t in g_regs[0]]
    surgery = GradientSurgery(params, mode=mode, groups=CUSTOM_GROUPS if mode == "module" else None,
                              cuda_graph=graph)
    surgery._grads = lambda losses: [list(g_sim), list(g_reg)]
    for _ in range(2):  # builds the layout (one host-to-device copy) and captures the graph
        surgery.backward(None, None)
        for p in params:
            p.grad = None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = surgery.backward(None, None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.cosine.is_cuda and all(p.grad is None or p.grad.is_cuda for p in params)


def test_grads_of_one_step_are_not_overwritten_by_the_next():
    params, _, _, losses = linear_setup(torch.float32, 1, 0)
    surgery = GradientSurgery(params)
    surgery.backward(*losses())
    first = [p.grad for p in params]
    saved = [None if g is None else g.clone() for g in first]
    for p in params:
        p.grad = None
    g_sim, g_regs = random_gradients(1, torch.float32)
    surgery.backward(*linear_losses_on(params, g_sim, g_regs))  # other gradients, same buffers
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(first, saved))
    assert not torch.equal(params[0].grad, saved[0])


def linear_losses_on(params, g_sim, g_regs):
    """Losses <v, w> on the given parameters: their gradients are exactly the vectors."""
    def loss(grads):
        return torch.stack([(v * w).sum() for v, w in zip(grads, params) if v is not None]).sum()
    return [loss(g_sim)] + [loss(g) for g in g_regs]


def test_expanded_gradient_of_a_summed_parameter():
    # d/dw of w.sum() is an expanded (stride 0) tensor: it cannot be written into
    w = torch.nn.Parameter(torch.zeros(2, 3))
    v = torch.nn.Parameter(torch.zeros(4))
    direction = torch.tensor([1.0, -1.0, 0.5, 2.0])
    sim = w.sum() + torch.dot(direction, v)
    reg = -0.5 * w.sum() + torch.dot(-direction, v)
    GradientSurgery([w, v]).backward(sim, reg)
    # w: s = 1, r = -0.5 (conflict) -> s - (<s,r>/|r|^2) r = 1 - 2 * 0.5 = 0; v: s = -r -> 0
    torch.testing.assert_close(w.grad, torch.zeros(2, 3))
    torch.testing.assert_close(v.grad, torch.zeros(4))


def test_cuda_graph_option_is_ignored_on_cpu():
    grads = []
    for graph in (False, True):
        params, _, _, losses = linear_setup(torch.float32, 1, 2)
        surgery = GradientSurgery(params, cuda_graph=graph)
        for _ in range(2):
            for p in params:
                p.grad = None
            surgery.backward(*losses())
        assert not surgery._captured
        grads.append([p.grad for p in params])
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(*grads))


@cuda
@pytest.mark.parametrize("mode", ["layerwise", "module", "network", "agr"])
def test_cuda_graph_replays_equal_the_eager_engine(mode):
    groups = CUSTOM_GROUPS if mode == "module" else None
    runs = []
    for graph in (False, True):
        params = [torch.nn.Parameter(torch.zeros(shape, device="cuda")) for shape in SHAPES.values()]
        surgery = GradientSurgery(params, mode=mode, groups=groups, cuda_graph=graph)
        steps = []
        for seed in SEEDS[:4]:  # step 1 captures, steps 2-4 replay with other gradients
            g_sim, g_regs = random_gradients(seed, torch.float32, 2)
            g_sim = [None if t is None else t.cuda() for t in g_sim]
            g_regs = [[None if t is None else t.cuda() for t in g] for g in g_regs]
            for p in params:
                p.grad = None
            stats = surgery.backward(*linear_losses_on(params, g_sim, g_regs))
            steps.append(([None if p.grad is None else p.grad.cpu() for p in params], stats.cosine.cpu(),
                          stats.conflict.cpu()))
        runs.append(steps)
        assert bool(surgery._captured) == graph
    for (eager_grads, eager_cos, eager_conf), (graph_grads, graph_cos, graph_conf) in zip(*runs):
        for a, b in zip(eager_grads, graph_grads):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(eager_cos, graph_cos, rtol=1e-5, atol=1e-6)
        assert torch.equal(eager_conf, graph_conf)


def test_a_non_finite_step_does_not_spoil_the_next():
    # a smoothness gradient with -inf gives a NaN coefficient: that step's update is NaN
    # for the tensor, but the padding of the kept buffers must not carry NaN into the next
    params, g_sim, g_regs, losses = linear_setup(torch.float32, 1, 0)
    surgery = GradientSurgery(params)
    bad = [None if t is None else t.clone() for t in g_regs[0]]
    bad[0].view(-1)[0] = -float("inf") * torch.sign(g_sim[0].view(-1)[0])
    surgery.backward(*linear_losses_on(params, g_sim, [bad]))
    assert not torch.isfinite(params[0].grad).all()
    runs = []
    for engine in (surgery, GradientSurgery(params)):  # the same engine again, and a new one
        for p in params:
            p.grad = None
        stats = engine.backward(*losses())
        runs.append(([p.grad for p in params], stats.cosine))
    (grads, cosine), (want, want_cosine) = runs
    assert torch.isfinite(cosine).all() and torch.equal(cosine, want_cosine)
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(grads, want))
