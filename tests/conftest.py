"""Session-wide test data: phantoms written by `gsmorph synth` and prepared by `gsmorph prepare`.

raw_acdc, raw_mnm: 8 labelled subjects each (seed 0), raw layouts of the downloads.
prepared_acdc, prepared_mnm: those prepared with --size 64 --seed 0 (train, val, test all non-empty).

Each test is marked with its layer, the folder it lives in (`pytest -m unit`): unit,
components, workflow or slurm. The tiny training configs are in tests/tiny.py; the
component tests' trained run in tests/components/conftest.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from gsmorph.cli import main

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "components", "workflow", "slurm")
N_SUBJECTS = 8
SEED = 0
SIZE = 64


def pytest_collection_modifyitems(items) -> None:
    """Mark each test with the layer folder it lives in."""
    for item in items:
        layer = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(layer)


def _synth(tmp_path_factory, fmt: str) -> Path:
    out = tmp_path_factory.mktemp(f"raw_{fmt}") / fmt
    rc = main(["synth", "--format", fmt, "--out", str(out), "--subjects", str(N_SUBJECTS), "--seed", str(SEED)])
    assert rc == 0, f"gsmorph synth --format {fmt} failed"
    return out


def _prepare(tmp_path_factory, fmt: str, raw: Path) -> Path:
    out = tmp_path_factory.mktemp(f"prepared_{fmt}") / fmt
    rc = main(["prepare", "--dataset", fmt, "--raw", str(raw), "--out", str(out), "--size", str(SIZE),
               "--seed", str(SEED)])
    assert rc == 0, f"gsmorph prepare --dataset {fmt} failed"
    return out


@pytest.fixture(scope="session")
def raw_acdc(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory, "acdc")


@pytest.fixture(scope="session")
def raw_mnm(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory, "mnm")


@pytest.fixture(scope="session")
def prepared_acdc(tmp_path_factory, raw_acdc) -> Path:
    return _prepare(tmp_path_factory, "acdc", raw_acdc)


@pytest.fixture(scope="session")
def prepared_mnm(tmp_path_factory, raw_mnm) -> Path:
    return _prepare(tmp_path_factory, "mnm", raw_mnm)
