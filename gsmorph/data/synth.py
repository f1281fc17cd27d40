"""Write synthetic phantoms in the raw ACDC or M&Ms-1 layout (see acdc.py, mnm.py).

Subject i is drawn from its own generator seeded by (seed, i), so a subject does not
depend on how many others are written or on the number of worker processes. Beside the
layout, `phantom_subjects.csv` at the root lists every subject's phantom parameters
(group, vendor, anatomy, motion, acquisition, measured EF); `describe` summarises them
for the provenance record.
"""
from __future__ import annotations

import multiprocessing
import os
import string
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from gsmorph.data import acdc, mnm
from gsmorph.data import phantom as model
from gsmorph.data.phantom import ACDC_GROUPS, GROUP_ORDER, VENDORS, Phantom, make_phantom

MNM_PATHOLOGY = {"NOR": "NOR", "DCM": "DCM", "HCM": "HCM", "MINF": "Other", "RV": "ARV"}
INTENSITY_SCALE = 1000.0  # phantom intensities are stored as int16, like scanner output
SUBJECTS_CSV = "phantom_subjects.csv"
SUMMARY_KEYS = ("ef_lv", "ef_rv", "myo_ratio", "contraction", "rv_contraction", "shortening", "twist", "snr",
                "noise", "gamma", "thickness", "n_slices")


def oblique_affine(rng: np.random.Generator, spacing: tuple[float, float, float]) -> np.ndarray:
    """A voxel-to-world matrix with a tilted short-axis plane (not diagonal), spacing mm per axis."""
    a, b, c = rng.uniform(-0.5, 0.5, 3)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ ry @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-150, 150, 3)
    return affine


def _to_int16(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames * INTENSITY_SCALE), 0, 32767).astype(np.int16)


def acdc_phantom(seed: int, index: int) -> tuple[str, Phantom, dict, np.ndarray]:
    """ACDC-like patient `index` (0-based): (subject id, phantom, Info.cfg values, affine)."""
    rng = np.random.default_rng([seed, index, 0])
    group = ACDC_GROUPS[index % len(ACDC_GROUPS)]
    n_frames = int(rng.integers(12, 31))
    es = int(round(n_frames * rng.uniform(0.3, 0.42))) + 1
    ph = make_phantom(rng, group)
    info = {"ED": 1, "ES": es, "Group": group, "Height": rng.uniform(150, 195), "NbFrame": n_frames,
            "Weight": rng.uniform(50, 110)}
    return f"patient{index + 1:03d}", ph, info, oblique_affine(rng, ph.spacing)


def flat_params(params: dict) -> dict:
    """Phantom parameters as one CSV row: tuples become key_0, key_1, ...; None stays empty."""
    out = {}
    for key, value in params.items():
        if isinstance(value, (tuple, list)):
            out.update({f"{key}_{i}": float(v) for i, v in enumerate(value)})
        else:
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def acdc_subject(root: Path, seed: int, index: int) -> dict:
    """Write ACDC-layout patient `index` under root (training/, from patient101 on testing/);
    returns its id, group and phantom_subjects.csv row."""
    subject, ph, info, affine = acdc_phantom(seed, index)
    frames = _to_int16(ph.frames)
    folder = root / ("training" if index < 100 else "testing") / subject
    acdc.write_subject(folder, subject, frames[ph.ed_index], frames[ph.es_index],
                       ph.labels_ed, ph.labels_es, affine, info, ph.true_disp)
    row = {"subject": subject, "folder": folder.parent.name, "labelled": True, "ed_frame": ph.ed_index,
           "es_frame": ph.es_index, **flat_params(ph.params)}
    return {"subject": subject, "group": info["Group"], "phantom": row}


def _mnm_code(rng: np.random.Generator) -> str:
    letters, digits = string.ascii_uppercase, string.digits
    return "".join(rng.choice(list(letters if i % 2 == 0 else digits)) for i in range(6))


def mnm_phantom(seed: int, index: int, labelled: bool = True) -> tuple[str, Phantom, dict, np.ndarray, float]:
    """M&Ms-like subject `index`: (code, phantom, information-CSV row, affine, frame ms)."""
    rng = np.random.default_rng([seed, index, 1 if labelled else 2])
    vendor = "ABCD"[index % 4] if labelled else "C"
    group = str(rng.choice(GROUP_ORDER, p=VENDORS[vendor]["mix"]))  # the vendor's centres' pathology mix
    n_frames = int(rng.integers(8, 11))
    es = int(round(n_frames * rng.uniform(0.33, 0.42)))
    ed = 0 if vendor in "AC" else n_frames - 1  # some vendors' ED is the last frame
    ph = make_phantom(rng, group, vendor, n_frames, ed, es)
    code = _mnm_code(rng)
    v = VENDORS[vendor]
    row = {"External code": code, "VendorName": v["name"], "Vendor": vendor,
           "Centre": int(rng.choice(v["centres"])), "ED": ed, "ES": es, "Pathology": MNM_PATHOLOGY[group],
           "Sex": str(rng.choice(["M", "F"])), "Age": int(rng.integers(20, 80)),
           "Height": round(float(rng.uniform(150, 195)), 1), "Weight": round(float(rng.uniform(50, 110)), 1)}
    return code, ph, row, oblique_affine(rng, ph.spacing), float(rng.uniform(25, 40))


def mnm_layout(index: int, labelled: bool) -> Path:
    """Where subject `index` goes: most in Training/Labeled, some in Validation/ and Testing/."""
    if not labelled:
        return Path("Training") / "Unlabeled"
    return ([Path("Training") / "Labeled"] * 3 + [Path("Validation"), Path("Testing")])[index % 5]


def mnm_subject(root: Path, seed: int, index: int, labelled: bool = True) -> dict:
    """Write M&Ms-layout subject `index` under root; returns its row of the information CSV
    ('info') and of phantom_subjects.csv ('phantom')."""
    code, ph, row, affine, frame_ms = mnm_phantom(seed, index, labelled)
    labels = {ph.ed_index: ph.labels_ed, ph.es_index: ph.labels_es} if labelled else None
    folder = mnm_layout(index, labelled)
    mnm.write_subject(root / folder / code, code, _to_int16(ph.frames), labels, affine,
                      frame_ms=frame_ms, true_disp=ph.true_disp if labelled else None)
    phantom_row = {"subject": code, "folder": str(folder), "labelled": labelled, "ed_frame": ph.ed_index,
                   "es_frame": ph.es_index, "centre": row["Centre"], **flat_params(ph.params)}
    return {"info": row, "phantom": phantom_row}


def _run(jobs: list[tuple], workers: int) -> list[dict]:
    if workers <= 1 or len(jobs) < 2:
        return [fn(*args) for fn, *args in jobs]
    # spawn, not fork: the parent may hold threads (e.g. torch's) that a fork would copy mid-lock
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, *args in jobs]
        return [f.result() for f in futures]


def write_acdc(root: Path, n_subjects: int, seed: int, workers: int | None = None) -> list[dict]:
    """ACDC layout: patient001.. in training/ (from patient101 on in testing/), plus
    MANDATORY_CITATION.md as in the download."""
    root = Path(root)
    (root / "training").mkdir(parents=True, exist_ok=True)
    (root / "MANDATORY_CITATION.md").write_text("Synthetic phantom in the ACDC layout; not ACDC data.\n")
    jobs = [(acdc_subject, root, seed, i) for i in range(n_subjects)]
    results = _run(jobs, workers or os.cpu_count() or 1)
    write_subjects_csv(root, [r["phantom"] for r in results])
    return [{"subject": r["subject"], "group": r["group"]} for r in results]


def write_mnm(root: Path, n_subjects: int, seed: int, workers: int | None = None) -> list[dict]:
    """M&Ms-1 layout with `n_subjects` labelled subjects, a few unlabelled ones under
    Training/Unlabeled, and the information CSV at the root."""
    import pandas as pd

    from gsmorph.io import write_csv

    root = Path(root)
    n_unlabelled = 1 + n_subjects // 20
    jobs = [(mnm_subject, root, seed, i, True) for i in range(n_subjects)]
    jobs += [(mnm_subject, root, seed, i, False) for i in range(n_unlabelled)]
    results = _run(jobs, workers or os.cpu_count() or 1)
    rows = [r["info"] for r in results]
    codes = [r["External code"] for r in rows]
    if len(set(codes)) != len(codes):
        raise RuntimeError("duplicate phantom subject codes; use another seed")
    table = pd.DataFrame(rows)
    table.insert(0, "", range(len(table)))  # the download's CSV has an unnamed index column
    write_csv(root / mnm.INFO_NAME, table)
    write_subjects_csv(root, [r["phantom"] for r in results])
    return rows


WRITERS = {"acdc": write_acdc, "mnm": write_mnm}  # the phantom's writer of each dataset id (gsmorph.datasets)


def write_subjects_csv(root: Path, rows: list[dict]) -> None:
    """phantom_subjects.csv at the raw root: one row of phantom parameters per subject."""
    import pandas as pd

    from gsmorph.io import write_csv

    write_csv(Path(root) / SUBJECTS_CSV, pd.DataFrame(rows))


def read_subjects_csv(root: Path):
    """phantom_subjects.csv of a phantom folder as a DataFrame (subject ids as str)."""
    import pandas as pd

    return pd.read_csv(Path(root) / SUBJECTS_CSV, dtype={"subject": str})


def model_ranges() -> dict:
    """The phantom's parameter ranges per pathology group and per vendor (for provenance)."""
    return {"groups": model.GROUPS, "infarct": model.INFARCT, "translation_mm": model.TRANSLATION_MM,
            "acdc_acquisition": model.ACDC_ACQUISITION, "vendors": VENDORS, "tissue": model.TISSUE,
            "sub_levels": model.SUB_LEVELS, "max_heart_voxels": model.MAX_HEART_VOXELS,
            "max_rv_thinning": model.MAX_RV_THINNING}


def describe(root: Path) -> dict:
    """Provenance of a written phantom: the model's ranges, and per group (ACDC pathology, or
    M&M vendor and pathology) the mean and range of the subjects' drawn and measured parameters;
    every subject's parameters are in phantom_subjects.csv."""
    table = read_subjects_csv(root)
    table = table[table["labelled"].astype(bool)]
    by = ["group"] if table["vendor"].isna().all() else ["vendor", "group"]
    summary = {}
    for key, part in table.groupby(by):
        name = "/".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        summary[name] = {"n": int(len(part)), **{
            col: {"mean": float(part[col].mean()), "min": float(part[col].min()), "max": float(part[col].max())}
            for col in SUMMARY_KEYS}}
    return {"model": model_ranges(), "subjects_csv": SUBJECTS_CSV, "per_group": summary}
