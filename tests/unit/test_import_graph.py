"""The project's import graph: the core (gsmorph/) never imports baselines/, and no cycle,
lazy (function-level) imports included."""
from __future__ import annotations

from pathlib import Path

from gsmorph.code_version import ROOT, imported_modules, module_file

PACKAGES = ("gsmorph", "baselines")


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules its source imports (an `from a import b` edge goes to
    a.b when that is a module, else to a)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path, name):
            if imported in modules:
                targets.add(imported)
        # `from a import b`: keep a.b when it is a module, drop a (the package itself)
        # unless nothing more specific was imported from it
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)} - {name}
    return graph


def test_the_core_never_imports_baselines():
    graph = import_graph()
    offenders = {m: sorted(t for t in ts if t.startswith("baselines")) for m, ts in graph.items()
                 if m.startswith("gsmorph")}
    assert not {m: t for m, t in offenders.items() if t}


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # gsmorph.training.trainer imports gsmorph.networks only inside functions
    assert "gsmorph.networks" in graph["gsmorph.training.trainer"]
    assert module_file("gsmorph.training") is not None
