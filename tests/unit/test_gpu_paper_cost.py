"""benchmarks/paper_cost.py --project: the jobs and epochs of a config and their projected
GPU-hours and wall time, checked on a toy config against answers computed by hand."""
from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("paper_cost", REPO / "benchmarks" / "paper_cost.py")
paper_cost = importlib.util.module_from_spec(spec)
sys.modules["paper_cost"] = paper_cost  # dataclasses look their module up
spec.loader.exec_module(paper_cost)
Job = paper_cost.Job
cost_jobs = sys.modules["cost_jobs"]  # beside paper_cost.py, imported by it

# One dataset of 10 subjects (split 7 / 1 / 2), VoxelMorph, four methods: a classical one,
# a fixed-lambda weighted loss, GSMorph and the tuned baseline (4 trials, 2 workers).
TOY = paper_cost.merge(yaml.safe_load((REPO / "config.yaml").read_text()), {
    "datasets": ["acdc"], "backbones": ["voxelmorph"], "seeds": [0],
    "methods": ["initial", "weighted-s", "gsmorph", "weighted-tuned"],
    "synth": {"subjects": 10}, "prepare": {"split_ratios": [0.7, 0.1, 0.2]},
    "tuning": {"workers": 2},
    "method": {"epochs": 10, "val_every": 5, "batch_size": 4, "tune": {"trials": 4}},
})


def toy_rows(subjects: int = 10) -> list[dict]:
    """Per-epoch times given by hand: 40 train pairs in 10 steps of 4; weighted 1 s per
    epoch, surgery 2 s; validation 2 s; start 10 s, load 3, build 1, finish 1; inference 4 s."""
    common = {"device": "cpu", "device_name": "toy", "torch": "x", "dataset": "acdc", "subjects": subjects,
              "size": 64, "backbone": "voxelmorph", "options": "fp32", "batch_size": 4, "train_pairs": 40,
              "val_pairs": 8, "test_pairs": 16, "timed_train_pairs": 40, "timed_val_pairs": 8, "epochs": 6,
              "val_s": 2.0, "start_s": 10.0, "load_s": 3.0, "build_s": 1.0, "finish_s": 1.0, "infer_s": 4.0,
              "peak_mem_mb": "", "val_dice": 0.8, "source": "measured"}
    return [{**common, "family": "weighted", "method": "weighted-m", "train_epoch_s": 1.0},
            {**common, "family": "surgery", "method": "gsmorph", "train_epoch_s": 2.0}]


def as_csv_rows(rows: list[dict], tmp_path: Path) -> list[dict]:
    """Through times.csv and back, as --project reads it."""
    path = tmp_path / "times.csv"
    paper_cost.write_csv(path, rows, paper_cost.TIME_COLUMNS)
    return paper_cost.read_csv(path)


@pytest.fixture(scope="module")
def dry_runs():
    """Snakemake's dry-run text for TOY, once per module: {group_training: text}."""
    return {grouped: cost_jobs.dry_run_text(paper_cost.merge(TOY, {"group_training": grouped}))
            for grouped in (True, False)}


@pytest.fixture(scope="module")
def planned(dry_runs):
    """The workflow's jobs for TOY: {group_training: jobs}."""
    return {grouped: cost_jobs.parse_dry_run(text) for grouped, text in dry_runs.items()}


def test_the_workflow_plans_the_toy_configs_jobs(planned):
    """The dry run's jobs: one synth, prepare, register (Initial) and evaluate; weighted-s and
    GSMorph in one train_group job (group_training) or a train job each; the tuned baseline
    as its study, 2 workers and the tune job; the report, provenance and all."""
    rules = {grouped: sorted(j.rule for j in jobs) for grouped, jobs in planned.items()}
    common = ["all", "evaluate", "prepare", "provenance", "register", "report", "synth", "tune", "tune_study",
              "tune_worker", "tune_worker"]
    assert rules[True] == sorted(common + ["train_group"])
    assert rules[False] == sorted(common + ["train", "train"])
    group = next(j for j in planned[True] if j.rule == "train_group")
    assert group.wildcards == {"dataset": "acdc", "backbone": "voxelmorph", "seed": "0"}
    assert group.methods() == ["weighted-s", "gsmorph"]
    workers = sorted(j.wildcards["worker"] for j in planned[True] if j.rule == "tune_worker")
    assert workers == ["0", "1"]


def test_the_toy_configs_jobs_and_epochs(tmp_path, planned):
    table = paper_cost.time_table(as_csv_rows(toy_rows(), tmp_path))
    counted = paper_cost.count_jobs(TOY, table, "fp32", pruned_fraction=0.5, pruned_epochs=0.4,
                                    planned=planned[False])
    jobs = {j.name: j for j in counted.jobs}
    # 10 epochs, 2 validations (epochs 5, 10); overhead start 10 + load 3 + build 1 + finish 1 = 15
    # plus the inference of the test split (4 s) in the same job
    assert (jobs["acdc/voxelmorph/weighted-s/seed0"].overhead_s, jobs["acdc/voxelmorph/weighted-s/seed0"].gpu_s) \
        == (15, 10 * 1 + 2 * 2 + 4)
    assert (jobs["acdc/voxelmorph/gsmorph/seed0"].overhead_s, jobs["acdc/voxelmorph/gsmorph/seed0"].gpu_s) \
        == (15, 10 * 2 + 2 * 2 + 4)
    # tuning: a trial runs 1 - 0.5 x (1 - 0.4) = 0.7 of the epochs and validations on average:
    # 7 epochs x 1 s + 1.4 validations x 2 s = 9.8 s; 2 trials per worker, each loading,
    # building, finishing (5 s), one start per worker (10 s)
    for w in (0, 1):
        worker = jobs[f"acdc/voxelmorph/weighted-tuned/seed0:tune_worker{w}"]
        assert worker.overhead_s == pytest.approx(10 + 2 * 5)
        assert worker.gpu_s == pytest.approx(2 * 9.8)
        assert worker.epochs == pytest.approx(14)
    # the job writing the study's outputs starts (10 s) and infers with best/ (4 s)
    assert (jobs["acdc/voxelmorph/weighted-tuned/seed0:tune"].overhead_s,
            jobs["acdc/voxelmorph/weighted-tuned/seed0:tune"].gpu_s) == (10, 4)
    assert not [j for j in counted.jobs if j.kind not in ("train", "tune_worker", "tune")]
    assert len(counted.jobs) == 5 and counted.classical == ["register acdc initial"]
    assert sum(j.epochs for j in counted.jobs) == pytest.approx(10 + 10 + 28)


def test_a_grouped_training_job_starts_once(tmp_path, planned):
    """group_training: weighted-s then GSMorph in one process: one start (10 s), each run
    loading, building and finishing (5 s), training, validating and inferring (18 s, 28 s)."""
    table = paper_cost.time_table(as_csv_rows(toy_rows(), tmp_path))
    counted = paper_cost.count_jobs(TOY, table, "fp32", planned=planned[True])
    train = [j for j in counted.jobs if j.kind == "train"]
    assert [j.name for j in train] == ["acdc/voxelmorph/weighted-s+gsmorph/seed0"]
    assert (train[0].overhead_s, train[0].gpu_s, train[0].epochs) == (10 + 2 * 5, 18 + 28, 20)
    assert train[0].family == "weighted+surgery"
    assert len(counted.jobs) == 4


def test_the_toy_configs_projection(tmp_path, planned):
    table = paper_cost.time_table(as_csv_rows(toy_rows(), tmp_path))
    # a job per run, alone, one after another: (29 + 4) + (39 + 4) + 2 x 39.6 + (10 + 4) = 169.2 s
    one, _ = paper_cost.project(TOY, table, "fp32", gpus=1, slots=1, speedup=None, planned=planned[False])
    assert one.gpu_hours * 3600 == pytest.approx(169.2) and one.wall_hours * 3600 == pytest.approx(169.2)
    # two GPUs, one job each, longest first: 43 -> GPU 0, 39.6 -> GPU 1, 39.6 -> GPU 1 (79.2),
    # 33 -> GPU 0 (76), 14 -> GPU 0 (90)
    two, _ = paper_cost.project(TOY, table, "fp32", gpus=2, slots=1, speedup=None, planned=planned[False])
    assert two.wall_hours * 3600 == pytest.approx(90.0)
    assert two.gpu_hours == pytest.approx(one.gpu_hours)
    # grouped: 66 + 2 x 39.6 + 14 = 159.2 s alone; on two GPUs 66 -> GPU 0, 39.6 -> GPU 1,
    # 39.6 -> GPU 1 (79.2), 14 -> GPU 0 (80)
    one, _ = paper_cost.project(TOY, table, "fp32", gpus=1, slots=1, speedup=None, planned=planned[True])
    two, _ = paper_cost.project(TOY, table, "fp32", gpus=2, slots=1, speedup=None, planned=planned[True])
    assert one.wall_hours * 3600 == pytest.approx(159.2) and two.wall_hours * 3600 == pytest.approx(80.0)


def test_more_subjects_scale_the_pairs_by_the_training_subjects(tmp_path, planned):
    """Times measured on 5 subjects (3 / 1 / 1) projected to the config's 10 (7 / 1 / 2):
    steps per epoch from 40 to 40 x 7/3 = 93.3 pairs, i.e. 10 -> 24 steps of 4."""
    table = paper_cost.time_table(as_csv_rows(toy_rows(subjects=5), tmp_path))
    jobs = {j.name: j for j in paper_cost.count_jobs(TOY, table, "fp32", planned=planned[False]).jobs}
    # epochs scaled by 7/3, validation as given, the inference (4 s) by the test subjects, 2/1
    assert jobs["acdc/voxelmorph/weighted-s/seed0"].gpu_s == pytest.approx(10 * 2.4 + 2 * 2 + 4 * 2)
    assert jobs["acdc/voxelmorph/gsmorph/seed0"].gpu_s == pytest.approx(10 * 2 * 2.4 + 2 * 2 + 4 * 2)


def test_timed_pairs_are_scaled_to_the_epoch():
    """A CPU run timing 8 of 40 pairs (2 of 10 steps) at 0.5 s: 2.5 s per epoch."""
    row = paper_cost.Times({**toy_rows()[0], "timed_train_pairs": 8, "train_epoch_s": 0.5,
                            "timed_val_pairs": 2, "val_s": 0.5})
    assert row.epoch_s(None, 4) == pytest.approx(2.5)
    assert row.validation_s(None) == pytest.approx(2.0)


def test_shared_gpu_simulation_by_hand():
    """k = 2 slots on one GPU, S(2) = 1.5: two jobs training together run at 0.75 each."""
    s = {"*": {2: 1.5}}
    assert paper_cost.simulate([Job("a", "train", "d", "b", "f", 0, 3), Job("b", "train", "d", "b", "f", 0, 3)],
                               1, 2, s) == pytest.approx(4.0)
    # A spends 1 s starting (full speed) while B trains alone (rate 1, 2 s of work left);
    # then both train at 0.75: B ends after 2 / 0.75 s (t = 3.667) with A's 3 s of work
    # down to 1; A alone ends at t = 4.667
    jobs = [Job("a", "train", "d", "b", "f", 1, 3), Job("b", "train", "d", "b", "f", 0, 3)]
    assert paper_cost.simulate(jobs, 1, 2, s) == pytest.approx(1 + 2 / 0.75 + 1)
    # one slot: one after another, whatever the speed-up
    assert paper_cost.simulate(jobs, 1, 1, s) == pytest.approx(7.0)


def test_speedup_interpolation_and_parsing():
    points = {2: 1.6, 4: 2.4, 8: 2.2}
    assert [paper_cost.speedup_of(points, m) for m in (1, 2, 3, 4, 6, 8, 16)] == \
        pytest.approx([1.0, 1.6, 2.0, 2.4, 2.3, 2.2, 2.2])
    assert paper_cost.parse_speedup("2:1.6,4:2.4") == {"*": {2: 1.6, 4: 2.4}}
    assert paper_cost.parse_speedup("voxelmorph=2:1.6;transmorph=2:1.2") == \
        {"voxelmorph": {2: 1.6}, "transmorph": {2: 1.2}}


def test_pruning_read_from_a_study(tmp_path):
    path = tmp_path / "trials.csv"
    rows = [("COMPLETE", 30), ("COMPLETE", 30), ("PRUNED", 8), ("PRUNED", 16), ("FAIL", 3)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "epochs_done"])
        writer.writerows([(i, s, e) for i, (s, e) in enumerate(rows)])
    fraction, epochs = paper_cost.pruning_from(path)
    assert fraction == pytest.approx(0.5) and epochs == pytest.approx(0.4)


def test_the_command_writes_the_projection(tmp_path, dry_runs):
    """With the dry run saved beforehand (--planned, as on a GPU machine without Snakemake):
    the grouped TOY, and the same config read with the ungrouped one's jobs."""
    out = tmp_path / "out"
    paper_cost.write_csv(out / "times.csv", toy_rows(), paper_cost.TIME_COLUMNS)
    toy = tmp_path / "toy.yaml"
    toy.write_text(yaml.safe_dump(TOY))
    for grouped, seconds in ((True, 0.04), (False, 0.05)):  # 159.2 s and 169.2 s
        saved = tmp_path / f"jobs-{grouped}.txt"
        saved.write_text(dry_runs[grouped])
        assert paper_cost.main(["--project", "--config", str(toy), "--out-dir", str(out), "--slots", "1", "2",
                                "--speedup", "2:1.5", "--planned", str(saved)]) == 0
        text = (out / "projection.md").read_text()
        assert f"| fp32 (today) | 1 | {seconds:.2f} | {seconds:.2f} | 1.00 |" in text
    assert "goal: at most 1/3" in text and "given, 2:1.5" in text


DRY_RUN = """Building DAG of jobs...
[Wed Dec  2 03:03:36 2026]
rule train_group:
    input: prepared/acdc/subjects.csv
    output: runs/acdc/voxelmorph/weighted-s/seed0/summary.json, runs/acdc/voxelmorph/gsmorph/seed0/summary.json, pairs/acdc/voxelmorph/weighted-s/seed0/index.csv, pairs/acdc/voxelmorph/gsmorph/seed0/index.csv
    log: logs/train/acdc/voxelmorph/group-seed0.log
    jobid: 3
    wildcards: dataset=acdc, backbone=voxelmorph, seed=0
    resources: tmpdir=/tmp, gpu=1
[Wed Dec  2 03:03:36 2026]
localrule all:
    input: results/acdc/metrics.csv
    jobid: 0
    reason: Forced execution
Job stats:
job            count
-----------  -------
train_group        1
all                1
total              2
"""


def test_a_dry_runs_jobs_are_read_from_its_text():
    jobs = cost_jobs.parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["all", "train_group"]  # sorted
    assert jobs[1].wildcards == {"dataset": "acdc", "backbone": "voxelmorph", "seed": "0"}
    assert jobs[1].methods() == ["weighted-s", "gsmorph"] and len(jobs[1].outputs) == 4
    assert jobs[0].wildcards == {} and jobs[0].outputs == ()


def test_a_dry_run_read_short_of_its_total_raises():
    with pytest.raises(RuntimeError, match="listed 2 job block.*a total of 3"):
        cost_jobs.parse_dry_run(DRY_RUN.replace("total              2", "total              3"))
    with pytest.raises(RuntimeError, match="a total of None"):
        cost_jobs.parse_dry_run(DRY_RUN.split("Job stats:")[0])


def test_the_dry_run_ignores_where_the_data_lie(tmp_path):
    """A config naming a dataset root and a split file that do not exist here plans the same
    jobs as the phantom's: the dry run drops them."""
    config = paper_cost.merge(TOY, {"acdc_root": str(tmp_path / "nowhere"),
                                    "prepare": {"split_file": str(tmp_path / "split.csv")}})
    planned = cost_jobs.without_data_paths(config)
    assert planned["acdc_root"] is None and "split_file" not in planned["prepare"]
    assert config["acdc_root"] == str(tmp_path / "nowhere")  # the caller's config is left as it was


def test_a_failing_dry_run_raises_with_snakemakes_message():
    with pytest.raises(RuntimeError, match="dry run of the config failed"):
        cost_jobs.workflow_jobs(paper_cost.merge(TOY, {"methods": ["no-such-method"]}))


def test_the_saved_dry_run_is_the_configs(tmp_path, capsys, planned):
    """`python benchmarks/cost_jobs.py CONFIG` prints the dry run --planned reads back: the
    same jobs as planning the merged config here."""
    toy = tmp_path / "toy.yaml"
    toy.write_text(yaml.safe_dump(TOY))
    assert cost_jobs.main([str(toy)]) == 0
    assert cost_jobs.parse_dry_run(capsys.readouterr().out) == planned[True]
