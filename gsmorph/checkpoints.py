"""Checkpoint files: the one place torch.save and torch.load are called.

Every checkpoint is written atomically and its SHA-256 returned, so the run that wrote it
can record the digest (run.json `checksums`, last.pt `best_sha256`); loading checks the
digest when one is given, and every failure names the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_path, sha256


def save(obj: Any, path: str | os.PathLike, before_rename: Callable[[str], None] | None = None) -> str:
    """torch.save `obj` to `path` atomically; return the file's SHA-256. before_rename(digest)
    runs once the complete file is written and before it replaces `path` (the run records
    the new digest beside the old one there, so a kill at any instant leaves a last.pt the
    record names)."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch reports a full disk as an iostream error
            raise GSMorphError(f"{path}: cannot write checkpoint ({err}); is the disk full?") from None
        digest = sha256(tmp)
        if before_rename is not None:
            before_rename(digest)
    return digest


def load(path: str | os.PathLike, device: Any = "cpu", expected_sha256: str | None = None) -> Any:
    """torch.load(weights_only=True) of `path`, after checking its SHA-256 if given."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise GSMorphError(f"{path}: checkpoint not found")
    if expected_sha256 is not None:
        found = sha256(path)
        if found != expected_sha256:
            raise GSMorphError(f"{path}: damaged or replaced: SHA-256 {found[:16]}... differs from the "
                               f"{expected_sha256[:16]}... recorded when it was written")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated or corrupt files raise many types
        raise GSMorphError(f"{path}: cannot load checkpoint ({type(err).__name__}: {err})") from None
