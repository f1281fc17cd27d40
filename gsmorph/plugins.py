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
        except GSMorphError as err:
            raise GSMorphError(f"{ENV}: plugin '{name}': {err}") from None
        except Exception as err:  # the plugin's own code failed on import: say which and how
            where = _plugin_line(err, name)
            raise GSMorphError(f"{ENV}: plugin '{name}' failed on import{where} ({type(err).__name__}: {err})") from None


def _plugin_line(err: BaseException, name: str) -> str:
    """' at <file>:<line>', the innermost frame of the plugin's module in the traceback."""
    import traceback

    module_file = name.replace(".", "/")
    frames = [f for f in traceback.extract_tb(err.__traceback__) if module_file in f.filename.replace("\\", "/")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


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
