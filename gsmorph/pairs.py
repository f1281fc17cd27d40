"""The per-pair output every method writes (learned, classical, Initial) and evaluation reads.

A pairs folder `pairs/<dataset>/<backbone>/<method>/seed<k>/` holds:
- `<subject>.npz`, one per test subject, with K registered pairs of that subject
  (K = number of slices in 2D mode, 1 in 3D mode):
    slice_index  (K,) int32         slice along the last array axis; -1 for a 3D pair
    disp         (K, ndim, *S) f32  displacement, voxel units, channel i along array
                                    axis i; moved = moving sampled at x + disp(x)
    moved_image  (K, *S) f32        the moving image warped (bilinear)
    moved_label  (K, *S) uint8      the moving labels warped (nearest), canonical ids
    runtime_s    (K,) f64           wall seconds to register that pair (forward pass or
                                    classical optimisation, warping included)
    spacing      (ndim,) f64        mm per array axis of *S
- `provenance.json`: config, seed, code and package versions that made them.
- `pairs.json`: what made them (its schema: gsmorph/schemas/pairs.schema.yaml, checked on
  write and on read by check_meta): dataset, backbone ("none" for non-learned methods), method,
  seed, split, moving/fixed frames, prepared folder and its `prepared_identity` (a digest
  of its subjects.csv and provenance.json: evaluation refuses the pairs once the folder
  is prepared again), method parameters (e.g. chosen lambda), provenance.
  Its paths (`prepared`, `run`) are relative to the pairs folder
  (gsmorph/locations.py), so a results tree moved whole still evaluates; read_meta
  returns them absolute (absolute ones of earlier versions as they are).
- `nifti/` (asked for with --nifti): `<subject>_{moved_image,moved_label,disp}.nii.gz`
  on the prepared fixed frame's grid and affine (gsmorph/nifti_export.py).
- `index.csv`: subject, file, n_pairs. Written last: its presence means the folder is complete.

Fixed and moving images and labels are not copied: evaluation reads them from the
prepared folder named in pairs.json.
"""
from __future__ import annotations

import functools
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from gsmorph.data.labels import BACKGROUND, STRUCTURES
from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_dir, check_plain_name, read_json, write_csv, write_json, write_npz
from gsmorph.locations import relative, resolve

LABEL_IDS = (BACKGROUND, *STRUCTURES.values())  # canonical label ids
IDENTITY = "prepared_identity"  # pairs.json key: gsmorph.data.loader.prepared_identity of the prepared folder
KEYS = ("slice_index", "disp", "moved_image", "moved_label", "runtime_s", "spacing")
INDEX = "index.csv"
META = "pairs.json"
PATH_KEYS = ("prepared", "run")  # recorded relative to the pairs folder
NIFTI = "nifti"  # optional subfolder: the pairs as NIfTI for a viewer
SCHEMA = Path(__file__).resolve().parent / "schemas" / "pairs.schema.yaml"  # of pairs.json


@functools.cache
def meta_schema() -> dict:
    """The JSON schema of pairs.json (gsmorph/schemas/pairs.schema.yaml)."""
    import yaml

    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def check_meta(meta: Any, where: str | os.PathLike, written: bool = False) -> None:
    """Refuse a pairs.json `meta` that breaks its schema: GSMorphError '<where>: missing keys
    [...]', or '<where>: key '<key>' is <value>, not <the key's description>' for the first
    such key in the schema's order. written: the keys a writer must record too."""
    import jsonschema

    if not isinstance(meta, dict):
        raise GSMorphError(f"{where}: not a JSON object")
    schema = meta_schema()
    required = schema["required"] + (schema["$defs"]["written"]["required"] if written else [])
    missing = [k for k in required if k not in meta]
    if missing:
        raise GSMorphError(f"{where}: missing keys {missing}")
    # an integer is an int, not a bool nor a float such as 1.0
    integers = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=integers)(schema)
    bad = {error.path[0] for error in validator.iter_errors(meta) if error.path}
    for key, spec in schema["properties"].items():
        if key in bad:
            raise GSMorphError(f"{where}: key '{key}' is {meta[key]!r}, not {spec['description']}")


@dataclass
class SubjectPairs:
    """All registered pairs of one subject (see module docstring for shapes)."""

    subject: str
    slice_index: np.ndarray
    disp: np.ndarray
    moved_image: np.ndarray
    moved_label: np.ndarray
    runtime_s: np.ndarray
    spacing: np.ndarray

    def validate(self) -> None:
        k = len(self.slice_index)
        ndim = self.disp.shape[1] if self.disp.ndim >= 2 else -1
        spatial = self.disp.shape[2:]
        problems = []
        if self.disp.ndim != 2 + ndim or ndim not in (2, 3):
            problems.append(f"disp has shape {self.disp.shape}, expected (K, ndim, *S) with ndim 2 or 3")
        if self.disp.shape[0] != k:
            problems.append(f"disp has {self.disp.shape[0]} pairs, slice_index {k}")
        for name in ("moved_image", "moved_label"):
            arr = getattr(self, name)
            if arr.shape != (k, *spatial):
                problems.append(f"{name} has shape {arr.shape}, expected {(k, *spatial)}")
        if self.runtime_s.shape != (k,):
            problems.append(f"runtime_s has shape {self.runtime_s.shape}, expected {(k,)}")
        if self.spacing.shape != (ndim,):
            problems.append(f"spacing has shape {self.spacing.shape}, expected {(ndim,)}")
        if not np.all(np.isfinite(self.disp)):
            problems.append("disp has non-finite values")
        if not problems:
            problems = self._value_problems()
        if problems:
            raise GSMorphError(f"pairs of subject {self.subject}: " + "; ".join(problems))


    def _value_problems(self) -> list[str]:
        """What no registration can produce: non-finite moved intensities, moved labels
        that are not canonical ids, negative or non-finite runtimes, a slice twice."""
        problems = []
        bad = int((~np.isfinite(self.moved_image)).sum())
        if bad:
            problems.append(f"moved_image has {bad} non-finite values")
        labels = np.unique(self.moved_label)
        unknown = labels[~np.isin(labels, LABEL_IDS)]
        if unknown.size:
            problems.append(f"moved_label holds {unknown[:5].tolist()}, not canonical label ids {list(LABEL_IDS)}")
        runtime = np.asarray(self.runtime_s, dtype=np.float64)
        if not np.all(np.isfinite(runtime) & (runtime >= 0)):
            problems.append(f"runtime_s holds {runtime[~(np.isfinite(runtime) & (runtime >= 0))][:3].tolist()}, "
                            f"not seconds >= 0")
        unique, counts = np.unique(np.asarray(self.slice_index), return_counts=True)
        if (counts > 1).any():
            problems.append(f"slice_index repeats slice(s) {unique[counts > 1].tolist()}")
        spacing = np.asarray(self.spacing, dtype=np.float64)
        if not np.all(np.isfinite(spacing) & (spacing > 0)):
            problems.append(f"spacing {spacing.tolist()} is not positive mm")
        return problems


def save_subject(out_dir: str | os.PathLike, pairs: SubjectPairs) -> Path:
    """Validate and write `<out_dir>/<subject>.npz` atomically; return its path."""
    pairs.validate()
    path = Path(out_dir) / f"{check_plain_name(pairs.subject, out_dir)}.npz"
    write_npz(
        path,
        slice_index=np.asarray(pairs.slice_index, dtype=np.int32),
        disp=np.asarray(pairs.disp, dtype=np.float32),
        moved_image=np.asarray(pairs.moved_image, dtype=np.float32),
        moved_label=np.asarray(pairs.moved_label, dtype=np.uint8),
        runtime_s=np.asarray(pairs.runtime_s, dtype=np.float64),
        spacing=np.asarray(pairs.spacing, dtype=np.float64),
    )
    return path


def load_subject(path: str | os.PathLike) -> SubjectPairs:
    """One `<subject>.npz`, checked (SubjectPairs.validate); a damaged or truncated file,
    or values no registration gives, is a GSMorphError naming the file."""
    path = Path(path)
    try:
        with np.load(path) as data:
            missing = [k for k in KEYS if k not in data]
            if missing:
                raise GSMorphError(f"{path}: missing arrays {missing}")
            arrays = {k: data[k] for k in KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated, bit-flipped
        raise GSMorphError(f"{path}: cannot read pairs file ({type(err).__name__}: {err})") from None
    pairs = SubjectPairs(subject=path.stem, **arrays)
    try:
        pairs.validate()
    except GSMorphError as err:
        raise GSMorphError(f"{path}: {err}") from None
    return pairs


def finish(out_dir: str | os.PathLike, meta: dict[str, Any], subjects: list[str]) -> None:
    """Write pairs.json, then index.csv last (marks the folder complete)."""
    import pandas as pd

    out_dir = Path(out_dir)
    check_meta(meta, "pairs metadata", written=True)
    rows = []
    for subject in subjects:
        with np.load(out_dir / f"{subject}.npz") as data:
            rows.append({"subject": subject, "file": f"{subject}.npz", "n_pairs": int(len(data["slice_index"]))})
    write_json(out_dir / META, with_identity(meta, out_dir))
    write_csv(out_dir / INDEX, pd.DataFrame(rows, columns=["subject", "file", "n_pairs"]))


def write_folder(out: str | os.PathLike, meta: dict[str, Any], subjects: Iterable[SubjectPairs],
                 inputs: Iterable[str | os.PathLike] = (), made_by: str = "gsmorph", nifti: bool = False) -> Path:
    """Write a whole pairs folder: every subject's pairs as they come, a provenance.json
    (meta's `provenance`), pairs.json and index.csv last. Built in a temporary folder that
    replaces `out` when complete (gsmorph.io.atomic_dir: never a folder gsmorph did not
    write, nor one overlapping `inputs`). nifti: also each subject's moved image, moved
    labels and displacement as NIfTI in `<out>/nifti/` (gsmorph/nifti_export.py), on the
    grid and affine of the prepared fixed frame."""
    out = Path(out)
    check_meta(meta, "pairs metadata", written=True)
    prepared = meta.get("prepared")
    meta = with_identity(meta, out)  # the preparation registered, before it can change
    meta = {**meta, **{k: relative(meta[k], out) for k in PATH_KEYS if meta.get(k)}}
    with atomic_dir(out, inputs=inputs, made_by=made_by) as tmp:
        names = []
        for sp in subjects:
            names.append(save_subject(tmp, sp).stem)
            if nifti:
                from gsmorph.nifti_export import export_subject

                export_subject(sp, prepared, meta.get("fixed", "ED"), tmp / NIFTI)
        if meta.get("provenance") is not None:
            write_json(tmp / "provenance.json", meta["provenance"])
        finish(tmp, meta, names)
    return out


def prepared_path(folder: str | os.PathLike, prepared: str | os.PathLike) -> Path:
    """The prepared folder pairs.json names: an absolute path as is; a relative one from
    the pairs folder where that is a folder, else from the working directory."""
    prepared = Path(prepared)
    if not prepared.is_absolute() and (Path(folder) / prepared).is_dir():
        return Path(folder) / prepared
    return prepared


def with_identity(meta: dict[str, Any], folder: str | os.PathLike) -> dict[str, Any]:
    """`meta` with IDENTITY, the digest of the prepared folder it names (kept if given)."""
    from gsmorph.data.loader import prepared_identity

    prepared = prepared_path(folder, meta["prepared"])
    if IDENTITY in meta or not prepared.is_dir():
        return meta
    return {**meta, IDENTITY: prepared_identity(prepared)}


def check_identity(folder: str | os.PathLike, meta: dict[str, Any], prepared: str | os.PathLike) -> str | None:
    """The IDENTITY pairs.json records, refused (naming pairs.json) when the prepared folder
    is no longer the preparation the pairs were registered on; None for a folder written
    before the key existed."""
    from gsmorph.data.loader import prepared_identity

    recorded = meta.get(IDENTITY)
    if recorded is None:
        return None
    now = prepared_identity(prepared)
    if str(recorded) != now:
        raise GSMorphError(f"{Path(folder) / META}: registered on another preparation of {prepared} ({IDENTITY} "
                           f"{recorded}, now {now}: prepared again since); register these pairs again")
    return now


def read_index(out_dir: str | os.PathLike):
    """index.csv of a complete pairs folder (subject as str), checked: its columns, and
    each file the plain name `<subject>.npz`."""
    import pandas as pd

    out_dir = Path(out_dir)
    read_meta(out_dir)
    try:
        index = pd.read_csv(out_dir / INDEX, dtype={"subject": str, "file": str}, keep_default_na=False)
    except (OSError, ValueError) as err:  # UnicodeDecodeError, a parser error
        raise GSMorphError(f"{out_dir / INDEX}: cannot read CSV ({type(err).__name__}: {err})") from None
    if not {"subject", "file"} <= set(index.columns):
        raise GSMorphError(f"{out_dir / INDEX}: needs columns subject and file")
    for line, (subject, file) in enumerate(zip(index["subject"], index["file"]), start=2):
        check_plain_name(subject, out_dir / INDEX)  # never a path outside the folder
        check_plain_name(file, out_dir / INDEX, what="file")
        if file != f"{subject}.npz":
            raise GSMorphError(f"{out_dir / INDEX}: line {line}: file '{file}' of subject {subject} is not "
                               f"'{subject}.npz'")
    return index


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any]:
    """pairs.json of a complete pairs folder, checked (check_meta), its PATH_KEYS made absolute."""
    out_dir = Path(out_dir)
    if not (out_dir / INDEX).is_file():
        raise GSMorphError(f"{out_dir}: no {INDEX}; the pairs folder is missing or incomplete")
    meta = read_json(out_dir / META)
    check_meta(meta, out_dir / META)
    for key in PATH_KEYS:
        if isinstance(meta.get(key), str) and meta[key]:
            meta[key] = str(resolve(meta[key], out_dir))
    return meta


def iter_subjects(out_dir: str | os.PathLike) -> Iterator[SubjectPairs]:
    """Yield every subject's pairs listed in the folder's index."""
    out_dir = Path(out_dir)
    for file in read_index(out_dir)["file"]:
        yield load_subject(out_dir / file)
