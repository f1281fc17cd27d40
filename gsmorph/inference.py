"""Inference with a trained run: rebuild its network from run.json's `network` record (the
constructor arguments training recorded; gsmorph.networks.from_recipe) and write the shared
per-pair outputs (gsmorph/pairs.py). A run.json without that record (an older run folder)
is rebuilt by its trainer class, from the method table.

A predictor maps (B, 1, *S) float32 moving and fixed images to the (B, ndim, *S)
displacement in voxels (moved = moving sampled at x + u(x)).
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gsmorph import methods, plugins
from gsmorph.device import resolve_device, synchronize
from gsmorph.errors import GSMorphError
from gsmorph.io import read_json
from gsmorph.locations import relative
from gsmorph.provenance import provenance

warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)

RUN_KEYS = ("method", "backbone", "backbone_kwargs", "spatial_dims", "mode", "diffeomorphic",
            "int_steps", "moving", "fixed", "seed")

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """run.json of a run folder, checked for the keys inference needs."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise GSMorphError(f"{path}: not found; is --run a folder made by gsmorph train?")
    info = read_json(path)
    missing = [k for k in RUN_KEYS if k not in info]
    if missing:
        raise GSMorphError(f"{path}: missing keys {missing}")
    return info


def method_of(info: dict, run_dir: Path) -> methods.Method:
    """The trained method of a run, from the method table (gsmorph/methods.py, with the
    registered plugins) only: run.json is data, its `trainer` string is never imported,
    only compared with the table's."""
    where = run_dir / "run.json"
    method = info.get("method")
    spec = methods.find(method) if isinstance(method, str) else None
    if spec is None or spec.family != "trained":
        raise GSMorphError(f"{where}: method {method!r} is not a trained method of the method table; known: "
                           f"{', '.join(methods.ids('trained', None))}")
    named = info.get("trainer")
    if named is not None and named != spec.maker:
        raise GSMorphError(f"{where}: names the trainer {named!r}, but method '{spec.id}' is trained by "
                           f"{spec.maker}; refusing to load it")
    return spec


def trainer_of(info: dict, run_dir: Path):
    """The trainer class of a run's method (see method_of), imported."""
    spec = method_of(info, run_dir)
    try:
        return plugins.resolve(spec.maker)
    except GSMorphError as err:
        raise GSMorphError(f"{run_dir / 'run.json'}: {err}") from None


def network_of(info: dict, run_dir: Path) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], Predictor]]:
    """(network, predictor of that network) of a run, from run.json's `network` record:
    only the method's own `network` (the method table) or else the builder of the run's
    backbone (the backbone table) is loaded, with the run's integration steps, and the
    predictor passes the record's further forward `inputs`. An older run.json without the
    record: its trainer's `build_from_info` and `predictor` when the trainer has them, else
    the backbone table's network that the run's keys name."""
    from gsmorph import backbones, networks

    spec = method_of(info, run_dir)
    record = info.get("network")
    cls = trainer_of(info, run_dir) if record is None else None
    try:
        if cls is not None and hasattr(cls, "build_from_info"):
            return cls.build_from_info(info), lambda model: cls.predictor(model, info)
        int_steps = int(info["int_steps"]) if info["diffeomorphic"] else 0
        if record is None:
            model = networks.build(info["backbone"], int(info["spatial_dims"]), diffeomorphic=int_steps > 0,
                                   int_steps=int_steps, **info["backbone_kwargs"])
            inputs: tuple = ()
        else:  # the method's own network, else the builder of the run's backbone
            allowed = {spec.network or backbones.get(info["backbone"]).builder}
            inputs = tuple(record.get("inputs", ())) if isinstance(record, dict) else ()
            if any(v is None for v in inputs):
                raise ValueError("its 'network.inputs' are not filled in; did training finish?")
            model = networks.from_recipe(record, allowed)
            if model.int_steps != int_steps:
                raise ValueError(f"'network.int_steps' {model.int_steps} disagrees with diffeomorphic/int_steps "
                                 f"({int_steps})")
    except (GSMorphError, ValueError, KeyError, TypeError) as err:
        raise GSMorphError(f"{run_dir / 'run.json'}: cannot rebuild the network ({err})") from None
    return model, lambda net: (lambda moving, fixed: net(torch.cat([moving, fixed], dim=1), *inputs))


WEIGHTS = ("best", "last")  # best.pt: the check config `selection` chose; last.pt: the last epoch's


def load_predictor(run_dir: Path, info: dict, device: torch.device, weights: str = "best") -> Predictor:
    """The predictor of a finished run, with its best.pt weights (`weights` "last": the
    model of last.pt, the last epoch's) checksum checked, in eval mode: (B, 1, *S) moving
    and fixed -> (B, ndim, *S) displacement."""
    from gsmorph import checkpoints

    if weights not in WEIGHTS:
        raise GSMorphError(f"unknown weights '{weights}' (choose from {', '.join(WEIGHTS)})")
    name = f"{weights}.pt"
    model, predictor = network_of(info, run_dir)
    model = model.to(device)
    expected = (info.get("checksums") or {}).get(name)
    if expected is None:
        raise GSMorphError(f"{run_dir / 'run.json'}: no checksum of {name}; did training finish?")
    try:
        state = checkpoints.load(run_dir / name, device, expected)
        model.load_state_dict(state["model"] if weights == "last" else state)
    except RuntimeError as err:
        raise GSMorphError(f"{run_dir / name}: weights do not fit the network in run.json ({err})") from None
    model.eval()
    return predictor(model)


def load_run(run_dir: str | os.PathLike, device: str = "auto", weights: str = "best"
             ) -> tuple[Predictor, dict, torch.device]:
    """(predict, run_info, device) of a finished run, with its best.pt (or last.pt) weights
    (checksum checked) in eval mode; the predictor runs without gradients."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    dev = resolve_device(device)
    predict = load_predictor(run_dir, info, dev, weights)

    @torch.no_grad()
    def on_device(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return predict(moving.to(dev), fixed.to(dev))

    return on_device, info, dev


def infer_split(run_dir: str | os.PathLike, prepared: str | os.PathLike, split: str, out: str | os.PathLike,
                method_name: str | None = None, device: str = "auto", nifti: bool = False,
                weights: str = "best") -> Path:
    """Register every pair of `split` with the run and write the pairs folder `out`
    (gsmorph/pairs.py format, built in a temporary folder and renamed when complete).
    weights: best (best.pt) or last (the last epoch's weights, last.pt; pairs.json records it).

    runtime_s per pair = forward pass + image and label warping, synchronised on CUDA.
    nifti: also write the pairs as NIfTI in `<out>/nifti/` (gsmorph/pairs.py).
    """
    from gsmorph import pairs as pairs_io
    from gsmorph.data import loader
    from gsmorph.networks import warp_image, warp_label

    run_dir, prepared, out = Path(run_dir), Path(prepared), Path(out)
    predict, info, dev = load_run(run_dir, device, weights)
    pairs = loader.pairs(prepared, split, mode=info["mode"], moving=info["moving"], fixed=info["fixed"])
    if not pairs:
        raise GSMorphError(f"{prepared / 'subjects.csv'}: no pairs in split '{split}'")

    by_subject: dict[str, list] = {}
    for pair in pairs:
        by_subject.setdefault(str(pair.subject), []).append(pair)

    def as_tensor(array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(dev, dtype)[None, None]

    def register(group: list) -> pairs_io.SubjectPairs:
        disps, images, labels, times = [], [], [], []
        for pair in group:
            moving, fixed = as_tensor(pair.moving), as_tensor(pair.fixed)
            moving_label = as_tensor(pair.moving_label, torch.uint8)
            synchronize(dev)
            start = time.perf_counter()
            with torch.no_grad():
                disp = predict(moving, fixed)
                moved_image = warp_image(moving, disp)
                moved_label = warp_label(moving_label, disp)
            synchronize(dev)
            times.append(time.perf_counter() - start)
            disps.append(disp[0].float().cpu().numpy())
            images.append(moved_image[0, 0].float().cpu().numpy())
            labels.append(moved_label[0, 0].round().cpu().numpy().astype(np.uint8))
        return pairs_io.SubjectPairs(
            subject=str(group[0].subject),
            slice_index=np.array([p.slice_index for p in group], dtype=np.int32),
            disp=np.stack(disps), moved_image=np.stack(images), moved_label=np.stack(labels),
            runtime_s=np.array(times, dtype=np.float64), spacing=np.asarray(group[0].spacing, dtype=np.float64))

    first = pairs[0]
    predict(as_tensor(first.moving), as_tensor(first.fixed))  # warm-up, not timed
    params = {k: info[k] for k in ("lam", "hyper_lambda", "surgery_mode", "diffeomorphic",
                                   "similarity", "smoothness") if k in info}
    if weights != "best":
        params["weights"] = weights
    meta = {
        "dataset": loader.dataset_name(prepared),
        "backbone": info["backbone"],
        "method": method_name or info["method"],
        "seed": int(info["seed"]),
        "split": split,
        "mode": info["mode"],
        "moving": info["moving"],
        "fixed": info["fixed"],
        "prepared": str(prepared.resolve()),
        "run": str(run_dir.resolve()),
        "params": params,
        "device": str(dev),
        "n_pairs": len(pairs),
        "provenance": provenance(config=info.get("config"), seed=int(info["seed"]), run=relative(run_dir, out)),
    }
    subjects = (register(group) for group in by_subject.values())
    return pairs_io.write_folder(out, meta, subjects, inputs=[run_dir, prepared], made_by="infer",
                              nifti=nifti)
