"""Provenance: what made an output file (config, seed, code version, packages, host)."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from gsmorph.io import write_json

PACKAGES = (
    "gsmorph-bench", "torch", "monai", "numpy", "scipy", "nibabel", "pandas", "optuna",
    "SimpleITK", "antspyx", "snakemake", "matplotlib", "seaborn",
)


def git_commit(start: str | os.PathLike | None = None) -> str | None:
    """The commit of the repository holding this package (with '+dirty'), or None."""
    here = Path(start or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def provenance(config: Any = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON-able record of how an output was made."""
    record = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "config": config,
        "seed": seed,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": package_versions(),
    }
    record.update(extra)
    return record


def write_provenance(path: str | os.PathLike, config: Any = None, seed: int | None = None, **extra: Any) -> None:
    """Write provenance JSON to `path` (a sidecar such as `metrics.csv.provenance.json`
    or a folder's `provenance.json`)."""
    write_json(path, provenance(config, seed, **extra))


def sidecar(path: str | os.PathLike) -> Path:
    """The provenance sidecar of a file: `<file>.provenance.json`."""
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")
