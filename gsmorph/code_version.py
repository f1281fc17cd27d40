"""The version of the code a verb runs: a hash of the source of its module and of every
project module that module imports, transitively, lazy (function-level) imports included.

The workflow gives each job this hash as a parameter, so Snakemake reruns a job when the
code it runs changed, and only then (a checkout that only touches file times reruns
nothing); training records it in its resume fingerprint. Imports are read from the
source (ast), nothing is executed.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the folder holding gsmorph/ and baselines/
PACKAGES = ("gsmorph", "baselines")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of project module `name` (a .py file or a package's __init__.py)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """Project modules (and candidate module names) imported anywhere in `path`'s source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n.split(".")[0] in PACKAGES}


def dependencies(module: str, root: Path = ROOT) -> dict[str, Path]:
    """{module name: source file} of `module` and everything it imports, transitively
    (parent packages included: importing a.b runs a/__init__.py)."""
    todo, seen, files = [module], set(), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = module_file(name, root)
        if path is not None:
            files[name] = path
            todo.extend(sorted(imported_modules(path, name)))
    return files


@lru_cache(maxsize=None)
def code_version(module: str, root: Path = ROOT) -> str:
    """sha256 (16 hex digits) of the sources `module` depends on; 'missing' if none."""
    files = dependencies(module, root)
    if not files:
        return "missing"
    digest = hashlib.sha256()
    for path in sorted(files.values(), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(b"\0".join([path.relative_to(root).as_posix().encode(), path.read_bytes(), b""]))
    return digest.hexdigest()[:16]
