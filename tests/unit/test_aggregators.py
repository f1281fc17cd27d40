"""The general gradient-aggregation modes: equal to torchjd's aggregators (the oracle) on
random gradient pairs, GSMorph's rule as UPGrad with preference [1, 0], which rules are
invariant to the smoothness loss's scale, and GradVac's state per group through a resume."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gsmorph import aggregators, methods
from gsmorph.surgery import MODES, GradientSurgery, combine
from gsmorph.code_version import ROOT

from tiny import small_cfg

torchjd = pytest.importorskip("torchjd")
from torchjd.aggregation import UPGrad  # noqa: E402
from torchjd.linalg import QuadprogProjector  # noqa: E402

SCALES = (1e-3, 1.0, 1e3)
# torchjd solves CAGrad's programme with cvxpy (accuracy ~1e-5) and NashMTL's iteratively
# (its stop criterion: a residual of 1e-3); the others are exact up to float32 rounding
RTOL = {"cagrad": 1e-3, "nashmtl": 5e-3}


def pair(n: int, conflicting: bool, scale: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 gradients of n elements, their inner product negative when `conflicting`,
    g_reg's norm 0.2 to 3 times g_sim's."""
    s = torch.randn(n, generator=gen) * scale
    r = torch.randn(n, generator=gen) * scale * (0.2 + 2.8 * torch.rand(1, generator=gen))
    if (s @ r < 0) != conflicting:
        r = r - 2 * (s @ r) / (s @ s) * s  # reflect: the sign of <s, r> flips
    assert (s @ r < 0) == conflicting
    return s, r


def oracle(rule: str, s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's notes on its own programmes
        return aggregators.oracle(rule)(torch.stack([s.flatten(), r.flatten()]))


def close(got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    err = ((got.flatten() - want.flatten()).norm() / want.norm().clamp_min(1e-30)).item()
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("rule", aggregators.RULES)
def test_every_rule_equals_torchjd_per_tensor_and_on_the_network(rule):
    gen = torch.Generator().manual_seed(7)
    rtol = RTOL.get(rule, 2e-5)
    for scale in SCALES:
        s = list(pair(40, True, scale, gen))
        a = list(pair(24, False, scale, gen))
        sims, regs = [s[0], a[0].view(4, 6)], [s[1], a[1].view(4, 6)]
        per_tensor = combine(sims, regs, rule)
        network = combine(sims, regs, rule + "-network")
        if rule == "nashmtl" and scale < 1:
            # torchjd's ECOS solution is inaccurate at this scale (up to 7% off, it warns):
            # check the bargaining solution itself, the unit vector along u_sim + u_reg
            for got, g1, g2 in zip(per_tensor, sims, regs):
                want = g1 / g1.norm() + g2 / g2.norm()
                close(got, want / want.norm(), 1e-5)
            continue
        for got, g1, g2 in zip(per_tensor, sims, regs):
            close(got, oracle(rule, g1, g2), rtol)
        flat = torch.cat([t.flatten() for t in network])
        close(flat, oracle(rule, torch.cat([t.flatten() for t in sims]), torch.cat([t.flatten() for t in regs])),
              rtol)


@pytest.mark.parametrize("rule", [r for r in aggregators.RULES if r != "nashmtl"])
def test_a_zero_smoothness_gradient_as_torchjd(rule):
    # e.g. a conv bias before a normalisation: g_reg = 0 exactly (Gramian singular)
    s = torch.randn(30, generator=torch.Generator().manual_seed(3))
    close(combine([s], [torch.zeros(30)], rule)[0], oracle(rule, s, torch.zeros(30)), 2e-5)


def test_nashmtl_keeps_g_sim_clipped_where_torchjd_has_no_solution():
    s = torch.full((4,), 2.0)  # norm 4: clipped to 1
    close(combine([s], [torch.zeros(4)], "nashmtl")[0], s / 4, 1e-6)
    close(combine([s], [-3 * s], "nashmtl")[0], s / 4, 1e-6)  # opposite gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gsmorph_is_upgrad_with_preference_on_the_similarity(dtype):
    gen = torch.Generator().manual_seed(11)
    exact = dtype == torch.float64
    projector = QuadprogProjector(norm_eps=0.0, reg_eps=0.0) if exact else None
    upgrad = UPGrad(pref_vector=torch.tensor([1.0, 0.0], dtype=dtype), projector=projector)
    for scale in (0.1, 1.0, 10.0):
        for conflicting in (True, False):
            s, r = (t.to(dtype) for t in pair(50, conflicting, scale, gen))
            got = combine([s], [r], "layerwise")[0]
            # default projector: its regularisation (1e-4 of the normalised Gramian) is the error
            close(got, upgrad(torch.stack([s, r])), 1e-12 if exact else 3e-4)


def test_torchjd_pcgrad_is_not_gs_pcgrad():
    s, r = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    close(combine([s], [r], "pcgrad")[0], torch.tensor([0.5, 1.5]), 1e-6)   # adds a projected g_reg
    close(combine([s], [r], "network")[0], torch.tensor([0.5, 0.5]), 1e-6)  # GSMorph's rule


SURGERY_INVARIANT = {"layerwise", "module", "network", "agr"}  # GSMorph and its ablations


@pytest.mark.parametrize("mode", MODES)
def test_scale_invariance_as_stated(mode):
    """g_reg multiplied by k: the same update (GSMorph's modes, nashmtl), the same direction
    (config, imtlg), or another direction (every other rule and the weighted loss)."""
    gen = torch.Generator().manual_seed(5)
    sims = [torch.randn(n, generator=gen) for n in (30, 20)]
    regs = [-0.8 * s + 0.5 * torch.randn(s.shape, generator=gen) for s in sims]  # cosine about -0.85
    kwargs = {"lam": 0.1} if mode == "weighted" else {"groups": [[0], [1]]} if mode == "module" else {}
    base = combine(list(sims), list(regs), mode, **kwargs)
    rule = aggregators.rule_of(mode) if mode in aggregators.MODES else None
    kind = "update" if mode in SURGERY_INVARIANT else aggregators.SCALE_INVARIANCE[rule] if rule else "nothing"
    for k in (0.1, 10.0):
        scaled = combine(list(sims), [k * r for r in regs], mode, **kwargs)
        for a, b in zip(base, scaled):
            cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
            if kind == "update":
                close(b, a, 1e-5)
            elif kind == "direction":
                assert cosine > 1 - 1e-6 and abs(b.norm() / a.norm() - 1) > 1e-2
            else:
                assert cosine < 1 - 1e-4, f"{mode} unchanged by k = {k}"


def test_gradvac_keeps_one_state_per_group_as_torchjd_instances():
    gen = torch.Generator().manual_seed(2)
    params = [torch.nn.Parameter(torch.zeros(20)), torch.nn.Parameter(torch.zeros(12))]
    for mode, groups in (("gradvac", 2), ("gradvac-network", 1)):
        surgery = GradientSurgery(params, mode=mode)
        per_group = [aggregators.oracle("gradvac") for _ in range(groups)]
        for step in range(4):
            pairs = [pair(p.numel(), step % 2 == 0, 1.0, gen) for p in params]
            for p in params:
                p.grad = None
            # losses whose gradients are the pairs: <p, g>
            sim = sum(p @ s for p, (s, _) in zip(params, pairs))
            reg = sum(p @ r for p, (_, r) in zip(params, pairs))
            surgery.backward(sim, reg)
            got = torch.cat([p.grad for p in params])
            if groups == 2:
                want = torch.cat([agg(torch.stack([s, r])) for agg, (s, r) in zip(per_group, pairs)])
            else:
                s, r = (torch.cat([pr[i] for pr in pairs]) for i in (0, 1))
                want = per_group[0](torch.stack([s, r]))
            close(got, want, 1e-5)
        phi = surgery.state_dict()["phi"]
        assert phi.shape == (groups, 2, 2)
        for g, agg in enumerate(per_group):
            torch.testing.assert_close(phi[g], agg.gramian_weighting._phi_t, rtol=1e-5, atol=1e-6)


def test_bad_modes_and_several_auxiliary_losses_are_refused():
    with pytest.raises(ValueError, match="not an aggregator mode"):
        aggregators.rule_of("upgrad-layer")
    with pytest.raises(ValueError, match="unknown surgery mode"):
        combine([torch.ones(2)], [torch.ones(2)], "upgrad-net")
    with pytest.raises(ValueError, match="one auxiliary loss"):
        p = torch.nn.Parameter(torch.ones(3))
        GradientSurgery([p], mode="mgda").backward(p.sum(), p.square().sum(), p.abs().sum())


def test_methods_table_has_every_mode_outside_the_default_run():
    general = methods.general_ids()
    assert sorted(methods.get(m).surgery for m in general) == sorted(aggregators.MODES)
    default = yaml.safe_load((ROOT / "config.yaml").read_text())["methods"]
    assert not set(general) & set(default)
    styles = [(methods.get(m).colour, methods.get(m).marker) for m in methods.ids(None, None)]
    assert len({c for c, _ in styles}) == len(styles)  # one colour per method


def _final_state(run):
    return torch.load(run / "last.pt", weights_only=True)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")
def test_gradvac_state_survives_a_resume(prepared_acdc, tmp_path):
    from gsmorph.training import train_method as train_run

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_run(prepared_acdc, "voxelmorph", "gradvac", 1, straight, small_cfg(epochs=2))
    train_run(prepared_acdc, "voxelmorph", "gradvac", 1, resumed, small_cfg(epochs=1))
    first = _final_state(resumed)["surgery"]["phi"]
    train_run(prepared_acdc, "voxelmorph", "gradvac", 1, resumed, small_cfg(epochs=2))
    a, b = _final_state(straight), _final_state(resumed)
    n_tensors = pd.read_csv(straight / "conflicts.csv").group.nunique()  # one group per tensor
    assert a["surgery"]["phi"].shape == (n_tensors, 2, 2)
    assert not torch.equal(first, b["surgery"]["phi"])  # it moved on after the resume
    assert torch.equal(a["surgery"]["phi"], b["surgery"]["phi"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_report_writes_table2_and_leaves_table1_as_without_them(tmp_path):
    from gsmorph.evaluate import COLUMNS
    from gsmorph.report.build import make_report

    rng = np.random.default_rng(0)
    level = {"initial": 0.6, "gs-pcgrad": 0.8, "gsmorph": 0.85, "upgrad": 0.7, "mgda-network": 0.95}

    def rows(method):
        backbone = "none" if method == "initial" else "voxelmorph"
        out = []
        for s in range(12):
            base = dict(dataset="acdc", backbone=backbone, method=method, seed=0, subject=f"p{s:02d}", slice=0)
            for st in ("LV", "Myo", "RV"):
                out.append({**base, "metric": "dice", "structure": st, "value": level[method] + 0.01 * rng.normal()})
                out.append({**base, "metric": "hd95_mm", "structure": st, "value": 5 - 3 * level[method]})
            out.append({**base, "metric": "mse", "structure": "", "value": 0.02 - 0.01 * level[method]})
            out.append({**base, "metric": "njd_pct", "structure": "", "value": 0.0 if backbone == "none" else 1.0})
        return out

    frames = {m: rows(m) for m in level}
    outs = {}
    for name, which in (("with", list(level)), ("without", ["initial", "gs-pcgrad", "gsmorph"])):
        csv = tmp_path / name / "acdc" / "metrics.csv"
        csv.parent.mkdir(parents=True)
        pd.DataFrame([r for m in which for r in frames[m]], columns=COLUMNS).to_csv(csv, index=False)
        make_report([str(csv)], None, tmp_path / name / "results", n_boot=100)
        outs[name] = tmp_path / name / "results"
    tables_dir = outs["with"] / "tables"
    for table in ("table1_voxelmorph.md", "table1_combined.md"):
        assert (tables_dir / table).read_text() == (outs["without"] / "tables" / table).read_text()
    assert not (outs["without"] / "tables" / "table2_aggregators_voxelmorph.md").exists()
    table2 = pd.read_csv(tables_dir / "table2_aggregators_voxelmorph.csv")
    assert list(dict.fromkeys(table2.method)) == ["gs-pcgrad", "gsmorph", "upgrad", "mgda-network"]
    dice = table2[table2.metric == "dice"].set_index("method")
    assert dice.loc["upgrad", "marker"] == "↓↓" and dice.loc["mgda-network", "marker"] == "↑↑"  # Holm over 3
    assert (tables_dir / "table2_aggregators_voxelmorph.md").read_text().count("GSMorph and general") == 1
    assert set(pd.read_csv(outs["with"] / "stats" / "wilcoxon.csv").method) == {"initial", "gs-pcgrad"}
    assert "upgrad" in set(pd.read_csv(outs["with"] / "stats" / "wilcoxon_aggregators.csv").method)
