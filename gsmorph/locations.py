"""Paths recorded inside output folders (pairs.json, run.json, study.json, provenance.json).

They are written relative to the folder that holds the file, so a results tree copied or
moved as a whole (off cluster scratch, to another machine) still finds its data; paths
written as absolute by earlier versions are still read as they are.
"""
from __future__ import annotations

import os
from pathlib import Path


def relative(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """`path` relative to `folder` (both resolved; neither needs to exist), POSIX style."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def resolve(recorded: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """The absolute path a recorded path names: itself when absolute, else taken from
    `folder` (the folder holding the file that recorded it)."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    return Path(os.path.normpath(Path(folder).resolve() / path))
