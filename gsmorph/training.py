"""The one training loop every learned method uses: gradient surgery (GSMorph and its
ablations), the weighted loss (fixed, given or tuned lambda) and, by subclassing,
HyperMorph. Which one a run is comes from the method table (gsmorph/methods.py).

Life cycle (as nnU-Net's trainers): `__init__` checks and stores the arguments, nothing
else; `initialize()` loads the data and builds losses, network and optimiser; `fit()`
trains, calling the hooks a subclass overrides:

    lambda_for(lam)        the weighted loss's lambda (--lam, the config's lambdas, or None)
    build_network()        the RegistrationNet (backbone + integration)
    build_optimizer()      the backbone's optimiser of config `optim` (AdamW for VoxelMorph)
    train_step(m, f)       fills every parameter's .grad for one batch, returns the losses
    predict(m, f)          the displacement used by validation and inference
    validate()             (val Dice, val NJD %) of the current weights
    on_epoch_end(...)      logs, best/last checkpoints
    on_train_end()         with the best weights loaded, before the run folder is finished
    run_info() / summary() what run.json / summary.json hold
    caveat()               what a reader of the run's results must know ("" for nothing):
                           summary.json `caveat`, printed as a warning and shown in the
                           report's table captions
    build_from_info(info)  the network of a finished run (classmethod, for inference)

A run folder (`out`) holds:
- `run.json`      what inference needs to rebuild the model: the trainer ("module:Class"),
                  backbone and its kwargs, method, lambda, frames, ...; `checksums`: the
                  SHA-256 of best.pt and last.pt, checked before either is loaded
- `best.pt`       the model state dict of the check config `selection` chose (default: the
                  best validation mean Dice)
- `last.pt`       the full training state: {"model", "optimizer", "epoch", "rng",
                  "shuffle_rng", "best_*", "selection" (model selection and early stopping,
                  gsmorph/selection.py), "log", "conflicts", "wall_s", "fingerprint",
                  "surgery" (a stateful aggregator's state, when there is one)}
                  (all tensors and plain types: loads with torch.load(weights_only=True))
- `train_log.csv` epoch, loss_sim, loss_reg, val_dice, epoch_s, wall_s, lr
- `conflicts.csv` gradient-surgery methods: epoch, group, n_steps, conflict_frac, cosine_mean
- `summary.json`  best_val_dice, best_epoch, val_njd_pct, wall_s, device, epochs_done, ...,
                  selection, stopped_early, the convergence diagnostics (converged, conv_*;
                  gsmorph/convergence.py) and caveat
- `tensorboard/`  TensorBoard event files, with config `tensorboard: true`
- `provenance.json`
Rerunning with the same folder resumes from last.pt and, on CPU with the same seed and
thread count, ends with bitwise-identical weights to an uninterrupted run. The resume
fingerprint holds the method, seed, lambda, config, CPU thread count, the trainer's code
version and the prepared data's identity: a run made otherwise is refused, or, with
`fresh_if_changed`, its files are removed and training starts afresh (said in the log).

Optimisation (config `optim.<backbone>`, gsmorph.config.optim_settings): the optimiser and its
lr, weight decay and amsgrad; before every step the gradient is clipped to `grad_clip`
(global L2 norm) and each parameter group's lr set to its initial lr x `lr_factor` (linear
warm-up over `warmup_epochs`, step by step; `schedule` poly: (1 - (epoch - 1) / epochs)^power).
With a poly schedule the number of epochs is part of the resume fingerprint.

Tensors: images (B, 1, *S) float32 in [0, 1], labels (B, 1, *S) uint8 (0 bg, 1 LV,
2 Myo, 3 RV), displacement (B, ndim, *S) in voxels (moved = moving at x + u(x)).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gsmorph import checkpoints, convergence, methods, selection
from gsmorph.device import (apply_precision, get_rng_state, memory_format, resolve_device, seed_everything,
                            set_rng_state, step_options)
from gsmorph.errors import GSMorphError
from gsmorph.io import check_not_input, claim_folder, folder_lock, read_json, sha256, write_csv, write_json
from gsmorph.locations import relative
from gsmorph.provenance import write_provenance

# MONAI's finite-difference losses trigger a torch deprecation warning on every call.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

LOG_COLUMNS = ["epoch", "loss_sim", "loss_reg", "val_dice", "epoch_s", "wall_s", "lr"]
CONFLICT_COLUMNS = ["epoch", "group", "n_steps", "conflict_frac", "cosine_mean"]
# config keys that may change between a run and its resumption (the budget and the device)
RESUMABLE_CHANGES = ("epochs", "num_threads", "device", "tensorboard", "convergence")
# what a fresh start removes from a run folder (never any other file)
RUN_FILES = ("run.json", "best.pt", "last.pt", "train_log.csv", "conflicts.csv", "summary.json",
             "provenance.json")

Report = Callable[[int, float], None]
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def count_pairs(buckets: list[dict]) -> int:
    """Number of pairs in buckets made by `load_split`."""
    return sum(b["moving"].shape[0] for b in buckets)


def data_identity(prepared: Path) -> str:
    """A digest of a prepared folder's subjects.csv and provenance.json: changes whenever
    the folder is prepared again (gsmorph.data.loader.prepared_identity, which pairs.json
    records too)."""
    from gsmorph.data.loader import prepared_identity

    return prepared_identity(prepared)


# ----------------------------------------------------------------------- fast steps
def _floats(out):
    """`out` (a tensor or a tuple/list of them) with floating tensors as float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_floats(o) for o in out)
    return out


def fast_forward(model: torch.nn.Module, device_type: str, autocast: bool, fmt) -> None:
    """Wrap `model.forward` in place (its state dict is unchanged): the input in memory
    format `fmt` (None: as given); and, for a training step (train mode, gradients on) with
    `autocast`, the forward under bfloat16 autocast with its outputs returned as float32,
    so that warping, losses and every gradient the surgery combines are float32.
    Validation and inference (eval mode or no gradients) run in float32."""
    forward = model.forward

    def wrapped(x, *args, **kwargs):
        if fmt is not None and x.dim() in (4, 5):
            x = x.contiguous(memory_format=fmt)
        if not (autocast and model.training and torch.is_grad_enabled()):
            return forward(x, *args, **kwargs)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = forward(x, *args, **kwargs)
        return _floats(out)

    model.forward = wrapped


def match_parameter_layout(model: torch.nn.Module) -> None:
    """Give every .grad its parameter's strides (channels-last weights: the surgery writes
    its update into contiguous buffers), so the optimiser works on equal layouts."""
    for p in model.parameters():
        g = p.grad
        if g is not None and g.stride() != p.stride():
            p.grad = torch.empty_like(p).copy_(g)


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Train one learned registration method into the run folder `out`.

    prepared: a prepared folder; backbone: a name of gsmorph/backbones.py, kwargs from
    cfg["backbones"]; method: a trained method of gsmorph/methods.py made by this class;
    cfg: gsmorph.config.load_config(); lam: the smoothness weight of a method that takes
    one on the command line (the plain weighted loss), refused for every other method.
    """

    extra_files: tuple[str, ...] = ()  # run-folder files a subclass writes (removed on a fresh start)

    def __init__(self, prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None):
        self.prepared = Path(prepared)
        self.backbone = backbone
        self.method = method
        self.spec = methods.get(method)
        self.seed = int(seed)
        self.out = Path(out)
        self.cfg = cfg
        self.lam = self.lambda_for(lam)
        self._check_arguments()
        from gsmorph.config import optim_settings

        self.optim = optim_settings(cfg, backbone)
        check_not_input(self.out, [self.prepared])
        if not (self.prepared / "subjects.csv").is_file():
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: not found; is --prepared a prepared folder?")
        self.device = resolve_device(cfg.get("device", "auto"))
        self.step_options = step_options(cfg, self.device)  # refused where the device lacks them
        self.spatial_dims = 2 if cfg["mode"] == "2d" else 3
        self.initialized = False

    @classmethod
    def name(cls) -> str:
        """'module:Class', recorded in run.json and resolved by inference."""
        return f"{cls.__module__}:{cls.__qualname__}"

    def lambda_for(self, lam: float | None) -> float | None:
        """Hook: the smoothness weight of the weighted loss from --lam and the method table
        (None for gradient surgery and for a trainer that chooses its own)."""
        spec = self.spec
        if spec.takes_lam:
            if lam is None:
                raise GSMorphError(f"method '{spec.id}' needs a smoothness weight: pass --lam (e.g. 0.01)")
            return float(lam)
        if lam is not None:
            reason = ("uses gradient surgery" if spec.surgery else
                      f"has its lambda in config key 'lambdas.{spec.lam_key}'" if spec.lam_key else
                      "chooses its own lambda")
            raise GSMorphError(f"method '{spec.id}' {reason} and takes no --lam")
        return float(self.cfg["lambdas"][spec.lam_key]) if spec.lam_key else None

    def _check_arguments(self) -> None:
        from gsmorph import backbones

        if self.spec.family != "trained":
            raise GSMorphError(f"method '{self.method}' is not trained by `gsmorph train` (family {self.spec.family})")
        if self.spec.maker != self.name():
            raise GSMorphError(f"method '{self.method}' is trained by {self.spec.maker}, not {self.name()}")
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise GSMorphError(f"--lam must be a finite number >= 0, got {self.lam}")
        backbones.get(self.backbone)
        if not self.spec.supports(self.backbone):
            raise GSMorphError(f"method '{self.method}' supports backbone(s) {', '.join(self.spec.backbones)} "
                               f"only, not '{self.backbone}'")
        for key in ("epochs", "batch_size", "val_every"):
            if int(self.cfg[key]) < 1:
                raise GSMorphError(f"config key '{key}' must be >= 1, got {self.cfg[key]}")

    def backbone_kwargs(self) -> dict:
        return dict(self.cfg["backbones"].get(self.backbone) or {})

    # --------------------------------------------------------------- initialisation
    def initialize(self) -> None:
        """Seed, load the train and val pairs, build losses, network and optimiser."""
        if self.initialized:
            return
        from gsmorph.losses import build_losses

        seed_everything(self.seed)
        self.train_data = load_split(self.prepared, "train", self.cfg, self.device,
                                     self.cfg.get("max_train_pairs"), self.seed)
        if count_pairs(self.train_data) == 0:
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: no training pairs in split 'train'")
        self.val_data = load_split(self.prepared, "val", self.cfg, self.device, self.cfg.get("max_val_pairs"),
                                   self.seed)
        self.check_data()
        self.sim_loss, self.reg_loss = build_losses(self.cfg, self.spatial_dims)
        self.model = self.build_network().to(self.device)
        self.apply_step_options()
        self.optimizer = self.build_optimizer()
        self.base_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]  # what warm-up and schedule scale
        self.surgery = self.conflicts = None
        if self.spec.surgery:
            from gsmorph.surgery import ConflictTracker, GradientSurgery

            self.surgery = GradientSurgery(self.model, mode=self.spec.surgery, eps=float(self.cfg["surgery_zero_eps"]),
                                           cuda_graph=self.step_options.surgery_cuda_graph)
            self.conflicts = ConflictTracker()  # per-group stats summed on the device
        self.shuffle_gen = torch.Generator().manual_seed(self.seed)
        # training state (restored by resume)
        self.epoch = 0
        self.best_val_dice = float("nan")
        self.best_epoch = 0
        self.best_val_njd_pct = float("nan")
        self.best_sha256: str | None = None
        self.last_sha256: str | None = None
        self.log_rows: list[dict] = []
        self.conflict_rows: list[dict] = []
        self.wall_s = 0.0
        self.checkpoint_epoch = 0
        # model selection and early stopping (gsmorph/selection.py): restored by resume
        self.tracker = selection.Tracker(str(self.cfg["selection"]), int(self.cfg["selection_window"]),
                                         self.cfg["patience"])
        self.selection_score = float("nan")  # the selected check's score
        self.stopped_early = False
        self.initialized = True

    def check_data(self) -> None:
        """Hook: refuse data the method cannot train on (after the splits are loaded)."""

    def apply_step_options(self) -> None:
        """The fast-step options (gsmorph/device.py) on the network just built, before the
        optimiser: the float32 matmul precision (process-wide), channels-last weights, the
        bf16 forward of training steps, torch.compile. With the defaults only PyTorch's own
        precision defaults are set again on CUDA (an earlier tf32 run in the same process,
        e.g. a benchmark's, must not leak into an fp32 one); nothing at all on a CPU.
        Every trainer's train_step gets them through self.model's forward (HyperMorph's too)."""
        options = self.step_options
        apply_precision(options, self.device)
        if options.default:
            return
        fmt = memory_format(self.spatial_dims) if options.channels_last else None
        if fmt is not None:
            self.model.to(memory_format=fmt)
        if fmt is not None or options.autocast:
            fast_forward(self.model, self.device.type, options.autocast, fmt)
        if options.compile and not self.supports_compile():
            print(f"{self.name()}: compile is not applied: its train_step calls the network with Python "
                  "numbers (a recompilation for every new value); run.json records compile: false",
                  file=sys.stderr, flush=True)
            self.step_options = dataclasses.replace(options, compile=False)
        elif options.compile:
            import torch._dynamo

            torch._dynamo.reset()  # a fresh cache for each run (tuning trials share a process)
            self.model.compile(**self.compile_kwargs)

    compile_kwargs: dict = {}  # for nn.Module.compile (tests use {"backend": "aot_eager"} on a CPU)

    @classmethod
    def supports_compile(cls) -> bool:
        """Whether torch.compile pays off for this trainer: yes for this class's train_step;
        a subclass with its own (HyperMorph's passes a new lambda each step) says no unless it
        overrides this."""
        return cls.train_step is Trainer.train_step

    # ------------------------------------------------------------------ overridables
    def build_network(self) -> torch.nn.Module:
        """The RegistrationNet: (B, 2, *S) -> (B, ndim, *S) displacement."""
        return self.network_from(self.backbone, self.spatial_dims, self.backbone_kwargs(), self.int_steps(self.cfg))

    @staticmethod
    def int_steps(cfg: dict) -> int:
        return int(cfg["int_steps"]) if cfg["diffeomorphic"] else 0

    @staticmethod
    def network_from(backbone: str, spatial_dims: int, kwargs: dict, int_steps: int) -> torch.nn.Module:
        from gsmorph.networks import build

        try:
            return build(backbone, spatial_dims, diffeomorphic=int_steps > 0, int_steps=int_steps, **kwargs)
        except ValueError as err:
            raise GSMorphError(f"config key 'backbones.{backbone}': {err}") from None

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of config `optim.<backbone>` (self.optim); the lr it is built with is
        the one warm-up and schedule scale."""
        s = self.optim
        kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        if s["optimizer"] not in kinds:
            raise GSMorphError(f"config key 'optim.{self.backbone}.optimizer': unknown '{s['optimizer']}', "
                               f"expected one of {', '.join(kinds)}")
        return kinds[s["optimizer"]](self.model.parameters(), lr=float(s["lr"]),
                                     weight_decay=float(s["weight_decay"]), amsgrad=bool(s["amsgrad"]))

    def backbone_display(self) -> str:
        """The backbone's name in tables and figures, from its size (e.g. 'TransMorph-S')."""
        from gsmorph import backbones

        return backbones.variant_name(self.backbone, self.backbone_kwargs())

    def train_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        """Fill every parameter's .grad for one batch; return the losses (tensors)."""
        from gsmorph.networks import warp_image

        disp, smooth_field = self.model(torch.cat([moving, fixed], dim=1), with_velocity=True)
        sim = self.sim_loss(warp_image(moving, disp), fixed)
        reg = self.reg_loss(smooth_field)
        if self.surgery is None:
            (sim + self.lam * reg).backward()
        else:
            self.conflicts.add(self.surgery.backward(sim, reg))
            if self.step_options.channels_last:
                match_parameter_layout(self.model)
        return {"loss_sim": sim.detach(), "loss_reg": reg.detach()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(B, 1, *S) moving and fixed -> (B, ndim, *S) displacement."""
        return self.model(torch.cat([moving, fixed], dim=1))

    def validate(self) -> tuple[float, float]:
        """(mean Dice, NJD %) of the current weights on the val split."""
        return self.evaluate_split(self.val_data, self.predict)

    def on_train_end(self) -> None:
        """Hook run after training, with the best weights loaded in self.model."""

    def run_info(self) -> dict:
        """What inference needs (written to run.json); subclasses extend it."""
        return {
            "trainer": self.name(),
            "method": self.method,
            "backbone": self.backbone,
            "backbone_kwargs": self.backbone_kwargs(),
            "spatial_dims": self.spatial_dims,
            "mode": self.cfg["mode"],
            "surgery_mode": self.spec.surgery,
            "lam": self.lam,
            "diffeomorphic": bool(self.cfg["diffeomorphic"]),
            "int_steps": int(self.cfg["int_steps"]),
            "moving": self.cfg["moving"],
            "fixed": self.cfg["fixed"],
            "drop_missing": bool(self.cfg["drop_missing"]),
            "prepared": relative(self.prepared, self.out),  # relative to the run folder (gsmorph/locations.py)
            "dataset": self.dataset(),
            "seed": self.seed,
            "similarity": self.cfg["similarity"],
            "smoothness": self.cfg["smoothness"],
            "optim": self.optim,
            "backbone_display": self.backbone_display(),
            "config": self.cfg,
            "step_options": self.step_options.as_dict(),
            "checksums": {"best.pt": self.best_sha256, "last.pt": self.last_sha256},
            **self.selection_record(),
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
            "backbone_display": self.backbone_display(),
            "optim": self.optim,
            "lam": self.lam,
            "seed": self.seed,
            **self.selection_record(),
            **self.convergence(),
            "caveat": self.caveat(),
        }

    def selection_record(self) -> dict:
        """How best.pt was chosen (config `selection`, gsmorph/selection.py) and whether
        patience stopped the run, for run.json and summary.json."""
        return {"selection": self.cfg["selection"], "selection_window": int(self.cfg["selection_window"]),
                "selection_score": getattr(self, "selection_score", None), "patience": self.cfg["patience"],
                "stopped_early": getattr(self, "stopped_early", False)}

    def convergence(self) -> dict:
        """summary.json's convergence diagnostics (gsmorph/convergence.py) of the log so far."""
        return convergence.diagnose(getattr(self, "log_rows", []), getattr(self, "best_epoch", 0),
                                    self.cfg["convergence"])

    def caveat(self) -> str:
        """A finished run's warning for whoever reads its results ("" for none); the report
        puts it in the captions of the tables holding the run's method. Here: the convergence
        caveat (gsmorph/convergence.py) when the run has not reached a plateau; a subclass
        adding its own joins it to super().caveat()."""
        return convergence.caveat(self.convergence())

    # ------------------------------------------------------------------- inference
    @classmethod
    def build_from_info(cls, info: dict) -> torch.nn.Module:
        """The network of a finished run from its run.json."""
        return cls.network_from(info["backbone"], int(info["spatial_dims"]), info["backbone_kwargs"],
                                cls.int_steps(info))

    @classmethod
    def predictor(cls, model: torch.nn.Module, info: dict) -> Predictor:
        """predict(moving, fixed) (B, 1, *S) -> (B, ndim, *S) with a finished run's network."""
        return lambda moving, fixed: model(torch.cat([moving, fixed], dim=1))

    @classmethod
    def load_predictor(cls, run_dir: str | Path, info: dict, device: torch.device) -> Predictor:
        """The predictor of a finished run, with its best.pt weights (checksum checked)."""
        run_dir = Path(run_dir)
        try:
            model = cls.build_from_info(info).to(device)
        except (GSMorphError, ValueError, KeyError) as err:
            raise GSMorphError(f"{run_dir / 'run.json'}: cannot rebuild the network ({err})") from None
        expected = (info.get("checksums") or {}).get("best.pt")
        if expected is None:
            raise GSMorphError(f"{run_dir / 'run.json'}: no checksum of best.pt; did training finish?")
        try:
            model.load_state_dict(checkpoints.load(run_dir / "best.pt", device, expected))
        except RuntimeError as err:
            raise GSMorphError(f"{run_dir / 'best.pt'}: weights do not fit the network in run.json ({err})") from None
        model.eval()
        return cls.predictor(model, info)

    # ------------------------------------------------------------------- the loop
    def dataset(self) -> str:
        from gsmorph.data.loader import dataset_name

        return dataset_name(self.prepared)

    def fit(self, report: Report | None = None, fresh_if_changed: bool = False) -> dict:
        """Train (resuming from out/last.pt when present), then finish the run folder.

        report(epoch, val_dice) is called after each validation and checkpoint; it may
        raise (e.g. optuna.TrialPruned) to stop the run. fresh_if_changed: a last.pt made
        with another config, code, data or thread count is removed with the run's other
        files (instead of refused) and training starts afresh.

        wall_s (summary.json, train_log.csv) is the run's training time: the wall time of
        each invocation's epochs (training steps, validation, checkpoints) and, in one that
        trained an epoch, its final steps (best weights, on_train_end), every resumed part
        added (a part killed after its last checkpoint is lost). Start-up (imports, data
        loading, network) is left out, and an invocation that trains no epoch (a finished
        run invoked again) adds nothing.
        """
        self._session_start = None  # set when this invocation trains its first epoch
        self._wall_before = 0.0
        self.initialize()
        # only a run folder gsmorph train made (or an empty one), one training at a time
        claim_folder(self.out, "train", self.owned_files(), adopt=self._written_before)
        with folder_lock(self.out, "gsmorph train"):
            return self._fit(report, fresh_if_changed)

    def owned_files(self) -> list[str]:
        """The names a run folder may hold (claim_folder): the run's files and tensorboard/."""
        return [*RUN_FILES, *self.extra_files, "tensorboard/"]

    def _written_before(self, folder: Path) -> bool:
        """A run folder of an earlier gsmorph (no marker): its run.json records last.pt's SHA-256."""
        try:
            info = read_json(folder / "run.json")
            named = {(info.get(key) or {}).get("last.pt") for key in ("checksums", "previous_checksums")} - {None}
            return sha256(folder / "last.pt") in named
        except (GSMorphError, OSError, AttributeError):
            return False

    def _fit(self, report: Report | None, fresh_if_changed: bool) -> dict:
        if not self._resume(fresh_if_changed):
            self._remove_run_files()  # a fresh start: no stale weights from an earlier attempt
        self._wall_before = self.wall_s
        self._write_run_info()
        epochs, val_every = int(self.cfg["epochs"]), int(self.cfg["val_every"])
        if self.epoch < epochs:
            self._session_start = time.perf_counter()
        elif (self.out / "summary.json").is_file():  # finished at this epoch: keep its time, final steps included
            done = read_json(self.out / "summary.json")
            if done.get("epochs_done") == self.epoch and isinstance(done.get("wall_s"), (int, float)):
                self._wall_before = max(self._wall_before, float(done["wall_s"]))
        self.model.train()
        progress = Progress(self.epoch, epochs, f"{self.method} {self.backbone}")
        events = EventLog(self.out / "tensorboard", bool(self.cfg.get("tensorboard")))
        try:
            for epoch in range(self.epoch + 1, epochs + 1):
                if self.stopped_early:  # patience spent (config `patience`), also in a resumed run
                    break
                start = time.perf_counter()
                losses = self._train_epoch()
                self._check_finite(epoch, losses)
                validate = count_pairs(self.val_data) > 0 and (epoch % val_every == 0 or epoch == epochs)
                val = self.validate() if validate else None
                epoch_s = time.perf_counter() - start
                self.on_epoch_end(epoch, losses, val, epoch_s)
                progress.update(epoch, losses, None if val is None else val[0])
                events.epoch(epoch, losses, val)
                if validate and report is not None:
                    report(epoch, val[0])
        finally:
            progress.close()
            events.close()
        return self._finish()

    def on_epoch_end(self, epoch: int, losses: dict[str, float], val: tuple[float, float] | None,
                     epoch_s: float) -> None:
        """Log the epoch; keep best.pt on a better validation; checkpoint last.pt after
        every validation and at the last epoch."""
        self.wall_s = self.elapsed()
        self.epoch = epoch
        self.log_rows.append({
            "epoch": epoch, **losses, "val_dice": None if val is None else val[0], "epoch_s": epoch_s,
            "wall_s": self.wall_s, "lr": self.optimizer.param_groups[0]["lr"],
        })
        if self.conflicts is not None:
            self.conflict_rows += self.conflicts.rows(epoch)
        if val is not None:
            self.select(epoch, val)
        self._write_logs()
        if val is not None or epoch == int(self.cfg["epochs"]):
            self._save_checkpoint()

    def select(self, epoch: int, val: tuple[float, float]) -> None:
        """Apply config `selection` to this check (gsmorph/selection.py): best.pt becomes these
        weights when the rule selects them; patience spent marks the run stopped early."""
        history = [(int(r["epoch"]), float(r["val_dice"])) for r in self.log_rows if r["val_dice"] is not None]
        chosen, score = self.tracker.update(history)
        if chosen:
            self.best_val_dice, self.best_epoch, self.best_val_njd_pct = val[0], epoch, val[1]
            self.selection_score = score
            self.best_sha256 = checkpoints.save(self.model.state_dict(), self.out / "best.pt")
        self.stopped_early = self.tracker.should_stop() and epoch < int(self.cfg["epochs"])

    @torch.no_grad()
    def evaluate_split(self, buckets: list[dict], predict: Predictor) -> tuple[float, float]:
        """Mean Dice over LV/Myo/RV of warped moving labels vs fixed labels (per-pair mean
        of the structures both frames have, then mean over pairs; gsmorph.metrics, as in
        evaluation: a structure the warp erased counts 0) and NJD % of `predict` on `buckets`."""
        from gsmorph.metrics import dice_torch, njd_percent_torch
        from gsmorph.networks import warp_label

        was_training = self.model.training
        self.model.eval()
        dices, njds = [], []
        batch = int(self.cfg["batch_size"])
        for bucket in buckets:
            for i in range(0, bucket["moving"].shape[0], batch):
                sl = slice(i, i + batch)
                disp = predict(bucket["moving"][sl], bucket["fixed"][sl])
                moved = warp_label(bucket["moving_label"][sl], disp)
                dices.append(dice_torch(moved.round().long(), bucket["fixed_label"][sl].long(),
                                        bucket["moving_label"][sl].long()))
                njds.append(njd_percent_torch(disp.float()))
        self.model.train(was_training)
        per_pair = torch.nanmean(torch.cat(dices), dim=1)
        result = torch.stack([torch.nanmean(per_pair), torch.cat(njds).mean()]).cpu()
        return float(result[0]), float(result[1])

    def elapsed(self) -> float:
        """Training seconds of this run so far (see fit): earlier (resumed) parts plus this
        invocation's since its first epoch began (none when it trains no epoch)."""
        if getattr(self, "_session_start", None) is None:
            return self._wall_before
        return self._wall_before + time.perf_counter() - self._session_start

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
        batches = self._epoch_batches()
        epoch = self.epoch + 1
        clip = self.optim["grad_clip"]
        for b, idx in batches:
            bucket = self.train_data[b]
            idx = idx.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            logs = {k: torch.as_tensor(v).detach().float() for k, v in
                    self.train_step(bucket["moving"][idx], bucket["fixed"][idx]).items()}
            for key, value in logs.items():
                sums[key] = sums[key] + value if key in sums else value
            steps += 1
            finite = torch.stack([v.reshape(()) for v in logs.values()]).isfinite().all()
            if self.device.type == "cpu":
                if not bool(finite):  # free on CPU (no queue to wait for): stop before the update
                    break
            else:
                self._drop_gradients_unless(finite)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
            factor = lr_factor(self.optim, epoch, int(self.cfg["epochs"]), steps - 1, len(batches))
            if factor != 1.0 or any(g["lr"] != lr for g, lr in zip(self.optimizer.param_groups, self.base_lrs)):
                for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
                    group["lr"] = lr * factor
            self.optimizer.step()
            if self.device.type == "cpu" and not self._weights_finite():  # free on CPU: stop before the next step
                raise GSMorphError(self._stopped(f"non-finite weights after step {steps} of epoch {epoch} (is the "
                                                 "learning rate too large?)"))
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

    def _weights_finite(self) -> bool:
        return bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all())

    def _stopped(self, reason: str) -> str:
        kept = f"last good checkpoint {self.out / 'last.pt'} (epoch {self.checkpoint_epoch})" \
            if self.checkpoint_epoch else "no checkpoint was written yet"
        return f"{reason}; training stopped, {kept}"

    def _check_finite(self, epoch: int, losses: dict[str, float]) -> None:
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            raise GSMorphError(self._stopped(f"non-finite loss at epoch {epoch} "
                                             f"({', '.join(f'{k}={v}' for k, v in bad.items())})"))

    def _write_logs(self) -> None:
        import pandas as pd

        extra = [k for row in self.log_rows for k in row if k not in LOG_COLUMNS]
        columns = LOG_COLUMNS + list(dict.fromkeys(extra))
        write_csv(self.out / "train_log.csv", pd.DataFrame(self.log_rows, columns=columns))
        if self.surgery is not None:
            write_csv(self.out / "conflicts.csv", pd.DataFrame(self.conflict_rows, columns=CONFLICT_COLUMNS))

    def _write_run_info(self, previous: dict | None = None) -> None:
        info = self.run_info()
        if previous is not None:  # the checksums of files being replaced now (see _record_checkpoint)
            info["previous_checksums"] = previous
        write_json(self.out / "run.json", info)

    def _remove_run_files(self) -> None:
        import shutil

        for name in RUN_FILES + self.extra_files:
            (self.out / name).unlink(missing_ok=True)
        shutil.rmtree(self.out / "tensorboard", ignore_errors=True)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this run for a resume (see the module docstring)."""
        from gsmorph.code_version import code_version

        # the run's own: kwargs, lam and optimiser settings (lr override included)
        ignored = set(RESUMABLE_CHANGES) | {"backbones", "lambdas", "optim", "lr"}
        others = {s for m in methods.METHODS for s in m.sections} - set(self.spec.sections)
        cfg = {k: v for k, v in self.cfg.items() if k not in ignored | others}
        optim = dict(self.optim)
        if optim["schedule"] == "poly":  # the lr of every epoch depends on the number of epochs
            optim["epochs"] = int(self.cfg["epochs"])
        return {"method": self.method, "backbone": self.backbone, "seed": self.seed, "lam": self.lam,
                "backbone_kwargs": self.backbone_kwargs(), "cfg": cfg, "optim": optim,
                "cpu_threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "code": code_version(type(self).__module__), "data": data_identity(self.prepared)}

    def _save_checkpoint(self) -> None:
        self.wall_s = self.elapsed()
        self.last_sha256 = checkpoints.save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_val_dice": self.best_val_dice,
            "best_epoch": self.best_epoch,
            "best_val_njd_pct": self.best_val_njd_pct,
            "best_sha256": self.best_sha256,
            "selection": {**self.tracker.state(), "selection_score": self.selection_score,
                          "stopped_early": getattr(self, "stopped_early", False)},
            "rng": get_rng_state(),
            "shuffle_rng": self.shuffle_gen.get_state(),
            "log": self.log_rows,
            "conflicts": self.conflict_rows,
            "wall_s": self.wall_s,
            "fingerprint": json.dumps(self.fingerprint(), sort_keys=True, default=str),
            **({"surgery": self.surgery.state_dict()} if self.surgery is not None and self.surgery.state else {}),
        }, self.out / "last.pt", before_rename=self._record_checkpoint)
        self.checkpoint_epoch = self.epoch

    def _record_checkpoint(self, digest: str) -> None:
        """run.json names the new last.pt and the one it replaces before the rename: a kill
        at any instant leaves a last.pt that run.json names (resumed on rerun)."""
        previous, self.last_sha256 = self.last_sha256, digest
        self._write_run_info(previous={"last.pt": previous})

    def _resume(self, fresh_if_changed: bool) -> bool:
        """Restore the training state from out/last.pt; False when there is none (or when
        fresh_if_changed and it belongs to another run)."""
        path = self.out / "last.pt"
        if not path.is_file():
            return False
        info = read_json(self.out / "run.json") if (self.out / "run.json").is_file() else {}
        recorded = (info.get("checksums") or {}).get("last.pt")
        found = sha256(path)  # the new last.pt, or the one a killed checkpoint was replacing
        if found in (recorded, (info.get("previous_checksums") or {}).get("last.pt")):
            recorded = found
        state = checkpoints.load(path, self.device, recorded)
        stored = json.loads(state.get("fingerprint") or "{}")
        changed = sorted(k for k, v in self.fingerprint().items() if json.loads(json.dumps(v, default=str))
                         != stored.get(k))
        if changed:
            if fresh_if_changed:
                print(f"{path}: made with another {', '.join(changed)}; starting afresh", file=sys.stderr, flush=True)
                return False
            raise GSMorphError(f"{path}: holds a run made with another {', '.join(changed)}; "
                               "use another --out, delete the folder, or pass --fresh-if-changed")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = self.checkpoint_epoch = int(state["epoch"])
        self.best_val_dice = float(state["best_val_dice"])
        self.best_epoch = int(state["best_epoch"])
        self.best_val_njd_pct = float(state["best_val_njd_pct"])
        self.best_sha256 = state.get("best_sha256")
        chosen = state.get("selection") or {"best_score": self.best_val_dice, "since_best": 0,
                                            "selection_score": self.best_val_dice, "stopped_early": False}
        self.tracker.load(chosen)
        self.selection_score = float(chosen["selection_score"])
        self.stopped_early = bool(chosen["stopped_early"])
        self.last_sha256 = recorded
        self.log_rows = list(state["log"])
        self.conflict_rows = list(state["conflicts"])
        if self.surgery is not None and "surgery" in state:  # a stateful aggregator's state
            self.surgery.load_state_dict(state["surgery"])
        self.wall_s = float(state["wall_s"])
        set_rng_state(state["rng"])
        self.shuffle_gen.set_state(state["shuffle_rng"])
        return True

    def _finish(self) -> dict:
        best = self.out / "best.pt"
        if self.best_sha256 is None:  # never validated (no val pairs): the last weights stand in
            self.best_epoch = self.epoch
            self.best_sha256 = checkpoints.save(self.model.state_dict(), best)
        self._write_logs()
        self.model.load_state_dict(checkpoints.load(best, self.device, self.best_sha256))
        self.on_train_end()
        self.wall_s = self.elapsed()
        self._write_run_info()
        summary = self.summary()
        if summary["caveat"]:
            print(f"warning: {self.out}: {summary['caveat']}", file=sys.stderr, flush=True)
        write_json(self.out / "summary.json", summary)
        write_provenance(self.out / "provenance.json", config=self.cfg, seed=self.seed,
                         method=self.method, backbone=self.backbone, lam=self.lam,
                         prepared=relative(self.prepared, self.out), device=str(self.device),
                         cpu_threads=torch.get_num_threads())
        return summary


def lr_factor(optim: dict, epoch: int, epochs: int, step: int, steps_per_epoch: int) -> float:
    """The factor on the initial lr at step `step` (0-based) of epoch `epoch` (1-based) of
    `epochs`: linear warm-up over the first `warmup_epochs` epochs, step by step (1/n at the
    first step of n warm-up steps, 1 from the last), times the poly schedule's
    (1 - (epoch - 1) / epochs)^poly_power (constant schedule: 1)."""
    factor = 1.0
    warmup = int(optim.get("warmup_epochs") or 0) * int(steps_per_epoch)
    if warmup > 0:
        factor = min(1.0, ((epoch - 1) * int(steps_per_epoch) + step + 1) / warmup)
    if optim.get("schedule", "constant") == "poly":
        factor *= (1.0 - (epoch - 1) / max(int(epochs), 1)) ** float(optim.get("poly_power", 0.9))
    return factor


class Progress:
    """Epoch progress: a tqdm bar on a terminal; otherwise (job logs) a line at every
    validation, at the last epoch and at least every `every_s` seconds, with the epoch,
    the losses, the last validation Dice and the time left."""

    def __init__(self, done: int, total: int, label: str, every_s: float = 10.0):
        from tqdm.auto import tqdm

        self.total, self.first, self.every_s = total, done, every_s
        self.start = self.last_line = time.perf_counter()
        self.val_dice: float | None = None
        self.bar = tqdm(range(done, total), desc=label, unit="epoch", disable=not sys.stderr.isatty(),
                        initial=done, total=total)

    def eta_s(self, epoch: int) -> float:
        """Seconds left at the mean pace of this session's epochs."""
        done = epoch - self.first
        return (time.perf_counter() - self.start) / max(done, 1) * (self.total - epoch)

    def update(self, epoch: int, losses: dict[str, float], val_dice: float | None) -> None:
        self.val_dice = val_dice if val_dice is not None else self.val_dice
        shown = {k: f"{v:.4g}" for k, v in losses.items()}
        shown["val_dice"] = "-" if self.val_dice is None else f"{self.val_dice:.4f}"
        self.bar.update(1)
        self.bar.set_postfix(shown)
        now = time.perf_counter()
        if self.bar.disable and (val_dice is not None or epoch == self.total or now - self.last_line >= self.every_s):
            self.last_line = now
            eta = self.eta_s(epoch)
            print(f"epoch {epoch}/{self.total} " + " ".join(f"{k}={v}" for k, v in shown.items())
                  + f" eta={int(eta // 60)}m{int(eta % 60):02d}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


class EventLog:
    """Optional TensorBoard event files (config `tensorboard: true`) in <run>/tensorboard/:
    the losses per epoch and the validation Dice and NJD."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise GSMorphError(f"config key 'tensorboard': needs the tensorboard package ({err}); "
                                   "pip install tensorboard") from None
            self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, epoch: int, losses: dict[str, float], val: tuple[float, float] | None) -> None:
        if self.writer is None:
            return
        for key, value in losses.items():
            self.writer.add_scalar(f"train/{key}", value, epoch)
        if val is not None:
            self.writer.add_scalar("val/dice", val[0], epoch)
            self.writer.add_scalar("val/njd_pct", val[1], epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train_method(prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None,
                 report: Report | None = None, fresh_if_changed: bool = False) -> dict:
    """Train `method` with the trainer the method table names; return summary.json's dict."""
    if methods.get(method).family != "trained":
        raise GSMorphError(f"method '{method}' is not made by `gsmorph train`")
    trainer = methods.maker_of(method)(prepared, backbone, method, seed, out, cfg, lam=lam)
    return trainer.fit(report=report, fresh_if_changed=fresh_if_changed)

