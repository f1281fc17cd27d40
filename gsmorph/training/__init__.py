"""The one training loop every learned method uses: gradient surgery (GSMorph and its
ablations), the weighted loss (fixed, given or tuned lambda) and, by subclassing,
HyperMorph. Which one a run is comes from the method table (gsmorph/methods.py).

The package, one idea per module:
- trainer.py     `Trainer`, the conductor: it sequences the hooks below; `train_method`
- data.py        `TrainingData` (the train and val buckets, injectable), `load_split`
- fast_step.py   the fast-step options (precision, channels_last, compile, CUDA graph)
- optim.py       the optimiser and the lr schedule (`lr_factor`, `LrSchedule`)
- steps.py       one epoch of steps and one validation pass
- run_folder.py  `RunFolder` (files, checkpoints, resume, fingerprint) and `TrainingState`
                 (what a resume restores, declared once)
- progress.py    `Progress` (bar / lines on stderr) and `EventLog` (TensorBoard)

Life cycle (as nnU-Net's trainers): `__init__` checks the arguments (method, lambda,
backbone, config, the prepared folder, the device's fast-step options) and stores them;
`initialize()` seeds, loads the data (unless given as `data=`) and builds losses, network
and optimiser; `fit()` resumes or starts afresh, trains, and finishes the run folder,
calling these hooks (a subclass overrides any of them):

    lambda_for(lam)         the weighted loss's lambda (--lam, the config's lambdas, or None)
    check_data()            refuse data the method cannot train on
    build_network()         the RegistrationNet (backbone + integration)
    supports_compile()      whether torch.compile pays off for this train_step (classmethod)
    build_optimizer()       the backbone's optimiser of config `optim` (AdamW for VoxelMorph)
    train_step(m, f)        fills every parameter's .grad for one batch, returns the losses
    predict(m, f)           the displacement used by validation
    validate()              (val Dice, val NJD %) of the current weights
    on_epoch_end(...)       logs, best/last checkpoints (`select`, `save_checkpoint`)
    on_train_end()          with the best weights loaded, before the run folder is finished
    inference_inputs()      the network's further forward arguments at inference
    run_info() / summary()  what run.json / summary.json hold
    backbone_display()      the backbone's name in tables and figures
    caveat()                what a reader of the run's results must know ("" for nothing):
                            summary.json `caveat`, printed as a warning and shown in the
                            report's table captions
    build_from_info(info), predictor(model, info)   (classmethods, optional) the network
                            and predictor of an older run folder whose run.json has no
                            `network` record; the Trainer's own default network needs none

A run folder (`out`) holds:
- `run.json`      what inference needs: `network` (the RegistrationNet's constructor
                  arguments: the backbone's "module:attribute", spatial_dims, kwargs,
                  int_steps, and the forward's further `inputs`; gsmorph.networks.from_recipe
                  rebuilds it without the trainer), the trainer ("module:Class"), backbone
                  and its kwargs, method, lambda, frames, ...; `checksums`: the SHA-256 of
                  best.pt and last.pt, checked before either is loaded
- `best.pt`       the model state dict of the check config `selection` chose (default: the
                  best validation mean Dice)
- `last.pt`       the full training state: {"model", "optimizer", "rng", "shuffle_rng",
                  "fingerprint", the fields of run_folder.TrainingState ("epoch", "best_*",
                  "log", "conflicts", "wall_s", "selection": model selection and early
                  stopping, gsmorph/selection.py), "surgery" (a stateful aggregator's state,
                  when there is one)} (all tensors and plain types: loads with
                  torch.load(weights_only=True))
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
from gsmorph.training.data import TrainingData, count_pairs, data_identity, load_split
from gsmorph.training.fast_step import StepOptions, fast_forward, match_parameter_layout, step_options
from gsmorph.training.optim import LrSchedule, build_optimizer, lr_factor
from gsmorph.training.progress import EventLog, Progress
from gsmorph.training.run_folder import (CONFLICT_COLUMNS, LOG_COLUMNS, RESUMABLE_CHANGES, RUN_FILES, RunFolder,
                                         TrainingState)
from gsmorph.training.trainer import Predictor, Report, Trainer, train_method

__all__ = ["CONFLICT_COLUMNS", "LOG_COLUMNS", "RESUMABLE_CHANGES", "RUN_FILES", "EventLog", "LrSchedule",
           "Predictor", "Progress", "Report", "RunFolder", "StepOptions", "Trainer", "TrainingData",
           "TrainingState", "build_optimizer", "count_pairs", "data_identity", "fast_forward", "load_split",
           "lr_factor", "match_parameter_layout", "step_options", "train_method"]
