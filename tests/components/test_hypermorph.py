"""HyperMorph: the published hypernetwork (6 x Dense(128)), generated convolutions, per-sample
lambda sampling, its l2 loss, the coarse-then-fine lambda selection, resume, inference."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from baselines import hypermorph
from baselines.hypernet import HyperConv, HyperUNet
from gsmorph.config import DEFAULTS, load_config
from gsmorph.errors import GSMorphError
from gsmorph.training import train_method

from tiny import tiny_config


def tiny_cfg(**overrides):
    return tiny_config(**{"backbones": {"voxelmorph": {"features": [4, 8, 8]}},
                          "hypermorph": {"hidden": 8, "layers": 2, "val_lambdas": 3}, **overrides},
                       without=("num_threads",))


# ------------------------------------------------------------------ the hypernetwork

def _lambda_dependent(net):
    """Give every generated convolution a lambda-dependent part (it starts at zero)."""
    for conv in list(net.encoder) + list(net.decoder):
        torch.nn.init.normal_(conv.generate.weight, std=0.5)


def test_the_published_hypernetwork_is_six_dense_128_relu_layers():
    assert DEFAULTS["hypermorph"]["layers"] == 6 and DEFAULTS["hypermorph"]["hidden"] == 128
    kwargs = hypermorph.network_kwargs(load_config(), "voxelmorph")
    assert kwargs["layers"] == 6 and kwargs["hidden"] == 128
    net = HyperUNet(2, features=[4, 8, 8], hidden=kwargs["hidden"], layers=kwargs["layers"])
    layers = list(net.mlp)
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 128)] + [(128, 128)] * 5
    assert [type(m) for m in layers] == [torch.nn.Linear, torch.nn.ReLU] * 6
    assert net.embed(0.3).shape == (1, 128) and net.embed(torch.rand(5)).shape == (5, 128)


def test_hyperconv_is_the_convolution_with_the_generated_kernel():
    torch.manual_seed(0)
    conv = HyperConv(2, 3, 5, embed=4)
    assert torch.all(conv.generate.weight == 0)  # starts as an ordinary convolution at every lambda
    torch.nn.init.normal_(conv.generate.weight)
    x, e = torch.randn(2, 3, 7, 6), torch.randn(4)
    params = conv.generate.weight @ e / 4 + conv.generate.bias  # the per-layer linear map, over the width
    kernel, bias = params[: 5 * 3 * 9].view(5, 3, 3, 3), params[5 * 3 * 9:]
    expected = F.leaky_relu(F.conv2d(x, kernel, bias, padding=1), 0.2)
    assert torch.allclose(conv(x, e), expected, atol=1e-6)
    # one embedding per sample: each sample convolved with its own kernel
    es = torch.randn(2, 4)
    each = torch.cat([conv(x[i:i + 1], es[i]) for i in range(2)])
    assert torch.allclose(conv(x, es), each, atol=1e-5)


@pytest.mark.parametrize("kind", ["scaled", "film"])
def test_per_sample_lambdas_equal_one_forward_per_sample(kind):
    torch.manual_seed(0)
    net = HyperUNet(2, features=[4, 8, 8], hidden=8, layers=6, parametrisation=kind)
    _lambda_dependent(net)
    torch.nn.init.normal_(net.flow.weight, std=0.1)
    x, lam = torch.rand(3, 2, 16, 12), torch.tensor([0.0, 0.4, 1.0])
    each = torch.cat([net(x[i:i + 1], float(lam[i])) for i in range(3)])
    assert torch.allclose(net(x, lam), each, rtol=1e-4, atol=1e-5)
    assert (each[0] - each[2]).abs().max() > 1e-3


def test_output_depends_on_lambda_and_any_size_works():
    torch.manual_seed(0)
    net = HyperUNet(3, features=[4, 8], hidden=8, layers=2)
    x = torch.rand(1, 2, 9, 10, 5)
    torch.nn.init.normal_(net.flow.weight, std=0.1)  # a visible flow (the head starts near zero)
    assert torch.equal(net(x, 0.0), net(x, 1.0))  # the lambda-dependent parts start at zero
    _lambda_dependent(net)
    x = torch.rand(1, 2, 9, 10, 5)
    a, b = net(x, 0.0), net(x, 1.0)
    assert a.shape == (1, 3, 9, 10, 5)
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(net(x, 0.0), a)


def test_gradient_reaches_the_mlp_through_every_generated_convolution():
    torch.manual_seed(0)
    net = HyperUNet(2, features=[4, 8, 8], hidden=8, layers=3)
    _lambda_dependent(net)
    net(torch.rand(2, 2, 16, 16), 0.4).square().mean().backward()
    for p in net.hyper_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    convs = list(net.encoder) + list(net.decoder)
    assert len(convs) == 5  # 3 encoder levels, 2 decoder levels
    for conv in convs:
        assert conv.generate.weight.grad.abs().sum() > 0
    # no ordinary conv weights besides the flow head: every other kernel is generated
    ordinary = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert ordinary == [net.flow]
    assert net.flow.weight.std() < 1e-4 and torch.all(net.flow.bias == 0)


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="features"):
        HyperUNet(2, features=[4])
    with pytest.raises(ValueError, match="spatial_dims"):
        HyperUNet(1)


def test_lambda_sampling_endpoints_and_uniform_per_sample():
    torch.manual_seed(0)
    ends = hypermorph.sample_lambdas(200, 1.0).numpy()
    assert set(ends) == {0.0, 1.0} and ends.mean() == pytest.approx(0.5, abs=0.1)
    inner = hypermorph.sample_lambdas(2000, 0.0).numpy()
    assert np.all((inner > 0) & (inner < 1))
    assert inner.mean() == pytest.approx(0.5, abs=0.03)
    mixed = hypermorph.sample_lambdas(4000, 0.2).numpy()
    assert np.isin(mixed, [0.0, 1.0]).mean() == pytest.approx(0.2, abs=0.03)
    batch = hypermorph.sample_lambdas(32, 0.2).numpy()
    assert len(set(batch.tolist())) > 20  # one lambda per sample, not one per batch
    torch.manual_seed(3)
    first = hypermorph.sample_lambdas(8, 0.2)
    torch.manual_seed(3)
    assert torch.equal(first, hypermorph.sample_lambdas(8, 0.2))  # torch's generator: resumable


def test_weighted_equivalent_known_values():
    assert hypermorph.weighted_equivalent(0.8, "mse", 0.05) == pytest.approx(0.01)
    assert hypermorph.weighted_equivalent(0.0, "mse", 0.05) == 0.0
    assert hypermorph.weighted_equivalent(0.5, "lncc", 0.05) == pytest.approx(1.0)
    assert hypermorph.weighted_equivalent(1.0, "mse", 0.05) == float("inf")


def test_fine_grid_lies_between_the_coarse_neighbours_of_the_best():
    coarse = hypermorph.sweep_lambdas(5)  # 0, .25, .5, .75, 1
    np.testing.assert_allclose(hypermorph.fine_grid(coarse, 0.5, 4), [0.35, 0.45, 0.55, 0.65])
    np.testing.assert_allclose(hypermorph.fine_grid(coarse, 0.5, 3), [0.375, 0.625])  # 0.5 is not repeated
    np.testing.assert_allclose(hypermorph.fine_grid(coarse, 1.0, 4), [0.8, 0.85, 0.9, 0.95])
    np.testing.assert_allclose(hypermorph.fine_grid(coarse, 0.0, 1), [0.125])
    assert hypermorph.fine_grid(coarse, 0.5, 0).size == 0


def test_network_kwargs_follow_the_voxelmorph_backbone():
    cfg = tiny_cfg()
    assert hypermorph.network_kwargs(cfg, "voxelmorph")["features"] == [4, 8, 8]
    cfg["hypermorph"]["features"] = [2, 4]
    assert hypermorph.network_kwargs(cfg, "voxelmorph")["features"] == [2, 4]
    from gsmorph import methods

    assert methods.get("hypermorph").backbones == ("voxelmorph",)  # the table limits it; the trainer refuses others


# ------------------------------------------------------------------ training

def test_training_step_loss_is_hypermorph_weighting_with_the_l2_gradient(prepared_acdc, tmp_path, monkeypatch):
    from monai.losses import DiffusionLoss

    from gsmorph.losses import GradientL1Loss
    from gsmorph.networks import warp_image

    cfg = tiny_cfg(hypermorph={"variant": "published", "parametrisation": "scaled"})
    assert cfg["smoothness"] == "l1" and hypermorph.settings(cfg)["smoothness"] == "l2"
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    assert isinstance(trainer.reg_loss, DiffusionLoss)  # HyperMorph's own loss, not the global l1
    _lambda_dependent(trainer.model.backbone)
    torch.nn.init.normal_(trainer.model.backbone.flow.weight, std=0.05)
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:4], bucket["fixed"][:4]
    lam = torch.tensor([0.0, 0.3, 0.9, 1.0])
    monkeypatch.setattr(hypermorph, "sample_lambdas", lambda n, endpoint_prob: lam[:n])
    trainer.model.zero_grad()
    logs = trainer.train_step(moving, fixed)
    got = [p.grad.clone() for p in trainer.model.parameters()]

    trainer.model.zero_grad()
    total, sims = 0.0, []
    for i in range(4):  # each sample with its own lambda, the published loss
        disp = trainer.model(torch.cat([moving[i:i + 1], fixed[i:i + 1]], 1), float(lam[i]))
        mse = ((warp_image(moving[i:i + 1], disp) - fixed[i:i + 1]) ** 2).mean() / 0.05 ** 2
        dx = (disp[:, :, 2:, 1:-1] - disp[:, :, :-2, 1:-1]) / 2  # central differences inside the border
        dy = (disp[:, :, 1:-1, 2:] - disp[:, :, 1:-1, :-2]) / 2
        reg = (dx ** 2 + dy ** 2).mean()  # the l2 gradient (diffusion) loss, MONAI's DiffusionLoss
        total = total + ((1 - lam[i]) * mse + lam[i] * reg) / 4
        sims.append(mse.item())
    total.backward()
    for g, p in zip(got, trainer.model.parameters()):  # grouped vs single convolutions: float rounding
        assert torch.allclose(g, p.grad, rtol=1e-3, atol=1e-4 * float(p.grad.abs().max()) + 1e-12)
    assert logs["loss_sim"].item() == pytest.approx(np.mean(sims), rel=1e-5)

    cfg_l1 = tiny_cfg(hypermorph={"smoothness": "l1"})
    other = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "r1", cfg_l1)
    other.initialize()
    assert isinstance(other.reg_loss, GradientL1Loss)


def test_sweep_refines_around_the_coarse_best(prepared_acdc, tmp_path, monkeypatch):
    cfg = tiny_cfg(hypermorph={"val_lambdas": 5, "fine_lambdas": 4, "variant": "published",
                               "parametrisation": "scaled"})  # uniform sampling: t = lambda
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    seen = []

    def score(buckets, predict):  # a validation Dice peaked at lambda 0.62; NJD falls with lambda
        lam = float(predict.__defaults__[0])
        seen.append(lam)
        return 1.0 - abs(lam - 0.62), 1.0 - lam

    monkeypatch.setattr(trainer, "evaluate_split", score)
    rows = trainer.refined_sweep()
    assert [r["stage"] for r in rows] == ["coarse"] * 5 + ["fine"] * 4
    np.testing.assert_allclose([r["lam"] for r in rows], [0, 0.25, 0.5, 0.75, 1, 0.35, 0.45, 0.55, 0.65])
    assert seen == [r["lam"] for r in rows]
    assert [r["lam"] for r in rows if r["chosen"]] == [pytest.approx(0.65)]  # the coarse best was 0.5
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["weighted_equivalent"] == pytest.approx(0.65 * 0.05 ** 2 / 0.35)
    assert trainer.validate() == (pytest.approx(1 - 0.12), pytest.approx(0.5))  # training: coarse grid only


def test_trained_displacement_at_lambda_1_is_far_smaller_than_at_lambda_0(prepared_acdc, tmp_path):
    # the default variant trained on the two ends alone (endpoint_prob 1: a clear-cut problem),
    # 144 steps of 4 pairs on the tiny phantom (at 48 steps its film U-Net had not yet
    # separated the ends: mean |u| 0.44 against 0.48 voxels)
    cfg = tiny_cfg(epochs=36, batch_size=4, max_train_pairs=16, val_every=100,
                   hypermorph={"hidden": 16, "layers": 2, "val_lambdas": 3, "endpoint_prob": 1.0})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.fit()
    bucket = trainer.train_data[0]
    with torch.no_grad():
        size = [trainer.predict(bucket["moving"], bucket["fixed"], t).abs().mean().item() for t in (0.0, 0.5, 1.0)]
    assert size[0] > 0.05  # it registers at lambda 0 (mean |u| in voxels)
    assert size[2] < 0.5 * size[0]  # and much less at lambda 1, the smoothness alone


def test_full_run_chooses_lambda_on_validation_and_infers(prepared_acdc, tmp_path):
    from gsmorph.cli import main
    from gsmorph.inference import infer_split, load_run

    run = tmp_path / "run"
    overrides = {"backbones": {"voxelmorph": {"features": [4, 8, 8]}},
                 "hypermorph": {"hidden": 8, "layers": 2, "val_lambdas": 5, "fine_lambdas": 4},
                 "epochs": 1, "batch_size": 8, "max_train_pairs": 8, "max_val_pairs": 4, "device": "cpu"}
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "hypermorph",
                 "--seed", "0", "--out", str(run), "--set", json.dumps(overrides)]) == 0
    sweep = pd.read_csv(run / "lambda_sweep.csv")
    assert list(sweep.columns) == ["stage", "lam", "weighted_equivalent", "val_dice", "val_njd_pct", "chosen",
                                   "hyper_input"]
    coarse, fine = sweep[sweep.stage == "coarse"], sweep[sweep.stage == "fine"]
    assert coarse["hyper_input"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    best_coarse = coarse.loc[coarse["val_dice"].idxmax(), "hyper_input"]
    assert len(fine) == 4 and fine["hyper_input"].between(max(best_coarse - 0.25, 0), min(best_coarse + 0.25, 1)).all()
    info = json.loads((run / "run.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    # the default variant: log-uniform weight on [1e-5, 10] and the estimated sigma, by hand
    sigma = summary["hyper_sigma"]
    assert summary["hyper_variant"] == "default" and 0.01 < sigma < 0.5
    inner = coarse.iloc[1:4]
    np.testing.assert_allclose(inner["weighted_equivalent"], 1e-5 * 1e6 ** inner["hyper_input"], rtol=1e-4)
    np.testing.assert_allclose(inner["lam"], inner["weighted_equivalent"] / (sigma ** 2 + inner["weighted_equivalent"]),
                               rtol=1e-4)
    assert coarse["lam"].iloc[0] == 0.0 and coarse["lam"].iloc[-1] == 1.0
    assert np.isinf(coarse["weighted_equivalent"].iloc[-1])
    best = sweep.loc[sweep["val_dice"].idxmax()]
    assert sweep["chosen"].sum() == 1 and sweep.loc[sweep["chosen"], "lam"].item() == best["lam"]
    assert info["hyper_input"] == best["hyper_input"]
    assert info["method"] == "hypermorph" and info["smoothness"] == "l2"
    assert info["hyper_lambda"] == summary["hyper_lambda"] == best["lam"]
    equivalent = hypermorph.weighted_equivalent(best["lam"], "mse", sigma)
    assert summary["hyper_lambda_weighted_equivalent"] == (pytest.approx(equivalent) if best["lam"] < 1 else None)
    assert summary["hyper_smoothness"] == "l2" and summary["hyper_weighted_equivalent_comparable"] is False
    assert summary["backbone_display"] == info["backbone_display"] == "VoxelMorph (features 4-8-8)"
    assert summary["best_val_dice"] <= best["val_dice"] + 1e-9  # best.pt chosen on the coarse grid
    # the lambda-dependence check, from the coarse ends and the no-deformation Dice
    dice = dict(zip(coarse["hyper_input"], coarse["val_dice"]))
    identity = summary["hyper_val_dice_identity"]
    assert 0.0 < identity < 1.0
    if dice[0.0] > identity:
        assert summary["hyper_lambda_effect"] == pytest.approx((dice[0.0] - dice[1.0]) / (dice[0.0] - identity))
    learned = summary["hyper_lambda_effect"] is not None and summary["hyper_lambda_effect"] >= 0.5 \
        and dice[1.0] >= identity - hypermorph.BROKEN_MARGIN
    lambda_caveats = ("lambda-dependence was not learned", "does not register", "worse than no deformation")
    assert (not any(c in summary["caveat"] for c in lambda_caveats)) == learned

    _, loaded, _ = load_run(run)
    assert loaded["hyper_lambda"] == best["lam"] and loaded["trainer"] == "baselines.hypermorph:HyperMorphTrainer"
    pairs_dir = infer_split(run, prepared_acdc, "test", tmp_path / "pairs")
    assert (pairs_dir / "index.csv").is_file()


def test_lambda_effect_known_values():
    assert hypermorph.lambda_effect(0.90, 0.65, 0.65) == pytest.approx(1.0)  # lambda 1: no deformation
    assert hypermorph.lambda_effect(0.90, 0.90, 0.65) == 0.0                 # alike at every lambda
    assert hypermorph.lambda_effect(0.85, 0.80, 0.65) == pytest.approx(0.25)
    assert np.isnan(hypermorph.lambda_effect(0.65, 0.60, 0.65))               # lambda 0 gains nothing


def _swept(prepared, tmp_path, dice_0, dice_1, identity):
    trainer = hypermorph.HyperMorphTrainer(prepared, "voxelmorph", "hypermorph", 0, tmp_path / "h", tiny_cfg())
    trainer.sweep_rows = [{"stage": "coarse", "lam": 0.0, "val_dice": dice_0},
                          {"stage": "coarse", "lam": 0.5, "val_dice": dice_0},
                          {"stage": "coarse", "lam": 1.0, "val_dice": dice_1},
                          {"stage": "fine", "lam": 0.9, "val_dice": 0.1}]
    trainer.identity_dice = identity
    return trainer


def test_a_lambda_independent_network_carries_a_caveat(prepared_acdc, tmp_path):
    flat = _swept(prepared_acdc, tmp_path, 0.864, 0.863, 0.65)  # the default run's 10 epochs look like this
    assert flat.lambda_effect() == pytest.approx(0.001 / 0.214)
    assert "lambda-dependence was not learned" in flat.lambda_caveat() and "86.3%" in flat.lambda_caveat()
    assert flat.hyper_record()["hyper_lambda_effect"] == pytest.approx(0.001 / 0.214)
    learned = _swept(prepared_acdc, tmp_path, 0.85, 0.70, 0.65)
    assert learned.lambda_effect() == pytest.approx(0.75) and learned.lambda_caveat() == ""
    assert _swept(prepared_acdc, tmp_path, 0.60, 0.60, 0.65).lambda_effect() is None  # no gain at lambda 0
    assert "does not register" in _swept(prepared_acdc, tmp_path, 0.60, 0.60, 0.65).lambda_caveat()
    diverged = _swept(prepared_acdc, tmp_path, 0.85, 0.0, 0.65)  # effect 4.25: Dice 0 at lambda 1 is no learning
    assert diverged.lambda_effect() > 1 and "worse than no deformation" in diverged.lambda_caveat()
    unswept = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "u", tiny_cfg())
    assert unswept.lambda_effect() is None and unswept.lambda_caveat() == ""


def test_transmorph_and_bad_config_are_clear_errors(prepared_acdc, tmp_path):
    with pytest.raises(GSMorphError, match="supports backbone"):
        train_method(prepared_acdc, "transmorph", "hypermorph", 0, tmp_path / "r", tiny_cfg())
    with pytest.raises(GSMorphError, match="val_lambdas"):
        train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "r",
                     tiny_cfg(hypermorph={"val_lambdas": 1}))
    with pytest.raises(GSMorphError, match="endpoint_prob"):
        train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "r",
                     tiny_cfg(hypermorph={"endpoint_prob": 1.5}))
    with pytest.raises(GSMorphError, match="config key 'hypermorph.smoothness'"):
        tiny_cfg(hypermorph={"smoothness": "l3"})
    with pytest.raises(GSMorphError, match="config key 'hypermorph.fine_lambdas'"):
        tiny_cfg(hypermorph={"fine_lambdas": -1})


def test_hypermorph_optim_keys_replace_the_backbones_for_hypermorph_alone(prepared_acdc, tmp_path):
    from gsmorph.training import Trainer

    cfg = tiny_cfg(hypermorph={"optim": {"optimizer": "adam", "lr": 1e-4}})
    hyper = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "h", cfg)
    hyper.initialize()
    group = hyper.optimizer.param_groups[0]
    assert type(hyper.optimizer) is torch.optim.Adam and group["lr"] == 1e-4
    assert group["weight_decay"] == 0.0 and group["amsgrad"] is False  # the rest: VoxelMorph's entry
    assert hyper.run_info()["optim"]["lr"] == 1e-4  # recorded in run.json (and the resume key)
    weighted = Trainer(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "w", cfg, lam=0.01)
    weighted.initialize()
    assert type(weighted.optimizer) is torch.optim.AdamW and weighted.optimizer.param_groups[0]["lr"] == 5e-3
    # none set: HyperMorph trains with the backbone's optimiser
    plain = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "p", tiny_cfg())
    assert plain.optim == weighted.optim
    # the top-level lr (a user's override for every method) still wins
    assert hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "l",
                                        tiny_cfg(lr=2e-3, hypermorph={"optim": {"lr": 1e-4}})).optim["lr"] == 2e-3


def test_bad_hypermorph_optim_keys_are_clear_errors(prepared_acdc, tmp_path):
    with pytest.raises(GSMorphError, match=r"unknown config key 'hypermorph.optim.learning_rate'"):
        tiny_cfg(hypermorph={"optim": {"learning_rate": 1e-4}})
    with pytest.raises(GSMorphError, match=r"config key 'hypermorph.optim.lr'"):
        tiny_cfg(hypermorph={"optim": {"lr": -1}})
    with pytest.raises(GSMorphError, match=r"config key 'hypermorph.optim' must be a mapping"):
        tiny_cfg(hypermorph={"optim": 1e-4})
    cfg = tiny_cfg()
    cfg["hypermorph"]["optim"] = {"optimizer": "sgd"}  # past the schema (a config edited in code)
    with pytest.raises(GSMorphError, match=r"config key 'hypermorph.optim.optimizer': 'sgd' is not one of"):
        hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "h", cfg)


def test_paper_config_trains_hypermorph_with_the_public_scripts_adam():
    from pathlib import Path

    import yaml

    paper = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow/configs/paper.yaml").read_text())
    cfg = load_config(None, {k: v for k, v in paper["method"].items()})
    from gsmorph.config import optim_settings

    settings = optim_settings(cfg, "voxelmorph", cfg["hypermorph"]["optim"], "hypermorph.optim")
    assert (settings["optimizer"], settings["lr"]) == ("adam", 1e-4)
    assert (optim_settings(cfg, "voxelmorph")["optimizer"], optim_settings(cfg, "voxelmorph")["lr"]) == ("adamw", 5e-3)


def test_killed_and_resumed_hypermorph_ends_bitwise_identical(prepared_acdc, tmp_path):
    # HyperMorph draws its lambdas from torch's global generator: resume must restore it
    cfg = {"epochs": 4, "batch_size": 4, "max_train_pairs": 8, "num_threads": 1}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_method(prepared_acdc, "voxelmorph", "hypermorph", 1, straight, tiny_cfg(**cfg))
    train_method(prepared_acdc, "voxelmorph", "hypermorph", 1, resumed, tiny_cfg(**{**cfg, "epochs": 2}))
    train_method(prepared_acdc, "voxelmorph", "hypermorph", 1, resumed, tiny_cfg(**cfg))
    a, b = (torch.load(r / "last.pt", weights_only=True) for r in (straight, resumed))
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert pd.read_csv(straight / "lambda_sweep.csv").equals(pd.read_csv(resumed / "lambda_sweep.csv"))


# ------------------------------------------------------------------ variants (issue: learning lambda)

def test_cos_sin_encoding_has_constant_norm_and_reaches_the_mlp():
    from baselines.hypernet import encode

    t = torch.tensor([[0.0], [1 / 3], [1.0]])
    code = encode(t, "cos-sin")
    np.testing.assert_allclose(code.numpy(), [[1, 0], [np.sqrt(3) / 2, 0.5], [0, 1]], atol=1e-6)
    np.testing.assert_allclose(code.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    assert torch.equal(encode(t, "lambda"), t)
    net = HyperUNet(2, features=[4, 8], hidden=8, layers=2, encoding="cos-sin")
    assert net.mlp[0].in_features == 2
    assert torch.allclose(net.embed(torch.tensor([0.0, 1 / 3])), net.mlp(code[:2]))
    with pytest.raises(ValueError, match="encoding"):
        HyperUNet(2, features=[4, 8], encoding="fourier")


@pytest.mark.parametrize("kind", ["scaled", "dense", "offset"])
def test_each_parametrisation_generates_its_kernel(kind):
    torch.manual_seed(0)
    conv = HyperConv(2, 3, 5, embed=4, parametrisation=kind)
    n = 5 * 3 * 9
    w, b = conv.generate.weight.detach(), conv.generate.bias.detach()
    if kind == "scaled":  # b + A e / embed, A = 0 at the start
        assert torch.all(w == 0) and b[:n].abs().max() <= np.sqrt(2 / 1.04) * np.sqrt(3 / 27) + 1e-6
    elif kind == "dense":  # A e + b, Glorot-uniform A, b = 0
        assert torch.all(b == 0) and w.abs().max() <= np.sqrt(6 / (4 + n + 5)) + 1e-6 and w.abs().min() >= 0
    else:  # theta_0 + A e: Kaiming-normal base, kernel offsets over the outputs, zero for the bias
        assert torch.all(w[n:] == 0) and torch.all(b[n:] == 0)
        assert b[:n].std().item() == pytest.approx(np.sqrt(2 / 1.04) / np.sqrt(27), rel=0.2)
        assert w[:n].std().item() == pytest.approx(np.sqrt(2 / n), rel=0.2)
    torch.nn.init.normal_(conv.generate.weight)
    x, e = torch.randn(2, 3, 7, 6), torch.randn(4)
    params = conv.generate.weight @ e / (4 if kind == "scaled" else 1) + conv.generate.bias
    expected = F.leaky_relu(F.conv2d(x, params[:n].view(5, 3, 3, 3), params[n:], padding=1), 0.2)
    assert torch.allclose(conv(x, e), expected, atol=1e-5)
    with pytest.raises(ValueError, match="parametrisation"):
        HyperConv(2, 3, 5, embed=4, parametrisation="fourier")


def test_film_modulates_an_ordinary_convolutions_channels():
    torch.manual_seed(0)
    conv = HyperConv(2, 3, 5, embed=4, parametrisation="film")
    assert conv.weight.shape == (5, 3, 3, 3) and torch.all(conv.bias == 0)
    assert conv.weight.abs().max() <= np.sqrt(2 / 1.04) * np.sqrt(3 / 27) + 1e-6  # Kaiming-uniform
    x, e = torch.randn(2, 3, 7, 6), torch.randn(4)
    plain = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, padding=1), 0.2)
    assert torch.all(conv.generate.weight == 0) and torch.equal(conv(x, e), plain)  # no modulation at the start
    torch.nn.init.normal_(conv.generate.weight)
    torch.nn.init.normal_(conv.generate.bias)
    mod = (conv.generate.weight @ e + conv.generate.bias) / 2  # / sqrt(embed)
    gamma, beta = mod[:5].view(1, 5, 1, 1), mod[5:].view(1, 5, 1, 1)
    expected = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, padding=1) * (1 + gamma) + beta, 0.2)
    assert torch.allclose(conv(x, e), expected, atol=1e-5)
    # one embedding per sample: each sample modulated by its own (gamma, beta)
    es = torch.randn(2, 4)
    each = torch.cat([conv(x[i:i + 1], es[i]) for i in range(2)])
    assert torch.allclose(conv(x, es), each, atol=1e-5)
    with pytest.raises(ValueError, match="3 lambdas for a batch of 2"):
        conv(x, torch.randn(3, 4))


def test_lambda_scale_known_values():
    s = 0.05 ** 2
    uniform = hypermorph.LambdaScale("hoopes", "uniform", s)
    assert torch.equal(uniform.lam(torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)),
                       torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64))
    assert uniform.weight(0.8) == pytest.approx(0.01) and uniform.weight(1.0) == float("inf")
    logw = hypermorph.LambdaScale("hoopes", "log-weight", s, (1e-5, 10.0))
    # t = 0.5: w = 1e-5 x (1e6)^0.5 = 0.01, lambda = w / (s + w) = 0.8; the ends are lambda 0 and 1
    np.testing.assert_allclose(logw.lam(torch.tensor([0.0, 0.5, 1.0])).numpy(), [0.0, 0.8, 1.0], rtol=1e-6)
    assert logw.t_of(0.8) == pytest.approx(0.5) and logw.t_of(0.0) == 0.0 and logw.t_of(1.0) == 1.0
    assert logw.weight(float(logw.lam(torch.tensor([0.25]))[0])) == pytest.approx(1e-5 * 1e6 ** 0.25, rel=1e-5)
    authors = hypermorph.LambdaScale("gsmorph", "uniform", s, lambda_max=1.0)
    assert float(authors.lam(torch.tensor([0.3]))[0]) == pytest.approx(0.3)
    assert authors.weight(1.0) == pytest.approx(s)  # at most 1/400: weakly regularised everywhere
    authors_logw = hypermorph.LambdaScale("gsmorph", "log-weight", s, (1e-5, 10.0))
    assert float(authors_logw.lam(torch.tensor([0.5]))[0]) == pytest.approx(0.01 / s, rel=1e-5)


def test_log_weight_sampling_gives_a_log_uniform_equivalent_weight():
    from scipy import stats

    torch.manual_seed(0)
    t = hypermorph.sample_lambdas(4000, 0.2)
    scale = hypermorph.LambdaScale("hoopes", "log-weight", 0.05 ** 2, (1e-5, 10.0))
    lam = scale.lam(t).numpy()
    inner = lam[(lam > 0) & (lam < 1)]
    assert np.isin(lam, [0.0, 1.0]).mean() == pytest.approx(0.2, abs=0.03)
    log_w = np.log10(inner * 0.05 ** 2 / (1 - inner))  # the weight from lambda, by hand
    assert stats.kstest((log_w + 5) / 6, "uniform").pvalue > 0.01  # log10 w ~ U(-5, 1)
    assert np.mean(inner > 0.976) == pytest.approx(2 / 6, abs=0.04)  # w > 0.1: 2 of 6 decades


def _by_hand(moving, fixed, model, t, lam, sigma, loss, smoothness):
    from gsmorph.networks import warp_image

    total = 0.0
    for i in range(moving.shape[0]):
        ti, li = (t[0], lam[0]) if len(t) == 1 else (t[i], lam[i])
        disp = model(torch.cat([moving[i:i + 1], fixed[i:i + 1]], 1), float(ti))
        sim = ((warp_image(moving[i:i + 1], disp) - fixed[i:i + 1]) ** 2).mean() / sigma ** 2
        if smoothness == "l2":  # central differences inside the border (MONAI's DiffusionLoss)
            dx = (disp[:, :, 2:, 1:-1] - disp[:, :, :-2, 1:-1]) / 2
            dy = (disp[:, :, 1:-1, 2:] - disp[:, :, 1:-1, :-2]) / 2
            reg = (dx ** 2 + dy ** 2).mean()
        else:  # forward differences, mean over the two directions
            reg = ((disp[:, :, 1:] - disp[:, :, :-1]).abs().mean() + (disp[:, :, :, 1:] - disp[:, :, :, :-1]).abs().mean()) / 2
        total = total + (((1 - li) * sim + li * reg) if loss == "hoopes" else (sim + li * reg)) / moving.shape[0]
    return total


@pytest.mark.parametrize("variant, sampling, per_batch, t, lam, loss, smoothness", [
    ("published", "uniform", False, [0.0, 0.3, 0.9, 1.0], [0.0, 0.3, 0.9, 1.0], "hoopes", "l2"),
    ("default", "log-weight", False, [0.0, 0.25, 0.5, 1.0], [0.0, 0.112266, 0.8, 1.0], "hoopes", "l2"),
    ("gsmorph", "uniform", True, [0.6], [0.6], "gsmorph", "l1"),
])
def test_each_variants_loss_and_sampling_reach_the_training_step(prepared_acdc, tmp_path, monkeypatch, variant,
                                                                 sampling, per_batch, t, lam, loss, smoothness):
    # sigma 0.05 and weight range [1e-5, 10]: t = 0.25 is w = 10^-3.5, lambda = w / (0.0025 + w) = 0.112266
    cfg = tiny_cfg(hypermorph={"variant": variant, "sampling": sampling, "mse_sigma": 0.05,
                               "weight_range": [1e-5, 10.0], "parametrisation": "scaled"})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    assert trainer.hyper["loss"] == loss and trainer.hyper["smoothness"] == smoothness
    _lambda_dependent(trainer.model.backbone)
    torch.nn.init.normal_(trainer.model.backbone.flow.weight, std=0.05)
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:4], bucket["fixed"][:4]
    asked, seen = [], []
    monkeypatch.setattr(hypermorph, "sample_lambdas", lambda n, p: asked.append(n) or torch.tensor(t[:n]))
    forward = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward", lambda x, ti, **kw: seen.append(ti) or forward(x, ti, **kw))
    trainer.model.zero_grad()
    trainer.train_step(moving, fixed)
    got = [p.grad.clone() for p in trainer.model.parameters()]
    assert asked == [1 if per_batch else 4]  # one lambda per batch or one per sample
    assert torch.equal(seen[0], torch.tensor(t))  # the network gets the sampled t
    monkeypatch.setattr(trainer.model, "forward", forward)
    trainer.model.zero_grad()
    _by_hand(moving, fixed, trainer.model, t, lam, 0.05, loss, smoothness).backward()
    for g, p in zip(got, trainer.model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-3, atol=1e-4 * float(p.grad.abs().max()) + 1e-12)


def _smooth_image(rng, size=64):
    x, y = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    img = np.zeros_like(x)
    for _ in range(5):
        cx, cy, w = rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.5)
        img += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * w ** 2))
    return img / img.max()


def test_sigma_estimate_on_a_pair_with_known_noise():
    rng = np.random.default_rng(0)
    clean = _smooth_image(rng)
    moving = clean + rng.normal(0, 0.03, clean.shape)
    fixed = np.roll(clean, 3, axis=0) + rng.normal(0, 0.04, clean.shape)  # aligned by a shift: noise remains
    assert hypermorph.noise_sigma(moving) == pytest.approx(0.03, rel=0.08)
    assert hypermorph.noise_sigma(clean) < 0.003  # a smooth image has (almost) no noise
    assert hypermorph.pair_sigma(moving, fixed) == pytest.approx(0.05, rel=0.08)  # sqrt(0.03^2 + 0.04^2)
    stack = np.stack([moving, moving], axis=-1)  # 3D: the median over slices
    assert hypermorph.noise_sigma(stack) == pytest.approx(hypermorph.noise_sigma(moving))
    buckets = [{"moving": torch.from_numpy(np.stack([moving, moving * 0 + clean]))[:, None].float(),
                "fixed": torch.from_numpy(np.stack([fixed, fixed]))[:, None].float()}]
    expected = np.median([hypermorph.pair_sigma(moving, fixed), hypermorph.pair_sigma(clean, fixed)])
    assert hypermorph.estimate_sigma(buckets) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least 3 x 3"):
        hypermorph.noise_sigma(np.zeros((2, 5)))


def test_estimated_sigma_reaches_the_run(prepared_acdc, tmp_path):
    cfg = tiny_cfg(hypermorph={"mse_sigma": "estimate"})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    assert trainer.sigma == pytest.approx(hypermorph.estimate_sigma(trainer.train_data))
    assert trainer.scale.scale == pytest.approx(trainer.sigma ** 2)
    assert trainer.hyper_record()["hyper_sigma"] == trainer.sigma


def test_variant_keys_are_validated_and_null_keys_take_the_variants_values():
    assert hypermorph.settings(tiny_cfg(hypermorph={"variant": "published"}))["parametrisation"] == "dense"
    chosen = hypermorph.settings(tiny_cfg(hypermorph={"variant": "gsmorph", "smoothness": "l2"}))
    assert (chosen["loss"], chosen["lambda_per"], chosen["smoothness"]) == ("gsmorph", "batch", "l2")
    for key, value in [("variant", "hoopes"), ("parametrisation", "fourier"), ("encoding", "fourier"),
                       ("epochs_factor", 0), ("epochs_factor", 1.5),
                       ("sampling", "normal"), ("loss", "ncc"), ("lambda_per", "epoch"), ("mse_sigma", "auto"),
                       ("mse_sigma", 0), ("weight_range", [1.0]), ("weight_range", [0.0, 1.0]), ("lambda_max", -1)]:
        with pytest.raises(GSMorphError, match=f"hypermorph.{key}"):
            tiny_cfg(hypermorph={key: value})
    with pytest.raises(GSMorphError, match="hypermorph.weight_range"):
        hypermorph.settings(tiny_cfg(hypermorph={"weight_range": [1.0, 0.1]}))


def test_the_authors_variant_caveat_names_its_largest_lambda(prepared_acdc, tmp_path):
    cfg = tiny_cfg(hypermorph={"variant": "gsmorph"})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "g", cfg)
    trainer.sweep_rows = [{"stage": "coarse", "lam": 0.0, "hyper_input": 0.0, "val_dice": 0.86},
                          {"stage": "coarse", "lam": 1.0, "hyper_input": 1.0, "val_dice": 0.859}]
    trainer.identity_dice = 0.65
    assert "at lambda 1 (its largest, weighted-loss equivalent 0.0025)" in trainer.lambda_caveat()


def test_lambda_lr_factor_speeds_up_only_the_lambda_dependent_parameters(prepared_acdc, tmp_path):
    cfg = tiny_cfg(hypermorph={"lambda_lr_factor": 10.0, "mse_sigma": 0.05})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "f", cfg)
    trainer.initialize()
    net = trainer.model.backbone
    others, dependent = trainer.optimizer.param_groups
    assert (others["lr"], dependent["lr"]) == (pytest.approx(5e-3), pytest.approx(5e-2))
    expected = {id(p) for p in net.mlp.parameters()} | {id(c.generate.weight) for c in [*net.encoder, *net.decoder]}
    assert {id(p) for p in dependent["params"]} == expected
    assert len(others["params"]) + len(dependent["params"]) == len(list(trainer.model.parameters()))
    assert type(trainer.optimizer) is torch.optim.AdamW
    plain = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "p",
                                         tiny_cfg(hypermorph={"lambda_lr_factor": 1.0, "mse_sigma": 0.05}))
    plain.initialize()
    assert len(plain.optimizer.param_groups) == 1


def test_epochs_factor_multiplies_hypermorphs_epochs_alone(prepared_acdc, tmp_path):
    cfg = tiny_cfg(epochs=1, hypermorph={"hidden": 8, "layers": 2, "val_lambdas": 3, "epochs_factor": 3})
    hyper = train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "hyper", cfg)
    plain = train_method(prepared_acdc, "voxelmorph", "weighted-m", 0, tmp_path / "plain", cfg)
    assert len(pd.read_csv(tmp_path / "hyper" / "train_log.csv")) == 3 and hyper["epochs_done"] == 3
    assert len(pd.read_csv(tmp_path / "plain" / "train_log.csv")) == 1
    assert json.loads((tmp_path / "hyper" / "run.json").read_text())["config"]["epochs"] == 3
