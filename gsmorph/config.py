"""Method configuration: defaults (the paper's setting) merged with a user's file or JSON.

The keys here configure `gsmorph train`, `infer`, `tune` and `register`. Unknown keys
are errors naming the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from gsmorph.errors import GSMorphError

DEFAULTS: dict[str, Any] = {
    # what is registered
    "mode": "2d",                # "2d": ES/ED slice pairs; "3d": whole-volume pairs
    "moving": "ES",
    "fixed": "ED",
    "drop_missing": False,       # 2D: drop slices where LV, Myo or RV is missing in either frame
    # losses
    "similarity": "mse",         # mse | lncc
    "lncc_kernel": 9,            # window (voxels) of LNCC
    "smoothness": "l1",          # l1 | l2 (diffusion, first differences) | bending
    # optimisation: the settings of each backbone are in `optim` below; the paper trains
    # with batch 32 for 500 epochs
    "lr": None,                  # null: each backbone's optim.<backbone>.lr; a number overrides it for
                                 # every backbone (tune.tune_lr sets it per trial)
    "epochs": 500,
    "batch_size": 32,
    "val_every": 5,
    # model selection and early stopping (gsmorph/selection.py): which check becomes best.pt
    "selection": "best",         # best (the paper's) | smoothed (best mean of selection_window checks) | last
    "selection_window": 3,       # smoothed: consecutive validation checks in the mean
    "patience": None,            # stop after this many checks without a better selection score (None: off)
    # convergence diagnostics and caveat (gsmorph/convergence.py): a loss is flat when a line
    # through the last loss_fraction of the epochs changes by at most loss_tol (relative);
    # validation Dice still rises when a line through the last val_checks checks rises by more
    # than dice_tol with one-sided p < alpha
    "convergence": {"loss_fraction": 0.2, "loss_tol": 0.05, "val_checks": 5, "dice_tol": 0.005, "alpha": 0.05},
    "max_train_pairs": None,     # cap on training pairs (None: all)
    "max_val_pairs": None,
    "num_threads": None,         # torch CPU threads (None: torch's default)
    "device": "auto",            # auto | cpu | cuda
    "tensorboard": False,        # also write TensorBoard event files in <run>/tensorboard/
    # fast training steps, CUDA only (gsmorph/training/fast_step.py; refused on a CPU): the defaults are
    # the float32 eager step
    "precision": "fp32",         # fp32 | tf32 | bf16 (bf16 autocast forward; losses, surgery in fp32)
    "channels_last": False,      # channels-last weights and inputs
    "compile": False,            # torch.compile of the network
    "surgery_cuda_graph": False,  # gradient surgery's step captured in a CUDA graph
    # surgery's zero-gradient guard (gsmorph/surgery.py): a tensor group whose ||g_reg||^2 <=
    # eps ||g_sim||^2 keeps g_sim; 0 projects onto rounding noise too (as the authors' code)
    "surgery_zero_eps": 1e-12,
    # the deformation model
    "diffeomorphic": False,      # integrate a stationary velocity by scaling and squaring
    "int_steps": 7,
    # backbones by name: keyword arguments of gsmorph.networks.build
    "backbones": {
        "voxelmorph": {"features": [16, 32, 64, 128, 256]},
        "transmorph": {"embed_dim": 48, "depths": [2, 2, 4, 2], "num_heads": [4, 4, 8, 8], "window_size": 4},
    },
    # optimiser per backbone (gsmorph.config.optim_settings); a backbone without an entry
    # (a plugin's) gets OPTIM_FALLBACK. optimizer: adam | adamw; grad_clip: max global L2
    # norm of the gradient (null: none); warmup_epochs: linear warm-up of the lr over that
    # many epochs, step by step; schedule: constant | poly (lr x (1 - (epoch-1)/epochs)^poly_power
    # per epoch, as in TransMorph's code)
    "optim": {
        # the paper's (GSMorph's code): AdamW, lr 5e-3, no weight decay, constant lr
        "voxelmorph": {"optimizer": "adamw", "lr": 5e-3, "weight_decay": 0.0, "amsgrad": False,
                       "grad_clip": None, "warmup_epochs": 0, "schedule": "constant", "poly_power": 0.9},
        # the GSMorph paper does not say; the TransMorph authors' code: Adam (amsgrad), lr 1e-4,
        # no weight decay, no clipping or warm-up, polynomial decay with power 0.9
        "transmorph": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "amsgrad": True,
                       "grad_clip": None, "warmup_epochs": 0, "schedule": "poly", "poly_power": 0.9},
    },
    # weighted-loss baseline: the paper's VoxelMorph-s / -m / -l lambdas, and the lambda sweep's
    # (methods weighted-sweep1..6: half-decades from 1e-4 to 1 between and beside s, m, l)
    "lambdas": {"s": 0.001, "m": 0.01, "l": 0.1, "sweep1": 0.0001, "sweep2": 0.000316, "sweep3": 0.00316,
                "sweep4": 0.0316, "sweep5": 0.316, "sweep6": 1.0},
    # HyperMorph (baselines/hypermorph.py)
    # (Hoopes et al. and voxelmorph's train_hypermorph.py: 6 x Dense(128, ReLU), l2 gradient
    # smoothness, MSE / sigma^2 with sigma 0.05, end-point over-sampling 0.2 per sample)
    "hypermorph": {
        # default (learns lambda) | published (Hoopes et al.) | gsmorph (the GSMorph authors'
        # code); each key below that is null takes the variant's value (baselines/hypermorph.py
        # VARIANTS), a value set here replaces it
        "variant": "default",
        "hidden": 128,
        "layers": 6,
        "parametrisation": None,  # scaled | dense | offset | film: how each convolution is generated
        "encoding": None,         # lambda | cos-sin: the hypernetwork's input code
        "loss": None,             # hoopes: (1 - lam) sim / s + lam reg; gsmorph: sim / s + lam reg
        "sampling": None,         # uniform (lambda ~ U) | log-weight (log-uniform equivalent weight)
        "weight_range": None,     # [low, high] equivalent weights of log-weight sampling
        "lambda_max": None,       # gsmorph loss with uniform sampling: lambda on [0, lambda_max]
        "lambda_per": None,       # sample | batch: one lambda per sample or one per batch
        "lambda_lr_factor": None,  # lr factor of the lambda-dependent parameters (MLP, generating maps)
        "smoothness": None,       # HyperMorph's own smoothness loss, not the top-level `smoothness`
        "endpoint_prob": 0.2,    # P(a sample's lambda is drawn from {0, 1}), per sample of a batch
        "mse_sigma": None,       # MSE similarity scaled by 1 / sigma^2; "estimate": from the train pairs
        "val_lambdas": 11,       # coarse validation grid: this many lambdas evenly on [0, 1]
        "fine_lambdas": 10,      # fine grid between the coarse neighbours of the coarse best (0: none)
        "features": None,        # U-Net level widths; None: those of backbones.voxelmorph
        "epochs_factor": 1,      # HyperMorph trains epochs_factor x `epochs` epochs
        # optimiser keys that replace the backbone's `optim` entry for HyperMorph alone ({}: the
        # backbone's); paper.yaml sets the public script's Adam at lr 1e-4 (at the VoxelMorph
        # lr 5e-3 the hypernetwork diverges at 128 x 128: val Dice 0 within a few steps)
        "optim": {},
    },
    # Optuna tuning of the weighted baseline (baselines/tuning.py)
    "tune": {
        "trials": 20,
        "lam_low": 1e-4,
        "lam_high": 1.0,
        "tune_lr": False,
        "lr_low": 1e-4,
        "lr_high": 1e-2,
        "objective": "dice",     # dice | dice-njd (multi-objective: Dice up, NJD down)
        "pruner_startup_trials": 3,
        "pruner_warmup_steps": 1,     # epochs before pruning: at least this, and a quarter of epochs
        "njd_bound": 1.0,        # dice-njd: best = highest-Dice Pareto trial with val NJD % <= this
        "heartbeat_s": 30.0,     # a running trial records a heartbeat this often
        "stale_after_s": 900.0,  # a trial of another host without heartbeat this long is dead
    },
    # classical baselines (baselines/classical.py)
    # demons: variant diffeomorphic | fast-symmetric; smoothing_sigma of the field in voxels
    "demons": {"iterations": 100, "smoothing_sigma": 1.5, "variant": "diffeomorphic",
               "histogram_matching": False},
    # syn: keyword arguments of ants.registration (all stages composed into one field)
    "syn": {"type_of_transform": "SyN", "grad_step": 0.2, "flow_sigma": 3.0, "total_sigma": 0.0,
            "reg_iterations": [40, 20, 0], "syn_metric": "mattes", "syn_sampling": 32,
            "aff_metric": "mattes", "aff_sampling": 32, "aff_random_sampling_rate": 0.2,
            "aff_iterations": [2100, 1200, 1200, 10], "aff_shrink_factors": [6, 4, 2, 1],
            "aff_smoothing_sigmas": [3, 2, 1, 0]},
}


# the optimisation settings of a backbone without its own `optim` entry (a plugin's): voxelmorph's
OPTIM_FALLBACK: dict[str, Any] = copy.deepcopy(DEFAULTS["optim"]["voxelmorph"])

SCHEMA = Path(__file__).resolve().parent / "schemas" / "method.schema.yaml"


def optim_settings(cfg: dict[str, Any], backbone: str, override: dict | None = None,
                   override_key: str = "") -> dict[str, Any]:
    """The optimisation settings `backbone` trains with: config `optim.<backbone>` (or
    OPTIM_FALLBACK), updated by `override` (a method's own keys, config key `override_key`,
    e.g. hypermorph.optim), with the top-level `lr` in its place when that is set.
    GSMorphError naming the key for a value the optimiser cannot use."""
    entry = (cfg.get("optim") or {}).get(backbone)
    override = override or {}
    settings = {**OPTIM_FALLBACK, **(entry or {}), **override}

    def key_of(key: str) -> str:
        if key == "lr" and cfg.get("lr") is not None:
            return "lr"
        return f"{override_key}.{key}" if key in override else f"optim.{backbone}.{key}"

    if cfg.get("lr") is not None:
        settings["lr"] = cfg["lr"]
    problems = optim_problems(settings)  # a config edited in code, past load_config's check
    if problems:
        key, problem = problems[0]
        raise GSMorphError(f"config key '{key_of(key)}': {problem}")
    return settings


def optim_problems(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """[(key, what is wrong)] of an optimiser entry against the schema's `optim` definition
    (gsmorph/schemas/method.schema.yaml), non-finite numbers first."""
    import jsonschema

    schema = method_schema()
    problems = [(key, f"{value!r} is not a finite number") for key, value in settings.items()
                if isinstance(value, float) and not math.isfinite(value)]
    validator = jsonschema.Draft202012Validator({**schema["$defs"]["optim"], "$defs": schema["$defs"]})
    for error in sorted(validator.iter_errors(settings), key=lambda e: [str(p) for p in e.path]):
        problems.append((str(error.path[0]) if error.path else "", error.message))
    return problems


def method_schema() -> dict:
    """The JSON schema of the method configuration, with one entry per registered backbone."""
    import yaml

    from gsmorph import backbones

    schema = yaml.safe_load(SCHEMA.read_text())
    schema["properties"]["backbones"]["properties"] = {name: {"type": "object"} for name in backbones.names()}
    schema["properties"]["optim"]["properties"] = {name: {"$ref": "#/$defs/optim"} for name in backbones.names()}
    return schema


def schema_messages(data: Any, schema: dict, where: str = "") -> list[str]:
    """Short messages, one per violation of `schema` by `data`: the key, what is wrong, and
    for an unknown key the keys allowed there; and one per non-finite number (NaN, inf)."""
    import jsonschema

    messages = non_finite_messages(data, where)
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path)):
        key = ".".join([where] * bool(where) + [str(p) for p in error.absolute_path]) or "(top level)"
        text = error.message
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = [k for k in (error.instance if isinstance(error.instance, dict) else {}) if k not in allowed]
            text += "".join(close_match(k, allowed) for k in extra[:1]) + f"; allowed keys: {', '.join(allowed)}"
        elif error.validator == "oneOf":
            text = f"{error.instance!r} is not valid here"
        messages.append(f"config key '{key}': {text}")
    return messages


def validate(cfg: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Check a merged method config against the schema; GSMorphError naming every bad key."""
    messages = schema_messages(cfg, method_schema(), where)
    if messages:
        raise GSMorphError("; ".join(messages))
    return cfg


def close_match(key: str, allowed) -> str:
    """' (did you mean X?)' for the allowed key closest to a mistyped `key` (difflib), or ''."""
    import difflib

    found = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{found[0]}'?)" if found else ""


def unknown_key(path: str, allowed) -> GSMorphError:
    """The error of an unknown config key at `path` (dotted): a close match and the keys
    allowed there."""
    where, _, key = path.rpartition(".")
    prefix = f"{where}." if where else ""
    hint = close_match(key, allowed)
    hint = hint.replace("'", f"'{prefix}", 1) if hint else ""
    return GSMorphError(f"unknown config key '{path}'{hint}; allowed keys: {', '.join(sorted(map(str, allowed)))}")


def _merge(base: dict, update: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise unknown_key(path, base)
        if path == "optim":
            out[key] = _merge_optim(base[key], value, path)
        elif path in PARTIAL_OPTIM:
            out[key] = _merge_partial_optim(base[key], value, path)
        elif isinstance(base[key], dict) and key != "backbones":
            if not isinstance(value, dict):
                raise GSMorphError(f"config key '{path}' must be a mapping, got {type(value).__name__}")
            out[key] = _merge(base[key], value, path)
        elif key == "backbones":
            if not isinstance(value, dict):
                raise GSMorphError(f"config key '{path}' must be a mapping")
            out[key] = {**base[key], **value}  # a backbone's kwargs are replaced whole
        else:
            out[key] = copy.deepcopy(value)
    return out


# config keys holding some optimiser keys that replace a backbone's `optim` entry
PARTIAL_OPTIM = ("hypermorph.optim",)


def _merge_partial_optim(base: dict, update: Any, where: str) -> dict:
    """Some keys of an `optim` entry (any of OPTIM_FALLBACK's), merged into `base`."""
    if not isinstance(update, dict):
        raise GSMorphError(f"config key '{where}' must be a mapping, got {type(update).__name__}")
    unknown = [key for key in update if key not in OPTIM_FALLBACK]
    if unknown:
        raise unknown_key(f"{where}.{unknown[0]}", OPTIM_FALLBACK)
    return {**copy.deepcopy(base), **copy.deepcopy(update)}


def _merge_optim(base: dict, update: Any, where: str) -> dict:
    """`optim` entries merged key by key, per backbone; a backbone without a default entry
    (a plugin's) starts from OPTIM_FALLBACK."""
    if not isinstance(update, dict):
        raise GSMorphError(f"config key '{where}' must be a mapping, got {type(update).__name__}")
    out = copy.deepcopy(base)
    for name, value in update.items():
        if not isinstance(value, dict):
            raise GSMorphError(f"config key '{where}.{name}' must be a mapping, got {type(value).__name__}")
        out[name] = _merge(base.get(name, OPTIM_FALLBACK), value, f"{where}.{name}")
    return out


def _no_constant(name: str):
    """json.loads' hook for NaN, Infinity and -Infinity: no config value may be one."""
    raise GSMorphError(f"config overrides (--set): {name} is not a finite number")


def non_finite_messages(data: Any, where: str = "") -> list[str]:
    """One message per float of `data` (nested mappings and lists) that is NaN or infinite:
    JSON Schema's `number` admits them, no config value means them."""
    if isinstance(data, float) and not math.isfinite(data):
        return [f"config key '{where or '(top level)'}': {data!r} is not a finite number"]
    if isinstance(data, dict):
        return [m for k, v in data.items() for m in non_finite_messages(v, f"{where}.{k}" if where else str(k))]
    if isinstance(data, (list, tuple)):
        return [m for i, v in enumerate(data) for m in non_finite_messages(v, f"{where}.{i}" if where else str(i))]
    return []


def load_config(path: str | os.PathLike | None = None, overrides: str | dict | None = None,
                device: str | None = None) -> dict[str, Any]:
    """Defaults, updated by a YAML/JSON file, updated by overrides (a dict or JSON text),
    with `device` (a --device flag) last.

    A file may hold the keys at top level or under a `method:` section (so the
    workflow's config.yaml can be passed as is).
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise GSMorphError(f"{path}: config file not found")
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise GSMorphError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                               f"{err.start})") from None
        except yaml.YAMLError as err:
            raise GSMorphError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
        if not isinstance(data, dict):
            raise GSMorphError(f"{path}: config must be a mapping")
        data = data.get("method", data)
        if not isinstance(data, dict):
            raise GSMorphError(f"{path}: the 'method:' section must be a mapping of config keys, got "
                               f"{'nothing' if data is None else type(data).__name__}")
        try:
            cfg = _merge(cfg, data, "")
        except GSMorphError as err:
            raise GSMorphError(f"{path}: {err}") from None
    if overrides:
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides, parse_constant=_no_constant)
            except json.JSONDecodeError as err:
                raise GSMorphError(f"config overrides (--set) are not valid JSON ({err})") from None
        if not isinstance(overrides, dict):
            raise GSMorphError(f"config overrides (--set) must be a JSON object of config keys, e.g. "
                               f"'{{\"epochs\": 3}}', got {type(overrides).__name__}")
        cfg = _merge(cfg, overrides, "")
    if device is not None:
        cfg["device"] = device
    return validate(cfg)
