"""GPU slots: several GPU jobs per GPU, each pinned to one GPU on a multi-GPU machine
(gsmorph/gpu_slots.py; the local profile's `gpu_slots` resource). No GPU is needed: a fake
GPU count (GSMORPH_GPUS) stands in for the machine's GPUs."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gsmorph.gpu_slots import claim_gpu_slot, slot_shell_prefix, visible_gpus
from gsmorph.errors import GSMorphError

REPO = Path(__file__).resolve().parents[2]
PREFIX = slot_shell_prefix(sys.executable)
SNAKEMAKE = pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")


def env_with(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GSMORPH_GPUS", "SLURM_JOB_ID")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.mark.parametrize("env, expected", [
    ({"GSMORPH_GPUS": "2"}, ["0", "1"]),
    ({"CUDA_VISIBLE_DEVICES": "3,5"}, ["3", "5"]),
    ({"CUDA_VISIBLE_DEVICES": "3,5,6", "GSMORPH_GPUS": "2"}, ["3", "5"]),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "GPU-8f2a,GPU-77c1"}, ["GPU-8f2a", "GPU-77c1"]),
])
def test_visible_gpus(env, expected):
    assert visible_gpus(env) == expected


def test_a_bad_gpu_count_is_named():
    with pytest.raises(GSMorphError, match="GSMORPH_GPUS='two'"):
        visible_gpus({"GSMORPH_GPUS": "two"})


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"])


def test_claims_are_distinct_spread_k_per_gpu_and_a_dead_owner_frees_its_slot(tmp_path):
    owners = [sleeper() for _ in range(4)]
    try:
        claims = [claim_gpu_slot(tmp_path, p.pid, ["0", "1"]) for p in owners]
        assert claims == [(0, "0"), (1, "1"), (2, "0"), (3, "1")]
        owners[1].kill()
        owners[1].wait()
        newcomer = sleeper()
        owners.append(newcomer)
        assert claim_gpu_slot(tmp_path, newcomer.pid, ["0", "1"]) == (1, "1")  # the killed job's slot
        another = sleeper()
        owners.append(another)
        assert claim_gpu_slot(tmp_path, another.pid, ["0", "1"]) == (4, "0")
    finally:
        for p in owners:
            p.kill()
            p.wait()


def test_a_recycled_process_id_does_not_hold_a_slot(tmp_path):
    (tmp_path / "slot0").write_text(f"{os.getpid()} 1\n")  # this pid, but another start time
    if not Path(f"/proc/{os.getpid()}/stat").is_file():
        pytest.skip("no /proc: start times are not compared on this system")
    assert claim_gpu_slot(tmp_path, os.getpid(), ["0", "1"])[0] == 0


def start_job(tmp_path: Path, name: str, env: dict, seconds: int = 60) -> subprocess.Popen:
    """A stand-in GPU job: the workflow's slot prefix, then it records what it was given."""
    out = tmp_path / f"{name}.txt"
    script = PREFIX + f'echo "${{CUDA_VISIBLE_DEVICES:-unset}} ${{GSMORPH_GPU_SLOT:-none}}" > {out} && sleep {seconds}'
    return subprocess.Popen(["bash", "-c", "set -euo pipefail; " + script], cwd=tmp_path, env=env,
                            start_new_session=True)


def wait_for(paths: list[Path], timeout: float = 60) -> list[list[str]]:
    end = time.time() + timeout
    while time.time() < end:
        if all(p.is_file() and p.read_text().strip() for p in paths):
            return [p.read_text().split() for p in paths]
        time.sleep(0.1)
    raise AssertionError(f"jobs did not start: {[p for p in paths if not p.is_file()]}")


def test_concurrent_jobs_get_distinct_slots_and_visible_devices_and_a_killed_job_frees_its_slot(tmp_path):
    env = env_with(GSMORPH_GPUS="2")
    jobs = [start_job(tmp_path, f"job{i}", env) for i in range(4)]  # started at once
    try:
        seen = wait_for([tmp_path / f"job{i}.txt" for i in range(4)])
        slots = sorted(int(slot) for _, slot in seen)
        assert slots == [0, 1, 2, 3]
        assert Counter(gpu for gpu, _ in seen) == {"0": 2, "1": 2}  # k = 2 per fake GPU
        for gpu, slot in seen:
            assert gpu == str(int(slot) % 2)
        # kill -9 one job's whole process group, as Snakemake does on a failure or ^C
        victim = next(i for i, (_, slot) in enumerate(seen) if slot == "2")
        os.killpg(jobs[victim].pid, signal.SIGKILL)
        jobs[victim].wait()
        jobs.append(start_job(tmp_path, "late", env))
        assert wait_for([tmp_path / "late.txt"])[0] == ["0", "2"]
    finally:
        for job in jobs:
            try:
                os.killpg(job.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            job.wait()


def test_as_many_jobs_as_gpus_get_one_gpu_each(tmp_path):
    env = env_with(GSMORPH_GPUS="4")
    jobs = [start_job(tmp_path, f"job{i}", env) for i in range(4)]
    try:
        seen = wait_for([tmp_path / f"job{i}.txt" for i in range(4)])
        assert sorted(gpu for gpu, _ in seen) == ["0", "1", "2", "3"]  # distinct CUDA_VISIBLE_DEVICES
    finally:
        for job in jobs:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


@pytest.mark.parametrize("extra", [{"GSMORPH_GPUS": "1"}, {"GSMORPH_GPUS": "0"}, {"CUDA_VISIBLE_DEVICES": "7"},
                                   {"GSMORPH_GPUS": "4", "SLURM_JOB_ID": "12"}])
def test_one_gpu_none_or_a_slurm_job_pins_nothing(tmp_path, extra):
    out = subprocess.run([sys.executable, "-m", "gsmorph.gpu_slots", "gpu-slot", "--owner", str(os.getpid()),
                          "--dir", str(tmp_path / "slots")], capture_output=True, text=True, env=env_with(**extra))
    assert out.returncode == 0 and out.stdout.strip() == "true"
    assert not (tmp_path / "slots").exists()


def test_the_slot_command_starts_without_torch():
    code = ("import sys, gsmorph.gpu_slots as d; d.visible_gpus({'GSMORPH_GPUS': '2'}); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], env=env_with()).returncode == 0


SNAKEFILE = """
import time
from gsmorph.gpu_slots import slot_shell_prefix

rule all:
    input: expand("done/{i}.txt", i=range(JOBS))

rule gpu_job:
    output: "done/{i}.txt"
    params: gpu_slot=slot_shell_prefix(PYTHON)
    resources: gpu_slots=1
    shell: "{params.gpu_slot}echo $CUDA_VISIBLE_DEVICES $GSMORPH_GPU_SLOT $(date +%s.%N) > {output}.tmp"
           " && sleep 1.5 && echo $(date +%s.%N) >> {output}.tmp && mv {output}.tmp {output}"
"""


@SNAKEMAKE
def test_snakemake_runs_k_jobs_per_fake_gpu_through_the_local_profile(tmp_path):
    """Eight jobs through Snakemake with the local profile and --resources gpu_slots=4 on
    two fake GPUs: at most 4 at once, at most 2 on one GPU, every GPU used."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(f"JOBS = 8\nPYTHON = {sys.executable!r}\n" + SNAKEFILE)
    proc = subprocess.run(["snakemake", "--snakefile", str(snakefile), "--directory", str(tmp_path / "w"),
                           "--profile", str(REPO / "workflow/profiles/local"), "--workflow-profile", "none",
                           "--resources", "gpu_slots=4", "--cores", "8", "--quiet"],
                          capture_output=True, text=True, env=env_with(GSMORPH_GPUS="2"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = []
    for path in sorted((tmp_path / "w" / "done").iterdir()):
        first, second = path.read_text().splitlines()
        gpu, slot, start = first.split()
        jobs.append((gpu, int(slot), float(start), float(second)))
    assert len(jobs) == 8 and {g for g, *_ in jobs} == {"0", "1"}
    assert all(gpu == str(slot % 2) for gpu, slot, *_ in jobs)
    for _, _, start, _ in jobs:  # at every job's start: who runs, and on which GPU
        running = [(g, s) for g, s, a, b in jobs if a <= start < b]
        assert len(running) <= 4
        assert max(Counter(g for g, _ in running).values()) <= 2
        assert len({s for _, s in running}) == len(running)  # distinct slots


@SNAKEMAKE
def test_the_workflow_rules_start_with_the_slot_prefix(tmp_path):
    """The GPU rules of the real workflow claim a slot before their verb and ask for
    `gpu_slots`; the CPU rules do neither (dry run)."""
    proc = subprocess.run(["snakemake", "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory",
                           str(tmp_path), "--profile", str(REPO / "workflow/profiles/local")],
                          capture_output=True, text=True, env=env_with(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = proc.stdout.split("\nrule ")[1:]
    assert blocks
    for block in blocks:
        rule = block.split(":")[0]
        resources = next((line for line in block.splitlines() if line.strip().startswith("resources:")), "")
        command = next((line for line in block.splitlines() if "Shell command:" in line), "")
        gpu = rule in ("train", "train_group", "tune", "tune_worker")
        assert ("gpu_slots=1" in resources) == gpu, (rule, resources)
        assert ("gpu-slot --owner $$" in command) == gpu, (rule, command)
        if gpu:
            assert f'eval "$GSMORPH_SLOT" && gsmorph {rule.split("_")[0]} ' in command
