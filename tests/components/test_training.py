"""The training loop on phantom pairs: learning, exact resume, run folder, failures."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from gsmorph.config import load_config
from gsmorph.errors import GSMorphError
from gsmorph.metrics import dice_torch, njd_percent_torch
from gsmorph.training import Trainer, train_method
from gsmorph.training.steps import drop_gradients_unless

from tiny import TRANSMORPH, VOXELMORPH, small_cfg, tiny

SMALL_NET = VOXELMORPH

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def train_run(*args, **kwargs):
    return train_method(*args, **kwargs)


# --------------------------------------------------------------- metric helpers
def test_validation_dice_follows_the_evaluation_rules():
    """dice_torch: a structure counts when the moving and the fixed frame have it; 0 when
    the warp erased it; NaN when either frame lacks it."""
    shape = (1, 1, 6, 6)
    moving, fixed, moved = (torch.zeros(shape, dtype=torch.long) for _ in range(3))
    moving[0, 0, :2, :2] = 1
    fixed[0, 0, :1, :2] = 1
    moved[0, 0, :2, :2] = 1    # LV: 4 moved voxels, 2 fixed, all overlapping: 2*2/(4+2)
    moving[0, 0, 4, 4] = 2     # Myo in the moving frame and in the fixed one, erased by the warp: 0
    fixed[0, 0, 5, 5] = 2
    moved[0, 0, 3, 3] = 3      # RV only in the moved map: neither frame has it: NaN
    dice = dice_torch(moved, fixed, moving)[0]
    assert dice[0].item() == pytest.approx(2 / 3)
    assert dice[1].item() == 0.0
    assert math.isnan(dice[2].item())
    fixed[0, 0, 0, 5] = 3      # the fixed frame has RV now, the moving one still not: NaN
    assert math.isnan(dice_torch(moved, fixed, moving)[0, 2].item())


def test_njd_percent_torch_of_known_fields():
    zero = torch.zeros(2, 2, 8, 8)
    assert njd_percent_torch(zero).tolist() == [0.0, 0.0]
    # u_0 = -2 x_0: det = 1 - 2 = -1 everywhere (the field folds the grid)
    x0 = torch.arange(8.0).view(1, 1, 8, 1).expand(1, 1, 8, 8)
    folding = torch.cat([-2 * x0, torch.zeros_like(x0)], dim=1)
    assert njd_percent_torch(folding).item() == 100.0
    # 3D: contraction by half along axis 2 keeps det = 0.5 > 0
    x2 = torch.arange(6.0).view(1, 1, 1, 1, 6).expand(1, 1, 4, 5, 6)
    field3 = torch.cat([torch.zeros_like(x2), torch.zeros_like(x2), -0.5 * x2], dim=1)
    assert njd_percent_torch(field3).item() == 0.0


def test_validation_metrics_agree_with_evaluation():
    from gsmorph import metrics

    rng = np.random.default_rng(0)
    for shape in [(2, 16, 12), (3, 8, 9, 7)]:
        u = (rng.normal(size=shape) * 1.2).astype(np.float32)
        ours = njd_percent_torch(torch.from_numpy(u)[None]).item()
        assert ours == pytest.approx(metrics.njd_percent(u), abs=1e-4)
    a, b = rng.integers(0, 4, size=(2, 20, 20))
    ours = dice_torch(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None],
                      torch.from_numpy(b)[None, None])[0]
    for k, value in enumerate((1, 2, 3)):
        assert ours[k].item() == pytest.approx(metrics.dice(a == value, b == value))


# --------------------------------------------------------------- argument checks
def test_weighted_without_lambda_is_a_clear_error(prepared_acdc, tmp_path):
    with pytest.raises(GSMorphError, match="--lam"):
        Trainer(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", small_cfg())


@pytest.mark.parametrize("method, backbone, lam, message", [
    ("gsmorph", "voxelmorph", 0.1, "takes no --lam"),
    ("sgd", "voxelmorph", None, "unknown method"),
    ("gsmorph", "unet", None, "unknown backbone 'unet'"),
    ("weighted", "voxelmorph", -1.0, "--lam must be"),
])
def test_bad_arguments(prepared_acdc, tmp_path, method, backbone, lam, message):
    with pytest.raises(GSMorphError, match=message):
        Trainer(prepared_acdc, backbone, method, 0, tmp_path / "run", small_cfg(), lam=lam)


def test_missing_prepared_folder(tmp_path):
    with pytest.raises(GSMorphError, match="subjects.csv"):
        Trainer(tmp_path / "nowhere", "voxelmorph", "gsmorph", 0, tmp_path / "run", small_cfg())


# --------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def forty_steps(prepared_acdc, tmp_path_factory):
    """A GSMorph run of 40 steps: 16 training pairs, batch 8 (2 steps/epoch), 20 epochs."""
    run = tmp_path_factory.mktemp("forty") / "run"
    cfg = small_cfg(epochs=20, batch_size=8, max_train_pairs=16, max_val_pairs=16, val_every=10)
    trainer = Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, run, cfg)
    trainer.initialize()
    with torch.no_grad():
        identity_dice = torch.cat([dice_torch(b["moving_label"].long(), b["fixed_label"].long(),
                                              b["moving_label"].long())
                                   for b in trainer.val_data]).nanmean(1).nanmean().item()
    summary = trainer.fit()
    return trainer, summary, identity_dice, run


def test_forty_gsmorph_steps_lower_similarity_and_beat_no_registration(forty_steps):
    trainer, summary, identity_dice, run = forty_steps
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.columns[:7]) == ["epoch", "loss_sim", "loss_reg", "val_dice", "epoch_s", "wall_s", "lr"]
    assert log["epoch"].tolist() == list(range(1, 21))
    assert log["loss_sim"].iloc[-1] < 0.8 * log["loss_sim"].iloc[0]
    assert log["val_dice"].notna().sum() == 2  # epochs 10 and 20
    assert summary["best_val_dice"] > identity_dice + 0.02
    assert summary["best_epoch"] in (10, 20)
    assert summary["epochs_done"] == 20 and summary["device"] == "cpu"
    assert 0.0 <= summary["val_njd_pct"] < 5.0

    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "gsmorph" and info["surgery_mode"] == "layerwise"
    assert info["backbone_kwargs"] == {"features": [8, 16, 32]} and info["spatial_dims"] == 2
    best = torch.load(run / "best.pt", weights_only=True)
    assert set(best) == set(trainer.model.state_dict())
    assert (run / "provenance.json").is_file()


def test_conflicts_csv_has_every_layer_every_epoch(forty_steps):
    trainer, _, _, run = forty_steps
    conflicts = pd.read_csv(run / "conflicts.csv")
    assert list(conflicts.columns) == ["epoch", "group", "n_steps", "conflict_frac", "cosine_mean"]
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert conflicts["group"].tolist() == names * 20
    assert conflicts["epoch"].tolist() == [e for e in range(1, 21) for _ in names]
    assert (conflicts["n_steps"] == 2).all()
    assert conflicts["conflict_frac"].isin([0.0, 0.5, 1.0]).all()  # 2 steps per epoch
    assert conflicts["conflict_frac"].mean() > 0  # similarity and smoothness do conflict


def test_conflict_cosines_are_bounded(forty_steps):
    conflicts = pd.read_csv(forty_steps[3] / "conflicts.csv")
    assert conflicts["cosine_mean"].abs().max() <= 1 + 1e-5


# --------------------------------------------------------------- resume
def _final_state(run):
    return torch.load(run / "last.pt", weights_only=True)


TINY_TRANSMORPH = {"transmorph": {**TRANSMORPH["transmorph"], "drop_path_rate": 0.3}}


# transmorph's stochastic depth draws from torch's RNG: resume must restore it; its default
# poly schedule depends on the number of epochs, so this budget extension uses a constant lr
# (the poly schedule's resume: test_poly_schedule_resumes_exactly_and_refuses_another_budget)
@pytest.mark.parametrize("backbone, method, lam", [("voxelmorph", "gsmorph", None), ("transmorph", "weighted", 0.1)])
def test_killed_and_resumed_run_ends_bitwise_identical(prepared_acdc, tmp_path, backbone, method, lam):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    nets = {**SMALL_NET, **TINY_TRANSMORPH}
    optim = {"transmorph": {"schedule": "constant", "warmup_epochs": 1, "grad_clip": 1.0}}
    train_run(prepared_acdc, backbone, method, 3, straight, small_cfg(epochs=4, backbones=nets, optim=optim),
              lam=lam)
    train_run(prepared_acdc, backbone, method, 3, resumed, small_cfg(epochs=2, backbones=nets, optim=optim),
              lam=lam)
    assert _final_state(resumed)["epoch"] == 2
    train_run(prepared_acdc, backbone, method, 3, resumed, small_cfg(epochs=4, backbones=nets, optim=optim),
              lam=lam)

    a, b = _final_state(straight), _final_state(resumed)
    assert a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in ("loss_sim", "loss_reg", "val_dice"):
        assert [row[key] for row in a["log"]] == [row[key] for row in b["log"]]
    if method != "weighted":
        assert pd.read_csv(straight / "conflicts.csv").equals(pd.read_csv(resumed / "conflicts.csv"))
    assert len(pd.read_csv(resumed / "train_log.csv")) == 4


def test_resume_refuses_a_different_run(prepared_acdc, tmp_path):
    train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", small_cfg(epochs=1), lam=0.01)
    with pytest.raises(GSMorphError, match="made with another lam"):
        train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", small_cfg(epochs=2), lam=0.1)
    with pytest.raises(GSMorphError, match="made with another optim"):
        train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", small_cfg(epochs=2, lr=1e-3),
                  lam=0.01)
    with pytest.raises(GSMorphError, match="made with another optim"):
        train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run",
                  small_cfg(epochs=2, optim={"voxelmorph": {"grad_clip": 1.0}}), lam=0.01)
    # other methods' sections, other backbones' optimisers and the budget may change: the run continues
    other = small_cfg(epochs=2, tune={"trials": 3}, demons={"iterations": 5}, optim={"transmorph": {"lr": 0.1}})
    assert train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", other, lam=0.01)["epochs_done"] == 2


def test_fresh_if_changed_restarts_another_run_and_resumes_the_same(prepared_acdc, tmp_path, capsys):
    run = tmp_path / "run"
    train_run(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=1), lam=0.01)
    (run / "notes.txt").write_text("mine")
    # the same run with a larger budget resumes (epoch 1 is not trained again)
    summary = train_run(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=2), lam=0.01,
                        fresh_if_changed=True)
    assert summary["epochs_done"] == 2 and len(pd.read_csv(run / "train_log.csv")) == 2
    assert "starting afresh" not in capsys.readouterr().err
    # another lambda: its files go, training starts at epoch 1, other files stay
    summary = train_run(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=1), lam=0.1,
                        fresh_if_changed=True)
    assert "made with another lam; starting afresh" in capsys.readouterr().err
    assert summary["lam"] == 0.1 and pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1]
    assert (run / "notes.txt").read_text() == "mine"


def test_a_resume_under_another_cpu_thread_count_is_refused(prepared_acdc, tmp_path):
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train_run(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=1), lam=0.01)
        torch.set_num_threads(2)
        with pytest.raises(GSMorphError, match="made with another cpu_threads"):
            train_run(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=2), lam=0.01)
    finally:
        torch.set_num_threads(threads)
    assert json.loads((run / "provenance.json").read_text())["cpu_threads"] == 1


def test_fixed_lambda_methods_take_their_lambda_from_the_config(prepared_acdc, tmp_path):
    cfg = small_cfg(epochs=1, lambdas={"s": 0.002, "m": 0.01, "l": 0.1})
    summary = train_run(prepared_acdc, "voxelmorph", "weighted-s", 0, tmp_path / "run", cfg)
    assert summary["lam"] == 0.002 and json.loads((tmp_path / "run" / "run.json").read_text())["lam"] == 0.002
    with pytest.raises(GSMorphError, match="lambdas.s' and takes no --lam"):
        Trainer(prepared_acdc, "voxelmorph", "weighted-s", 0, tmp_path / "r2", cfg, lam=0.5)


# --------------------------------------------------------------- failures
class _NaNAfter(torch.nn.Module):
    """MSE that turns NaN after `steps` calls."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.calls = steps, 0

    def forward(self, moved, fixed):
        self.calls += 1
        loss = ((moved - fixed) ** 2).mean()
        return loss * float("nan") if self.calls > self.steps else loss


def test_non_finite_loss_stops_naming_the_epoch_and_keeps_last_good_checkpoint(prepared_acdc, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(prepared_acdc, "voxelmorph", "weighted", 0, run, small_cfg(epochs=3), lam=0.01)
    trainer.initialize()
    trainer.sim_loss = _NaNAfter(steps=2)  # 8 pairs / batch 4: epoch 1 is finite, epoch 2 is not
    with pytest.raises(GSMorphError, match=r"non-finite loss at epoch 2 .*epoch 1"):
        trainer.fit()
    state = _final_state(run)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(pd.read_csv(run / "train_log.csv")) == 1

    # the CUDA path cannot stop mid-epoch without a sync: it zeroes the step's gradients
    params = [p for p in trainer.model.parameters()]
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    drop_gradients_unless(trainer.optimizer, torch.tensor(True))
    assert all(torch.isnan(p.grad).all() for p in params)
    drop_gradients_unless(trainer.optimizer, torch.tensor(False))
    assert all((p.grad == 0).all() for p in params)


def test_report_callback_sees_each_validation_and_can_stop(prepared_acdc, tmp_path):
    seen = []

    class Stop(Exception):
        pass

    def report(epoch, val_dice):
        seen.append((epoch, val_dice))
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_run(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", small_cfg(epochs=5),
                  lam=0.01, report=report)
    assert [e for e, _ in seen] == [1, 2]
    assert all(0.0 <= d <= 1.0 for _, d in seen)
    assert _final_state(tmp_path / "run")["epoch"] == 2


def test_a_job_log_has_progress_lines_and_tensorboard_events(prepared_acdc, tmp_path):
    """Not on a terminal (a Snakemake job's log): a line per validation and at least every
    few seconds, with the losses, the validation Dice and the time left."""
    import re
    import subprocess
    import sys

    run = tmp_path / "run"
    cfg = tiny(epochs=4, batch_size=4, val_every=2, tensorboard=True, without=("num_threads",))
    proc = subprocess.run([sys.executable, "-m", "gsmorph.cli", "train", "--prepared", str(prepared_acdc),
                           "--backbone", "voxelmorph", "--method", "gsmorph", "--seed", "0", "--out", str(run),
                           "--set", json.dumps(cfg)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = re.findall(r"^epoch (\d+)/4 loss_sim=\S+ loss_reg=\S+ val_dice=(\S+) eta=\d+m\d\ds$", proc.stderr, re.M)
    assert [int(e) for e, _ in lines][-1] == 4 and {"2", "4"} <= {e for e, _ in lines}
    assert all(d != "-" for e, d in lines if int(e) >= 2)
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

# --------------------------------------------------------------- optimisation per backbone
def _optimizer(prepared, tmp_path, backbone, **cfg):
    nets = {**SMALL_NET, **TINY_TRANSMORPH}
    trainer = Trainer(prepared, backbone, "weighted", 0, tmp_path / backbone, small_cfg(backbones=nets, **cfg), lam=0.01)
    trainer.initialize()
    return trainer.optimizer


def test_per_backbone_optimiser_settings_reach_the_optimizer(prepared_acdc, tmp_path):
    vm = _optimizer(prepared_acdc, tmp_path, "voxelmorph")  # the paper's: AdamW, lr 5e-3, no decay
    assert type(vm) is torch.optim.AdamW
    assert vm.param_groups[0]["lr"] == 5e-3 and vm.param_groups[0]["weight_decay"] == 0.0
    assert vm.param_groups[0]["amsgrad"] is False
    tm = _optimizer(prepared_acdc, tmp_path, "transmorph")  # the TransMorph authors': Adam (amsgrad), 1e-4
    assert type(tm) is torch.optim.Adam
    assert tm.param_groups[0]["lr"] == 1e-4 and tm.param_groups[0]["amsgrad"] is True
    assert tm.param_groups[0]["weight_decay"] == 0.0
    # a backbone's settings change only its own optimiser, key by key
    optim = {"transmorph": {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.01}}
    tm = _optimizer(prepared_acdc, tmp_path, "transmorph", optim=optim)
    assert type(tm) is torch.optim.AdamW and tm.param_groups[0]["lr"] == 3e-4
    assert tm.param_groups[0]["weight_decay"] == 0.01 and tm.param_groups[0]["amsgrad"] is True
    assert _optimizer(prepared_acdc, tmp_path, "voxelmorph", optim=optim).param_groups[0]["lr"] == 5e-3
    # the top-level lr (what tune.tune_lr sets per trial) overrides every backbone's
    assert _optimizer(prepared_acdc, tmp_path, "transmorph", lr=2e-3).param_groups[0]["lr"] == 2e-3
    assert _optimizer(prepared_acdc, tmp_path, "voxelmorph", lr=2e-3).param_groups[0]["lr"] == 2e-3


def test_a_backbone_without_settings_gets_voxelmorphs():
    from gsmorph.config import DEFAULTS, optim_settings

    assert optim_settings(load_config(), "tinynet") == DEFAULTS["optim"]["voxelmorph"]


def test_bad_optimiser_settings_are_clear_errors():
    from gsmorph.config import optim_settings

    with pytest.raises(GSMorphError, match=r"config key 'optim.voxelmorph.optimizer': 'sgd' is not one of"):
        small_cfg(optim={"voxelmorph": {"optimizer": "sgd"}})
    with pytest.raises(GSMorphError, match=r"unknown config key 'optim.transmorph.learning_rate'"):
        small_cfg(optim={"transmorph": {"learning_rate": 1e-3}})
    with pytest.raises(GSMorphError, match=r"config key 'optim.transmorph.grad_clip'"):
        small_cfg(optim={"transmorph": {"grad_clip": 0}})
    with pytest.raises(GSMorphError, match=r"config key 'optim.transmorph.schedule'"):
        small_cfg(optim={"transmorph": {"schedule": "cosine"}})
    cfg = small_cfg()
    cfg["optim"]["voxelmorph"]["optimizer"] = "rmsprop"  # past the schema (e.g. a config edited in code)
    with pytest.raises(GSMorphError, match=r"config key 'optim.voxelmorph.optimizer': 'rmsprop' is not one of"):
        optim_settings(cfg, "voxelmorph")


def test_lr_factor_known_values():
    from gsmorph.training import lr_factor

    warm = {"warmup_epochs": 2, "schedule": "constant"}
    assert [lr_factor(warm, e, 10, s, 5) for e in (1, 2) for s in range(5)] == \
        pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert lr_factor(warm, 3, 10, 0, 5) == 1.0
    poly = {"warmup_epochs": 0, "schedule": "poly", "poly_power": 0.9}
    assert lr_factor(poly, 1, 10, 3, 5) == 1.0
    assert lr_factor(poly, 6, 10, 0, 5) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(poly, 10, 10, 4, 5) == pytest.approx(0.1 ** 0.9)
    assert lr_factor({**poly, "warmup_epochs": 1}, 1, 10, 0, 4) == pytest.approx(0.25)


def test_schedule_and_clipping_act_on_every_step(prepared_acdc, tmp_path):
    optim = {"voxelmorph": {"schedule": "poly", "poly_power": 2.0, "warmup_epochs": 1, "grad_clip": 1e-3}}
    trainer = Trainer(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run",
                      small_cfg(epochs=3, optim=optim), lam=0.01)
    trainer.initialize()
    steps = []
    step = trainer.optimizer.step

    def spy(*args, **kwargs):
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
        steps.append((trainer.optimizer.param_groups[0]["lr"], float(norm)))
        return step(*args, **kwargs)

    trainer.optimizer.step = spy
    trainer.fit()
    lrs, norms = zip(*steps)
    assert len(steps) == 6  # 8 pairs, batch 4, 3 epochs
    # warm-up over epoch 1 (2 steps), then poly (1 - (epoch - 1) / 3)^2
    assert lrs == pytest.approx([5e-3 * 0.5, 5e-3, 5e-3 * (2 / 3) ** 2, 5e-3 * (2 / 3) ** 2,
                                 5e-3 * (1 / 3) ** 2, 5e-3 * (1 / 3) ** 2])
    assert max(norms) <= 1e-3 * (1 + 1e-4)
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert log["lr"].tolist() == pytest.approx([5e-3, 5e-3 * (2 / 3) ** 2, 5e-3 * (1 / 3) ** 2])


def test_poly_schedule_resumes_exactly_and_refuses_another_budget(prepared_acdc, tmp_path):
    nets = {**SMALL_NET, **TINY_TRANSMORPH}
    cfg = small_cfg(epochs=3, backbones=nets, optim={"transmorph": {"lr": 1e-3}})
    assert cfg["optim"]["transmorph"]["schedule"] == "poly"

    class Killed(Exception):
        pass

    def kill(epoch, val_dice):
        if epoch == 2:
            raise Killed

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_run(prepared_acdc, "transmorph", "weighted", 3, straight, cfg, lam=0.1)
    with pytest.raises(Killed):
        train_run(prepared_acdc, "transmorph", "weighted", 3, resumed, cfg, lam=0.1, report=kill)
    train_run(prepared_acdc, "transmorph", "weighted", 3, resumed, cfg, lam=0.1)
    a, b = _final_state(straight), _final_state(resumed)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with pytest.raises(GSMorphError, match="made with another optim"):  # the lr of every epoch would change
        train_run(prepared_acdc, "transmorph", "weighted", 3, resumed, small_cfg(epochs=4, backbones=nets,
                  optim={"transmorph": {"lr": 1e-3}}), lam=0.1)


def test_run_records_the_backbone_variant_and_its_optimiser(prepared_acdc, tmp_path):
    from gsmorph import backbones

    nets = {**SMALL_NET, **TINY_TRANSMORPH}
    summary = train_run(prepared_acdc, "transmorph", "weighted", 0, tmp_path / "run",
                        small_cfg(epochs=1, backbones=nets), lam=0.1)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["backbone_display"] == info["backbone_display"] == "TransMorph (embed 8, depths 1-1-1-1)"
    assert summary["optim"] == info["optim"] and info["optim"]["optimizer"] == "adam"
    assert backbones.variant_name("transmorph", {"embed_dim": 48, "depths": [2, 2, 4, 2], "num_heads": [4, 4, 8, 8],
                                                 "window_size": 4}) == "TransMorph-S"
    assert backbones.variant_name("transmorph", {}) == "TransMorph-S"  # the default preset, "small"
    assert backbones.variant_name("transmorph", {"preset": "transmorph"}) == "TransMorph"
    assert backbones.variant_name("transmorph", {"preset": "large"}) == "TransMorph-L"
    assert backbones.variant_name("transmorph", {"embed_dim": 6, "depths": [2, 2, 4, 2],
                                                 "num_heads": [2, 2, 4, 4]}) == "TransMorph-T"
    assert backbones.variant_name("voxelmorph", {"features": [16, 32, 64, 128, 256]}) == "VoxelMorph"
    assert backbones.variant_name("voxelmorph", {}) == "VoxelMorph"
    assert backbones.variant_name("voxelmorph", {"features": [8, 16, 32]}) == "VoxelMorph (features 8-16-32)"
