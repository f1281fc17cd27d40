"""Fast training steps (config keys precision, channels_last, compile, surgery_cuda_graph;
gsmorph/training/fast_step.py): refused on a device that lacks them, off by default (the CPU step is
today's), their code paths on a CPU where torch has them (bf16 autocast, channels-last,
compile with the aot_eager backend), recorded in the run's fingerprint and run.json, and
on a CUDA GPU (skipped here without one)."""
from __future__ import annotations

import json

import pytest
import torch

import gsmorph.training as training
from gsmorph import methods
from gsmorph.cli import main
from gsmorph.config import DEFAULTS, load_config
from gsmorph.training.fast_step import STEP_KEYS, StepOptions, apply_precision, step_options
from gsmorph.errors import GSMorphError
from gsmorph.networks import build, warp_image
from gsmorph.surgery import ZERO_EPS
from gsmorph.training import Trainer, train_method

import tiny

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")

SMALL_NET = {**tiny.VOXELMORPH, **tiny.TRANSMORPH}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
FAST = {"precision": "bf16", "channels_last": True}


def small_cfg(device="cpu", **overrides):
    return tiny.small_cfg(device, **{"backbones": SMALL_NET, **overrides})


# ----------------------------------------------------------------- defaults and refusal
def test_defaults_are_the_float32_eager_step():
    assert {k: DEFAULTS[k] for k in STEP_KEYS} == StepOptions().as_dict()
    assert StepOptions().default and not StepOptions().autocast
    assert step_options(DEFAULTS, torch.device("cpu")) == StepOptions()


@pytest.mark.parametrize("key, value, shown", [
    ("precision", "tf32", "'tf32'"),
    ("precision", "bf16", "'bf16'"),
    ("channels_last", True, "true"),
    ("compile", True, "true"),
    ("surgery_cuda_graph", True, "true"),
])
def test_each_option_is_refused_on_a_cpu_naming_key_and_device(prepared_acdc, tmp_path, key, value, shown):
    cfg = small_cfg(**{key: value})
    with pytest.raises(GSMorphError, match=rf"config key '{key}': {shown} needs a CUDA GPU, and this run's "
                                           r"device is cpu"):
        Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_the_cli_refuses_them_too(prepared_acdc, tmp_path, capsys):
    rc = main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "gsmorph",
               "--seed", "0", "--out", str(tmp_path / "run"), "--device", "cpu",
               "--set", json.dumps({"precision": "bf16", "channels_last": True, "epochs": 1})])
    err = capsys.readouterr().err
    assert rc != 0
    assert "config key 'precision': 'bf16' needs a CUDA GPU" in err and "also set: channels_last" in err


def test_unknown_precision_is_a_schema_error():
    with pytest.raises(GSMorphError, match="config key 'precision'"):
        load_config(None, {"precision": "fp16"})


@pytest.mark.parametrize("cfg, capability, triton, message", [
    ({"precision": "bf16"}, (7, 0), True, r"'bf16' needs a GPU of compute capability 8.0 or newer.*has 7.0"),
    ({"precision": "tf32"}, (7, 5), True, r"'tf32' needs a GPU of compute capability 8.0"),
    ({"compile": True}, (9, 0), False, r"config key 'compile': true needs Triton.*Triton is missing"),
    ({"compile": True}, (6, 1), True, r"config key 'compile': true needs Triton and a GPU of compute capability 7.0"),
])
def test_a_gpu_without_the_feature_refuses_it(cfg, capability, triton, message):
    """A stand-in CUDA device: capability and Triton given, as read from a real GPU."""
    with pytest.raises(GSMorphError, match=message):
        step_options(cfg, torch.device("cuda:0"), capability=capability, has_triton=triton, name="Fake GPU")


def test_a_gpu_with_the_features_accepts_them():
    cfg = {"precision": "bf16", "channels_last": True, "compile": True, "surgery_cuda_graph": True}
    opts = step_options(cfg, torch.device("cuda:0"), capability=(9, 0), has_triton=True, name="Fake H100")
    assert opts == StepOptions("bf16", True, True, True) and opts.autocast and not opts.default


def test_precision_flags_are_set_for_each_run_on_cuda_and_never_on_a_cpu():
    """tf32/bf16 turn TF32 matrix products on for the process, fp32 turns them off again
    (so runs in one process do not leak into each other); a CPU run touches nothing."""
    before = torch.get_float32_matmul_precision()
    try:
        apply_precision(StepOptions("tf32"), torch.device("cuda"))  # the flags need no GPU to be set
        assert torch.get_float32_matmul_precision() == "high"
        apply_precision(StepOptions(), torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "high"
        apply_precision(StepOptions(), torch.device("cuda"))
        assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cudnn.allow_tf32  # PyTorch's default for fp32 convolutions
    finally:
        torch.set_float32_matmul_precision(before)


def test_default_options_leave_the_network_and_surgery_untouched(prepared_acdc, tmp_path):
    trainer = Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run", small_cfg())
    trainer.initialize()
    assert "forward" not in vars(trainer.model)  # no wrapper
    assert not hasattr(trainer.model, "_compiled_call_impl") or trainer.model._compiled_call_impl is None
    assert all(p.is_contiguous() for p in trainer.model.parameters())
    assert trainer.surgery.cuda_graph is False


# ----------------------------------------------------------- the code paths on a CPU
def _trainer_with(prepared, tmp_path, options: StepOptions, method="gsmorph", backbone="voxelmorph", **cfg):
    """A CPU trainer given `options` past the device check: torch has bf16 autocast,
    channels-last convolutions and torch.compile (aot_eager) on a CPU too, so the step's
    plumbing is tested here; speed and the CUDA kernels only on a GPU."""
    maker = methods.maker_of(method)
    trainer = maker(prepared, backbone, method, 0, tmp_path / f"run-{method}-{backbone}", small_cfg(**cfg))
    trainer.step_options = options
    trainer.compile_kwargs = {"backend": "aot_eager"}
    trainer.initialize()
    return trainer


@pytest.mark.parametrize("method", ["gsmorph", "weighted-s"])
@pytest.mark.parametrize("options", [StepOptions("bf16", True), StepOptions("bf16"), StepOptions(channels_last=True)])
def test_bf16_and_channels_last_keep_losses_gradients_and_surgery_in_float32(prepared_acdc, tmp_path, method,
                                                                             options):
    trainer = _trainer_with(prepared_acdc, tmp_path, options, method)
    if options.channels_last:
        convs = [p for p in trainer.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:4], bucket["fixed"][:4]
    disp, field = trainer.model(torch.cat([moving, fixed], 1), with_velocity=True)
    assert disp.dtype == field.dtype == torch.float32  # outputs cast back for warping and losses
    trainer.optimizer.zero_grad(set_to_none=True)
    losses = trainer.train_step(moving, fixed)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    for name, p in trainer.model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert p.grad.stride() == p.stride(), name  # the optimiser sees equal layouts
    if options.autocast:  # the forward ran in bfloat16: the losses differ from float32's a little
        reference = _trainer_with(prepared_acdc, tmp_path / "ref", StepOptions(), method)
        ref = reference.train_step(moving, fixed)
        assert losses["loss_reg"] != ref["loss_reg"]
        assert losses["loss_reg"].item() == pytest.approx(ref["loss_reg"].item(), rel=0.05)
        assert losses["loss_sim"].item() == pytest.approx(ref["loss_sim"].item(), rel=0.05)
    summary = trainer.fit()
    assert 0.0 < summary["best_val_dice"] <= 1.0


def test_validation_runs_in_float32_without_autocast(prepared_acdc, tmp_path):
    trainer = _trainer_with(prepared_acdc, tmp_path, StepOptions("bf16", True))
    seen = []
    hook = trainer.model.backbone.register_forward_hook(
        lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype)))
    trainer.validate()
    assert seen and all(not autocast and dtype == torch.float32 for autocast, dtype in seen)
    trainer.model.train()
    trainer.train_step(trainer.train_data[0]["moving"][:2], trainer.train_data[0]["fixed"][:2])
    hook.remove()
    assert seen[-1] == (True, torch.bfloat16)  # the training forward did run in bfloat16


def test_hypermorph_gets_the_options_through_the_network(prepared_acdc, tmp_path):
    trainer = _trainer_with(prepared_acdc, tmp_path, StepOptions("bf16", True), "hypermorph",
                            hypermorph={"hidden": 8, "layers": 2, "val_lambdas": 3})
    losses = trainer.train_step(trainer.train_data[0]["moving"][:4], trainer.train_data[0]["fixed"][:4])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_the_smoothness_zero_guard_still_holds_under_bf16(prepared_acdc, tmp_path):
    """Pitfall 1 of reference/surgery-cost-and-pitfalls.md: the flow head's bias has no
    smoothness gradient; under bf16 autocast its rounding noise must stay below the
    surgery's relative threshold, or the guard would no longer catch it."""
    trainer = _trainer_with(prepared_acdc, tmp_path, StepOptions("bf16", True),
                            backbones={"voxelmorph": {"features": [16, 32, 64, 128, 256]}})
    ratios = _bias_ratios(trainer)
    assert ratios and max(ratios) <= ZERO_EPS, ratios


def _bias_ratios(trainer) -> list[float]:
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:4], bucket["fixed"][:4]
    disp, field = trainer.model(torch.cat([moving, fixed], 1), with_velocity=True)
    sim, reg = trainer.sim_loss(warp_image(moving, disp), fixed), trainer.reg_loss(field)
    named = [(n, p) for n, p in trainer.model.named_parameters()]
    g_sim = torch.autograd.grad(sim, [p for _, p in named], retain_graph=True)
    g_reg = torch.autograd.grad(reg, [p for _, p in named])
    heads = [i for i, (n, p) in enumerate(named) if n.endswith("bias") and p.numel() == trainer.spatial_dims]
    return [float(g_reg[i].square().sum() / g_sim[i].square().sum()) for i in heads]


def test_compile_with_gradient_surgery_trains(prepared_acdc, tmp_path):
    """torch.compile (aot_eager here: AOTAutograd's graphs without code generation) and the
    surgery's two VJPs through one retained graph; weights keep their state-dict keys."""
    trainer = _trainer_with(prepared_acdc, tmp_path, StepOptions(compile=True))
    keys = set(trainer.model.state_dict())
    summary = trainer.fit()
    assert summary["epochs_done"] == 2 and 0.0 < summary["best_val_dice"] <= 1.0
    assert set(torch.load(tmp_path / "run-gsmorph-voxelmorph" / "best.pt", weights_only=True)) == keys


def test_hypermorph_is_not_compiled_and_says_so(prepared_acdc, tmp_path, capsys):
    """HyperMorph calls its network with a new Python lambda every step: compiling would
    recompile at every value, so it trains eagerly, said on stderr and in run.json."""
    trainer = _trainer_with(prepared_acdc, tmp_path, StepOptions("bf16", True, compile=True), "hypermorph",
                            hypermorph={"hidden": 8, "layers": 2, "val_lambdas": 3})
    assert "compile is not applied" in capsys.readouterr().err
    assert trainer.step_options == StepOptions("bf16", True, compile=False)
    assert getattr(trainer.model, "_compiled_call_impl", None) is None
    assert Trainer.supports_compile()


def test_monai_integration_under_bf16_autocast_stays_close_to_float32():
    """The diffeomorphic model integrates inside its forward (MONAI DVF2DDF: grid_sample,
    which autocast runs in float32): under bf16 autocast the displacement stays close."""
    torch.manual_seed(0)
    net = build("voxelmorph", 2, diffeomorphic=True, int_steps=5, features=[8, 16, 32])
    x = torch.rand(2, 2, 32, 32)
    ref = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-6


def test_options_are_in_the_fingerprint_and_run_json(prepared_acdc, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_method(prepared_acdc, "voxelmorph", "weighted-s", 0, run, small_cfg(epochs=1))
    info = json.loads((run / "run.json").read_text())
    assert info["step_options"] == StepOptions().as_dict()
    assert all(info["config"][k] == DEFAULTS[k] for k in STEP_KEYS)
    # a resume under another option (let through the device check here) is another run
    monkeypatch.setattr(training.fast_step, "step_options", lambda cfg, device: StepOptions(channels_last=True))
    with pytest.raises(GSMorphError, match="made with another cfg"):
        train_method(prepared_acdc, "voxelmorph", "weighted-s", 0, run, small_cfg(epochs=2, channels_last=True))


# ------------------------------------------------------------------------ on a GPU
@CUDA
@pytest.mark.parametrize("backbone", ["voxelmorph", "transmorph"])
@pytest.mark.parametrize("method", ["gsmorph", "weighted-s"])
def test_cuda_fast_step_float32_gradients_and_finite_training(prepared_acdc, tmp_path, backbone, method):
    cfg = small_cfg("cuda", **FAST)
    trainer = Trainer(prepared_acdc, backbone, method, 0, tmp_path / "run", cfg)
    trainer.initialize()
    bucket = trainer.train_data[0]
    trainer.optimizer.zero_grad(set_to_none=True)
    losses = trainer.train_step(bucket["moving"][:4], bucket["fixed"][:4])
    assert all(v.dtype == torch.float32 for v in losses.values())
    assert all(p.grad.dtype == torch.float32 and p.grad.stride() == p.stride() for p in trainer.model.parameters())
    summary = trainer.fit()
    assert 0.0 < summary["best_val_dice"] <= 1.0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["step_options"]["precision"] == "bf16"


@CUDA
def test_cuda_bias_guard_under_bf16(prepared_acdc, tmp_path):
    cfg = small_cfg("cuda", backbones={"voxelmorph": {"features": [16, 32, 64, 128, 256]}}, **FAST)
    trainer = Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    ratios = _bias_ratios(trainer)
    assert ratios and max(ratios) <= ZERO_EPS, ratios


@CUDA
def test_cuda_graph_surgery_matches_eager(prepared_acdc, tmp_path):
    runs = {}
    for graph in (False, True):
        out = tmp_path / f"graph{graph}"
        train_method(prepared_acdc, "voxelmorph", "gsmorph", 0, out, small_cfg("cuda", surgery_cuda_graph=graph))
        runs[graph] = torch.load(out / "last.pt", weights_only=True)["model"]
    for key in runs[False]:
        torch.testing.assert_close(runs[True][key], runs[False][key], rtol=1e-4, atol=1e-6)


@CUDA
def test_cuda_compile_trains(prepared_acdc, tmp_path):
    summary = train_method(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run",
                           small_cfg("cuda", compile=True, **FAST))
    assert summary["epochs_done"] == 2 and 0.0 < summary["best_val_dice"] <= 1.0


@CUDA
def test_cuda_validation_dice_of_the_fast_step_is_within_noise_of_fp32(prepared_acdc, tmp_path):
    """Short runs, two seeds each: the fast step's best validation Dice lies within the
    seed-to-seed spread of fp32's (plus 0.02). The paper-scale check is
    benchmarks/paper_cost.py --quality."""
    dice = {}
    for name, opts in (("fp32", {}), ("fast", FAST)):
        dice[name] = [train_method(prepared_acdc, "voxelmorph", "gsmorph", seed, tmp_path / f"{name}{seed}",
                                   small_cfg("cuda", epochs=20, val_every=5, max_train_pairs=32, **opts)
                                   )["best_val_dice"] for seed in (0, 1)]
    spread = max(dice["fp32"]) - min(dice["fp32"])
    mean = {k: sum(v) / len(v) for k, v in dice.items()}
    assert abs(mean["fast"] - mean["fp32"]) <= spread + 0.02, dice
