"""Set-up shared by the component tests.

gsmorph_run: a run folder of `gsmorph train --method gsmorph --backbone voxelmorph --seed 0`
on the prepared ACDC phantom with tiny.NARROW_RUN, trained once per session; tests that
damage or edit it work on a copy.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsmorph.cli import main

from tiny import NARROW_RUN


@pytest.fixture(scope="session")
def gsmorph_run(prepared_acdc, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gsmorph_run") / "run"
    assert main(["train", "--method", "gsmorph", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                 str(prepared_acdc), "--out", str(out), "--set", json.dumps(NARROW_RUN)]) == 0
    return out
