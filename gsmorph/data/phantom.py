"""A synthetic short-axis cine-MRI phantom with a known ED -> ES displacement.

Anatomy (in mm, then sampled on the voxel grid): a base-to-apex stack with an LV blood
pool, a myocardial ring, an RV crescent that fades toward the apex, surrounding tissue
with texture, dark lungs, bright fat, an aorta; Rician noise and a smooth bias field.
Subjects vary in size, position, rotation and wall thickness; ACDC-like groups change
the anatomy and the contraction, M&M-like vendors change contrast, noise and resolution.

Motion is in-plane. A smooth invertible backward map v (defined on the ES grid, voxel
units) gives ES(y) = ED(y + v(y)); its inverse u (on the ED grid) is the true
displacement: ES sampled at x + u(x) reproduces ED, the MONAI Warp convention.
u is found by the fixed-point iteration u(x) = -v(x + u(x)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from gsmorph.data.labels import LV, MYO, RV

ACDC_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
VENDORS = {  # vendor letter -> name, centres, in-plane spacing range (mm), contrast gamma, noise sigma
    "A": {"name": "Siemens", "centres": (1,), "spacing": (1.30, 1.45), "gamma": 1.0, "noise": 0.025},
    "B": {"name": "Philips", "centres": (2, 3), "spacing": (1.25, 1.40), "gamma": 0.75, "noise": 0.040},
    "C": {"name": "GE", "centres": (4,), "spacing": (1.40, 1.60), "gamma": 1.35, "noise": 0.050},
    "D": {"name": "Canon", "centres": (5,), "spacing": (1.30, 1.50), "gamma": 0.9, "noise": 0.035},
}
# pathology -> LV endocardial radius at the base (mm), wall thickness (mm), RV width (mm),
# radial contraction of the endocardium (fraction of the radius)
ANATOMY = {
    "NOR": {"r_endo": (17, 21), "wall": (6, 9), "rv": (10, 14), "contraction": (0.28, 0.36)},
    "DCM": {"r_endo": (22, 25), "wall": (5, 7), "rv": (10, 14), "contraction": (0.06, 0.12)},
    "HCM": {"r_endo": (13, 16), "wall": (11, 14), "rv": (9, 12), "contraction": (0.32, 0.42)},
    "MINF": {"r_endo": (19, 23), "wall": (5, 8), "rv": (10, 14), "contraction": (0.18, 0.26)},
    "RV": {"r_endo": (15, 19), "wall": (6, 8), "rv": (17, 21), "contraction": (0.25, 0.33)},
}
INTENSITY = {"body": 0.35, "fat": 0.85, "lung": 0.04, "myo": 0.28, "blood": 0.82, "air": 0.0}


@dataclass
class Phantom:
    """One synthetic subject.

    frames: (T, X, Y, Z) float32 intensities (non-negative, arbitrary scale);
    ed_index, es_index: 0-based frame indices; labels_ed, labels_es: (X, Y, Z) uint8
    canonical ids; true_disp: (X, Y, Z, 3) float32 voxel units on the ED grid
    (channel i along array axis i, channel 2 zero); spacing: mm per array axis.
    """

    frames: np.ndarray
    ed_index: int
    es_index: int
    labels_ed: np.ndarray
    labels_es: np.ndarray
    true_disp: np.ndarray
    spacing: tuple[float, float, float]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ED(self) -> np.ndarray:
        return self.frames[self.ed_index]

    @property
    def ES(self) -> np.ndarray:
        return self.frames[self.es_index]


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def sample_params(rng: np.random.Generator, group: str = "NOR", vendor: str | None = None) -> dict[str, Any]:
    """Draw one subject's anatomy, position, motion and acquisition parameters."""
    anat = ANATOMY[group]
    if vendor is None:
        sx = _u(rng, (1.37, 1.68))
        gamma, noise = float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.02, 0.04))
    else:
        sx = _u(rng, VENDORS[vendor]["spacing"])
        gamma, noise = VENDORS[vendor]["gamma"], VENDORS[vendor]["noise"] * float(rng.uniform(0.85, 1.15))
    fov_x, fov_y = _u(rng, (300, 360)), _u(rng, (250, 310))  # mm, not square
    return {
        "group": group,
        "vendor": vendor,
        "spacing": (sx, sx, float(rng.choice([5.0, 6.5, 8.0, 10.0]))),
        "shape_xy": (int(round(fov_x / sx)), int(round(fov_y / sx))),
        "n_slices": int(rng.integers(6, 13)),
        "r_endo": _u(rng, anat["r_endo"]),
        "wall": _u(rng, anat["wall"]),
        "rv_width": _u(rng, anat["rv"]),
        "contraction": _u(rng, anat["contraction"]),
        "akinesia": group == "MINF",
        "akinetic_angle": _u(rng, (0, 2 * np.pi)),
        "rv_angle": np.pi + _u(rng, (-0.5, 0.5)),  # direction of the RV from the LV centre
        "centre_offset": (_u(rng, (0.04, 0.16)) * fov_x, _u(rng, (-0.12, 0.04)) * fov_y),
        "axis_drift": (_u(rng, (-4, 4)), _u(rng, (-4, 4))),  # LV centre shift base -> apex (mm)
        "twist": _u(rng, (0.04, 0.12)),  # rad between base and apex at ES
        "translation": (_u(rng, (-2, 2)), _u(rng, (-2, 2))),  # mm
        "rv_contraction": _u(rng, (0.12, 0.25)),
        "gamma": gamma,
        "noise": noise,
        "bias": (_u(rng, (-0.25, 0.25)), _u(rng, (-0.25, 0.25)), _u(rng, (-0.15, 0.15))),
    }


def _grid_mm(p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-plane coordinates (mm) of every voxel relative to the LV centre of its slice, (X, Y, Z),
    and the base-to-apex position s in [0, 1] per slice."""
    (nx, ny), nz, (sx, sy, _) = p["shape_xy"], p["n_slices"], p["spacing"]
    s = np.linspace(0.0, 1.0, nz)
    cx = nx * sx / 2 + p["centre_offset"][0] + p["axis_drift"][0] * s
    cy = ny * sy / 2 + p["centre_offset"][1] + p["axis_drift"][1] * s
    x = (np.arange(nx) * sx)[:, None, None] - cx[None, None, :]
    y = (np.arange(ny) * sy)[None, :, None] - cy[None, None, :]
    return np.broadcast_to(x, (nx, ny, nz)), np.broadcast_to(y, (nx, ny, nz)), s


def _profiles(p: dict[str, Any], s: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice radii (mm), shape (1, 1, Z): LV endocardium, epicardium, RV width."""
    r_endo = p["r_endo"] * np.sqrt(np.clip(1 - (0.88 * s) ** 2, 0.06, None))
    wall = p["wall"] * (1 - 0.15 * s)
    rv = p["rv_width"] * np.clip(1 - s / 0.8, 0, None) ** 0.6  # fades to nothing toward the apex
    shape = (1, 1, len(s))
    return {"r_endo": r_endo.reshape(shape), "r_epi": (r_endo + wall).reshape(shape), "rv": rv.reshape(shape)}


def render_ed(p: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless ED image (X, Y, Z) float32 and its canonical labels (X, Y, Z) uint8."""
    x, y, s = _grid_mm(p)
    prof = _profiles(p, s)
    rho = np.hypot(x, y)
    # RV: an ellipse beside the LV along rv_angle, minus the LV and its wall (the septum)
    ca, sa = np.cos(p["rv_angle"]), np.sin(p["rv_angle"])
    along, across = x * ca + y * sa, -x * sa + y * ca
    rv_centre = prof["r_epi"] * 0.55
    half_len = prof["r_epi"] * 1.25 + 2
    rv_ellipse = ((along - rv_centre) / np.maximum(prof["rv"] + prof["r_epi"] * 0.45, 1e-3)) ** 2 + (across / half_len) ** 2
    rv_mask = (rv_ellipse < 1) & (rho > prof["r_epi"] + 1.5) & (prof["rv"] > 1.0)
    rv_wall = (rv_ellipse < 1.25) & ~rv_mask & (rho > prof["r_epi"]) & (prof["rv"] > 1.0)

    labels = np.zeros(rho.shape, np.uint8)
    labels[rho < prof["r_epi"]] = MYO
    labels[rho < prof["r_endo"]] = LV
    labels[rv_mask] = RV

    # the torso around the heart, centred in the image
    (nx, ny), (sx, sy, _) = p["shape_xy"], p["spacing"]
    bx = (np.arange(nx) * sx - nx * sx / 2)[:, None, None]
    by = (np.arange(ny) * sy - ny * sy / 2)[None, :, None]
    body_r = np.sqrt((bx / (0.44 * nx * sx)) ** 2 + (by / (0.40 * ny * sy)) ** 2)
    body_r = np.broadcast_to(body_r, rho.shape)
    img = np.full(rho.shape, INTENSITY["air"], np.float32)
    img[body_r < 1.0] = INTENSITY["fat"]  # subcutaneous fat
    img[body_r < 0.93] = INTENSITY["body"]
    for side in (-1, 1):  # lungs left and right of the mediastinum
        lung = np.sqrt(((bx - side * 0.26 * nx * sx) / (0.11 * nx * sx)) ** 2 + ((by + 0.02 * ny * sy) / (0.24 * ny * sy)) ** 2)
        img[np.broadcast_to(lung, rho.shape) < 1.0] = INTENSITY["lung"]
    aorta = np.hypot(x - 0.1 * p["r_endo"], y + prof["r_epi"] + 18) < 11
    img[aorta] = INTENSITY["blood"]
    fat_angle = np.cos(3 * np.arctan2(y, x) + rng.uniform(0, 2 * np.pi)) > 0.2
    img[(rho < prof["r_epi"] + prof["rv"] + 8) & fat_angle] = INTENSITY["fat"]  # epicardial fat
    img[(rho < prof["r_epi"] + 3) | rv_wall] = INTENSITY["myo"]
    img[labels == MYO] = INTENSITY["myo"]
    img[(labels == LV) | (labels == RV)] = INTENSITY["blood"]

    texture = ndimage.gaussian_filter(rng.standard_normal(img.shape, dtype=np.float32), (2.0, 2.0, 0))
    img = img * (1 + 0.05 * texture / max(float(texture.std()), 1e-6)) * (img > 0)  # 5 % tissue texture
    img = ndimage.gaussian_filter(img, (0.6, 0.6, 0))  # partial volume
    return np.clip(img, 0, None).astype(np.float32), labels


def backward_map(p: dict[str, Any], phase: float = 1.0) -> np.ndarray:
    """v (2, X, Y, Z) float32, voxel units: the ES-grid point y shows ED anatomy at y + v(y).

    `phase` in [0, 1] scales the motion (0 = ED, 1 = ES). Radial contraction with
    area-preserving wall thickening (regional akinesia for MINF), twist, a small
    translation and RV contraction, all faded out away from the heart.
    """
    x, y, s = _grid_mm(p)
    prof = _profiles(p, s)
    rho = np.maximum(np.hypot(x, y), 1e-6)
    phi = np.arctan2(y, x)
    c = p["contraction"] * phase * np.ones_like(rho)
    if p["akinesia"]:
        d = np.angle(np.exp(1j * (phi - p["akinetic_angle"])))
        c = c * (1 - 0.85 * np.exp(-(d**2) / (2 * 0.55**2)))
    r_endo = prof["r_endo"]
    r_es = r_endo * (1 - c)
    delta = r_endo**2 - r_es**2
    radius_ed = np.where(rho >= r_es, np.sqrt(rho**2 + delta), rho * r_endo / r_es)
    fade = np.exp(-np.maximum(rho - prof["r_epi"] - prof["rv"] - 5, 0) ** 2 / (2 * 8.0**2))
    radial = (radius_ed - rho) * fade
    psi = p["twist"] * phase * (s.reshape(1, 1, -1) - 0.5) * fade
    r_new = rho + radial
    ang = phi - psi  # ES is twisted by +psi, so ED lies at -psi
    vx = r_new * np.cos(ang) - x - p["translation"][0] * phase * fade
    vy = r_new * np.sin(ang) - y - p["translation"][1] * phase * fade
    # the RV cavity shrinks toward its own centre at ES: expand back
    ca, sa = np.cos(p["rv_angle"]), np.sin(p["rv_angle"])
    rx = x - ca * (prof["r_epi"] + prof["rv"] * 0.6)
    ry = y - sa * (prof["r_epi"] + prof["rv"] * 0.6)
    bump = np.exp(-(rx**2 + ry**2) / (2 * (prof["rv"] + 4) ** 2)) * (prof["rv"] > 1)
    k = p["rv_contraction"] * phase
    vx, vy = vx + k * bump * rx, vy + k * bump * ry
    sx, sy, _ = p["spacing"]
    v = np.stack([vx / sx, vy / sy]).astype(np.float32)
    return ndimage.gaussian_filter(v, (0, 1.0, 1.0, 0))


def _sample(volume: np.ndarray, disp2: np.ndarray, order: int) -> np.ndarray:
    """volume (X, Y, Z) sampled at x + disp(x) with disp (2, X, Y, Z) in-plane, voxel units."""
    idx = np.indices(volume.shape, dtype=np.float32)
    coords = np.stack([idx[0] + disp2[0], idx[1] + disp2[1], idx[2]])
    return ndimage.map_coordinates(volume, coords, order=order, mode="nearest")


def invert(v: np.ndarray, iterations: int = 10) -> np.ndarray:
    """u with u(x) = -v(x + u(x)), (2, X, Y, Z): the inverse of the map y -> y + v(y)."""
    u = -v
    for _ in range(iterations):
        u = -np.stack([_sample(v[i], u, 1) for i in range(2)])
    return u


def _box(labels: np.ndarray, margin: int) -> tuple[slice, slice]:
    """In-plane bounding box of the labels, widened by `margin` voxels."""
    xs, ys = np.nonzero(labels.any(axis=2))
    nx, ny = labels.shape[:2]
    return (slice(max(xs.min() - margin, 0), min(xs.max() + margin + 1, nx)),
            slice(max(ys.min() - margin, 0), min(ys.max() + margin + 1, ny)))


def _frame_phases(n_frames: int, ed: int, es: int) -> np.ndarray:
    """Motion phase per frame: 0 at ED, 1 at ES, smooth and cyclic."""
    t = ((np.arange(n_frames) - ed) % n_frames) / n_frames
    ts = ((es - ed) % n_frames) / n_frames
    return np.where(t <= ts, np.sin(np.pi / 2 * t / ts) ** 2, np.cos(np.pi / 2 * (t - ts) / (1 - ts)) ** 2)


def _acquire(clean: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Vendor contrast, smooth multiplicative bias and Rician noise."""
    nx, ny, _ = clean.shape
    gx = np.linspace(-1, 1, nx, dtype=np.float32)[:, None, None]
    gy = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    a, b, c = p["bias"]
    bias = np.exp(a * gx + b * gy + c * gx * gy).astype(np.float32)
    img = np.power(clean, p["gamma"]) * bias
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * p["noise"]
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * p["noise"]
    return np.sqrt((img + n1) ** 2 + n2**2).astype(np.float32)


def make_phantom(rng: np.random.Generator, group: str = "NOR", vendor: str | None = None,
                 n_frames: int = 2, ed_index: int = 0, es_index: int = 1) -> Phantom:
    """Render one subject with `n_frames` cine frames (ED and ES at the given indices)."""
    p = sample_params(rng, group, vendor)
    clean_ed, labels_ed = render_ed(p, rng)
    # motion is computed inside a box around the heart; it has faded to ~0 at the box edge
    xs, ys = _box(labels_ed, margin=int(55 / p["spacing"][0]))
    (nx, ny), (sx, sy, _) = p["shape_xy"], p["spacing"]
    nbx, nby = xs.stop - xs.start, ys.stop - ys.start
    box_p = dict(p, shape_xy=(nbx, nby), centre_offset=(
        p["centre_offset"][0] + (nx - nbx) * sx / 2 - xs.start * sx,
        p["centre_offset"][1] + (ny - nby) * sy / 2 - ys.start * sy,
    ))
    phases = _frame_phases(n_frames, ed_index, es_index)
    phases[ed_index], phases[es_index] = 0.0, 1.0
    frames = np.empty((n_frames,) + clean_ed.shape, np.float32)
    v_es = backward_map(box_p, 1.0)
    for t, phase in enumerate(phases):  # frames between ED and ES: the ES motion scaled by the phase
        clean = clean_ed
        if phase > 1e-6:
            clean = clean_ed.copy()
            clean[xs, ys] = _sample_box(clean_ed, v_es * np.float32(phase), xs, ys, 1)
        frames[t] = _acquire(clean, p, rng)
    labels_es = labels_ed.copy()
    labels_es[xs, ys] = _sample_box(labels_ed, v_es, xs, ys, 0)
    true_disp = np.zeros(clean_ed.shape + (3,), np.float32)
    u = invert(v_es)
    true_disp[xs, ys, :, 0], true_disp[xs, ys, :, 1] = u[0], u[1]
    return Phantom(frames, ed_index, es_index, labels_ed, labels_es, true_disp, p["spacing"], p)


def _sample_box(volume: np.ndarray, v_box: np.ndarray, xs: slice, ys: slice, order: int) -> np.ndarray:
    """volume (X, Y, Z) sampled at the box's points y + v(y); v_box (2, bx, by, Z) voxel units."""
    idx = np.indices(v_box.shape[1:], dtype=np.float32)
    coords = np.stack([idx[0] + xs.start + v_box[0], idx[1] + ys.start + v_box[1], idx[2]])
    return ndimage.map_coordinates(volume, coords, order=order, mode="nearest")
