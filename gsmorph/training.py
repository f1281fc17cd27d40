"""The one training loop every learned method uses: GSMorph, GS-PCGrad, GS-Agr, the
weighted loss (fixed or tuned lambda) and, by subclassing, HyperMorph.

A run folder (`out`) holds:
- `run.json`      what inference needs to rebuild the model (see Trainer.run_info)
- `best.pt`       the model state dict with the best validation mean Dice
- `last.pt`       the full training state: {"model", "optimizer", "epoch", "rng",
                  "shuffle_rng", "best_*", "log", "conflicts", "wall_s", "fingerprint"}
                  (all tensors and plain types: loads with torch.load(weights_only=True))
- `train_log.csv` epoch, loss_sim, loss_reg, val_dice, epoch_s, wall_s, lr
- `conflicts.csv` GS modes: epoch, group, n_steps, conflict_frac, cosine_mean
- `summary.json`  best_val_dice, best_epoch, val_njd_pct, wall_s, device, epochs_done
- `provenance.json`
Rerunning with the same folder resumes from last.pt and, on CPU with the same seed,
ends with bitwise-identical weights to an uninterrupted run.

Tensors: images (B, 1, *S) float32 in [0, 1], labels (B, 1, *S) uint8 (0 bg, 1 LV,
2 Myo, 3 RV), displacement (B, ndim, *S) in voxels (moved = moving at x + u(x)).
"""
from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gsmorph.data.labels import STRUCTURES
from gsmorph.device import get_rng_state, resolve_device, seed_everything, set_rng_state
from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_path, check_not_input, write_csv, write_json
from gsmorph.losses import build_losses
from gsmorph.provenance import write_provenance

# MONAI's finite-difference losses trigger a torch deprecation warning on every call.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

SURGERY_MODES = {"gsmorph": "layerwise", "gs-pcgrad": "network", "gs-agr": "agr"}
LOG_COLUMNS = ["epoch", "loss_sim", "loss_reg", "val_dice", "epoch_s", "wall_s", "lr"]
CONFLICT_COLUMNS = ["epoch", "group", "n_steps", "conflict_frac", "cosine_mean"]
# config keys that may change between a run and its resumption (budget and machine) ...
RESUMABLE_CHANGES = ("epochs", "num_threads", "device")
# ... and the config sections of methods; a trainer's own sections (`own_sections`) count
METHOD_SECTIONS = ("lambdas", "tune", "demons", "syn", "hypermorph")

Report = Callable[[int, float], None]


# ----------------------------------------------------------------------------- metrics
def dice_per_pair(moved_label: torch.Tensor, fixed_label: torch.Tensor) -> torch.Tensor:
    """(B, 1, *S) integer labels -> (B, 3) Dice of LV, Myo, RV; NaN where both are empty."""
    out = []
    for value in STRUCTURES.values():
        a = (moved_label == value).flatten(1)
        b = (fixed_label == value).flatten(1)
        inter = (a & b).sum(1).float()
        total = (a.sum(1) + b.sum(1)).float()
        out.append(torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan"))))
    return torch.stack(out, dim=1)


def negative_jacobian_fraction(disp: torch.Tensor) -> torch.Tensor:
    """(B, ndim, *S) displacement -> (B,) fraction of voxels with det(I + grad u) < 0
    (central differences inside, one-sided at the border, as numpy.gradient)."""
    ndim = disp.shape[1]
    grads = torch.gradient(disp, dim=tuple(range(2, 2 + ndim)))  # ndim x (B, ndim, *S): d/dx_j
    jac = torch.stack(grads, dim=2)  # (B, i, j, *S) = du_i / dx_j
    jac = jac + torch.eye(ndim, dtype=disp.dtype, device=disp.device).view(1, ndim, ndim, *([1] * ndim))
    jac = jac.movedim(1, -1).movedim(1, -1)  # (B, *S, i, j)
    det = torch.linalg.det(jac)
    return (det < 0).flatten(1).float().mean(1)


# -------------------------------------------------------------------------------- data
def _select(pairs: list, limit: int | None, seed: int) -> list:
    if limit is None or len(pairs) <= int(limit):
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=int(limit), replace=False))
    return [pairs[i] for i in keep]


def load_split(prepared: Path, split: str, cfg: dict, device: torch.device, limit: int | None, seed: int) -> list[dict]:
    """The pairs of a split as tensors on `device`, grouped in buckets of equal spatial
    shape (2D: one bucket). Each bucket: moving, fixed (N, 1, *S) float32,
    moving_label, fixed_label (N, 1, *S) uint8."""
    from gsmorph.data import loader

    pairs = loader.pairs(prepared, split, mode=cfg["mode"], moving=cfg["moving"], fixed=cfg["fixed"],
                         drop_missing=bool(cfg["drop_missing"]))
    pairs = _select(pairs, limit, seed)
    by_shape: dict[tuple, list] = {}
    for pair in pairs:
        by_shape.setdefault(tuple(pair.moving.shape), []).append(pair)
    buckets = []
    for group in by_shape.values():
        arrays = loader.stack(group)
        bucket = {}
        for key in ("moving", "fixed", "moving_label", "fixed_label"):
            bucket[key] = torch.from_numpy(np.ascontiguousarray(arrays[key])).unsqueeze(1).to(device)
        bucket["moving"] = bucket["moving"].float()
        bucket["fixed"] = bucket["fixed"].float()
        buckets.append(bucket)
    return buckets


def _count(buckets: list[dict]) -> int:
    return sum(b["moving"].shape[0] for b in buckets)


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Train one learned registration method into the run folder `out`.

    prepared: a prepared folder; backbone: a gsmorph.networks name with kwargs in
    cfg["backbones"]; method: gsmorph | gs-pcgrad | gs-agr | weighted (subclasses add
    theirs via `methods`); cfg: gsmorph.config.load_config(); lam: the weighted
    loss's smoothness weight (required for weighted, refused for GS modes).
    """

    methods: tuple[str, ...] = ("gsmorph", "gs-pcgrad", "gs-agr", "weighted")
    own_sections: tuple[str, ...] = ()  # config sections (METHOD_SECTIONS) that belong to these methods

    def __init__(self, prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None):
        self.prepared = Path(prepared)
        self.backbone = backbone
        self.method = method
        self.seed = int(seed)
        self.out = Path(out)
        self.cfg = cfg
        self.lam = None if lam is None else float(lam)
        self._check_arguments()
        check_not_input(self.out, [self.prepared])
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))
        self.device = resolve_device(cfg.get("device", "auto"))
        self.spatial_dims = 2 if cfg["mode"] == "2d" else 3
        if not (self.prepared / "subjects.csv").is_file():
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: not found; is --prepared a prepared folder?")

        seed_everything(self.seed)
        self.train_data = load_split(self.prepared, "train", cfg, self.device, cfg.get("max_train_pairs"), self.seed)
        if _count(self.train_data) == 0:
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: no training pairs in split 'train'")
        self.val_data = load_split(self.prepared, "val", cfg, self.device, cfg.get("max_val_pairs"), self.seed)
        self.sim_loss, self.reg_loss = build_losses(cfg, self.spatial_dims)
        self.model = self.build_model().to(self.device)
        self.optimizer = self.build_optimizer()
        self.surgery = self.conflicts = None
        if method in SURGERY_MODES:
            from gsmorph.surgery import ConflictTracker, GradientSurgery

            self.surgery = GradientSurgery(self.model, mode=SURGERY_MODES[method])
            self.conflicts = ConflictTracker()  # per-group stats summed on the device
        self.shuffle_gen = torch.Generator().manual_seed(self.seed)
        # training state (restored by resume)
        self.epoch = 0
        self.best_val_dice = float("nan")
        self.best_epoch = 0
        self.best_val_njd_pct = float("nan")
        self.log_rows: list[dict] = []
        self.conflict_rows: list[dict] = []
        self.wall_s = 0.0
        self.checkpoint_epoch = 0

    def _check_arguments(self) -> None:
        if self.method not in self.methods:
            raise GSMorphError(f"unknown method '{self.method}', expected one of {', '.join(self.methods)}")
        if self.method == "weighted" and self.lam is None:
            raise GSMorphError("method 'weighted' needs a smoothness weight: pass --lam (e.g. 0.01)")
        if self.method in SURGERY_MODES and self.lam is not None:
            raise GSMorphError(f"method '{self.method}' uses gradient surgery and takes no --lam")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise GSMorphError(f"--lam must be a finite number >= 0, got {self.lam}")
        if self.backbone not in self.cfg["backbones"]:
            raise GSMorphError(f"unknown backbone '{self.backbone}': config key 'backbones' has "
                               f"{', '.join(sorted(self.cfg['backbones']))}")
        for key in ("epochs", "batch_size", "val_every"):
            if int(self.cfg[key]) < 1:
                raise GSMorphError(f"config key '{key}' must be >= 1, got {self.cfg[key]}")

    # ------------------------------------------------------------------ overridables
    def build_model(self) -> torch.nn.Module:
        """The backbone: (B, 2, *S) -> (B, ndim, *S) displacement (velocity if diffeomorphic)."""
        from gsmorph.networks import build

        try:
            return build(self.backbone, self.spatial_dims, **self.cfg["backbones"][self.backbone])
        except ValueError as err:
            raise GSMorphError(f"config key 'backbones.{self.backbone}': {err}") from None

    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=float(self.cfg["lr"]),
                                 weight_decay=float(self.cfg["weight_decay"]))

    def field(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(displacement, the field the smoothness loss sees: displacement or velocity)."""
        out = self.model(torch.cat([moving, fixed], dim=1))
        if self.cfg["diffeomorphic"]:
            from gsmorph.networks import integrate

            return integrate(out, int(self.cfg["int_steps"])), out
        return out, out

    def training_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        """Fill every parameter's .grad for one batch; return the losses (tensors)."""
        from gsmorph.networks import warp_image

        disp, smooth_field = self.field(moving, fixed)
        sim = self.sim_loss(warp_image(moving, disp), fixed)
        reg = self.reg_loss(smooth_field)
        if self.surgery is None:
            (sim + self.lam * reg).backward()
        else:
            self.conflicts.add(self.surgery.backward(sim, reg))
        return {"loss_sim": sim.detach(), "loss_reg": reg.detach()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(B, 1, *S) moving and fixed -> (B, ndim, *S) displacement."""
        return self.field(moving, fixed)[0]

    def run_info(self) -> dict:
        """What inference needs (written to run.json); subclasses extend it."""
        return {
            "method": self.method,
            "backbone": self.backbone,
            "backbone_kwargs": self.cfg["backbones"][self.backbone],
            "spatial_dims": self.spatial_dims,
            "mode": self.cfg["mode"],
            "surgery_mode": SURGERY_MODES.get(self.method, "weighted" if self.method == "weighted" else None),
            "lam": self.lam,
            "diffeomorphic": bool(self.cfg["diffeomorphic"]),
            "int_steps": int(self.cfg["int_steps"]),
            "moving": self.cfg["moving"],
            "fixed": self.cfg["fixed"],
            "drop_missing": bool(self.cfg["drop_missing"]),
            "prepared": str(self.prepared.resolve()),
            "dataset": self.dataset(),
            "seed": self.seed,
            "similarity": self.cfg["similarity"],
            "smoothness": self.cfg["smoothness"],
            "config": self.cfg,
        }

    def summary(self) -> dict:
        """summary.json; subclasses extend it."""
        return {
            "best_val_dice": self.best_val_dice,
            "best_epoch": self.best_epoch,
            "val_njd_pct": self.best_val_njd_pct,
            "wall_s": self.wall_s,
            "device": str(self.device),
            "epochs_done": self.epoch,
            "method": self.method,
            "backbone": self.backbone,
            "lam": self.lam,
            "seed": self.seed,
        }

    def after_fit(self) -> None:
        """Hook run after training, with the best weights loaded in self.model."""

    # ------------------------------------------------------------------- the loop
    def dataset(self) -> str:
        from gsmorph.data.loader import dataset_name

        return dataset_name(self.prepared)

    def fit(self, report: Report | None = None) -> dict:
        """Train (resuming from out/last.pt when present), then finish the run folder.

        report(epoch, val_dice) is called after each validation and checkpoint; it may
        raise (e.g. optuna.TrialPruned) to stop the run.
        """
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        if not self._resume():  # a fresh start: no stale best weights from an earlier attempt
            (self.out / "best.pt").unlink(missing_ok=True)
        write_json(self.out / "run.json", self.run_info())
        epochs, val_every = int(self.cfg["epochs"]), int(self.cfg["val_every"])
        self.model.train()
        bar = tqdm(range(self.epoch + 1, epochs + 1), desc=f"{self.method} {self.backbone}",
                   unit="epoch", disable=not sys.stderr.isatty(), initial=self.epoch, total=epochs)
        for epoch in bar:
            start = time.perf_counter()
            losses = self._train_epoch()
            self._check_finite(epoch, losses)
            val_dice = None
            validate = _count(self.val_data) > 0 and (epoch % val_every == 0 or epoch == epochs)
            if validate:
                val_dice, val_njd = self.validate()
            epoch_s = time.perf_counter() - start
            self.wall_s += epoch_s
            self.epoch = epoch
            self.log_rows.append({
                "epoch": epoch, **losses, "val_dice": val_dice, "epoch_s": epoch_s,
                "wall_s": self.wall_s, "lr": self.optimizer.param_groups[0]["lr"],
            })
            self._flush_conflicts(epoch)
            if validate and (math.isnan(self.best_val_dice) or val_dice > self.best_val_dice):
                self.best_val_dice, self.best_epoch, self.best_val_njd_pct = val_dice, epoch, val_njd
                self._save(self.model.state_dict(), "best.pt")
            self._write_logs()
            if validate or epoch == epochs:
                self._save_checkpoint()
            shown = {k: f"{v:.4g}" for k, v in losses.items()}
            shown["val_dice"] = "-" if val_dice is None else f"{val_dice:.4f}"
            bar.set_postfix(shown)
            if bar.disable and validate:  # logs (not a terminal): one line per validation
                print(f"epoch {epoch}/{epochs} " + " ".join(f"{k}={v}" for k, v in shown.items()),
                      file=sys.stderr, flush=True)
            if validate and report is not None:
                report(epoch, val_dice)
        bar.close()
        return self._finish()

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """Mean Dice over LV/Myo/RV of warped moving labels vs fixed labels (per-pair mean
        of the three, NaN-safe, then mean over pairs) and NJD % on the val split."""
        from gsmorph.networks import warp_label

        was_training = self.model.training
        self.model.eval()
        dices, njds = [], []
        batch = int(self.cfg["batch_size"])
        for bucket in self.val_data:
            for i in range(0, bucket["moving"].shape[0], batch):
                sl = slice(i, i + batch)
                disp = self.predict(bucket["moving"][sl], bucket["fixed"][sl])
                moved = warp_label(bucket["moving_label"][sl], disp)
                dices.append(dice_per_pair(moved.round().long(), bucket["fixed_label"][sl].long()))
                njds.append(negative_jacobian_fraction(disp.float()))
        self.model.train(was_training)
        per_pair = torch.nanmean(torch.cat(dices), dim=1)
        result = torch.stack([torch.nanmean(per_pair), 100 * torch.cat(njds).mean()]).cpu()
        return float(result[0]), float(result[1])

    # ------------------------------------------------------------------- internals
    def _epoch_batches(self) -> list[tuple[int, torch.Tensor]]:
        batch = int(self.cfg["batch_size"])
        batches = []
        for b, bucket in enumerate(self.train_data):
            perm = torch.randperm(bucket["moving"].shape[0], generator=self.shuffle_gen)
            batches += [(b, perm[i:i + batch]) for i in range(0, len(perm), batch)]
        if len(self.train_data) > 1:
            order = torch.randperm(len(batches), generator=self.shuffle_gen)
            batches = [batches[i] for i in order]
        return batches

    def _train_epoch(self) -> dict[str, float]:
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for b, idx in self._epoch_batches():
            bucket = self.train_data[b]
            idx = idx.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            logs = {k: torch.as_tensor(v).detach().float() for k, v in
                    self.training_step(bucket["moving"][idx], bucket["fixed"][idx]).items()}
            for key, value in logs.items():
                sums[key] = sums[key] + value if key in sums else value
            steps += 1
            finite = torch.stack([v.reshape(()) for v in logs.values()]).isfinite().all()
            if self.device.type == "cpu":
                if not bool(finite):  # free on CPU (no queue to wait for): stop before the update
                    break
            else:
                self._drop_gradients_unless(finite)
            self.optimizer.step()
        keys = list(sums)
        values = (torch.stack([sums[k] for k in keys]) / steps).cpu().tolist()  # the epoch's one sync
        return dict(zip(keys, values))

    def _drop_gradients_unless(self, finite: torch.Tensor) -> None:
        """Zero every gradient when a loss is non-finite, without a host sync (CUDA), so
        the weights stay finite until the epoch's end reports the failure."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = torch.where(finite, p.grad, torch.zeros((), dtype=p.grad.dtype, device=p.grad.device))

    def _check_finite(self, epoch: int, losses: dict[str, float]) -> None:
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            kept = f"last good checkpoint {self.out / 'last.pt'} (epoch {self.checkpoint_epoch})" \
                if self.checkpoint_epoch else "no checkpoint was written yet"
            raise GSMorphError(f"non-finite loss at epoch {epoch} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                               f"training stopped, {kept}")

    def _flush_conflicts(self, epoch: int) -> None:
        if self.conflicts is not None:
            self.conflict_rows += self.conflicts.rows(epoch)

    def _write_logs(self) -> None:
        import pandas as pd

        extra = [k for row in self.log_rows for k in row if k not in LOG_COLUMNS]
        columns = LOG_COLUMNS + list(dict.fromkeys(extra))
        write_csv(self.out / "train_log.csv", pd.DataFrame(self.log_rows, columns=columns))
        if self.surgery is not None:
            write_csv(self.out / "conflicts.csv", pd.DataFrame(self.conflict_rows, columns=CONFLICT_COLUMNS))

    def _save(self, obj: Any, name: str) -> None:
        with atomic_path(self.out / name) as tmp:
            torch.save(obj, tmp)

    def _fingerprint(self) -> str:
        ignored = set(RESUMABLE_CHANGES) | (set(METHOD_SECTIONS) - set(self.own_sections))
        cfg = {k: v for k, v in self.cfg.items() if k not in ignored}
        cfg["backbones"] = self.cfg["backbones"][self.backbone]
        return json.dumps({"method": self.method, "backbone": self.backbone, "seed": self.seed,
                           "lam": self.lam, "cfg": cfg}, sort_keys=True, default=str)

    def _save_checkpoint(self) -> None:
        self._save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_val_dice": self.best_val_dice,
            "best_epoch": self.best_epoch,
            "best_val_njd_pct": self.best_val_njd_pct,
            "rng": get_rng_state(),
            "shuffle_rng": self.shuffle_gen.get_state(),
            "log": self.log_rows,
            "conflicts": self.conflict_rows,
            "wall_s": self.wall_s,
            "fingerprint": self._fingerprint(),
        }, "last.pt")
        self.checkpoint_epoch = self.epoch

    def _resume(self) -> bool:
        """Restore the training state from out/last.pt; False when there is none."""
        path = self.out / "last.pt"
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:
            raise GSMorphError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from None
        if state.get("fingerprint") != self._fingerprint():
            raise GSMorphError(f"{path}: holds a run with a different method, backbone, seed, lambda or "
                               f"config; use another --out or delete the folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = self.checkpoint_epoch = int(state["epoch"])
        self.best_val_dice = float(state["best_val_dice"])
        self.best_epoch = int(state["best_epoch"])
        self.best_val_njd_pct = float(state["best_val_njd_pct"])
        self.log_rows = list(state["log"])
        self.conflict_rows = list(state["conflicts"])
        self.wall_s = float(state["wall_s"])
        set_rng_state(state["rng"])
        self.shuffle_gen.set_state(state["shuffle_rng"])
        return True

    def _finish(self) -> dict:
        best = self.out / "best.pt"
        if not best.is_file():  # never validated (no val pairs): the last weights stand in
            self.best_epoch = self.epoch
            self._save(self.model.state_dict(), "best.pt")
        self._write_logs()
        self.model.load_state_dict(torch.load(best, map_location=self.device, weights_only=True))
        self.after_fit()
        write_json(self.out / "run.json", self.run_info())
        summary = self.summary()
        write_json(self.out / "summary.json", summary)
        write_provenance(self.out / "provenance.json", config=self.cfg, seed=self.seed,
                         method=self.method, backbone=self.backbone, lam=self.lam,
                         prepared=str(self.prepared.resolve()), device=str(self.device))
        return summary


def train_run(prepared, backbone: str, method: str, seed: int, out, cfg: dict,
              lam: float | None = None, report: Report | None = None) -> dict:
    """Train one run into `out` (resuming if it holds last.pt); return summary.json's dict."""
    return Trainer(prepared, backbone, method, seed, out, cfg, lam=lam).fit(report=report)
