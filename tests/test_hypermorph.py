"""HyperMorph: generated convolutions, lambda sampling, its loss, lambda selection, inference."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from baselines import hypermorph
from baselines.hypernet import HyperConv, HyperUNet
from gsmorph.config import load_config
from gsmorph.errors import GSMorphError
from gsmorph.training import train_method


def tiny_cfg(**overrides):
    cfg = {"backbones": {"voxelmorph": {"features": [4, 8, 8]}},
           "hypermorph": {"hidden": 8, "layers": 2, "val_lambdas": 3},
           "epochs": 1, "batch_size": 8, "val_every": 1, "max_train_pairs": 8, "max_val_pairs": 4,
           "device": "cpu"}
    cfg.update(overrides)
    return load_config(None, cfg)


# ------------------------------------------------------------------ the hypernetwork

def test_hyperconv_is_the_convolution_with_the_generated_kernel():
    torch.manual_seed(0)
    conv = HyperConv(2, 3, 5, embed=4)
    x, e = torch.randn(2, 3, 7, 6), torch.randn(4)
    params = conv.generate.weight @ e + conv.generate.bias  # the per-layer linear map
    kernel, bias = params[: 5 * 3 * 9].view(5, 3, 3, 3), params[5 * 3 * 9:]
    expected = F.leaky_relu(F.conv2d(x, kernel, bias, padding=1), 0.2)
    assert torch.allclose(conv(x, e), expected, atol=1e-6)


def test_output_depends_on_lambda_and_any_size_works():
    torch.manual_seed(0)
    net = HyperUNet(3, features=[4, 8], hidden=8, layers=2)
    torch.nn.init.normal_(net.flow.weight, std=0.1)  # a visible flow (the head starts near zero)
    x = torch.rand(1, 2, 9, 10, 5)
    a, b = net(x, 0.0), net(x, 1.0)
    assert a.shape == (1, 3, 9, 10, 5)
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(net(x, 0.0), a)


def test_gradient_reaches_the_mlp_through_every_generated_convolution():
    torch.manual_seed(0)
    net = HyperUNet(2, features=[4, 8, 8], hidden=8, layers=3)
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


def test_lambda_sampling_endpoints_and_uniform():
    torch.manual_seed(0)
    ends = [hypermorph.sample_lambda(1.0) for _ in range(200)]
    assert set(ends) == {0.0, 1.0}
    inner = np.array([hypermorph.sample_lambda(0.0) for _ in range(2000)])
    assert np.all((inner > 0) & (inner < 1))
    assert inner.mean() == pytest.approx(0.5, abs=0.03)
    mixed = np.array([hypermorph.sample_lambda(0.2) for _ in range(4000)])
    assert np.isin(mixed, [0.0, 1.0]).mean() == pytest.approx(0.2, abs=0.03)


def test_network_kwargs_follow_the_voxelmorph_backbone():
    cfg = tiny_cfg()
    assert hypermorph.network_kwargs(cfg, "voxelmorph")["features"] == [4, 8, 8]
    cfg["hypermorph"]["features"] = [2, 4]
    assert hypermorph.network_kwargs(cfg, "voxelmorph")["features"] == [2, 4]
    from gsmorph import methods

    assert methods.get("hypermorph").backbones == ("voxelmorph",)  # the table limits it; the trainer refuses others


# ------------------------------------------------------------------ training

def test_training_step_loss_is_hypermorph_weighting(prepared_acdc, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    torch.nn.init.normal_(trainer.model.backbone.flow.weight, std=0.05)
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:4], bucket["fixed"][:4]
    monkeypatch.setattr(hypermorph, "sample_lambda", lambda endpoint_prob: 0.3)
    trainer.model.zero_grad()
    logs = trainer.train_step(moving, fixed)
    got = [p.grad.clone() for p in trainer.model.parameters()]

    from gsmorph.networks import warp_image

    trainer.model.zero_grad()
    disp = trainer.model(torch.cat([moving, fixed], 1), 0.3)
    mse = ((warp_image(moving, disp) - fixed) ** 2).mean()
    reg = trainer.reg_loss(disp)
    (0.7 * mse / 0.05 ** 2 + 0.3 * reg).backward()
    for g, p in zip(got, trainer.model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-9)
    assert logs["loss_sim"].item() == pytest.approx(mse.item() / 0.05 ** 2, rel=1e-5)


def test_smoothness_grows_with_lambda_after_short_training(prepared_acdc, tmp_path):
    # 32 steps of 4 pairs; sigma 0.2 puts the sim/reg balance inside [0, 1] at this stage
    cfg = tiny_cfg(epochs=8, batch_size=4, max_train_pairs=16, val_every=100, hypermorph={
        "hidden": 16, "layers": 2, "val_lambdas": 3, "endpoint_prob": 0.5, "mse_sigma": 0.2})
    trainer = hypermorph.HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "run", cfg)
    trainer.fit()
    bucket = trainer.train_data[0]
    roughness = []
    with torch.no_grad():
        for lam in (0.0, 0.5, 1.0):
            roughness.append(trainer.reg_loss(trainer.predict(bucket["moving"], bucket["fixed"], lam)).item())
    # more smoothness weight -> a smoother field (lower gradient norm), monotonically
    assert roughness[0] > roughness[1] > roughness[2]
    assert roughness[2] < 0.8 * roughness[0]


def test_full_run_chooses_lambda_on_validation_and_infers(prepared_acdc, tmp_path):
    from gsmorph.cli import main
    from gsmorph.inference import infer_split, load_run

    run = tmp_path / "run"
    overrides = {"backbones": {"voxelmorph": {"features": [4, 8, 8]}},
                 "hypermorph": {"hidden": 8, "layers": 2, "val_lambdas": 5},
                 "epochs": 1, "batch_size": 8, "max_train_pairs": 8, "max_val_pairs": 4, "device": "cpu"}
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "hypermorph",
                 "--seed", "0", "--out", str(run), "--set", json.dumps(overrides)]) == 0
    sweep = pd.read_csv(run / "lambda_sweep.csv")
    assert list(sweep.columns) == ["lam", "val_dice", "val_njd_pct"]
    assert sweep["lam"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    best = sweep.loc[sweep["val_dice"].idxmax()]
    info = json.loads((run / "run.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert info["method"] == "hypermorph"
    assert info["hyper_lambda"] == summary["hyper_lambda"] == best["lam"]
    assert summary["best_val_dice"] == pytest.approx(best["val_dice"])

    _, loaded, _ = load_run(run)
    assert loaded["hyper_lambda"] == best["lam"] and loaded["trainer"] == "baselines.hypermorph:HyperMorphTrainer"
    pairs_dir = infer_split(run, prepared_acdc, "test", tmp_path / "pairs")
    assert (pairs_dir / "index.csv").is_file()


def test_transmorph_and_bad_config_are_clear_errors(prepared_acdc, tmp_path):
    with pytest.raises(GSMorphError, match="supports backbone"):
        train_method(prepared_acdc, "transmorph", "hypermorph", 0, tmp_path / "r", tiny_cfg())
    with pytest.raises(GSMorphError, match="val_lambdas"):
        train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "r",
                     tiny_cfg(hypermorph={"val_lambdas": 1}))
    with pytest.raises(GSMorphError, match="endpoint_prob"):
        train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "r",
                     tiny_cfg(hypermorph={"endpoint_prob": 1.5}))
