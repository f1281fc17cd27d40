"""Methods and backbones from outside this package.

Every module named in the environment variable GSMORPH_PLUGINS (comma-separated import
names) is imported once, when gsmorph.methods or gsmorph.backbones is first imported, so
that it can call `gsmorph.methods.register(...)` and `gsmorph.backbones.register(...)`.
The variable reaches every process of a run (CLI verbs, Snakemake and its jobs), so a
method or backbone added this way appears in `--help`, the workflow and the report alike.
"""
from __future__ import annotations

import importlib
import os

from gsmorph.errors import GSMorphError

ENV = "GSMORPH_PLUGINS"
_loaded = False


def names() -> list[str]:
    return [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]


def load() -> None:
    """Import the plugin modules (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in names():
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise GSMorphError(f"{ENV}: cannot import '{name}' ({err})") from None


def resolve(dotted: str):
    """Import 'module:attribute' (a trainer class, registrar, tuner or network builder)."""
    module, _, attribute = dotted.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise GSMorphError(f"cannot load '{dotted}' ({type(err).__name__}: {err})") from None
    return obj
