"""HyperMorph baseline: one network for every smoothness weight, lambda chosen on validation.

Training (HyperMorphTrainer: the gsmorph Trainer with its hooks overridden):
- each step draws one lambda for the batch: with probability `hypermorph.endpoint_prob`
  from {0, 1} (each half), else uniform on [0, 1] (torch's global CPU generator, so a
  resumed run draws the same lambdas);
- loss = (1 - lambda) * sim + lambda * reg, with the MSE similarity divided by
  `hypermorph.mse_sigma`^2 (LNCC is used as is); reg is the configured smoothness loss;
- validation sweeps `hypermorph.val_lambdas` values evenly on [0, 1] and scores the best
  (Dice, with its NJD %); after training the best weights are swept again:
  `lambda_sweep.csv` (lam, val_dice, val_njd_pct), and the lambda of best val Dice is
  run.json's and summary.json's `hyper_lambda`: the value inference uses and tables report.

The network is baselines.hypernet.HyperUNet (lambda is an argument of its forward) with the
voxelmorph backbone's level features (`hypermorph.features` overrides them), wrapped in
gsmorph's RegistrationNet for integration. The method table restricts it to VoxelMorph.
"""
from __future__ import annotations

import numpy as np
import torch

from baselines.hypernet import HyperUNet
from gsmorph.errors import GSMorphError
from gsmorph.io import write_csv
from gsmorph.networks import RegistrationNet
from gsmorph.networks.voxelmorph import PRESETS
from gsmorph.training import Trainer, count_pairs

SWEEP_COLUMNS = ["lam", "val_dice", "val_njd_pct"]


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
    if int(n) < 2:
        raise GSMorphError(f"config key 'hypermorph.val_lambdas' must be >= 2, got {n}")
    return np.linspace(0.0, 1.0, int(n))


def sample_lambda(endpoint_prob: float) -> float:
    """One training lambda: 0 or 1 (each with probability endpoint_prob / 2), else U[0, 1].
    Draws from torch's global CPU generator (saved in last.pt, so resume is exact)."""
    u, v = torch.rand(2).tolist()
    if u < endpoint_prob:
        return float(v < 0.5)
    return float(torch.rand(()).item())


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
        if not 0.0 <= float(hyper["endpoint_prob"]) <= 1.0:
            raise GSMorphError(f"config key 'hypermorph.endpoint_prob' must be in [0, 1], got {hyper['endpoint_prob']}")
        if float(hyper["mse_sigma"]) <= 0:
            raise GSMorphError(f"config key 'hypermorph.mse_sigma' must be > 0, got {hyper['mse_sigma']}")
        self.sweep_values = sweep_lambdas(hyper["val_lambdas"])
        self.hyper_lambda: float | None = None
        self.sweep_rows: list[dict] = []

    # ------------------------------------------------------------------ hooks
    def check_data(self) -> None:
        if count_pairs(self.val_data) == 0:  # lambda is chosen on validation
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: hypermorph chooses lambda on the validation "
                               "split, which has no pairs")

    def build_network(self) -> torch.nn.Module:
        return RegistrationNet(HyperUNet(self.spatial_dims, **self.hyper_kwargs), self.int_steps(self.cfg))

    def train_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        from gsmorph.networks import warp_image

        lam = sample_lambda(float(self.cfg["hypermorph"]["endpoint_prob"]))
        disp, smooth_field = self.model(torch.cat([moving, fixed], dim=1), lam, with_velocity=True)
        sim = self.sim_loss(warp_image(moving, disp), fixed)
        if self.cfg["similarity"] == "mse":
            sim = sim / float(self.cfg["hypermorph"]["mse_sigma"]) ** 2
        reg = self.reg_loss(smooth_field)
        ((1.0 - lam) * sim + lam * reg).backward()
        return {"loss_sim": sim.detach(), "loss_reg": reg.detach()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor, lam: float | None = None) -> torch.Tensor:
        lam = self.hyper_lambda if lam is None else lam
        return self.model(torch.cat([moving, fixed], dim=1), float(lam))

    def sweep(self) -> list[dict]:
        """Validation Dice and NJD % at every swept lambda (the model's current weights)."""
        rows = []
        for lam in self.sweep_values:
            dice, njd = self.evaluate_split(self.val_data, lambda m, f, lam=float(lam): self.predict(m, f, lam))
            rows.append({"lam": float(lam), "val_dice": dice, "val_njd_pct": njd})
        return rows

    def validate(self) -> tuple[float, float]:
        best = choose(self.sweep())
        return best["val_dice"], best["val_njd_pct"]

    def on_train_end(self) -> None:
        import pandas as pd

        self.sweep_rows = self.sweep()
        self.hyper_lambda = choose(self.sweep_rows)["lam"]
        write_csv(self.out / "lambda_sweep.csv", pd.DataFrame(self.sweep_rows, columns=SWEEP_COLUMNS))

    def run_info(self) -> dict:
        info = super().run_info()
        info.update({"hyper_lambda": self.hyper_lambda, "hyper_kwargs": self.hyper_kwargs, "lam": self.hyper_lambda})
        return info

    def summary(self) -> dict:
        out = super().summary()
        out["hyper_lambda"] = self.hyper_lambda
        out["lam"] = self.hyper_lambda
        return out

    # ------------------------------------------------------------------ inference
    @classmethod
    def build_from_info(cls, info: dict) -> torch.nn.Module:
        kwargs = info.get("hyper_kwargs")
        if not kwargs:
            raise GSMorphError("no 'hyper_kwargs'; not a finished hypermorph run")
        steps = int(info["int_steps"]) if info["diffeomorphic"] else 0
        return RegistrationNet(HyperUNet(int(info["spatial_dims"]), **kwargs), steps)

    @classmethod
    def predictor(cls, model: torch.nn.Module, info: dict):
        lam = info.get("hyper_lambda")
        if lam is None:
            raise GSMorphError("run.json has no 'hyper_lambda'; did training finish?")
        return lambda moving, fixed: model(torch.cat([moving, fixed], dim=1), float(lam))
