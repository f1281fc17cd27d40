"""What the workflow says when it plans a run: phantom datasets and GPU jobs without CUDA
(gsmorph/workflow_notices.py, printed by workflow/rules/common.smk)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gsmorph.workflow_notices import gpu_notice, phantom_notices

REPO = Path(__file__).resolve().parents[2]


def test_one_phantom_notice_per_dataset_without_a_root():
    config = {"datasets": ["acdc", "mnm"], "acdc_root": "/data/ACDC", "mnm_root": None, "method": {"epochs": 500}}
    lines = phantom_notices(config)
    assert len(lines) == 1 and lines[0].startswith("mnm: phantom (no mnm_root): synthetic M&Ms-1-format data")
    assert "(500 training epochs)" in lines[0] and "--config mnm_root=" in lines[0]
    assert len(phantom_notices({"datasets": ["acdc", "mnm"], "method": {}})) == 2
    assert phantom_notices({"datasets": ["acdc"], "acdc_root": "/data/ACDC"}) == []


def test_gpu_warning_only_for_gpu_jobs_run_here_without_a_gpu():
    (line,) = gpu_notice(30, [], local=True)
    assert "no CUDA GPU visible" in line and "30 learned runs will train on the CPU" in line
    assert gpu_notice(30, ["0"], local=True) == []  # a GPU is there
    assert gpu_notice(30, [], local=False) == []    # a cluster's nodes have their own
    assert gpu_notice(0, [], local=True) == []      # no learned run asks for one


def dry_run(tmp_path, *args, **env):
    cmd = ["snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Notice: ")]


def test_a_dry_run_prints_the_notices(tmp_path):
    acdc = tmp_path / "ACDC" / "database"
    (acdc / "training" / "patient001").mkdir(parents=True)  # the layout of the download
    notices = dry_run(tmp_path / "w1", "--config", f"acdc_root={acdc}", GSMORPH_GPUS="0")
    assert [n.split(":")[1].strip() for n in notices] == ["mnm", "no CUDA GPU visible here (no NVIDIA driver lists one, or CUDA_VISIBLE_DEVICES is empty)"]
    assert "the train and tune jobs of the 30 learned runs" in notices[1]  # 2 datasets x 15 learned runs
    notices = dry_run(tmp_path / "w2", GSMORPH_GPUS="1")
    assert [n.split(":")[1].strip() for n in notices] == ["acdc", "mnm"]
