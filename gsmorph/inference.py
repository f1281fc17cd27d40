"""Inference with a trained run: rebuild its model and write the shared per-pair outputs.

predict_fn(moving, fixed) takes (B, 1, *S) float32 tensors and returns the (B, ndim, *S)
displacement in voxels (moved = moving sampled at x + u(x)) on `predict_fn.device`.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gsmorph.device import resolve_device, synchronize
from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_dir, read_json
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


def load_state_dict(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Model weights from best.pt (a state dict) or last.pt (the training state's 'model')."""
    path = Path(path)
    if not path.is_file():
        raise GSMorphError(f"{path}: checkpoint not found; did training finish?")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise GSMorphError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "optimizer" in state:
        state = state["model"]
    return state


def load_run(run_dir: str | os.PathLike, device: str = "auto") -> tuple[Predictor, dict]:
    """(predict_fn, run_info) for a run folder, with its best.pt weights in eval mode.

    HyperMorph runs delegate to baselines.hypermorph.load_predictor(run_dir, run_info).
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info["method"] == "hypermorph":
        from baselines.hypermorph import load_predictor

        return load_predictor(run_dir, info, device=device), info

    from gsmorph.networks import build, integrate

    dev = resolve_device(device)
    try:
        model = build(info["backbone"], int(info["spatial_dims"]), **info["backbone_kwargs"]).to(dev)
    except ValueError as err:
        raise GSMorphError(f"{run_dir / 'run.json'}: cannot rebuild the backbone ({err})") from None
    try:
        model.load_state_dict(load_state_dict(run_dir / "best.pt", dev))
    except RuntimeError as err:
        raise GSMorphError(f"{run_dir / 'best.pt'}: weights do not fit the model in run.json ({err})") from None
    model.eval()
    diffeomorphic, steps = bool(info["diffeomorphic"]), int(info["int_steps"])

    @torch.no_grad()
    def predict_fn(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        out = model(torch.cat([moving.to(dev), fixed.to(dev)], dim=1))
        return integrate(out, steps) if diffeomorphic else out

    predict_fn.device = dev
    return predict_fn, info


def infer_split(run_dir: str | os.PathLike, prepared: str | os.PathLike, split: str, out: str | os.PathLike,
                method_name: str | None = None, device: str = "auto") -> Path:
    """Register every pair of `split` with the run and write the pairs folder `out`
    (gsmorph/pairs.py format, built in a temporary folder and renamed when complete).

    runtime_s per pair = forward pass + image and label warping, synchronised on CUDA.
    """
    from gsmorph import pairs as pairs_io
    from gsmorph.data import loader
    from gsmorph.networks import warp_image, warp_label

    run_dir, prepared, out = Path(run_dir), Path(prepared), Path(out)
    predict_fn, info = load_run(run_dir, device)
    dev = getattr(predict_fn, "device", None) or resolve_device(device)
    pairs = loader.pairs(prepared, split, mode=info["mode"], moving=info["moving"], fixed=info["fixed"])
    if not pairs:
        raise GSMorphError(f"{prepared / 'subjects.csv'}: no pairs in split '{split}'")

    by_subject: dict[str, list] = {}
    for pair in pairs:
        by_subject.setdefault(str(pair.subject), []).append(pair)

    def as_tensor(array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(dev, dtype)[None, None]

    first = pairs[0]
    predict_fn(as_tensor(first.moving), as_tensor(first.fixed))  # warm-up, not timed
    with atomic_dir(out, inputs=[run_dir, prepared], made_by="infer") as tmp:
        for subject, group in by_subject.items():
            disps, images, labels, times = [], [], [], []
            for pair in group:
                moving, fixed = as_tensor(pair.moving), as_tensor(pair.fixed)
                moving_label = as_tensor(pair.moving_label, torch.uint8)
                synchronize(dev)
                start = time.perf_counter()
                with torch.no_grad():
                    disp = predict_fn(moving, fixed)
                    moved_image = warp_image(moving, disp)
                    moved_label = warp_label(moving_label, disp)
                synchronize(dev)
                times.append(time.perf_counter() - start)
                disps.append(disp[0].float().cpu().numpy())
                images.append(moved_image[0, 0].float().cpu().numpy())
                labels.append(moved_label[0, 0].round().cpu().numpy().astype(np.uint8))
            pairs_io.save_subject(tmp, pairs_io.SubjectPairs(
                subject=subject,
                slice_index=np.array([p.slice_index for p in group], dtype=np.int32),
                disp=np.stack(disps),
                moved_image=np.stack(images),
                moved_label=np.stack(labels),
                runtime_s=np.array(times, dtype=np.float64),
                spacing=np.asarray(group[0].spacing, dtype=np.float64),
            ))
        params = {k: info[k] for k in ("lam", "hyper_lambda", "surgery_mode", "diffeomorphic",
                                       "similarity", "smoothness") if k in info}
        meta = {
            "dataset": loader.dataset_name(prepared),
            "backbone": info["backbone"],
            "method": method_name or info["method"],
            "seed": int(info["seed"]),
            "split": split,
            "moving": info["moving"],
            "fixed": info["fixed"],
            "prepared": str(prepared.resolve()),
            "run": str(run_dir.resolve()),
            "params": params,
            "device": str(dev),
            "provenance": provenance(config=info.get("config"), seed=int(info["seed"]), run=str(run_dir.resolve())),
        }
        pairs_io.finish(tmp, meta, list(by_subject))
    return out
