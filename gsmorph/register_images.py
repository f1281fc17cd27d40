"""Register a user's own moving/fixed NIfTI pair with a trained run or a non-learned method
(`gsmorph register-pair`), writing the moved image, the displacement (and moved labels
when given) as NIfTI on the fixed image's grid and affine (gsmorph/nifti_export.py).

The two images must share one grid (same shape and affine: resample one onto the other
first) and be 3D (X, Y, Z) or 2D (X, Y). They are scaled to [0, 1] together as `gsmorph
prepare` does; the moved image is the original moving intensities warped. A run trained
in 2D registers slice by slice along the last axis (as the prepared data: in-plane
crops around the heart); in-plane sizes are zero-padded to a multiple of PAD for the
network and the field cropped back.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from gsmorph.errors import GSMorphError

PAD = 32  # network input sizes are padded to a multiple of this (U-Net and Swin levels)


def read_image(path: str | os.PathLike, what: str, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(array (X, Y, Z), affine) of a 2D or 3D NIfTI; GSMorphError naming the file otherwise."""
    from gsmorph.io import read_nifti

    array, _, affine = read_nifti(path, dtype=np.float32)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise GSMorphError(f"{path}: the {what} has shape {array.shape}; expected a 2D or 3D image")
    if not np.isfinite(array).all():
        raise GSMorphError(f"{path}: the {what} has non-finite values")
    if labels and (np.any(array < 0) or np.any(array != np.round(array)) or array.max() > 255):
        raise GSMorphError(f"{path}: the {what} must hold integer label ids 0..255")
    return array, affine


def check_grid(path, shape, affine, fixed_shape, fixed_affine, what: str) -> None:
    if shape != fixed_shape:
        raise GSMorphError(f"{path}: the {what} has shape {shape}, the fixed image {fixed_shape}; "
                           "resample it onto the fixed image's grid first")
    if not np.allclose(affine, fixed_affine, atol=1e-3):
        raise GSMorphError(f"{path}: the {what} lies on another grid than the fixed image (affines differ); "
                           "resample it onto the fixed image's grid first")


def padded(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad every axis of `array` at its end to a multiple of `multiple`."""
    return np.pad(array, [(0, (-n) % multiple) for n in array.shape])


def run_registrar(run: str | os.PathLike, device: str) -> tuple[Callable, str]:
    """(register(moving, fixed) -> disp (ndim, *S) voxels, mode) of a trained run."""
    import torch

    from gsmorph.inference import load_run

    predict, info, dev = load_run(run, device)

    def register(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        shape = moving.shape
        m, f = (torch.from_numpy(padded(a, PAD)).to(dev, torch.float32)[None, None] for a in (moving, fixed))
        disp = predict(m, f)[0].float().cpu().numpy()
        return np.ascontiguousarray(disp[(slice(None),) + tuple(slice(0, n) for n in shape)])

    return register, info["mode"]


def method_registrar(method: str, cfg: dict, spacing: np.ndarray, seed: int) -> tuple[Callable, str]:
    """(register, mode) of a non-learned method of the table (Initial, Demons, SyN)."""
    from gsmorph import methods

    spec = methods.get(method)
    if spec.family != "classical":
        raise GSMorphError(f"--method {method}: not a non-learned method; give a trained run with --run")
    params = {k: v for section in spec.sections for k, v in cfg[section].items()}
    maker = methods.maker_of(method)
    mode = cfg.get("mode", "2d")

    def register(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        return np.asarray(maker(moving, fixed, spacing[:moving.ndim], params, seed=seed), dtype=np.float32)

    return register, mode


def register_images(moving: str | os.PathLike, fixed: str | os.PathLike, out: str | os.PathLike,
                    run: str | None = None, method: str | None = None, moving_label: str | None = None,
                    cfg: dict | None = None, device: str = "auto", intensity: str = "percentile",
                    seed: int = 0) -> Path:
    """Register `moving` onto `fixed`; write `out/` (moved_image, disp, moved_label when
    labels are given, registration.json) whole or not at all; return it."""
    from gsmorph.data.prepare import scale_intensity
    from gsmorph.io import atomic_dir, write_json
    from gsmorph.nifti_export import volumes, write_volumes
    from gsmorph.provenance import provenance

    if (run is None) == (method is None):
        raise GSMorphError("give one of --run (a trained run) and --method (a non-learned method)")
    fixed_img, fixed_affine = read_image(fixed, "fixed image")
    moving_img, moving_affine = read_image(moving, "moving image")
    check_grid(moving, moving_img.shape, moving_affine, fixed_img.shape, fixed_affine, "moving image")
    labels = None
    if moving_label is not None:
        labels, label_affine = read_image(moving_label, "moving labels", labels=True)
        check_grid(moving_label, labels.shape, label_affine, fixed_img.shape, fixed_affine, "moving labels")
        labels = labels.astype(np.uint8)
    spacing = np.sqrt((np.asarray(fixed_affine)[:3, :3] ** 2).sum(axis=0))
    scaled_moving, scaled_fixed = scale_intensity([moving_img, fixed_img], intensity)
    if run is not None:
        register, mode = run_registrar(run, device)
    else:
        from gsmorph.config import load_config

        register, mode = method_registrar(method, cfg or load_config(), spacing, seed)
    start = time.perf_counter()
    if mode == "3d":
        disp = register(scaled_moving, scaled_fixed)[None]                        # (1, 3, X, Y, Z)
        slices = np.array([-1])
    else:
        disp = np.stack([register(scaled_moving[:, :, z], scaled_fixed[:, :, z])
                         for z in range(fixed_img.shape[2])])                      # (Z, 2, X, Y)
        slices = np.arange(fixed_img.shape[2])
    runtime = time.perf_counter() - start
    if not np.isfinite(disp).all():
        raise GSMorphError(f"{moving}: the registration gave a non-finite displacement")
    moved, moved_labels = warp_frames(moving_img, labels, disp, mode)
    vols = volumes(slices, disp, moved, moved_labels if labels is not None else np.zeros_like(moved, np.uint8),
                   fixed_img.shape, fixed_affine, where=str(moving))
    if labels is None:
        vols.pop("moved_label")
    out = Path(out)
    with atomic_dir(out, inputs=[p for p in (moving, fixed, moving_label, run) if p], made_by="register-pair") as tmp:
        write_volumes(tmp, "", vols, fixed_affine)
        write_json(tmp / "registration.json", {
            "moving": str(Path(moving).resolve()), "fixed": str(Path(fixed).resolve()),
            "moving_label": str(Path(moving_label).resolve()) if moving_label else None,
            "run": str(Path(run).resolve()) if run else None, "method": method, "mode": mode,
            "intensity": intensity, "runtime_s": runtime,
            "provenance": provenance(config=cfg, seed=seed)})
    return out


def warp_frames(moving: np.ndarray, labels: np.ndarray | None, disp: np.ndarray, mode: str):
    """The moving image (bilinear) and labels (nearest) warped by disp: (K, *S) each, K the
    pairs (slices in 2D, one volume in 3D), as the pairs of gsmorph/pairs.py."""
    import torch

    from gsmorph.networks import warp_image, warp_label

    frames = moving[None] if mode == "3d" else np.moveaxis(moving, 2, 0)
    field = torch.from_numpy(np.ascontiguousarray(disp))
    moved = warp_image(torch.from_numpy(np.ascontiguousarray(frames))[:, None], field)[:, 0].numpy()
    if labels is None:
        return moved, None
    lab = labels[None] if mode == "3d" else np.moveaxis(labels, 2, 0)
    moved_labels = warp_label(torch.from_numpy(np.ascontiguousarray(lab))[:, None], field)[:, 0].numpy()
    return moved, moved_labels.astype(np.uint8)
