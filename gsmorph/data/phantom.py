"""A synthetic short-axis cine-MRI phantom with a known ED -> ES displacement.

Anatomy is analytic and continuous (mm). Each short-axis level z (mm from the first slice,
toward the apex) is star-shaped around the LV centre c(z): along every ray at angle theta
five landmark radii
    R0 endocardium < R1 epicardium < R2 RV cavity < R3 RV free wall < R4 far radius
split the ray into the LV blood pool, the myocardium, the RV crescent that wraps the
septum, the RV free wall and a zone where the motion fades out. The LV blood pool holds
papillary muscles and trabeculations (labelled LV, as in ACDC, but dark in the image);
around the heart lie epicardial fat, lungs, liver, chest wall, spine and great vessels.

Motion (phase 0 = ED, 1 = ES) moves the landmarks along each ray (radial contraction
solved for the subject's ejection fraction, weaker at the septum and, for MINF, in an
akinetic sector; area-conserving wall thickening; RV contraction), rotates each level
about the LV centre (twist, base against apex) and translates the heart. Longitudinal
shortening: the ES level z shows the contracted cross-section of the more basal ED level
z_src(z) (base descends toward a fixed apex), with the myocardium of the thicker ED slab
drawn into the slice (thicker wall). Every step is invertible along the rays in closed
form; only the faded translation is inverted by a fixed-point iteration (to < 1e-3 mm).

Images are rendered by evaluating the ED anatomy at the ED point each voxel maps to,
averaged over sub-levels through the slice thickness (partial volume), then blurred
in-plane by the point-spread function; a coil bias field, per-subject contrast and Rician
noise follow. Labels are the ED labels at the mapped slice-centre points, so the in-plane
true displacement u (ED grid, voxel units, channel 2 zero) maps ES onto ED exactly up to
voxelisation: ES labels sampled at x + u(x) reproduce the ED labels. Image content that
crosses the slice (papillary muscles, partial volume of the thick slice) is not captured
by the in-plane u, as in real data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from gsmorph.data.labels import LV, MYO, RV

ACDC_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")

# ACDC pathology -> uniform ranges. Anatomy (mm): r_endo widest LV endocardial radius,
# wall LV wall thickness, rv widest RV crescent width, rv_half half angle of the crescent (rad),
# septal extra septal thickness (fraction), cavity_length equator -> endocardial apex.
# Motion: ef LV ejection fraction, ef_rv RV ejection fraction, shortening longitudinal
# shortening (fraction of the base-apex distance), twist base-apex rotation at ES (rad),
# asym how much less the septum contracts than the free wall.
GROUPS: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {"r_endo": (18, 22), "wall": (6.5, 9), "rv": (10, 14), "rv_half": (1.0, 1.2), "septal": (0, 0.1),
            "cavity_length": (62, 78), "ef": (0.55, 0.70), "ef_rv": (0.42, 0.55), "shortening": (0.12, 0.18),
            "twist": (0.15, 0.30), "asym": (0.3, 0.5)},
    "DCM": {"r_endo": (23, 26), "wall": (5.5, 7.5), "rv": (9, 13), "rv_half": (1.0, 1.2), "septal": (0, 0.05),
            "cavity_length": (72, 86), "ef": (0.10, 0.35), "ef_rv": (0.20, 0.35), "shortening": (0.03, 0.08),
            "twist": (0.02, 0.08), "asym": (0.2, 0.4)},
    "HCM": {"r_endo": (13, 17), "wall": (11, 15), "rv": (10, 14), "rv_half": (0.9, 1.1), "septal": (0.2, 0.5),
            "cavity_length": (55, 70), "ef": (0.65, 0.80), "ef_rv": (0.42, 0.55), "shortening": (0.06, 0.12),
            "twist": (0.15, 0.35), "asym": (0.1, 0.25)},
    "MINF": {"r_endo": (20, 24), "wall": (6, 8.5), "rv": (10, 14), "rv_half": (1.0, 1.2), "septal": (0, 0.1),
             "cavity_length": (66, 80), "ef": (0.15, 0.38), "ef_rv": (0.28, 0.45), "shortening": (0.05, 0.10),
             "twist": (0.04, 0.12), "asym": (0.2, 0.4)},
    "RV": {"r_endo": (16, 20), "wall": (6, 8), "rv": (17, 22), "rv_half": (1.2, 1.45), "septal": (0, 0.1),
           "cavity_length": (62, 76), "ef": (0.45, 0.62), "ef_rv": (0.12, 0.28), "shortening": (0.08, 0.14),
           "twist": (0.10, 0.25), "asym": (0.3, 0.5)},
}
# MINF: the infarcted sector loses most of its contraction and thickening and is thinner
INFARCT = {"akinesia": (0.75, 0.95), "width": (0.5, 0.9), "thinning": (0.2, 0.35)}
TRANSLATION_MM = (1.0, 4.0)  # in-plane shift of the whole heart between ED and ES

# acquisition: in-plane spacing (mm), slice spacing choices (mm) and their weights, slice
# thickness (mm), contrast gamma, blood SNR, bias-field strength; M&M vendors also have a
# pathology mix (probabilities over GROUP_ORDER) standing for their centres' populations
ACDC_ACQUISITION = {"spacing": (1.37, 1.68), "slice": ((5.0, 6.5, 8.0, 10.0), (0.15, 0.1, 0.15, 0.6)),
                    "thickness": (5.0, 8.0), "gamma": (0.85, 1.15), "snr": (12, 30), "bias": (0.15, 0.35)}
GROUP_ORDER = tuple(GROUPS)  # NOR, DCM, HCM, MINF, RV
VENDORS = {
    "A": {"name": "Siemens", "centres": (1,), "spacing": (1.30, 1.45), "slice": ((10.0,), (1.0,)),
          "thickness": (8.0, 10.0), "gamma": 1.0, "snr": (25, 40), "bias": (0.15, 0.25),
          "mix": (0.25, 0.25, 0.30, 0.10, 0.10)},
    "B": {"name": "Philips", "centres": (2, 3), "spacing": (1.25, 1.40), "slice": ((9.2, 10.0), (0.5, 0.5)),
          "thickness": (8.0, 9.2), "gamma": 0.75, "snr": (15, 25), "bias": (0.25, 0.35),
          "mix": (0.20, 0.30, 0.30, 0.10, 0.10)},
    "C": {"name": "GE", "centres": (4,), "spacing": (1.40, 1.60), "slice": ((10.0,), (1.0,)),
          "thickness": (8.0, 10.0), "gamma": 1.35, "snr": (10, 16), "bias": (0.30, 0.45),
          "mix": (0.30, 0.20, 0.35, 0.05, 0.10)},
    "D": {"name": "Canon", "centres": (5,), "spacing": (1.30, 1.50), "slice": ((10.0,), (1.0,)),
          "thickness": (8.0, 10.0), "gamma": 0.9, "snr": (18, 28), "bias": (0.20, 0.30),
          "mix": (0.35, 0.25, 0.25, 0.10, 0.05)},
}
# bSSFP tissue intensities before per-subject variation (blood bright, myocardium dark)
TISSUE = {"blood": (0.80, 0.95), "blood_to_myo": (3.0, 4.2), "fat": (0.75, 0.95), "lung": (0.02, 0.06),
          "body": (0.26, 0.38), "muscle_to_myo": (0.9, 1.15), "liver_to_myo": (0.7, 0.9), "marrow": (0.45, 0.6)}
SUB_LEVELS = (-1 / 3, 0.0, 1 / 3)  # through-slice sample points (fraction of the slice thickness)
MIN_SLICES = 6
MAX_HEART_VOXELS = 56  # the ED heart fits a 64-voxel crop (the default run's --size) with a margin
MIN_RV_WIDTH = 1.0  # mm: narrower tips of the RV crescent are not labelled
MAX_RV_THINNING = 0.33  # the ES crescent keeps 67 % of its width, so its labels stay warpable
FLOOR = 0.2  # mm: every landmark segment keeps at least this length, so the maps stay invertible


@dataclass
class Phantom:
    """One synthetic subject.

    frames: (T, X, Y, Z) float32 intensities (non-negative, arbitrary scale);
    ed_index, es_index: 0-based frame indices; labels_ed, labels_es: (X, Y, Z) uint8
    canonical ids; true_disp: (X, Y, Z, 3) float32 voxel units on the ED grid
    (channel i along array axis i, channel 2 zero); spacing: mm per array axis;
    params: the subject's anatomy, motion and acquisition parameters and measured EF.
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


# ------------------------------------------------------------------------ parameters

def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angle difference wrapped to (-pi, pi]."""
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


def sample_anatomy(rng: np.random.Generator, group: str) -> dict[str, Any]:
    """Heart shape (mm, rad) and its place in the image, drawn from the group's ranges."""
    g = GROUPS[group]
    minf = group == "MINF"
    return {
        "r_endo": _u(rng, g["r_endo"]), "wall": _u(rng, g["wall"]), "rv_width": _u(rng, g["rv"]),
        "rv_half_angle": _u(rng, g["rv_half"]), "septal": _u(rng, g["septal"]),
        "cavity_length": _u(rng, g["cavity_length"]), "base_gap": _u(rng, (0, 12)), "apex_cover": _u(rng, (0.92, 0.98)),
        "rv_end": _u(rng, (0.70, 0.82)), "rv_wall": _u(rng, (2.5, 4.0)),
        "ecc": _u(rng, (0.02, 0.08)), "ecc_angle": _u(rng, (0, np.pi)),
        "rv_angle": np.pi + _u(rng, (-0.5, 0.5)),  # direction of the RV from the LV centre
        "infarct_angle": _u(rng, (0, 2 * np.pi)), "infarct_width": _u(rng, INFARCT["width"]),
        "infarct_thinning": _u(rng, INFARCT["thinning"]) if minf else 0.0,
        "pm_angles": (_u(rng, (0.8, 1.2)), -_u(rng, (0.8, 1.2))),  # papillary muscles, from the free wall
        "pm_radius": _u(rng, (0.16, 0.22)), "pm_depth": _u(rng, (0.62, 0.72)),  # of the cavity radius
        "trab_count": int(rng.integers(14, 24)), "trab_depth": _u(rng, (0.4, 0.75)), "trab_phase": _u(rng, (0, 6.3)),
        "fat": _u(rng, (1, 3.5)), "fat_phase": _u(rng, (0, 6.3)),
        "axis_drift": (_u(rng, (-4, 4)), _u(rng, (-4, 4))),  # LV centre shift base -> apex (mm)
    }


def sample_motion(rng: np.random.Generator, group: str) -> dict[str, Any]:
    """Target ejection fractions and the motion that reaches them (before solving contraction)."""
    g = GROUPS[group]
    shift, direction = _u(rng, TRANSLATION_MM), _u(rng, (0, 2 * np.pi))
    return {
        "ef_target": _u(rng, g["ef"]), "ef_rv_target": _u(rng, g["ef_rv"]),
        "shortening": _u(rng, g["shortening"]), "twist": _u(rng, g["twist"]), "asym": _u(rng, g["asym"]),
        "akinesia": _u(rng, INFARCT["akinesia"]) if group == "MINF" else 0.0,
        "translation": (shift * float(np.cos(direction)), shift * float(np.sin(direction))),
    }


def sample_acquisition(rng: np.random.Generator, vendor: str | None) -> dict[str, Any]:
    """Spacing, slice thickness, field of view, contrast, SNR and bias field of one scan."""
    acq = ACDC_ACQUISITION if vendor is None else VENDORS[vendor]
    sx = _u(rng, acq["spacing"])
    choices, weights = acq["slice"]
    sz = float(rng.choice(choices, p=weights))
    gamma = _u(rng, acq["gamma"]) if vendor is None else acq["gamma"] * _u(rng, (0.95, 1.05))
    fov_x, fov_y = _u(rng, (300, 360)), _u(rng, (250, 310))  # mm, not square
    blood = _u(rng, TISSUE["blood"])
    myo = blood / _u(rng, TISSUE["blood_to_myo"])
    amp = _u(rng, acq["bias"])
    return {
        "spacing": (sx, sx, sz), "thickness": min(sz, _u(rng, acq["thickness"])),
        "shape_xy": (int(round(fov_x / sx)), int(round(fov_y / sx))),
        "centre_offset": (_u(rng, (0.04, 0.16)) * fov_x, _u(rng, (-0.12, 0.04)) * fov_y),
        "body": (_u(rng, (145, 175)), _u(rng, (105, 130))), "subcutaneous": _u(rng, (6, 18)),
        "muscle_layer": _u(rng, (8, 14)), "liver_start": _u(rng, (0.3, 0.6)),
        "blood": blood, "myo": myo, "fat_intensity": _u(rng, TISSUE["fat"]), "lung": _u(rng, TISSUE["lung"]),
        "body_intensity": _u(rng, TISSUE["body"]), "muscle": myo * _u(rng, TISSUE["muscle_to_myo"]),
        "liver": myo * _u(rng, TISSUE["liver_to_myo"]), "marrow": _u(rng, TISSUE["marrow"]),
        "gamma": gamma, "snr": _u(rng, acq["snr"]), "texture": _u(rng, (0.04, 0.08)),
        "bias": tuple(amp * float(v) for v in rng.uniform(-1, 1, 4)),
    }


def sample_params(rng: np.random.Generator, group: str = "NOR", vendor: str | None = None) -> dict[str, Any]:
    """Draw one subject's anatomy, motion and acquisition; solve the contraction for its EF."""
    p: dict[str, Any] = {"group": group, "vendor": vendor}
    p.update(sample_anatomy(rng, group))
    p.update(sample_motion(rng, group))
    p.update(sample_acquisition(rng, vendor))
    p["noise"] = p["blood"] ** p["gamma"] / p["snr"]  # Rician sigma, image units
    fit_heart(p)
    p["n_slices"] = n_slices(p)
    p["contraction"] = solve_contraction(p)
    p["rv_contraction"] = solve_rv_contraction(p)
    return p


def fit_heart(p: dict[str, Any]) -> None:
    """Shrink the heart (in place) when its ED extent exceeds MAX_HEART_VOXELS voxels."""
    r1 = p["r_endo"] * (1 + p["ecc"]) + p["wall"] * (1 + p["septal"])
    extent = 2 * r1 + p["rv_width"] + float(np.hypot(*p["axis_drift"]))
    scale = min(1.0, MAX_HEART_VOXELS * p["spacing"][0] / extent)
    for key in ("r_endo", "wall", "rv_width"):
        p[key] *= scale
    p["heart_scale"] = scale


def n_slices(p: dict[str, Any]) -> int:
    """Slices from the first (base_gap above the LV equator) toward the apex (s = apex_cover),
    stopping where the cavity of one slice would reach past the epicardium of the next (as
    the apical cap closes within one slice gap); at least MIN_SLICES (the stack then starts
    higher up: base_gap grows, in place)."""
    sz = p["spacing"][2]
    n = int(np.clip(1 + np.floor((p["base_gap"] + p["apex_cover"] * p["cavity_length"]) / sz), 2, 16))
    while n > 2 and not _closes_apically(p, n):
        n -= 1
    if n < MIN_SLICES:
        p["base_gap"] += (MIN_SLICES - n) * sz
        n = MIN_SLICES
    return n


def _closes_apically(p: dict[str, Any], n: int) -> bool:
    """Whether the LV cavity of slice n-2 lies inside the epicardium of slice n-1 (with 1.5
    voxels and the axis drift to spare)."""
    sz, sx = p["spacing"][2], p["spacing"][0]
    prof = profiles(p, np.array([n - 2, n - 1]) * sz)
    step = prof["r_endo"][0] - prof["r_endo"][1]
    wall = prof["wall"][1] * (1 - p["infarct_thinning"])
    drift = float(np.hypot(*p["axis_drift"])) * sz / p["cavity_length"]
    return step * (1 + p["ecc"]) < wall - 1.5 * sx - drift


# ------------------------------------------------------------------------ geometry

def slice_levels(p: dict[str, Any]) -> np.ndarray:
    """Levels (mm from slice 0 toward the apex), (Z * len(SUB_LEVELS),): slice-major sub-levels."""
    z = np.arange(p["n_slices"])[:, None] * p["spacing"][2] + np.array(SUB_LEVELS)[None, :] * p["thickness"]
    return z.ravel()


def _s(p: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """Normalised long-axis position: 0 at the LV equator (widest), 1 at the endocardial apex,
    negative toward the base."""
    return (z - p["base_gap"]) / p["cavity_length"]


def profiles(p: dict[str, Any], z: np.ndarray) -> dict[str, np.ndarray]:
    """Per-level radii (mm) and RV half angle (rad), arrays shaped like z."""
    s = _s(p, z)
    return {
        "s": s,
        "r_endo": p["r_endo"] * np.sqrt(np.clip(1 - s**2, 0.0025, 1)),
        "wall": p["wall"] * (1 - 0.3 * np.clip(s, 0, 1)),
        "rv": p["rv_width"] * np.sqrt(np.clip(1 - (s / p["rv_end"]) ** 2, 0, 1)),
        "rv_half": p["rv_half_angle"] * (1 - 0.3 * np.clip(s, 0, 1)),
    }


def source_level(p: dict[str, Any], z: np.ndarray, phase: float) -> np.ndarray:
    """The ED level whose tissue lies at level z at `phase`: the base descends toward the
    fixed endocardial apex by `shortening` x (apex - level)."""
    apex = p["cavity_length"] + p["base_gap"]
    ls = phase * p["shortening"]
    return (z - ls * apex) / (1 - ls)


def centre(p: dict[str, Any], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LV centre (mm, image coordinates) at level z, drifting along the tilted long axis."""
    (nx, ny), sx = p["shape_xy"], p["spacing"][0]
    frac = z / p["cavity_length"]
    return (nx * sx / 2 + p["centre_offset"][0] + p["axis_drift"][0] * frac,
            ny * sx / 2 + p["centre_offset"][1] + p["axis_drift"][1] * frac)


def heart_radii(p: dict[str, Any]) -> tuple[float, float]:
    """(R_heart, R_far) mm: every landmark up to the RV free wall lies within R_heart at any
    phase; the motion fades out between R_heart and R_far."""
    r1 = p["r_endo"] * (1 + p["ecc"]) + p["wall"] * (1 + p["septal"])
    r_heart = 1.12 * r1 + p["rv_width"] + 1.3 * p["rv_wall"] + 1.0
    return r_heart, r_heart + 16.0


def angular(p: dict[str, Any], theta: np.ndarray, rv_half: np.ndarray) -> dict[str, np.ndarray]:
    """Shape and motion factors along the rays at `theta` (rad); rv_half: the level's RV
    crescent half angle (rad)."""
    d = np.abs(_wrap(theta - p["rv_angle"]))  # 0 points at the septum / RV
    infarct = 0.0
    if p["akinesia"] or p["infarct_thinning"]:
        infarct = np.exp(-_wrap(theta - p["infarct_angle"]) ** 2 / (2 * p["infarct_width"] ** 2))
    return {
        "ellipse": 1 + p["ecc"] * np.cos(2 * (theta - p["ecc_angle"])),
        "wall": (1 + p["septal"] * np.exp(-d**2 / 0.98)) * (1 - p["infarct_thinning"] * infarct),
        "contraction": (1 - p["asym"] * np.cos(d)) * (1 - p["akinesia"] * infarct),
        "thickening": 1 - p["akinesia"] * infarct,
        "crescent": np.sqrt(np.maximum(np.cos(np.pi / 2 * np.minimum(d / rv_half, 1)), 0)),
    }


def landmarks(p: dict[str, Any], ang: dict[str, np.ndarray], prof: dict[str, np.ndarray],
              prof_src: dict[str, np.ndarray], phase: float, contraction: float | None = None,
              rv_contraction: float | None = None) -> list[np.ndarray]:
    """[0, R0, R1, R2, R3, R4] (mm) along the rays at `phase`: prof at the level itself,
    prof_src at its source level (the same at ED)."""
    c = p["contraction"] if contraction is None else contraction
    c_rv = p["rv_contraction"] if rv_contraction is None else rv_contraction
    r0_src = prof_src["r_endo"] * ang["ellipse"]
    r1_src = r0_src + prof_src["wall"] * ang["wall"]
    r0 = r0_src * np.maximum(1 - phase * c * ang["contraction"], 0.25)
    gain = 1 + (1 / (1 - phase * p["shortening"]) - 1) * ang["thickening"]  # slab compression
    r1 = np.sqrt(r0**2 + gain * (r1_src**2 - r0_src**2))
    width = np.maximum(prof["rv"] * ang["crescent"] * (1 - phase * c_rv), FLOOR)
    r2 = r1 + width
    r3 = r2 + np.maximum(p["rv_wall"] * np.minimum(width / p["rv_wall"], 1), FLOOR) * (1 + 0.3 * phase)
    r4 = np.full_like(r3, heart_radii(p)[1])
    return [np.zeros_like(r0), r0, r1, r2, r3, r4]


def radial(rho: np.ndarray, src: list[np.ndarray], dst: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-linear map of rho from landmarks src to dst (identity beyond the last),
    and the normalised radius q (segment index + fraction; 5 + mm beyond R4)."""
    beyond = np.maximum(rho - src[-1], 0)
    out, q = beyond.copy(), beyond.copy()
    for i in range(len(src) - 1):
        frac = np.clip((rho - src[i]) / np.maximum(src[i + 1] - src[i], 1e-6), 0, 1)
        out += frac * (dst[i + 1] - dst[i])
        q += frac
    return out, q


def smoothstep_fade(p: dict[str, Any], rho: np.ndarray) -> np.ndarray:
    """1 inside R_heart, smoothly to 0 at R_far: how much of the heart's twist and translation
    a point at radius rho (mm from the LV centre) follows."""
    r_heart, r_far = heart_radii(p)
    t = np.clip((r_far - rho) / (r_far - r_heart), 0, 1)
    return t * t * (3 - 2 * t)


def twist_angle(p: dict[str, Any], s: np.ndarray) -> np.ndarray:
    """ES rotation (rad) of the level at long-axis position s: base and apex turn opposite ways."""
    return p["twist"] * (np.clip(s, 0, 1) - 0.35)


def backward(p: dict[str, Any], x: np.ndarray, y: np.ndarray, z: np.ndarray, phase: float) -> dict[str, np.ndarray]:
    """ED anatomy seen at image points (x, y) mm of levels z at `phase`.

    Returns the ED point (ex, ey) mm, its normalised radius q, ray angle theta, ED landmarks
    (list) and radius rho; arrays broadcast from x (X, 1, 1), y (1, Y, 1), z (1, 1, L).
    """
    cx, cy = centre(p, z)
    prof = profiles(p, z)
    wx, wy = x + 0 * y, y + 0 * x
    if phase > 0:
        tx, ty = (phase * t for t in p["translation"])
        for _ in range(4):  # undo the faded translation: w = y - t fade(|w - c|)
            f = smoothstep_fade(p, np.hypot(wx - cx, wy - cy))
            wx, wy = x - tx * f, y - ty * f
    dx, dy = wx - cx, wy - cy
    rho, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    if phase > 0:
        theta = theta - phase * twist_angle(p, prof["s"]) * smoothstep_fade(p, rho)
    ang = angular(p, theta, prof["rv_half"])
    ed = landmarks(p, ang, prof, prof, 0.0)
    if phase > 0:
        now = landmarks(p, ang, prof, profiles(p, source_level(p, z, phase)), phase)
        rho, q = radial(rho, now, ed)
    else:
        q = radial(rho, ed, ed)[1]
    return {"ex": cx + rho * np.cos(theta), "ey": cy + rho * np.sin(theta), "q": q, "theta": theta,
            "landmarks": ed, "rho": rho}


def forward(p: dict[str, Any], x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ES position (mm) of the ED points (x, y) of levels z: the inverse of backward(phase=1)."""
    cx, cy = centre(p, z)
    prof = profiles(p, z)
    dx, dy = x - cx, y - cy
    rho, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    ang = angular(p, theta, prof["rv_half"])
    ed = landmarks(p, ang, prof, prof, 0.0)
    es = landmarks(p, ang, prof, profiles(p, source_level(p, z, 1.0)), 1.0)
    rho_es = radial(rho, ed, es)[0]
    f = smoothstep_fade(p, rho_es)
    theta_es = theta + twist_angle(p, prof["s"]) * f
    return (cx + rho_es * np.cos(theta_es) + p["translation"][0] * f,
            cy + rho_es * np.sin(theta_es) + p["translation"][1] * f)


# ------------------------------------------------------------------------ motion calibration

def _lv_rv_areas(p: dict[str, Any], phase: float, c: float, c_rv: float) -> tuple[float, float]:
    """LV and RV cavity areas (mm^2) summed over the slice centres at `phase`."""
    theta = np.linspace(-np.pi, np.pi, 96, endpoint=False)[:, None]
    z = np.arange(p["n_slices"])[None, :] * p["spacing"][2]
    prof = profiles(p, z)
    ang = angular(p, theta, prof["rv_half"])
    lm = landmarks(p, ang, prof, profiles(p, source_level(p, z, phase)), phase, c, c_rv)
    ed_width = landmarks(p, ang, prof, prof, 0.0, c, c_rv)
    rv = np.where(ed_width[3] - ed_width[2] >= MIN_RV_WIDTH, lm[3] ** 2 - lm[2] ** 2, 0)
    return float(np.mean(lm[1] ** 2, axis=0).sum()), float(np.mean(rv, axis=0).sum())


def _bisect(fn, lo: float, hi: float, target: float) -> float:
    """x in [lo, hi] with fn(x) = target for an increasing fn (clipped to the interval)."""
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fn(mid) < target else (lo, mid)
    return (lo + hi) / 2


def solve_contraction(p: dict[str, Any]) -> float:
    """Endocardial contraction (fraction of the radius) that gives the target LV EF."""
    ed = _lv_rv_areas(p, 0.0, 0.0, 0.0)[0]
    return _bisect(lambda c: 1 - _lv_rv_areas(p, 1.0, c, 0.0)[0] / ed, 0.0, 0.85, p["ef_target"])


def solve_rv_contraction(p: dict[str, Any]) -> float:
    """RV crescent thinning (fraction of its width) that gives the target RV EF."""
    ed = _lv_rv_areas(p, 0.0, 0.0, 0.0)[1]
    c = p["contraction"]
    return _bisect(lambda k: 1 - _lv_rv_areas(p, 1.0, c, k)[1] / max(ed, 1e-6), 0.0, MAX_RV_THINNING,
                   p["ef_rv_target"])


# ------------------------------------------------------------------------ anatomy

def labels_from(geo: dict[str, np.ndarray]) -> np.ndarray:
    """Canonical labels of the ED anatomy at the points of backward(): LV, Myo, RV (uint8)."""
    q, lm = geo["q"], geo["landmarks"]
    out = np.zeros(q.shape, np.uint8)
    out[q < 2] = MYO
    out[q < 1] = LV
    out[(q >= 2) & (q < 3) & (lm[3] - lm[2] >= MIN_RV_WIDTH)] = RV
    return out


def _blob(u: np.ndarray, v: np.ndarray, cu: float, cv: float, radius: float, edge: float) -> np.ndarray:
    """Soft disc of `radius` at (cu, cv) in (u, v) coordinates: 1 inside, 0 outside."""
    return np.clip((radius - np.hypot(u - cu, v - cv)) / edge + 0.5, 0, 1)


def lv_pool(p: dict[str, Any], q: np.ndarray, theta: np.ndarray, s: np.ndarray, phase: float) -> np.ndarray:
    """Fraction of myocardial signal inside the LV blood pool, 0..1: papillary muscles
    (mid-ventricle, relatively larger at ES) and trabeculations (near the wall, toward the apex)."""
    free = p["rv_angle"] + np.pi
    u, v = q * np.cos(theta), q * np.sin(theta)
    mid = np.clip(1 - np.abs(s - 0.5) / 0.35, 0, 1)
    pm = np.zeros_like(q)
    for a in p["pm_angles"]:
        pm = np.maximum(pm, _blob(u, v, p["pm_depth"] * np.cos(free + a), p["pm_depth"] * np.sin(free + a),
                                  p["pm_radius"] * (1 + 0.4 * phase), 0.08))
    strands = (0.5 + 0.5 * np.cos(p["trab_count"] * theta + p["trab_phase"] + 1.5 * np.sin(5 * theta))) ** 4
    trab = p["trab_depth"] * np.clip((q - 0.75) / 0.25, 0, 1) * strands * (0.5 + 0.5 * np.clip(s, 0, 1))
    return np.maximum(pm * np.minimum(mid * 2, 1), trab)


def background(p: dict[str, Any], x: np.ndarray, y: np.ndarray, z: np.ndarray, clear: np.ndarray | bool) -> np.ndarray:
    """Intensity outside the heart at image points (x, y) mm of levels z: chest wall
    (subcutaneous fat, muscle), mediastinum, lungs, liver, spine, aortas. `clear`: where
    lungs and liver may lie (False next to the heart)."""
    (nx, ny), sx = p["shape_xy"], p["spacing"][0]
    bx, by = x - nx * sx / 2, y - ny * sx / 2
    a, b = p["body"]
    depth = (1 - np.sqrt((bx / a) ** 2 + (by / b) ** 2)) * b  # approximate mm below the skin
    img = np.where(depth > 0, p["fat_intensity"], 0.0).astype(np.float32)
    img = np.where(depth > p["subcutaneous"], p["muscle"], img)
    inside = depth > p["subcutaneous"] + p["muscle_layer"]
    img = np.where(inside, p["body_intensity"], img)
    cx, cy = centre(p, z)
    r_heart, _ = heart_radii(p)
    r_lv = p["r_endo"] * (1 + p["ecc"]) + p["wall"]
    lungs = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), bool)
    for ang, gap, (la, lb) in ((p["rv_angle"] + np.pi + 0.3, r_lv + 3, (55, 100)),
                               (p["rv_angle"] + 0.6, r_heart + 4, (50, 95))):
        ca, sa = np.cos(ang), np.sin(ang)  # ellipse axes along and across the direction from the LV
        along = (x - cx) * ca + (y - cy) * sa - gap - la
        across = -(x - cx) * sa + (y - cy) * ca
        lungs |= (along / la) ** 2 + (across / lb) ** 2 < 1
    img = np.where(lungs & inside & clear, p["lung"], img)
    s = _s(p, z)
    inferior = p["rv_angle"] - np.pi / 2
    liver_r = 75 * np.sqrt(np.clip((s - p["liver_start"]) / 0.4, 0, 1))
    lx, ly = cx + (r_heart + 35) * np.cos(inferior), cy + (r_heart + 35) * np.sin(inferior)
    img = np.where((np.hypot(x - lx, y - ly) < liver_r) & inside & clear, p["liver"], img)
    spine = np.hypot(bx, by - 0.72 * b)
    img = np.where(spine < 16, p["marrow"], np.where(spine < 18, 0.05, img))
    img = np.where(np.hypot(bx + 28, by - 0.55 * b) < 11, p["blood"], img)  # descending aorta
    gx, gy = cx + (r_heart + 12) * np.cos(p["rv_angle"] + 1.3), cy + (r_heart + 12) * np.sin(p["rv_angle"] + 1.3)
    great = (np.hypot(x - gx, y - gy) < 13) & (s < 0.05) & clear  # ascending aorta near the base
    return np.where(great, p["blood"], img).astype(np.float32)


def fat_band(p: dict[str, Any], theta: np.ndarray) -> np.ndarray:
    """Epicardial fat thickness (mm) outside the heart's outer wall along the rays at theta."""
    return p["fat"] * np.clip(np.cos(3 * theta + p["fat_phase"]) + 0.3 * np.cos(7 * theta), 0, 1) ** 2


def clear_of_heart(geo: dict[str, np.ndarray], fat_mm: np.ndarray) -> np.ndarray:
    """Where lungs and liver may lie: beyond the epicardial fat and 2 mm of mediastinum."""
    return geo["rho"] - geo["landmarks"][4] > fat_mm + 2


def heart_intensity(p: dict[str, Any], geo: dict[str, np.ndarray], z: np.ndarray, phase: float,
                    bg: np.ndarray) -> np.ndarray:
    """Clean intensity at the points of backward(): the heart and epicardial fat over the
    ED background `bg` sampled at the same points."""
    q, theta, lm = geo["q"], geo["theta"], geo["landmarks"]
    img = bg.copy()
    near = (q >= 4) & (geo["rho"] - lm[4] <= p["fat"])
    img[near] = np.where(geo["rho"][near] - lm[4][near] <= fat_band(p, theta[near]), p["fat_intensity"], bg[near])
    rv_trab = 0.5 * np.clip((q - 2.7) / 0.3, 0, 1) * (0.5 + 0.5 * np.cos(9 * theta + p["trab_phase"])) ** 4
    img = np.where(q < 4, np.float32(p["myo"]), img)
    rv = (q >= 2) & (q < 3) & (lm[3] - lm[2] > 2 * FLOOR)
    img = np.where(rv, p["blood"] * (1 - rv_trab) + p["myo"] * rv_trab, img)
    img = np.where(q < 2, np.float32(p["myo"]), img)
    pool = q < 1
    s = np.broadcast_to(profiles(p, source_level(p, z, phase))["s"], q.shape)[pool]  # features of the source level
    blood = p["blood"] * (1 - 0.08 * q[pool] ** 2)
    img[pool] = blood + (p["myo"] - blood) * lv_pool(p, q[pool], theta[pool], s, phase)
    return img.astype(np.float32)


# ------------------------------------------------------------------------ rendering

def heart_box(p: dict[str, Any]) -> tuple[slice, slice]:
    """In-plane voxel box outside which nothing moves (R_far + translation around every centre)."""
    (nx, ny), sx = p["shape_xy"], p["spacing"][0]
    cx, cy = centre(p, slice_levels(p))
    reach = (heart_radii(p)[1] + float(np.hypot(*p["translation"]))) / sx + 2
    return (slice(max(int(cx.min() / sx - reach), 0), min(int(cx.max() / sx + reach) + 2, nx)),
            slice(max(int(cy.min() / sx - reach), 0), min(int(cy.max() / sx + reach) + 2, ny)))


def _grid(p: dict[str, Any], xs: slice, ys: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image coordinates (mm) of the voxel centres of a box, (bx,1,1) and (1,by,1), and the
    sub-levels (1,1,Z*n)."""
    sx = p["spacing"][0]
    x = (np.arange(xs.start, xs.stop, dtype=np.float32) * sx)[:, None, None]
    y = (np.arange(ys.start, ys.stop, dtype=np.float32) * sx)[None, :, None]
    return x, y, slice_levels(p).astype(np.float32)[None, None, :]


def _slab_mean(volume: np.ndarray) -> np.ndarray:
    """Average the sub-levels of each slice: (X, Y, Z*n) -> (X, Y, Z)."""
    n = len(SUB_LEVELS)
    return volume.reshape(volume.shape[:2] + (-1, n)).mean(axis=3)


def _mid(volume: np.ndarray) -> np.ndarray:
    """The slice-centre sub-level of each slice: (X, Y, Z*n) -> (X, Y, Z)."""
    n = len(SUB_LEVELS)
    return volume.reshape(volume.shape[:2] + (-1, n))[..., n // 2]


def render_static(p: dict[str, Any], box: tuple[slice, slice]) -> np.ndarray:
    """Clean ED background of the whole image (X, Y, Z) float32 (no heart; lungs and liver
    kept clear of it), partial volume over sub-levels."""
    (nx, ny) = p["shape_xy"]
    x, y, z = _grid(p, slice(0, nx), slice(0, ny))
    static = _slab_mean(background(p, x, y, z, True))
    x, y, z = _grid(p, *box)
    geo = backward(p, x, y, z, 0.0)
    static[box] = _slab_mean(background(p, x, y, z, clear_of_heart(geo, fat_band(p, geo["theta"]))))
    return static


def _sample_static(static: np.ndarray, geo: dict[str, np.ndarray], sx: float) -> np.ndarray:
    """The static ED background (already averaged through the slice) at the ED points the
    slice centres map to, repeated for every sub-level: (bx, by, Z * n)."""
    ix, iy = _mid(geo["ex"]) / sx, _mid(geo["ey"]) / sx
    k = np.broadcast_to(np.arange(static.shape[2], dtype=np.float32), ix.shape)
    sampled = ndimage.map_coordinates(static, np.stack([ix, iy, k]), order=1, mode="nearest")
    return np.repeat(sampled, len(SUB_LEVELS), axis=2)


def render_heart(p: dict[str, Any], box: tuple[slice, slice], phase: float, static: np.ndarray) -> tuple[np.ndarray, dict]:
    """Clean intensity of the box (bx, by, Z) at `phase` and the slice-centre geometry
    (ED points in voxel units 'ix', 'iy', and 'q', 'landmarks' for the labels)."""
    x, y, z = _grid(p, *box)
    geo = backward(p, x, y, z, phase)
    sx = p["spacing"][0]
    img = _slab_mean(heart_intensity(p, geo, z, phase, _sample_static(static, geo, sx)))
    mid = {"ix": _mid(geo["ex"]) / sx, "iy": _mid(geo["ey"]) / sx, "q": _mid(geo["q"]),
           "landmarks": [_mid(np.broadcast_to(v, geo["q"].shape)) for v in geo["landmarks"]]}
    return img, mid


def texture_field(p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative tissue texture (X, Y, Z) float32 around 1, fixed to the ED anatomy."""
    nx, ny = p["shape_xy"]
    noise = rng.standard_normal((nx, ny, p["n_slices"]), dtype=np.float32)
    smooth = ndimage.gaussian_filter(noise, (1.5, 1.5, 0))
    return 1 + p["texture"] * smooth / max(float(smooth.std()), 1e-6)


def _texture_at(texture: np.ndarray, mid: dict, xs: slice, ys: slice) -> np.ndarray:
    """The ED texture at the ED points a box's slice centres map to, (bx, by, Z)."""
    k = np.broadcast_to(np.arange(texture.shape[2], dtype=np.float32), mid["ix"].shape)
    return ndimage.map_coordinates(texture, np.stack([mid["ix"], mid["iy"], k]), order=1, mode="nearest")


def bias_field(p: dict[str, Any]) -> np.ndarray:
    """Smooth multiplicative coil sensitivity (X, Y, 1) float32."""
    nx, ny = p["shape_xy"]
    gx = np.linspace(-1, 1, nx, dtype=np.float32)[:, None, None]
    gy = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    a, b, c, d = p["bias"]
    return np.exp(a * gx + b * gy + c * (gx**2 - gy**2) + d * gx * gy).astype(np.float32)


def acquire(clean: np.ndarray, bias: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Contrast gamma, coil bias and Rician noise of one frame (X, Y, Z) float32."""
    img = np.power(clean, p["gamma"]) * bias
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(p["noise"])
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(p["noise"])
    return np.sqrt((img + n1) ** 2 + n2**2).astype(np.float32)


def frame_phases(n_frames: int, ed: int, es: int) -> np.ndarray:
    """Motion phase per frame: 0 at ED, 1 at ES, smooth and cyclic."""
    t = ((np.arange(n_frames) - ed) % n_frames) / n_frames
    ts = ((es - ed) % n_frames) / n_frames
    phases = np.where(t <= ts, np.sin(np.pi / 2 * t / ts) ** 2, np.cos(np.pi / 2 * (t - ts) / (1 - ts)) ** 2)
    phases[ed], phases[es] = 0.0, 1.0
    return phases


def true_displacement(p: dict[str, Any], box: tuple[slice, slice]) -> np.ndarray:
    """u (X, Y, Z, 3) float32 voxel units on the ED grid, channel 2 zero: ED point x lies at
    x + u(x) in the ES frame (zero outside the box, where nothing moves)."""
    nx, ny = p["shape_xy"]
    x, y, _ = _grid(p, *box)
    z = (np.arange(p["n_slices"], dtype=np.float32) * p["spacing"][2])[None, None, :]
    ex, ey = forward(p, x, y, z)
    u = np.zeros((nx, ny, p["n_slices"], 3), np.float32)
    sx = p["spacing"][0]
    u[box[0], box[1], :, 0] = (ex - x) / sx
    u[box[0], box[1], :, 1] = (ey - y) / sx
    return u


def measured_motion(labels_ed: np.ndarray, labels_es: np.ndarray) -> dict[str, float]:
    """EF of LV and RV, and the ES/ED myocardial volume ratio, from the label maps."""
    def vol(lab, k):
        return float((lab == k).sum())

    return {"ef_lv": 1 - vol(labels_es, LV) / max(vol(labels_ed, LV), 1),
            "ef_rv": 1 - vol(labels_es, RV) / max(vol(labels_ed, RV), 1),
            "myo_ratio": vol(labels_es, MYO) / max(vol(labels_ed, MYO), 1)}


def es_labels(labels_ed: np.ndarray, mid: dict, box: tuple[slice, slice]) -> np.ndarray:
    """ES labels (X, Y, Z) uint8: the ED label voxel nearest to the ED point each ES voxel
    centre of the box shows (outside the box nothing moves, and no label lies there)."""
    nx, ny, _ = labels_ed.shape
    ix = np.clip(np.rint(mid["ix"]), 0, nx - 1).astype(np.intp)
    iy = np.clip(np.rint(mid["iy"]), 0, ny - 1).astype(np.intp)
    k = np.broadcast_to(np.arange(labels_ed.shape[2]), ix.shape)
    out = labels_ed.copy()
    out[box] = labels_ed[ix, iy, k]
    return out


def make_phantom(rng: np.random.Generator, group: str = "NOR", vendor: str | None = None,
                 n_frames: int = 2, ed_index: int = 0, es_index: int = 1) -> Phantom:
    """Render one subject with `n_frames` cine frames (ED and ES at the given indices)."""
    p = sample_params(rng, group, vendor)
    box = heart_box(p)
    static = render_static(p, box)
    texture = texture_field(p, rng)
    bias = bias_field(p)
    frames = np.empty((n_frames,) + static.shape, np.float32)
    mids: dict[int, dict] = {}
    for t, phase in enumerate(frame_phases(n_frames, ed_index, es_index)):
        heart, mid = render_heart(p, box, float(phase), static)
        clean = static.copy()
        clean[box] = heart
        clean *= texture
        clean[box] *= _texture_at(texture, mid, *box) / texture[box]
        clean = ndimage.gaussian_filter(clean, (0.5, 0.5, 0))  # in-plane point-spread function
        frames[t] = acquire(np.clip(clean, 0, None), bias, p, rng)
        if t in (ed_index, es_index):
            mids[t] = mid
    labels_ed = np.zeros(static.shape, np.uint8)
    labels_ed[box] = labels_from(mids[ed_index])
    labels_es = es_labels(labels_ed, mids[es_index], box)
    p.update(measured_motion(labels_ed, labels_es))
    return Phantom(frames, ed_index, es_index, labels_ed, labels_es, true_displacement(p, box), p["spacing"], p)
