"""HyperMorph baseline: one network for every smoothness weight, lambda chosen on validation.

As published (Hoopes et al. 2021/2022; voxelmorph's train_hypermorph.py, the TensorFlow code):
- hypernetwork: `hypermorph.layers` x Dense(`hypermorph.hidden`, ReLU), 6 x 128;
- each sample of a batch draws its own lambda: with probability `hypermorph.endpoint_prob`
  (0.2) from {0, 1} (each half), else uniform on [0, 1] (torch's global CPU generator, saved
  in last.pt, so a resumed run draws the same lambdas);
- loss = mean over the batch of (1 - lambda_i) * sim_i / sigma^2 + lambda_i * reg_i, the MSE
  similarity divided by `hypermorph.mse_sigma`^2 (LNCC is used as is); reg is HyperMorph's
  own smoothness loss `hypermorph.smoothness`, the l2 gradient (diffusion) loss by default,
  not the top-level `smoothness` of the other methods.

Choosing lambda (what inference uses and tables report):
- validation during training scores the coarse grid only (`hypermorph.val_lambdas` values
  evenly on [0, 1]; the best of them selects best.pt), which is cheaper;
- after training, with the best weights: the coarse grid, then a fine grid of
  `hypermorph.fine_lambdas` values evenly spaced strictly between the coarse neighbours of
  the coarse best (`fine_grid`); the lambda of highest validation Dice over both grids is
  run.json's and summary.json's `hyper_lambda`.
- whether the lambda-dependence was learned: at lambda 1 the loss is the smoothness alone,
  whose optimum is no deformation, so a trained network gives up its registration there.
  summary.json `hyper_lambda_effect` = (Dice(0) - Dice(1)) / (Dice(0) - Dice(no
  deformation)) on validation with the best weights: about 1 when learned, 0 when the
  network registers alike at every lambda (the trade-off of the MSE scaled by 1/sigma^2
  lies at lambda close to 1, a narrow step for the MLP of lambda to learn). Below
  LAMBDA_EFFECT_MIN the run's `caveat` says so (on stderr and in the report's table captions).
- `lambda_sweep.csv`: stage (coarse | fine), lam, weighted_equivalent, val_dice,
  val_njd_pct, chosen. weighted_equivalent = lambda sigma^2 / (1 - lambda) (MSE; lambda /
  (1 - lambda) for LNCC; infinite at 1) is the weight w of the weighted loss sim + w reg
  with the same, unscaled similarity and HyperMorph's smoothness loss. It compares with the
  weighted baselines' lambdas only when they use the same smoothness loss
  (summary.json `hyper_weighted_equivalent_comparable`).

Optimiser: the backbone's `optim` entry, with the keys of `hypermorph.optim` in their place
(paper.yaml: the public script's Adam at lr 1e-4).

The network is baselines.hypernet.HyperUNet (lambda is an argument of its forward) with the
voxelmorph backbone's level features (`hypermorph.features` overrides them), wrapped in
gsmorph's RegistrationNet for integration. The method table restricts it to VoxelMorph.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from baselines.hypernet import HyperUNet
from gsmorph.config import optim_settings
from gsmorph.errors import GSMorphError
from gsmorph.io import write_csv
from gsmorph.networks import RegistrationNet
from gsmorph.networks.voxelmorph import PRESETS
from gsmorph.training import Trainer, count_pairs

SWEEP_COLUMNS = ["stage", "lam", "weighted_equivalent", "val_dice", "val_njd_pct", "chosen"]


def network_kwargs(cfg: dict, backbone: str) -> dict:
    """HyperUNet keyword arguments from the config (written to run.json as `hyper_kwargs`):
    the voxelmorph backbone's level features (the method table limits HyperMorph to it)."""
    hyper = cfg["hypermorph"]
    vm = cfg["backbones"].get("voxelmorph", {})
    preset = vm.get("preset", "paper")
    if preset not in PRESETS:
        raise GSMorphError(f"config key 'backbones.voxelmorph.preset': unknown '{preset}' (choose from {list(PRESETS)})")
    features = hyper.get("features") or vm.get("features") or PRESETS[preset].get("features")
    if not features:
        raise GSMorphError(f"hypermorph needs level features: set 'hypermorph.features' (the voxelmorph preset "
                           f"'{preset}' is not a symmetric U-Net)")
    upsample = vm.get("upsample", "preset")
    upsample = PRESETS[preset]["upsample"] if upsample == "preset" else upsample
    return {"features": [int(f) for f in features], "hidden": int(hyper["hidden"]), "layers": int(hyper["layers"]),
            "upsample": upsample}


def sweep_lambdas(n: int) -> np.ndarray:
    """The coarse grid: n lambdas evenly on [0, 1]."""
    if int(n) < 2:
        raise GSMorphError(f"config key 'hypermorph.val_lambdas' must be >= 2, got {n}")
    return np.linspace(0.0, 1.0, int(n))


def fine_grid(coarse: np.ndarray, best: float, n: int) -> np.ndarray:
    """n lambdas evenly spaced strictly between the coarse neighbours of `best` (a coarse
    value; at an end of [0, 1] the interval runs from it to its one neighbour), without
    those equal to `best` (the middle one when best is inside and n is odd)."""
    if int(n) < 0:
        raise GSMorphError(f"config key 'hypermorph.fine_lambdas' must be >= 0, got {n}")
    coarse = np.asarray(coarse, dtype=float)
    i = int(np.argmin(np.abs(coarse - best)))
    lo, hi = coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]
    values = np.linspace(lo, hi, int(n) + 2)[1:-1]
    return values[~np.isclose(values, best, rtol=0, atol=1e-12)]


def weighted_equivalent(lam: float, similarity: str, mse_sigma: float) -> float:
    """The weight w for which sim + w reg (unscaled similarity) is proportional to
    HyperMorph's (1 - lam) sim / s + lam reg (s = sigma^2 for MSE, 1 for LNCC):
    lam s / (1 - lam); infinite at lam = 1."""
    scale = float(mse_sigma) ** 2 if similarity == "mse" else 1.0
    lam = float(lam)
    return math.inf if lam >= 1.0 else lam * scale / (1.0 - lam)


LAMBDA_EFFECT_MIN = 0.5  # below: the lambda-dependence is reported as not learned


def lambda_effect(dice_0: float, dice_1: float, dice_identity: float) -> float:
    """The share of the registration's Dice gain at lambda 0 that lambda 1 gives up:
    (dice_0 - dice_1) / (dice_0 - dice_identity); NaN when lambda 0 gains nothing."""
    gain = dice_0 - dice_identity
    return (dice_0 - dice_1) / gain if gain > 0 else float("nan")


def sample_lambdas(n: int, endpoint_prob: float) -> torch.Tensor:
    """n training lambdas, one per sample (voxelmorph's train_hypermorph.py): each 0 or 1
    (each with probability endpoint_prob / 2), else U[0, 1]. Draws 3n numbers from torch's
    global CPU generator (saved in last.pt, so resume is exact)."""
    u, v, w = torch.rand(3, int(n))
    return torch.where(u < endpoint_prob, (v < 0.5).float(), w)


def per_sample(loss, *tensors: torch.Tensor) -> torch.Tensor:
    """(B,) values of a batch-mean loss applied to each sample alone."""
    return torch.stack([loss(*(t[i:i + 1] for t in tensors)) for i in range(tensors[0].shape[0])])


def choose(rows: list[dict]) -> dict:
    """The sweep row of highest validation Dice (the smaller lambda on a tie)."""
    finite = [r for r in rows if np.isfinite(r["val_dice"])]
    if not finite:
        raise GSMorphError("hypermorph: no finite validation Dice at any lambda; are there val pairs with labels?")
    return max(finite, key=lambda r: (r["val_dice"], -r["lam"]))


class HyperMorphTrainer(Trainer):
    """The gsmorph training loop with HyperMorph's network, loss and lambda selection."""

    extra_files = ("lambda_sweep.csv",)

    def __init__(self, prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None):
        super().__init__(prepared, backbone, method, seed, out, cfg, lam=lam)
        self.hyper_kwargs = network_kwargs(cfg, backbone)
        hyper = cfg["hypermorph"]
        self.optim = optim_settings(cfg, backbone, hyper.get("optim"), "hypermorph.optim")
        if not 0.0 <= float(hyper["endpoint_prob"]) <= 1.0:
            raise GSMorphError(f"config key 'hypermorph.endpoint_prob' must be in [0, 1], got {hyper['endpoint_prob']}")
        if float(hyper["mse_sigma"]) <= 0:
            raise GSMorphError(f"config key 'hypermorph.mse_sigma' must be > 0, got {hyper['mse_sigma']}")
        from gsmorph.losses import SMOOTHNESSES

        if hyper["smoothness"] not in SMOOTHNESSES:
            raise GSMorphError(f"config key 'hypermorph.smoothness': unknown '{hyper['smoothness']}', "
                               f"expected one of {', '.join(SMOOTHNESSES)}")
        self.sweep_values = sweep_lambdas(hyper["val_lambdas"])
        fine_grid(self.sweep_values, 0.0, hyper["fine_lambdas"])  # checks the count
        self.hyper_lambda: float | None = None
        self.sweep_rows: list[dict] = []
        self.identity_dice: float | None = None  # validation Dice without deformation

    def initialize(self) -> None:
        if self.initialized:
            return
        from gsmorph.losses import smoothness_loss

        super().initialize()
        self.reg_loss = smoothness_loss(self.cfg["hypermorph"]["smoothness"])  # HyperMorph's own

    # ------------------------------------------------------------------ hooks
    def check_data(self) -> None:
        if count_pairs(self.val_data) == 0:  # lambda is chosen on validation
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: hypermorph chooses lambda on the validation "
                               "split, which has no pairs")

    def build_network(self) -> torch.nn.Module:
        return RegistrationNet(HyperUNet(self.spatial_dims, **self.hyper_kwargs), self.int_steps(self.cfg))

    def backbone_display(self) -> str:
        from gsmorph import backbones

        kwargs = {**self.backbone_kwargs(), "features": self.hyper_kwargs["features"]}
        return backbones.variant_name(self.backbone, kwargs)

    def train_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        from gsmorph.networks import warp_image

        hyper = self.cfg["hypermorph"]
        lam = sample_lambdas(moving.shape[0], float(hyper["endpoint_prob"])).to(self.device)
        disp, smooth_field = self.model(torch.cat([moving, fixed], dim=1), lam, with_velocity=True)
        sim = per_sample(self.sim_loss, warp_image(moving, disp), fixed)
        if self.cfg["similarity"] == "mse":
            sim = sim / float(hyper["mse_sigma"]) ** 2
        reg = per_sample(self.reg_loss, smooth_field)
        ((1.0 - lam) * sim + lam * reg).mean().backward()
        return {"loss_sim": sim.detach().mean(), "loss_reg": reg.detach().mean()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor, lam: float | None = None) -> torch.Tensor:
        lam = self.hyper_lambda if lam is None else lam
        return self.model(torch.cat([moving, fixed], dim=1), float(lam))

    def weighted_equivalent(self, lam: float) -> float:
        return weighted_equivalent(lam, self.cfg["similarity"], float(self.cfg["hypermorph"]["mse_sigma"]))

    def sweep(self, values=None, stage: str = "coarse") -> list[dict]:
        """Validation Dice and NJD % at each lambda of `values` (default: the coarse grid),
        with the model's current weights."""
        rows = []
        for lam in self.sweep_values if values is None else values:
            dice, njd = self.evaluate_split(self.val_data, lambda m, f, lam=float(lam): self.predict(m, f, lam))
            rows.append({"stage": stage, "lam": float(lam), "weighted_equivalent": self.weighted_equivalent(lam),
                         "val_dice": dice, "val_njd_pct": njd, "chosen": False})
        return rows

    def validate(self) -> tuple[float, float]:
        """The best of the coarse grid (the fine grid is swept once, after training)."""
        best = choose(self.sweep())
        return best["val_dice"], best["val_njd_pct"]

    def refined_sweep(self) -> list[dict]:
        """The coarse grid, then the fine grid around its best; the chosen row marked."""
        coarse = self.sweep()
        fine = fine_grid(self.sweep_values, choose(coarse)["lam"], int(self.cfg["hypermorph"]["fine_lambdas"]))
        rows = coarse + self.sweep(fine, "fine")
        choose(rows)["chosen"] = True
        return rows

    def on_train_end(self) -> None:
        import pandas as pd

        self.sweep_rows = self.refined_sweep()
        self.hyper_lambda = next(r["lam"] for r in self.sweep_rows if r["chosen"])
        write_csv(self.out / "lambda_sweep.csv", pd.DataFrame(self.sweep_rows, columns=SWEEP_COLUMNS))
        self.identity_dice, _ = self.evaluate_split(
            self.val_data, lambda m, f: torch.zeros((m.shape[0], m.ndim - 2) + tuple(m.shape[2:]), device=m.device))

    def lambda_effect(self) -> float | None:
        """hyper_lambda_effect (see the module docstring); None before the sweep."""
        dice = {r["lam"]: r["val_dice"] for r in self.sweep_rows if r["stage"] == "coarse"}
        if self.identity_dice is None or 0.0 not in dice or 1.0 not in dice:
            return None
        effect = lambda_effect(dice[0.0], dice[1.0], self.identity_dice)
        return None if math.isnan(effect) else effect

    def caveat(self) -> str:
        effect = self.lambda_effect()
        if effect is None or effect >= LAMBDA_EFFECT_MIN:
            return ""
        dice = {r["lam"]: r["val_dice"] for r in self.sweep_rows if r["stage"] == "coarse"}
        return (f"its lambda-dependence was not learned: validation Dice {dice[1.0]:.1%} at lambda 1 "
                f"(smoothness alone, whose optimum is no deformation) against {dice[0.0]:.1%} at lambda 0 and "
                f"{self.identity_dice:.1%} without deformation; it registers almost alike at every lambda, so "
                "its lambda sweep chooses among near-identical outputs")

    def hyper_record(self) -> dict:
        """The chosen lambda and its weighted-loss equivalent (null while not chosen, or
        infinite at lambda 1), for run.json and summary.json."""
        equivalent = None if self.hyper_lambda is None else self.weighted_equivalent(self.hyper_lambda)
        return {
            "hyper_lambda": self.hyper_lambda,
            "hyper_lambda_weighted_equivalent": equivalent if equivalent is not None and math.isfinite(equivalent)
            else None,
            "hyper_smoothness": self.cfg["hypermorph"]["smoothness"],
            "hyper_val_dice_identity": self.identity_dice,
            "hyper_lambda_effect": self.lambda_effect(),
            # the equivalent is a weighted baseline's lambda only with the same smoothness loss
            "hyper_weighted_equivalent_comparable": self.cfg["hypermorph"]["smoothness"] == self.cfg["smoothness"],
        }

    def run_info(self) -> dict:
        info = super().run_info()
        info.update({"hyper_kwargs": self.hyper_kwargs, "lam": self.hyper_lambda,
                     "smoothness": self.cfg["hypermorph"]["smoothness"], **self.hyper_record()})
        return info

    def summary(self) -> dict:
        out = super().summary()
        out.update({"lam": self.hyper_lambda, **self.hyper_record()})
        return out

    # ------------------------------------------------------------------ inference
    @classmethod
    def build_from_info(cls, info: dict) -> torch.nn.Module:
        kwargs = info.get("hyper_kwargs")
        if not kwargs:
            raise GSMorphError("no 'hyper_kwargs'; not a finished hypermorph run")
        return RegistrationNet(HyperUNet(int(info["spatial_dims"]), **kwargs), cls.int_steps(info))

    @classmethod
    def predictor(cls, model: torch.nn.Module, info: dict):
        lam = info.get("hyper_lambda")
        if lam is None:
            raise GSMorphError("run.json has no 'hyper_lambda'; did training finish?")
        return lambda moving, fixed: model(torch.cat([moving, fixed], dim=1), float(lam))
