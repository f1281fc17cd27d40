"""The SLURM profile for real: a single-node SLURM with one fake GPU on localhost
(start_local_slurm.sh), and a tiny workflow (phantom, prepare, one GPU training job)
submitted through workflow/profiles/slurm by Snakemake's SLURM executor.

Skipped with the reason where slurmctld / munged are not installed or the test cannot
own /etc/slurm/slurm.conf (CI installs Debian's slurm-wlm and munge first).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOOLS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "scontrol", "sinfo")
TINY = {
    "datasets": ["acdc"],
    "backbones": ["voxelmorph"],
    "methods": ["gsmorph"],
    "synth": {"subjects": 4, "seed": 0},
    "prepare": {"size": 32, "seed": 0, "split_ratios": [0.5, 0.25, 0.25]},
    "method": {"epochs": 1, "batch_size": 4, "val_every": 1,
               "backbones": {"voxelmorph": {"features": [4, 8, 8, 8, 8]}}},
    "resources": {"train": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 10}},
}


def _why_not() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"no local SLURM: {', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the local SLURM runs its daemons as root"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not conf.is_symlink():
        return f"{conf} is a real SLURM configuration; not replacing it"
    return None


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    conf = Path("/etc/slurm/slurm.conf")
    if conf.is_symlink() and conf.exists() and not os.readlink(conf).startswith(str(state)):
        pytest.skip(f"{conf} links to another running test cluster ({os.readlink(conf)})")
    start = subprocess.run(["bash", str(HERE / "start_local_slurm.sh"), str(state)],
                           capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, f"local SLURM did not start:\n{start.stdout}\n{start.stderr}"
    yield state
    subprocess.run(["bash", str(HERE / "stop_local_slurm.sh"), str(state)], capture_output=True, timeout=60)


def test_tiny_workflow_through_the_slurm_profile(local_slurm, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    work = tmp_path / "work"
    target = "runs/acdc/voxelmorph/gsmorph/seed0/summary.json"
    cmd = [
        "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--profile", str(REPO / "workflow/profiles/slurm"), "--configfile", str(config),
        # the test cluster's partition, no accounts, no accounting database (squeue for status)
        "--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=10",
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        # the node has 2 CPUs: one per GPU job here instead of the profile's 4
        "--set-resources", "train:cpus_per_gpu=1", "--set-threads", "train=1",
        "--jobs", "2", "--latency-wait", "5", target,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the executor can ignore SIGTERM while polling
        out, _ = proc.communicate()
        pytest.fail(f"the SLURM run did not finish in time:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-6000:]

    summary = yaml.safe_load((work / target).read_text())
    assert summary["epochs_done"] == 1 and summary["method"] == "gsmorph"
    # every job went through sbatch; the training job asked SLURM for one GPU
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", out))
    assert sorted(submitted.values()) == ["prepare", "synth", "train"], out[-3000:]
    train_id = next(job for job, rule in submitted.items() if rule == "train")
    job = subprocess.run(["scontrol", "show", "job", train_id], capture_output=True, text=True).stdout
    assert re.search(r"gres[/:]gpu[:=]1", job), job
    assert "Partition=debug" in job and "JobState=COMPLETED" in job, job
