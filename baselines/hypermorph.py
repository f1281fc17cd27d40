"""HyperMorph baseline: one network for every smoothness weight, lambda chosen on validation.

Training (HyperMorphTrainer, the gsmorph Trainer with three overrides):
- each step draws one lambda for the batch: with probability `hypermorph.endpoint_prob`
  from {0, 1} (each half), else uniform on [0, 1] (torch's global CPU generator, so a
  resumed run draws the same lambdas);
- loss = (1 - lambda) * sim + lambda * reg, with the MSE similarity divided by
  `hypermorph.mse_sigma`^2 (LNCC is used as is); reg is the configured smoothness loss;
- validation sweeps `hypermorph.val_lambdas` values evenly on [0, 1] and scores the best
  (Dice, with its NJD %); after training the best weights are swept again:
  `lambda_sweep.csv` (lam, val_dice, val_njd_pct), and the lambda of best val Dice is
  run.json's and summary.json's `hyper_lambda`: the value inference uses and tables report.

The network is baselines.hypernet.HyperUNet with the voxelmorph backbone's level features
(`hypermorph.features` overrides them). TransMorph has no HyperMorph form here: asking for
it is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from baselines.hypernet import HyperUNet
from gsmorph.errors import GSMorphError
from gsmorph.io import write_csv
from gsmorph.networks.voxelmorph import PRESETS
from gsmorph.training import Trainer, _count

SWEEP_COLUMNS = ["lam", "val_dice", "val_njd_pct"]


def network_kwargs(cfg: dict, backbone: str) -> dict:
    """HyperUNet keyword arguments from the config (written to run.json as `hyper_kwargs`)."""
    if backbone != "voxelmorph":
        raise GSMorphError(f"method 'hypermorph' supports backbone 'voxelmorph' only, got '{backbone}'")
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


class HyperMorphTrainer(Trainer):
    """The gsmorph training loop with HyperMorph's model, loss and lambda selection."""

    methods = ("hypermorph",)
    own_sections = ("hypermorph",)

    def __init__(self, prepared, backbone: str, seed: int, out, cfg: dict):
        self.hyper_kwargs = network_kwargs(cfg, backbone)
        hyper = cfg["hypermorph"]
        if not 0.0 <= float(hyper["endpoint_prob"]) <= 1.0:
            raise GSMorphError(f"config key 'hypermorph.endpoint_prob' must be in [0, 1], got {hyper['endpoint_prob']}")
        if float(hyper["mse_sigma"]) <= 0:
            raise GSMorphError(f"config key 'hypermorph.mse_sigma' must be > 0, got {hyper['mse_sigma']}")
        self.sweep_values = sweep_lambdas(hyper["val_lambdas"])
        self.current_lam = 0.5
        self.hyper_lambda: float | None = None
        self.sweep_rows: list[dict] = []
        super().__init__(prepared, backbone, "hypermorph", seed, out, cfg, lam=None)
        if _count(self.val_data) == 0:  # checked before training: lambda is chosen on validation
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: hypermorph chooses lambda on the validation "
                               "split, which has no pairs")

    def build_model(self) -> torch.nn.Module:
        return HyperUNet(self.spatial_dims, **self.hyper_kwargs)

    def sample_lambda(self) -> float:
        return sample_lambda(float(self.cfg["hypermorph"]["endpoint_prob"]))

    def field(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(torch.cat([moving, fixed], dim=1), self.current_lam)
        if self.cfg["diffeomorphic"]:
            from gsmorph.networks import integrate

            return integrate(out, int(self.cfg["int_steps"])), out
        return out, out

    def training_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        from gsmorph.networks import warp_image

        lam = self.current_lam = self.sample_lambda()
        disp, smooth_field = self.field(moving, fixed)
        sim = self.sim_loss(warp_image(moving, disp), fixed)
        if self.cfg["similarity"] == "mse":
            sim = sim / float(self.cfg["hypermorph"]["mse_sigma"]) ** 2
        reg = self.reg_loss(smooth_field)
        ((1.0 - lam) * sim + lam * reg).backward()
        return {"loss_sim": sim.detach(), "loss_reg": reg.detach()}

    @torch.no_grad()
    def sweep(self) -> list[dict]:
        """Validation Dice and NJD % at every swept lambda (the model's current weights)."""
        rows = []
        for lam in self.sweep_values:
            self.current_lam = float(lam)
            dice, njd = Trainer.validate(self)
            rows.append({"lam": float(lam), "val_dice": dice, "val_njd_pct": njd})
        return rows

    @staticmethod
    def choose(rows: list[dict]) -> dict:
        """The row of highest validation Dice (the smaller lambda on a tie)."""
        finite = [r for r in rows if np.isfinite(r["val_dice"])]
        if not finite:
            raise GSMorphError("hypermorph: no finite validation Dice at any lambda; are there val pairs with labels?")
        return max(finite, key=lambda r: (r["val_dice"], -r["lam"]))

    def validate(self) -> tuple[float, float]:
        best = self.choose(self.sweep())
        return best["val_dice"], best["val_njd_pct"]

    def after_fit(self) -> None:
        import pandas as pd

        self.sweep_rows = self.sweep()
        best = self.choose(self.sweep_rows)
        self.hyper_lambda = best["lam"]
        self.current_lam = self.hyper_lambda
        write_csv(self.out / "lambda_sweep.csv", pd.DataFrame(self.sweep_rows, columns=SWEEP_COLUMNS))

    def run_info(self) -> dict:
        info = super().run_info()
        info.update({"hyper_lambda": self.hyper_lambda, "hyper_kwargs": self.hyper_kwargs,
                     "surgery_mode": None, "lam": self.hyper_lambda})
        return info

    def summary(self) -> dict:
        out = super().summary()
        out["hyper_lambda"] = self.hyper_lambda
        out["lam"] = self.hyper_lambda
        return out


def train_run(prepared, backbone: str, seed: int, out, cfg: dict, report=None) -> dict:
    """Train a HyperMorph run into `out` (resuming from last.pt); return summary.json's dict."""
    return HyperMorphTrainer(prepared, backbone, seed, out, cfg).fit(report=report)


def load_model(run_dir: str | os.PathLike, run_info: dict, device: torch.device) -> HyperUNet:
    from gsmorph.inference import load_state_dict

    kwargs = run_info.get("hyper_kwargs")
    if not kwargs:
        raise GSMorphError(f"{Path(run_dir) / 'run.json'}: no 'hyper_kwargs'; not a finished hypermorph run")
    model = HyperUNet(int(run_info["spatial_dims"]), **kwargs).to(device)
    try:
        model.load_state_dict(load_state_dict(Path(run_dir) / "best.pt", device))
    except RuntimeError as err:
        raise GSMorphError(f"{Path(run_dir) / 'best.pt'}: weights do not fit the network in run.json ({err})") from None
    return model.eval()


def load_predictor(run_dir: str | os.PathLike, run_info: dict, device: str = "auto", lam: float | None = None):
    """predict_fn(moving, fixed) (B, 1, *S) -> (B, ndim, *S) displacement at run.json's
    `hyper_lambda` (or `lam`); predict_fn.device and predict_fn.lam are set."""
    from gsmorph.device import resolve_device
    from gsmorph.networks import integrate

    lam = run_info.get("hyper_lambda") if lam is None else lam
    if lam is None:
        raise GSMorphError(f"{Path(run_dir) / 'run.json'}: no 'hyper_lambda'; did training finish?")
    dev = resolve_device(device)
    model = load_model(run_dir, run_info, dev)
    diffeomorphic, steps = bool(run_info["diffeomorphic"]), int(run_info["int_steps"])

    @torch.no_grad()
    def predict_fn(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        out = model(torch.cat([moving.to(dev), fixed.to(dev)], dim=1), float(lam))
        return integrate(out, steps) if diffeomorphic else out

    predict_fn.device = dev
    predict_fn.lam = float(lam)
    return predict_fn
