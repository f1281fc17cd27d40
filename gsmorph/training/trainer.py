"""The Trainer: a conductor that sequences the hooks of one training run (the list and
the run folder's files: gsmorph/training/__init__.py). Its collaborators live beside it:
the data (data.py), the fast-step options (fast_step.py), the optimiser and lr schedule
(optim.py), the run folder with its checkpoints and resume (run_folder.py), progress and
the event log (progress.py)."""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from gsmorph import convergence, methods, selection
from gsmorph.device import resolve_device, seed_everything
from gsmorph.errors import GSMorphError
from gsmorph.io import check_not_input
from gsmorph.locations import relative
from gsmorph.training import fast_step, steps
from gsmorph.training.data import TrainingData, count_pairs
from gsmorph.training.optim import LrSchedule, build_optimizer
from gsmorph.training.progress import EventLog, Progress
from gsmorph.training.run_folder import Live, RunFolder, TrainingState, fingerprint

# MONAI's finite-difference losses trigger a torch deprecation warning on every call.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

Report = Callable[[int, float], None]
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def network_from(backbone: str, spatial_dims: int, kwargs: dict, int_steps: int) -> torch.nn.Module:
    """The RegistrationNet of a backbone of the table (GSMorphError naming its config key)."""
    from gsmorph.networks import build

    try:
        return build(backbone, spatial_dims, diffeomorphic=int_steps > 0, int_steps=int_steps, **kwargs)
    except ValueError as err:
        raise GSMorphError(f"config key 'backbones.{backbone}': {err}") from None


def check_arguments(spec, trainer: str, lam: float | None, backbone: str, cfg: dict) -> None:
    """GSMorphError unless the trainer `trainer` ("module:Class") makes the trained method
    `spec` on `backbone` with smoothness weight `lam` and a config the schema accepts
    (gsmorph/schemas/method.schema.yaml: the one home of the config's value checks)."""
    from gsmorph import backbones
    from gsmorph.config import validate

    if spec.family != "trained":
        raise GSMorphError(f"method '{spec.id}' is not trained by `gsmorph train` (family {spec.family})")
    if spec.maker != trainer:
        raise GSMorphError(f"method '{spec.id}' is trained by {spec.maker}, not {trainer}")
    if lam is not None and not (math.isfinite(lam) and lam >= 0):
        raise GSMorphError(f"--lam must be a finite number >= 0, got {lam}")
    backbones.get(backbone)
    if not spec.supports(backbone):
        raise GSMorphError(f"method '{spec.id}' supports backbone(s) {', '.join(spec.backbones)} "
                           f"only, not '{backbone}'")
    validate(cfg)


class Trainer:
    """Train one learned registration method into the run folder `out`.

    prepared: a prepared folder; backbone: a name of gsmorph/backbones.py, kwargs from
    cfg["backbones"]; method: a trained method of gsmorph/methods.py made by this class;
    cfg: gsmorph.config.load_config(); lam: the smoothness weight of a method that takes
    one on the command line (the plain weighted loss), refused for every other method;
    data: the train and val pairs (default: read from `prepared` by `initialize`).
    """

    __module__ = "gsmorph.training"  # its public home: the name run.json and the method table use
    extra_files: tuple[str, ...] = ()  # run-folder files a subclass writes (removed on a fresh start)
    compile_kwargs: dict = {}  # for nn.Module.compile (tests use {"backend": "aot_eager"} on a CPU)

    def __init__(self, prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None,
                 data: TrainingData | None = None):
        """Check the arguments (the method, lambda, backbone, config, that `prepared` is a
        prepared folder, that the device has the fast-step options) and store them."""
        from gsmorph.config import optim_settings

        self.prepared, self.backbone, self.method = Path(prepared), backbone, method
        self.spec = methods.get(method)
        self.seed, self.out, self.cfg = int(seed), Path(out), cfg
        self.lam = self.lambda_for(lam)
        check_arguments(self.spec, self.name(), self.lam, self.backbone, self.cfg)
        self.optim = optim_settings(cfg, backbone)
        check_not_input(self.out, [self.prepared])
        if not (self.prepared / "subjects.csv").is_file():
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: not found; is --prepared a prepared folder?")
        self.device = resolve_device(cfg.get("device", "auto"))
        self.step_options = fast_step.step_options(cfg, self.device)  # refused where the device lacks them
        self.spatial_dims = 2 if cfg["mode"] == "2d" else 3
        self.data = data
        self.folder = RunFolder(self.out, self.extra_files)
        self.state = TrainingState()
        self.initialized = False

    @classmethod
    def name(cls) -> str:
        """'module:Class', recorded in run.json and compared with the method table's."""
        return f"{cls.__module__}:{cls.__qualname__}"

    def backbone_kwargs(self) -> dict:
        return dict(self.cfg["backbones"].get(self.backbone) or {})

    # the pairs and the state, by their former names
    train_data = property(lambda self: self.data.train)
    val_data = property(lambda self: self.data.val)
    epoch = property(lambda self: self.state.epoch)
    log_rows = property(lambda self: self.state.log_rows)

    # --------------------------------------------------------------- initialisation
    def initialize(self) -> None:
        """Seed, load the train and val pairs (unless given), build losses, network and
        optimiser."""
        if self.initialized:
            return
        from gsmorph.losses import build_losses

        seed_everything(self.seed)
        if self.data is None:
            self.data = TrainingData.load(self.prepared, self.cfg, self.device, self.seed)
        if count_pairs(self.data.train) == 0:
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: no training pairs in split 'train'")
        self.check_data()
        self.sim_loss, self.reg_loss = build_losses(self.cfg, self.spatial_dims)
        self.model = self.build_network().to(self.device)
        self.step_options = fast_step.apply_step_options(self.model, self.step_options, self.device,
                                                         self.spatial_dims, self.supports_compile(),
                                                         self.compile_kwargs, self.name())
        self.optimizer = self.build_optimizer()
        self.schedule = LrSchedule(self.optimizer, self.optim, int(self.cfg["epochs"]))
        self.surgery = self.conflicts = None
        if self.spec.surgery:
            from gsmorph.surgery import ConflictTracker, GradientSurgery

            self.surgery = GradientSurgery(self.model, mode=self.spec.surgery, eps=float(self.cfg["surgery_zero_eps"]),
                                           cuda_graph=self.step_options.surgery_cuda_graph)
            self.conflicts = ConflictTracker()  # per-group stats summed on the device
        self.shuffle_gen = torch.Generator().manual_seed(self.seed)
        # model selection and early stopping (gsmorph/selection.py): restored by resume
        self.tracker = selection.Tracker(str(self.cfg["selection"]), int(self.cfg["selection_window"]),
                                         self.cfg["patience"])
        self.live = Live(self.model, self.optimizer, self.tracker, self.shuffle_gen, self.surgery)
        self.initialized = True

    # ------------------------------------------------------------------------ hooks
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

    def check_data(self) -> None:
        """Hook: refuse data the method cannot train on (after the splits are loaded)."""

    def build_network(self) -> torch.nn.Module:
        """Hook: the RegistrationNet: (B, 2, *S) -> (B, ndim, *S) displacement."""
        return self.network_from(self.backbone, self.spatial_dims, self.backbone_kwargs(), self.int_steps(self.cfg))

    @staticmethod
    def int_steps(cfg: dict) -> int:
        return int(cfg["int_steps"]) if cfg["diffeomorphic"] else 0

    network_from = staticmethod(network_from)

    @classmethod
    def supports_compile(cls) -> bool:
        """Hook: whether torch.compile pays off for this trainer: yes for this class's
        train_step; a subclass with its own (HyperMorph's passes a new lambda each step)
        says no unless it overrides this."""
        return cls.train_step is Trainer.train_step

    def build_optimizer(self) -> torch.optim.Optimizer:
        """Hook: the optimiser of config `optim.<backbone>` (self.optim); the lr it is built
        with is the one warm-up and schedule scale."""
        return build_optimizer(self.model.parameters(), self.optim, self.backbone)

    def backbone_display(self) -> str:
        """Hook: the backbone's name in tables and figures, from its size (e.g. 'TransMorph-S')."""
        from gsmorph import backbones

        return backbones.variant_name(self.backbone, self.backbone_kwargs())

    def train_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        """Hook: fill every parameter's .grad for one batch; return the losses (tensors)."""
        from gsmorph.networks import warp_image

        disp, smooth_field = self.model(torch.cat([moving, fixed], dim=1), with_velocity=True)
        sim = self.sim_loss(warp_image(moving, disp), fixed)
        reg = self.reg_loss(smooth_field)
        if self.surgery is None:
            (sim + self.lam * reg).backward()
        else:
            self.conflicts.add(self.surgery.backward(sim, reg))
            if self.step_options.channels_last:
                fast_step.match_parameter_layout(self.model)
        return {"loss_sim": sim.detach(), "loss_reg": reg.detach()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Hook: (B, 1, *S) moving and fixed -> (B, ndim, *S) displacement."""
        return self.model(torch.cat([moving, fixed], dim=1))

    def validate(self) -> tuple[float, float]:
        """Hook: (mean Dice, NJD %) of the current weights on the val split."""
        return self.evaluate_split(self.data.val, self.predict)

    def on_epoch_end(self, epoch: int, losses: dict[str, float], val: tuple[float, float] | None,
                     epoch_s: float) -> None:
        """Hook: log the epoch; keep best.pt on a better validation; checkpoint last.pt
        after every validation and at the last epoch."""
        state = self.state
        state.wall_s = self.elapsed()
        state.epoch = epoch
        state.log_rows.append({
            "epoch": epoch, **losses, "val_dice": None if val is None else val[0], "epoch_s": epoch_s,
            "wall_s": state.wall_s, "lr": self.optimizer.param_groups[0]["lr"],
        })
        if self.conflicts is not None:
            state.conflict_rows += self.conflicts.rows(epoch)
        if val is not None:
            self.select(epoch, val)
        self.folder.write_logs(state, self.surgery is not None)
        if val is not None or epoch == int(self.cfg["epochs"]):
            self.save_checkpoint()

    def on_train_end(self) -> None:
        """Hook: run after training, with the best weights loaded in self.model."""

    def inference_inputs(self) -> list:
        """Hook: the network's further forward arguments at inference (run.json `network`)."""
        return []

    def run_info(self) -> dict:
        """Hook: run.json (what inference needs); subclasses extend it."""
        from gsmorph.data.loader import dataset_name

        model = getattr(self, "model", None)
        recipe = getattr(model, "recipe", None)  # a RegistrationNet's constructor arguments
        return {
            "trainer": self.name(), "method": self.method, "backbone": self.backbone,
            "backbone_kwargs": self.backbone_kwargs(), "spatial_dims": self.spatial_dims, "mode": self.cfg["mode"],
            "surgery_mode": self.spec.surgery, "lam": self.lam, "diffeomorphic": bool(self.cfg["diffeomorphic"]),
            "int_steps": int(self.cfg["int_steps"]), "moving": self.cfg["moving"], "fixed": self.cfg["fixed"],
            "drop_missing": bool(self.cfg["drop_missing"]),
            "prepared": relative(self.prepared, self.out),  # relative to the run folder (gsmorph/locations.py)
            "dataset": dataset_name(self.prepared), "seed": self.seed, "similarity": self.cfg["similarity"],
            "smoothness": self.cfg["smoothness"], "optim": self.optim, "backbone_display": self.backbone_display(),
            "config": self.cfg, "step_options": self.step_options.as_dict(),
            "checksums": {"best.pt": self.state.best_sha256, "last.pt": self.folder.last_sha256},
            **self.selection_record(),
            **({"network": {**recipe, "inputs": list(self.inference_inputs())}} if recipe else {}),
        }

    def summary(self) -> dict:
        """Hook: summary.json; subclasses extend it."""
        s = self.state
        return {
            "best_val_dice": s.best_val_dice, "best_epoch": s.best_epoch, "val_njd_pct": s.best_val_njd_pct,
            "wall_s": s.wall_s, "device": str(self.device), "epochs_done": s.epoch, "method": self.method,
            "backbone": self.backbone, "backbone_display": self.backbone_display(), "optim": self.optim,
            "lam": self.lam, "seed": self.seed, **self.selection_record(), **self.convergence(),
            "caveat": self.caveat(),
        }

    def caveat(self) -> str:
        """Hook: a finished run's warning for whoever reads its results ("" for none); the
        report puts it in the captions of the tables holding the run's method. Here: the
        convergence caveat (gsmorph/convergence.py) when the run has not reached a plateau;
        a subclass adding its own joins it to super().caveat()."""
        return convergence.caveat(self.convergence())

    def selection_record(self) -> dict:
        """How best.pt was chosen (config `selection`, gsmorph/selection.py) and whether
        patience stopped the run, for run.json and summary.json."""
        return {"selection": self.cfg["selection"], "selection_window": int(self.cfg["selection_window"]),
                "selection_score": self.state.selection_score, "patience": self.cfg["patience"],
                "stopped_early": self.state.stopped_early}

    def convergence(self) -> dict:
        """summary.json's convergence diagnostics (gsmorph/convergence.py) of the log so far."""
        return convergence.diagnose(self.state.log_rows, self.state.best_epoch, self.cfg["convergence"])

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this run for a resume (gsmorph.training.run_folder.fingerprint)."""
        return fingerprint(self.spec, self.backbone, self.seed, self.lam, self.backbone_kwargs(), self.cfg, self.optim,
                           self.device, type(self).__module__, self.prepared)

    # ------------------------------------------------------------------- the loop
    def fit(self, report: Report | None = None, fresh_if_changed: bool = False) -> dict:
        """Train (resuming from out/last.pt when present), then finish the run folder.

        report(epoch, val_dice) is called after each validation and checkpoint; it may
        raise (e.g. optuna.TrialPruned) to stop the run. fresh_if_changed: a last.pt made
        with another config, code, data or thread count is removed with the run's other
        files (instead of refused) and training starts afresh. wall_s: see `elapsed`.
        """
        self._session_start = None  # set when this invocation trains its first epoch
        self._wall_before = 0.0
        self.initialize()
        with self.folder.claim():
            return self._fit(report, fresh_if_changed)

    def _fit(self, report: Report | None, fresh_if_changed: bool) -> dict:
        resumed = self.folder.resume(self.live, self.device, self.fingerprint(), fresh_if_changed)
        if resumed is None:
            self.folder.remove_files()
        else:
            self.state = resumed
        self._wall_before = self.state.wall_s
        self.folder.write_run_info(self.run_info())
        epochs, val_every = int(self.cfg["epochs"]), int(self.cfg["val_every"])
        if self.state.epoch < epochs:
            self._session_start = time.perf_counter()
        else:  # finished at this epoch: keep its time, final steps included
            self._wall_before = max(self._wall_before, self.folder.finished_wall_s(self.state.epoch) or 0.0)
        self.model.train()
        progress = Progress(self.state.epoch, epochs, f"{self.method} {self.backbone}")
        events = EventLog(self.out / "tensorboard", bool(self.cfg.get("tensorboard")))
        try:
            for epoch in range(self.state.epoch + 1, epochs + 1):
                if self.state.stopped_early:  # patience spent (config `patience`), also in a resumed run
                    break
                start = time.perf_counter()
                losses = self._train_epoch()
                steps.check_finite(epoch, losses, self.folder.stopped)
                validate = count_pairs(self.data.val) > 0 and (epoch % val_every == 0 or epoch == epochs)
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

    def save_checkpoint(self) -> None:
        """Write last.pt, the full training state, now (run.json naming it first)."""
        self.state.wall_s = self.elapsed()
        self.folder.save_checkpoint(self.live, self.state, self.fingerprint(), self.run_info)

    def select(self, epoch: int, val: tuple[float, float]) -> None:
        """Apply config `selection` to this check (gsmorph/selection.py): best.pt becomes these
        weights when the rule selects them; patience spent marks the run stopped early."""
        s = self.state
        history = [(int(r["epoch"]), float(r["val_dice"])) for r in s.log_rows if r["val_dice"] is not None]
        chosen, score = self.tracker.update(history)
        if chosen:
            s.best_val_dice, s.best_epoch, s.best_val_njd_pct = val[0], epoch, val[1]
            s.selection_score = score
            s.best_sha256 = self.folder.save_best(self.model)
        s.stopped_early = self.tracker.should_stop() and epoch < int(self.cfg["epochs"])

    def evaluate_split(self, buckets: list[dict], predict: Predictor) -> tuple[float, float]:
        """(mean Dice, NJD %) of `predict` on `buckets` (gsmorph.training.steps.evaluate)."""
        return steps.evaluate(self.model, buckets, predict, int(self.cfg["batch_size"]))

    def elapsed(self) -> float:
        """Training seconds of this run so far (summary.json, train_log.csv `wall_s`): the
        wall time of each invocation's epochs (training steps, validation, checkpoints) and,
        in one that trained an epoch, its final steps (best weights, on_train_end), every
        resumed part added (a part killed after its last checkpoint is lost). Start-up
        (imports, data loading, network) is left out; an invocation that trains no epoch (a
        finished run invoked again) adds nothing."""
        if getattr(self, "_session_start", None) is None:
            return getattr(self, "_wall_before", 0.0)
        return self._wall_before + time.perf_counter() - self._session_start

    def _train_epoch(self) -> dict[str, float]:
        batches = steps.epoch_batches(self.data.train, int(self.cfg["batch_size"]), self.shuffle_gen)
        return steps.train_epoch(self.train_step, self.data.train, batches, self.model, self.optimizer, self.schedule,
                                 self.state.epoch + 1, self.optim["grad_clip"], self.device, self.folder.stopped)

    def _finish(self) -> dict:
        s = self.state
        if s.best_sha256 is None:  # never validated (no val pairs): the last weights stand in
            s.best_epoch = s.epoch
            s.best_sha256 = self.folder.save_best(self.model)
        self.folder.write_logs(s, self.surgery is not None)
        self.folder.load_best(self.model, self.device, s.best_sha256)
        self.on_train_end()
        s.wall_s = self.elapsed()
        self.folder.write_run_info(self.run_info())
        summary = self.summary()
        self.folder.finish(summary, config=self.cfg, seed=self.seed, method=self.method, backbone=self.backbone,
                           lam=self.lam, prepared=relative(self.prepared, self.out), device=str(self.device),
                           cpu_threads=torch.get_num_threads())
        return summary


def train_method(prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None,
                 report: Report | None = None, fresh_if_changed: bool = False,
                 data: TrainingData | None = None) -> dict:
    """Train `method` with the trainer the method table names; return summary.json's dict.
    data: the train and val pairs (default: read from `prepared`)."""
    if methods.get(method).family != "trained":
        raise GSMorphError(f"method '{method}' is not made by `gsmorph train`")
    trainer = methods.maker_of(method)(prepared, backbone, method, seed, out, cfg, lam=lam, data=data)
    return trainer.fit(report=report, fresh_if_changed=fresh_if_changed)
