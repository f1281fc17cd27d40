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
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from gsmorph.errors import GSMorphError
from gsmorph.processes import pid_alive


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


TMP_PREFIX = ".tmp-"


def _host_tag() -> str:
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _tmp_sibling(path: Path) -> Path:
    """`.tmp-<pid>-<host>-<random>-<name>` beside `path`: the writer's process id and host
    let a later run tell a killed writer's leftover from a live one's (clean_stale_temps)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex[:8]}-{path.name}")


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders a killed writer left in `folder` (those of a
    process of this host that no longer runs); return what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, host = [], _host_tag()
    for entry in folder.iterdir():
        parts = entry.name[len(TMP_PREFIX):].split("-", 3)
        if not entry.name.startswith(TMP_PREFIX) or len(parts) < 4 or not parts[0].isdigit():
            continue
        if parts[1] != host or pid_alive(int(parts[0])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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
    """Refuse an output (folder or file) that is, contains or lies inside one of the inputs."""
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


def _marker_of(path: Path) -> dict:
    marker = path / MARKER
    try:
        content = json.loads(marker.read_text())
        if not isinstance(content, dict):
            raise TypeError
        return content
    except (OSError, ValueError, TypeError):
        raise GSMorphError(f"{marker}: unreadable; refusing to replace {path}") from None


def _check_made_by(path: Path, found: Any, made_by: str | None) -> None:
    if made_by is not None and found != made_by:
        raise GSMorphError(f"{path}: was written by `gsmorph {found}`, not `gsmorph {made_by}`; refusing to "
                           "replace it: choose another --out")


def check_replaceable(path: str | os.PathLike, made_by: str | None = None) -> None:
    """Raise unless `path` is absent, empty, or a folder holding only files gsmorph wrote
    (by the verb `made_by`, when given)."""
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
    content = _marker_of(path)
    _check_made_by(path, content.get("made_by"), made_by)
    try:
        written = set(content["files"])
    except (KeyError, TypeError):
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
    clean_stale_temps(path.parent)
    check_replaceable(path, made_by)
    tmp = _tmp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        _write_marker(tmp, made_by)
        check_replaceable(path, made_by)  # again: a user may have added files meanwhile
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


class FolderSet:
    """Sub-folders `names` of `out` replaced together (the report's stats/, tables/,
    figures/, report/): each is built with `part(name)` in one temporary folder inside
    `out`, and `commit()` swaps them all in at once (each old one kept until every new one
    is in place, put back on a failure). Checked as atomic_dir checks one folder (inputs,
    MARKER, made_by), before anything is built and again before the swap. A failure while
    building leaves every old folder as it was and removes the temporary one."""

    def __init__(self, out: str | os.PathLike, names: Iterable[str], inputs: Iterable[str | os.PathLike | None] = (),
                 made_by: str = "gsmorph"):
        import weakref

        self.out, self.names, self.made_by = Path(out), list(names), made_by
        inputs = list(inputs)
        for name in self.names:
            check_not_input(self.out / name, inputs)
        clean_stale_temps(self.out)
        self._check()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.staging = _tmp_sibling(self.out / "parts")
            self.staging.mkdir()
        except OSError as err:
            raise _os_error(err, self.out) from None
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.staging), True)

    def _check(self) -> None:
        for name in self.names:
            check_replaceable(self.out / name, self.made_by)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[Path]:
        """The temporary folder in which the sub-folder `name` is built."""
        folder = self.staging / name
        try:
            folder.mkdir()
            yield folder
            _write_marker(folder, self.made_by)
        except OSError as err:
            self._remove()
            raise _os_error(err, self.out / name) from None
        except BaseException:
            self._remove()
            raise

    def commit(self) -> None:
        """Swap every built sub-folder into `out`."""
        missing = [n for n in self.names if not (self.staging / n).is_dir()]
        if missing:
            self._remove()
            raise GSMorphError(f"{self.out}: {', '.join(missing)} not built; nothing replaced")
        try:
            self._check()  # again: a user may have added files meanwhile
        except GSMorphError:
            self._remove()
            raise
        swapped: list[tuple[str, Path | None]] = []
        try:
            for name in self.names:
                target, old = self.out / name, None
                if target.exists() or target.is_symlink():
                    old = self.staging / f"old-{name}"
                    os.replace(target, old)
                swapped.append((name, old))
                os.replace(self.staging / name, target)
        except OSError as err:
            for name, old in reversed(swapped):  # put every old folder back
                target = self.out / name
                if target.exists() and not (self.staging / name).exists():
                    os.replace(target, self.staging / name)
                if old is not None:
                    os.replace(old, target)
            raise _os_error(err, self.out) from None
        finally:
            self._remove()


def _is_temp(name: str) -> bool:
    parts = name[len(TMP_PREFIX):].split("-", 3)
    return name.startswith(TMP_PREFIX) and len(parts) == 4 and parts[0].isdigit()


def claim_folder(path: str | os.PathLike, made_by: str, owns: Iterable[str],
                 adopt: Callable[[Path], bool] | None = None) -> None:
    """Make `path` a folder the verb `made_by` writes into file by file (train's run
    folder, tune's output folder), or check that it already is one.

    owns: the names it writes at its top level ("name/" for a sub-folder, everything under
    it). An absent or empty folder is created with a MARKER {"made_by", "owns"}. An existing
    one must carry such a marker by the same verb (other files a user puts beside the owned
    ones are left alone); otherwise (a user's files, another verb's folder) GSMorphError
    naming the path, nothing touched. adopt(path): True for a folder without a marker that
    an earlier gsmorph wrote; holding only owned names, it then gets its marker. A killed writer's temporary files are removed first."""
    path = Path(path)
    owns = list(owns)
    if path.exists() and (not path.is_dir() or path.is_symlink()):
        raise GSMorphError(f"{path}: exists and is not a folder; choose another --out")
    clean_stale_temps(path)
    if path.is_dir() and (path / MARKER).is_file():
        content = _marker_of(path)
        _check_made_by(path, content.get("made_by"), made_by)
        return  # its own folder: files a user put beside the run's are never touched
    if path.is_dir() and any(path.iterdir()) and not (adopt is not None and adopt(path)):
        raise GSMorphError(f"{path}: exists and was not written by `gsmorph {made_by}` (no {MARKER} in it); "
                           "refusing to write into it: choose another --out, or empty the folder yourself")
    names = {o.rstrip("/") for o in owns if not o.endswith("/")}
    folders = {o.rstrip("/") for o in owns if o.endswith("/")}
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            name = entry.name
            if name == MARKER or _is_temp(name):
                continue
            owned = (name in names and (entry.is_file() or entry.is_symlink())) or \
                (name in folders and entry.is_dir() and not entry.is_symlink())
            if not owned:
                raise GSMorphError(f"{path}: holds {name}, which `gsmorph {made_by}` does not write; refusing to "
                                   "write into it: move it away or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).is_file():
        write_json(path / MARKER, {"made_by": made_by, "owns": sorted(owns)})


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the folder `path` (on its MARKER, made by claim_folder)
    while the block runs; a second holder is refused with GSMorphError. The kernel drops
    the lock of a process that dies, so a killed run's lock is taken over by the next."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock
        yield
        return
    marker = Path(path) / MARKER
    try:
        fh = open(marker, "rb")
    except OSError as err:
        raise _os_error(err, marker) from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GSMorphError(f"{path}: another {what} is writing into this folder now; wait for it to "
                               "finish, or choose another --out") from None
        yield
    finally:
        fh.close()


def check_file_replaceable(path: str | os.PathLike, made_by: str) -> None:
    """Raise unless the file `path` is absent or was written by `gsmorph made_by` as its
    provenance sidecar (`<file>.provenance.json`) records: the verb and the file's
    SHA-256 (`sha256`, or `replaces` of a write killed between its two renames)."""
    path = Path(path).absolute()
    if path.is_dir() and not path.is_symlink():
        raise GSMorphError(f"{path}: is a folder; give the file to write")
    side = path.with_name(path.name + ".provenance.json")
    if not path.exists() and not path.is_symlink():
        if side.exists() or side.is_symlink():  # a sidecar alone: ours only if it says so
            try:
                ours = json.loads(side.read_text()).get("made_by") == made_by
            except (OSError, ValueError, AttributeError):
                ours = False
            if not ours:
                raise GSMorphError(f"{side}: exists and was not written by `gsmorph {made_by}`; refusing to "
                                   "replace it: choose another --out")
        return
    if path.is_dir() or path.is_symlink():
        raise GSMorphError(f"{path}: exists and is not a file gsmorph wrote; choose another --out")
    refuse = GSMorphError(f"{path}: exists and was not written by `gsmorph {made_by}` (its {side.name} does not "
                          "record it); refusing to replace it: choose another --out")
    try:
        record = json.loads(side.read_text())
    except (OSError, ValueError):
        raise refuse from None
    if not isinstance(record, dict) or record.get("made_by") != made_by:
        raise refuse
    if sha256(path) not in (record.get("sha256"), record.get("replaces")):
        raise GSMorphError(f"{path}: changed since `gsmorph {made_by}` wrote it (SHA-256 differs from its "
                           f"{side.name}); refusing to replace it: choose another --out")


def write_with_sidecar(path: str | os.PathLike, write: Callable[[Path], None], record: dict, made_by: str) -> None:
    """Write a file (write(tmp_path)) and its provenance sidecar (`record` + made_by, the
    file's sha256 and the one it replaces) so that neither appears without the other: both
    go to temporary names first (a full disk fails here, nothing replaced), then the
    sidecar and the file are renamed into place."""
    path = Path(path)
    side = path.with_name(path.name + ".provenance.json")
    replaces = sha256(path) if path.is_file() else None
    tmp, tmp_side = _tmp_sibling(path), _tmp_sibling(side)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        record = {**record, "made_by": made_by, "sha256": sha256(tmp), "replaces": replaces}
        tmp_side.write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
        os.replace(tmp_side, side)
        os.replace(tmp, path)
    except OSError as err:
        raise _os_error(err, path) from None
    finally:
        for leftover in (tmp, tmp_side):
            if leftover.exists():
                leftover.unlink()


def check_plain_name(name: Any, where: str | os.PathLike, what: str = "subject id") -> str:
    """`name` as a str if it is a plain file name (no '/', '\\', '..', NUL, not absolute, not
    empty, not '.'), so that `<folder>/<name>...` stays inside the folder; GSMorphError
    naming `where` otherwise."""
    text = str(name)
    if (not text or text in (".", "..") or any(c in text for c in "/\\\0")
            or Path(text).is_absolute() or text != text.strip()):
        raise GSMorphError(f"{where}: {what} {text!r} is not a plain name (no '/', '..' or absolute paths)")
    return text


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
