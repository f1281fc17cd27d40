"""File I/O shared by every step: atomic writes, NIfTI, JSON and CSV.

Writes are atomic: data goes to a temporary name in the destination folder (same
suffix, so nibabel and pandas pick the right format) and is renamed into place, so
an interrupted job never leaves a file that looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from gsmorph.errors import GSMorphError


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


def _os_error(err: OSError, path: Path) -> GSMorphError:
    """An OSError (disk full, permission, read-only folder) as a message naming the path."""
    where = err.filename if err.filename else path
    return GSMorphError(f"{where}: {err.strerror or err}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    An OSError on the way becomes a GSMorphError naming the file; nothing is left behind.
    """
    path = Path(os.path.abspath(path))  # '.' or 'x/..' have no name to put a sibling beside
    if path.is_dir():
        raise GSMorphError(f"{path}: is a folder; give the file to write (e.g. {path / 'out.csv'})")
    tmp = _tmp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise _os_error(err, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- output folders
# A folder a verb replaces whole (synth, prepare, infer, register, tune's best/, the
# report's sub-folders) carries MARKER: the list of files gsmorph wrote into it. A folder
# is only ever replaced when it is empty or when it holds nothing but the files its
# marker lists, so a user's own files (or a raw download) are never deleted.
MARKER = ".gsmorph-output.json"


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output folder that is, contains or lies inside one of the input folders."""
    out_r = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        inp = Path(given).resolve()
        what = f"the input {'file' if inp.is_file() else 'folder'} {given}"
        if out_r == inp:
            raise GSMorphError(f"--out {out}: is {what}; choose another --out")
        if inp.is_relative_to(out_r):
            raise GSMorphError(f"--out {out}: contains {what}; choose another --out")
        if out_r.is_relative_to(inp):
            raise GSMorphError(f"--out {out}: lies inside {what}; choose another --out")


def _files(folder: Path) -> list[str]:
    """Relative POSIX paths of every file under `folder` (links included, folders not)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise unless `path` is absent, empty, or a folder holding only files gsmorph wrote."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise GSMorphError(f"{path}: exists and is not a folder; choose another --out")
    present = _files(path)
    if not present and not any(path.iterdir()):
        return
    marker = path / MARKER
    if not marker.is_file():
        raise GSMorphError(f"{path}: exists and was not written by gsmorph (no {MARKER} in it); refusing to "
                           "replace it: choose another --out, or empty the folder yourself")
    try:
        written = set(json.loads(marker.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise GSMorphError(f"{marker}: unreadable; refusing to replace {path}") from None
    foreign = [f for f in present if f != MARKER and f not in written]
    if foreign:
        raise GSMorphError(f"{path}: holds {len(foreign)} file(s) gsmorph did not write (e.g. {foreign[0]}); "
                           "refusing to replace it: move them away or choose another --out")


def _write_marker(folder: Path, made_by: str) -> None:
    files = [f for f in _files(folder) if f != MARKER]
    (folder / MARKER).write_text(json.dumps({"made_by": made_by, "files": files}, indent=1) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
               made_by: str = "gsmorph") -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole.

    Refused before anything is written (GSMorphError naming the folder) when `path` is, holds
    or lies inside one of `inputs`, or when it holds files gsmorph did not write (see
    MARKER). The new folder gets its own marker. On failure nothing is left behind.
    """
    given, path = path, Path(os.path.abspath(path))  # '.' or 'x/..' have no name to put a sibling beside
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise GSMorphError(f"--out {given}: is the working directory or a folder above it; refusing to replace "
                           "it: choose another --out")
    check_not_input(path, inputs)
    check_replaceable(path)
    tmp = _tmp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        _write_marker(tmp, made_by)
        check_replaceable(path)  # again: a user may have added files meanwhile
        if path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        raise _os_error(err, path) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GSMorphError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise GSMorphError(f"{path}: not valid JSON ({err})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame atomically, without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Compressed .npz written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def read_nifti(path: str | os.PathLike, dtype=np.float32) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Read a NIfTI file fully into memory.

    Returns (array in the file's array order, voxel spacing in mm per array axis of the
    spatial dims, 4x4 affine). Any read failure raises GSMorphError naming the file.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise GSMorphError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for corrupt files
        raise GSMorphError(f"{path}: cannot read NIfTI ({type(err).__name__}: {err})") from None
    zooms = tuple(float(z) for z in img.header.get_zooms()[: min(3, data.ndim)])
    return data.astype(dtype, copy=False), zooms, np.asarray(img.affine, dtype=np.float64)


def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    affine: np.ndarray | None = None,
) -> None:
    """Write `array` as NIfTI-1 atomically.

    With `affine` given it is kept (orientation and spacing); else a diagonal affine
    with `spacing` (mm per array axis) is used. Labels should be passed as uint8.
    """
    import nibabel as nib

    array = np.asarray(array)
    if affine is None:
        affine = np.eye(4)
        if spacing is not None:
            for i, s in enumerate(spacing[:3]):
                affine[i, i] = float(s)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(array.dtype)
    if spacing is not None:
        zooms = list(img.header.get_zooms())
        for i, s in enumerate(spacing[: len(zooms)]):
            zooms[i] = float(s)
        img.header.set_zooms(tuple(zooms))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
