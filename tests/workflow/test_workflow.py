"""The Snakemake workflow: DAG, config schema, lint, a tiny run of the whole default DAG,
and reruns decided by config and code changes.

The tiny run (one module-scoped fixture) executes every rule of the default DAG (both
phantom datasets, both backbones, every method) at a scale that takes a few minutes on
2 cores; the other tests are dry runs.
"""
from __future__ import annotations

import base64
import copy
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from gsmorph.config import DEFAULTS, method_schema
from gsmorph.workflow_config import workflow_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())

# Scale of the tiny run: every method and dataset of config.yaml, each step as small as it goes.
TINY = {
    "synth": {"subjects": 8, "seed": 0},
    "prepare": {"size": 32, "seed": 0, "split_ratios": [0.5, 0.25, 0.25]},
    "method": {
        "epochs": 1,
        "batch_size": 8,
        "val_every": 1,
        "max_train_pairs": 16,
        "max_val_pairs": 8,
        "backbones": {
            "voxelmorph": {"features": [4, 8, 8, 8, 8]},
            "transmorph": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [2, 2, 2, 2], "window_size": 4},
        },
        "hypermorph": {"val_lambdas": 3, "hidden": 8, "layers": 2},
        "tune": {"trials": 2},
        "demons": {"iterations": 5},
        "syn": {"reg_iterations": [4, 0, 0], "aff_iterations": [10, 0, 0, 0]},
    },
}
DISPLAY = {  # Table 1 row names; {B} is the backbone's display name
    "initial": "Initial", "demons": "Demons", "syn": "SyN", "weighted-s": "{B}-s", "weighted-m": "{B}-m",
    "weighted-l": "{B}-l", "weighted-tuned": "Tuned", "hypermorph": "HyperMorph", "gs-agr": "GS-Agr",
    "gs-pcgrad": "GS-PCGrad", "gsmorph": "GSMorph",
}
BACKBONE_DISPLAY = {"voxelmorph": "VoxelMorph", "transmorph": "TransMorph"}


class HtmlTable(html.parser.HTMLParser):
    """The body rows of the first <tbody> of an HTML page, as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self.row, self.cell, self.in_body = [], None, None, False

    @classmethod
    def parse(cls, page: str) -> list[list[str]]:
        parser = cls()
        parser.feed(page)
        return [r for r in parser.rows if len(r) > 1]

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def snakemake(*args, cwd: Path, snakefile: Path = REPO / "Snakefile", timeout: int = 600,
              check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = ["snakemake", "--snakefile", str(snakefile), "--directory", str(cwd), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: {rule: count}."""
    table = output.split("Job stats:")[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def shell_commands(output: str, verb: str = "") -> list[str]:
    """The shell commands printed by `snakemake -n -p` that call `gsmorph <verb>`."""
    prefix = "Shell command: "
    lines = [line.split(prefix, 1)[1].strip() for line in output.splitlines() if prefix in line]
    parts = [part.strip() for line in lines for part in line.split(" && ")]
    return [part for part in parts if part.startswith(f"gsmorph {verb}".strip())]


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def expected_jobs(cfg: dict) -> dict[str, int]:
    """What the default DAG must hold, derived from a config (HyperMorph: VoxelMorph only)."""
    d, s = len(cfg["datasets"]), len(cfg["seeds"])
    classical = [m for m in cfg["methods"] if m in ("initial", "demons", "syn")]
    learned = [(b, m) for b in cfg["backbones"] for m in cfg["methods"]
               if m not in classical and (m != "hypermorph" or b == "voxelmorph")]
    trained = [bm for bm in learned if bm[1] != "weighted-tuned"]
    tuned = [bm for bm in learned if bm[1] == "weighted-tuned"]
    # group_training: the trained methods every backbone has train in one job per backbone
    grouped = {m for _, m in trained if m != "hypermorph"} if cfg["group_training"] else set()
    grouped = grouped if len(grouped) >= 2 else set()
    trained = [bm for bm in trained if bm[1] not in grouped]
    phantoms = sum(1 for ds in cfg["datasets"] if not cfg.get(f"{ds}_root"))
    jobs = {"synth": phantoms, "prepare": d, "register": d * len(classical), "train": d * s * len(trained),
            "train_group": d * s * len(cfg["backbones"]) * bool(grouped),
            "tune_study": d * s * len(tuned), "tune": d * s * len(tuned),
            "evaluate": d, "report": 1, "provenance": 1, "all": 1}
    if cfg["tuning"]["workers"] > 1:
        jobs["tune_worker"] = d * s * len(tuned) * cfg["tuning"]["workers"]
    return {k: v for k, v in jobs.items() if v}


def merged(*configs: dict) -> dict:
    out = copy.deepcopy(configs[0])
    for cfg in configs[1:]:
        for key, value in cfg.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ----------------------------------------------------------------------------- dry runs

@pytest.fixture(scope="module")
def default_dry_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("dry")
    proc = snakemake("-n", "-p", cwd=work)
    return work, proc.stdout


def test_dry_run_lists_the_whole_default_dag(default_dry_run):
    work, out = default_dry_run
    assert job_counts(out) == expected_jobs(CONFIG)
    assert {p.name for p in work.iterdir()} <= {".snakemake"}  # a dry run writes nothing else


def test_dry_run_of_the_paper_config_with_real_roots(tmp_path):
    acdc = tmp_path / "ACDC" / "database"
    (acdc / "training" / "patient001").mkdir(parents=True)  # the layout of the download
    proc = snakemake("-n", "-p", "--configfile", REPO / "workflow/configs/paper.yaml",
                     "--config", f"acdc_root={acdc}", cwd=tmp_path / "work")
    cfg = merged(CONFIG, PAPER, {"acdc_root": str(acdc)})
    assert job_counts(proc.stdout) == expected_jobs(cfg)
    assert expected_jobs(cfg)["tune_worker"] == 2 * 4 * 2  # 4 workers per study
    # the workers share the trials; only the job writing the study's outputs infers
    tune = shell_commands(proc.stdout, "tune")
    assert len(tune) == 2 * 2 * (4 + 1) and sum("--pairs-out" in line for line in tune) == 2 * 2
    prepare = shell_commands(proc.stdout, "prepare")
    assert any(f"--dataset acdc --raw {acdc}" in line and "--size 128" in line for line in prepare)
    assert any("--dataset mnm --raw raw/mnm" in line for line in prepare)
    assert len(prepare) == 2 and all("--intensity minmax" in line for line in prepare)  # the paper's code
    assert not any("--subjects-file" in line for line in prepare)  # every labelled subject unless pinned
    train = shell_commands(proc.stdout, "train")
    assert len(train) == expected_jobs(cfg)["train"]
    assert any('"epochs":500' in line and '"batch_size":32' in line and "--seed 3407" in line for line in train)
    # each backbone's own optimiser, and only its own
    for backbone, optimizer in (("voxelmorph", "adamw"), ("transmorph", "adam")):
        mine = [line for line in train if f"--backbone {backbone}" in line]
        assert mine and all(f'"optim":{{"{backbone}":{{' in line and f'"optimizer":"{optimizer}"' in line
                            for line in mine)
        assert not any(f'"{other}":{{"amsgrad"' in line for line in mine
                       for other in ("voxelmorph", "transmorph") if other != backbone)


def test_method_commands_follow_the_cli(default_dry_run):
    out = default_dry_run[1]
    lines = shell_commands(out)
    lam = {**DEFAULTS["lambdas"], **CONFIG["method"].get("lambdas", {})}
    # group_training: one process trains the methods both backbones have, each into its folder,
    # and registers the evaluated split with each (--pairs-out)
    group = [l for l in lines if "--method weighted-s weighted-m weighted-l gs-agr gs-pcgrad gsmorph --seed 0" in l]
    assert len(group) == 4
    assert any("--out 'runs/acdc/voxelmorph/{method}/seed0'" in l
               and "--pairs-out 'pairs/acdc/voxelmorph/{method}/seed0' --split test" in l
               and f'"lambdas":{{"l":{lam["l"]},"m":{lam["m"]},"s":{lam["s"]}}}' in l for l in group)
    assert any("--method hypermorph --seed 0 --out runs/acdc/voxelmorph/hypermorph/seed0" in l
               and "--pairs-out pairs/acdc/voxelmorph/hypermorph/seed0 --split test" in l for l in lines)
    assert any(l.startswith("gsmorph tune --method weighted-tuned") and "--out runs/mnm/transmorph/weighted-tuned/seed0"
               in l and "--pairs-out pairs/mnm/transmorph/weighted-tuned/seed0 --split test" in l for l in lines)
    assert not any(l.startswith("gsmorph infer") for l in lines)
    assert any(l.startswith("gsmorph register --method syn --prepared prepared/acdc --split test "
                            "--out pairs/acdc/none/syn/seed0") for l in lines)
    tune = [l for l in lines if l.startswith("gsmorph tune")]
    assert len(tune) == 4 and all("--storage runs/optuna/" in l and l.count("--trials") == 1 for l in tune)
    # each verb gets only its own part of the method config
    assert all('"syn"' not in l for l in lines if l.startswith("gsmorph train"))
    assert any('"hypermorph"' in l for l in lines if "--method hypermorph" in l)
    train = [l for l in lines if l.startswith("gsmorph train")]
    assert all('"optim":{"transmorph":{"lr":0.003}}' in l for l in train if "--backbone transmorph" in l)
    assert all('"optim"' not in l for l in train if "--backbone voxelmorph" in l)
    assert all('"hypermorph"' not in l for l in lines if "--method gsmorph" in l)


def test_one_job_per_run_without_group_training(tmp_path):
    proc = snakemake("-n", "-p", "--config", "group_training=false", cwd=tmp_path)
    assert job_counts(proc.stdout) == expected_jobs(merged(CONFIG, {"group_training": False}))
    train = shell_commands(proc.stdout, "train")
    lam = {**DEFAULTS["lambdas"], **CONFIG["method"].get("lambdas", {})}
    assert any("--method weighted-s --seed 0 --out runs/acdc/voxelmorph/weighted-s/seed0" in l
               and f'"lambdas":{{"s":{lam["s"]}}}' in l
               and "--pairs-out pairs/acdc/voxelmorph/weighted-s/seed0 --split test" in l for l in train)
    assert all(line.count("--method ") == 1 and len(line.split("--method ")[1].split(" --")[0].split()) == 1
               for line in train)


def test_prepare_commands_follow_intensity_and_subjects_file(default_dry_run, tmp_path):
    prepare = shell_commands(default_dry_run[1], "prepare")
    assert len(prepare) == 2 and all("--intensity percentile" in l and "--subjects-file" not in l for l in prepare)
    cohort = tmp_path / "cohort.txt"
    cohort.write_text("A0S9V9\n")
    extra = write_config(tmp_path / "cohort.yaml", {"prepare": {"intensity": "minmax",
                                                                "subjects_file": {"mnm": str(cohort)}}})
    proc = snakemake("-n", "-p", "--configfile", extra, cwd=tmp_path / "w")
    prepare = shell_commands(proc.stdout, "prepare")
    assert all("--intensity minmax" in l for l in prepare) and len(prepare) == 2
    assert [l for l in prepare if "--subjects-file" in l] == [l for l in prepare if "--dataset mnm" in l]
    assert f"--subjects-file {cohort}" in next(l for l in prepare if "--dataset mnm" in l)
    # an input of the mnm prepare job (editing the file prepares again), not of the acdc one
    inputs = [line for line in proc.stdout.splitlines() if line.strip().startswith("input: raw/")]
    assert [line.strip() for line in inputs if str(cohort) in line] == \
        [f"input: raw/mnm/phantom_provenance.json, {cohort}"]
    # a wrong value stops the run naming the key; a listed file that is not there, too
    bad = write_config(tmp_path / "bad.yaml", {"prepare": {"intensity": "zscore"}})
    proc = snakemake("-n", "--configfile", bad, cwd=tmp_path / "w2", check=False)
    assert proc.returncode != 0 and "intensity" in proc.stdout + proc.stderr
    gone = write_config(tmp_path / "gone.yaml", {"prepare": {"subjects_file": str(tmp_path / "gone.txt")}})
    proc = snakemake("-n", "--configfile", gone, cwd=tmp_path / "w3", check=False)
    assert proc.returncode != 0 and "gone.txt" in proc.stdout + proc.stderr


def test_slurm_profile_dry_run(tmp_path):
    proc = snakemake("-n", "--profile", REPO / "workflow/profiles/slurm", cwd=tmp_path)
    assert job_counts(proc.stdout) == expected_jobs(CONFIG)
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account"} <= set(profile["default-resources"])
    assert "infer" not in profile["set-resources"]  # training and tuning jobs infer themselves
    for rule in ("train", "train_group", "tune", "tune_worker"):
        assert profile["set-resources"][rule]["cpus_per_gpu"] >= 1


def test_local_profile_limits_gpu_jobs(tmp_path):
    proc = snakemake("-n", "--profile", REPO / "workflow/profiles/local", cwd=tmp_path)
    assert job_counts(proc.stdout) == expected_jobs(CONFIG)
    for block in proc.stdout.split("\nrule ")[1:]:
        rule = block.split(":")[0]
        resources = next((l for l in block.splitlines() if l.strip().startswith("resources:")), "")
        assert ("gpu=1" in resources) == (rule in ("train", "train_group", "tune", "tune_worker")), (rule, resources)


# ----------------------------------------------------------------------------- config and schema

def test_schema_stops_a_misspelt_key_before_any_job(tmp_path):
    proc = snakemake("--cores", "1", "--config", "datsets=[acdc]", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "invalid config" in proc.stderr and "'datsets' was unexpected" in proc.stderr
    assert len(proc.stderr.splitlines()) < 30  # the offending key, not a dump of schema and config
    assert {p.name for p in tmp_path.iterdir()} <= {".snakemake"}


def test_config_as_people_type_it_on_the_command_line(tmp_path):
    proc = snakemake("-n", "-p", "--config", "epochs=3", "datasets=acdc", "tune={trials: 2}", "methods=[initial,gsmorph]",
                     cwd=tmp_path)
    train = shell_commands(proc.stdout, "train")
    assert train and all('"epochs":3' in line for line in train)  # a flat method key reaches the trainer
    assert job_counts(proc.stdout)["prepare"] == 1  # datasets=acdc: one item for a list key
    proc = snakemake("-n", "-p", "--config", 'method={"epochs": 4}', cwd=tmp_path)
    assert all('"epochs":4' in line for line in shell_commands(proc.stdout, "train"))  # nested values typed


def test_a_missing_or_wrong_dataset_root_fails_the_dry_run_naming_it(tmp_path):
    proc = snakemake("-n", "--config", "acdc_root=/nonexistent/ACDC", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "config key 'acdc_root': /nonexistent/ACDC: folder not found" in proc.stdout + proc.stderr
    (tmp_path / "empty").mkdir()
    proc = snakemake("-n", "--config", f"mnm_root={tmp_path / 'empty'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "not an M&Ms-1 folder" in proc.stdout + proc.stderr


def test_paper_and_quick_configs_write_to_their_own_folders(tmp_path):
    for config, folder in (("paper.yaml", "paper"), ("quick.yaml", "quick")):
        assert yaml.safe_load((REPO / "workflow/configs" / config).read_text())["output_dir"] == folder
        snakemake("-n", "--configfile", REPO / "workflow/configs" / config, cwd=tmp_path)
    assert CONFIG["output_dir"] == "."
    # a real (one-phantom-subject) step of the quick config lands under quick/, nothing beside it
    # (run from the folder itself: an explicit --directory takes the place of output_dir)
    proc = subprocess.run(["snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1", "--configfile",
                           str(REPO / "workflow/configs/quick.yaml"), "--config", "synth={subjects: 1}", "--until",
                           "synth"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "quick" / "raw" / "acdc" / "phantom_provenance.json").is_file()
    assert not (tmp_path / "raw").exists()


def test_schema_stops_a_misspelt_method_key(tmp_path):
    extra = write_config(tmp_path / "typo.yaml", {"method": {"epoch": 3}})
    proc = snakemake("-n", "--configfile", extra, cwd=tmp_path / "w", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'epoch' was unexpected" in text and "config key 'method'" in text


@pytest.mark.parametrize("change, key", [
    ({"seeds": "zero"}, "seeds"),
    ({"split": "testing"}, "split"),
    ({"prepare": {"size": "128"}}, "size"),
    ({"method": {"tune": {"trials": "many"}}}, "trials"),
    ({"resources": {"train": {"gpus": 1}}}, "gpus"),
    ({"methods": ["gsmorph", "voxelmorph-s"]}, "methods"),
    ({"tuning": {"workers": 2, "storage": "x"}}, "storage"),
])
def test_schema_rejects_wrong_types_naming_the_key(change, key):
    schema = workflow_schema(SCHEMA)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(merged(CONFIG, change)))
    assert errors
    assert any(key in (list(e.absolute_path) + [e.message]) or key in e.message for e in errors), \
        [e.message for e in errors]


def test_schema_method_section_mirrors_gsmorph_defaults():
    method = method_schema()
    assert set(method["properties"]) == set(DEFAULTS)
    for key, value in DEFAULTS.items():
        if isinstance(value, dict):
            assert set(method["properties"][key]["properties"]) == set(value), key
    # the defaults themselves are a valid method section, a misspelt one is not
    validator = jsonschema.Draft202012Validator(method)
    validator.validate(copy.deepcopy(DEFAULTS))
    assert not validator.is_valid({"lambda": 0.1})
    assert not validator.is_valid({"similarity": "ncc"})


def test_the_default_run_has_power_and_several_validation_subjects():
    from gsmorph.data.splits import split_counts

    for dataset in CONFIG["datasets"]:
        subjects = CONFIG["synth"]["subjects"]
        n = subjects[dataset] if isinstance(subjects, dict) else subjects
        counts = split_counts(n, tuple(CONFIG["prepare"]["split_ratios"]))
        # >= 10 test subjects: a paired two-sided Wilcoxon test can reach p < 0.05 (2 / 2^10)
        assert counts["test"] >= 10 and counts["val"] >= 2, counts
    assert merged(CONFIG, PAPER)["prepare"]["split_ratios"] == [0.7, 0.1, 0.2]


def test_configs_validate_and_paper_restores_every_shrunk_key():
    schema = workflow_schema(SCHEMA)
    jsonschema.Draft202012Validator(schema).validate(CONFIG)
    jsonschema.Draft202012Validator(schema).validate(merged(CONFIG, PAPER))
    jsonschema.Draft202012Validator(schema).validate(merged(CONFIG, TINY))
    paper = merged(CONFIG, PAPER)
    # paper.yaml is loaded on top of config.yaml: every method key the quick default sets
    # is set back to gsmorph's defaults (the paper's setting)
    for key, value in CONFIG["method"].items():
        assert key in PAPER["method"], key
        if isinstance(value, dict) and key != "backbones":
            for sub in value:
                assert paper["method"][key][sub] == DEFAULTS[key][sub], (key, sub)
        else:
            assert paper["method"][key] == DEFAULTS[key], key
    assert paper["prepare"]["size"] == 128 and paper["method"]["epochs"] == 500
    assert paper["method"]["batch_size"] == 32 and "lr" not in paper["method"]
    assert paper["method"]["optim"]["voxelmorph"]["optimizer"] == "adamw"
    assert paper["method"]["optim"]["voxelmorph"]["lr"] == 5e-3
    assert paper["method"]["optim"]["transmorph"]["optimizer"] == "adam"
    assert paper["method"]["optim"]["transmorph"]["lr"] == 1e-4
    assert paper["method"]["tune"]["trials"] >= 20


def test_lint_leaves_only_the_explained_note(tmp_path):
    proc = snakemake("--lint", cwd=tmp_path, check=False)
    notes = set(re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, flags=re.M))
    # explained in README.md ("Lint"): the software is the installed package
    # (scripts/setup.sh), not a per-rule conda env
    assert notes <= {"Specify a conda environment or container for each rule."}, notes


# ----------------------------------------------------------------------------- the tiny run

def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def git(*args, cwd: Path) -> str:
    cmd = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole default DAG at tiny scale, run as a user runs it: inside a clone (a git
    repository of a copy of the workflow and the package sources, so that a test may change
    a verb's source without touching the repository), every job importing that copy."""
    root = tmp_path_factory.mktemp("tiny")
    src = root / "src"
    src.mkdir()
    for name in ("Snakefile", "config.yaml", ".gitignore"):
        shutil.copy(REPO / name, src / name)
    for name in ("workflow", "gsmorph", "baselines", "docs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    git("init", "-q", cwd=src)
    git("add", "-A", cwd=src)
    git("commit", "-qm", "clone", cwd=src)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    tiny = write_config(root / "tiny.yaml", TINY)
    proc = snakemake("--cores", "2", "--configfile", tiny, cwd=src, snakefile=src / "Snakefile", timeout=1800, env=env)
    return {"work": src, "src": src, "tiny": tiny, "env": env, "stdout": proc.stdout + proc.stderr}


@pytest.fixture(scope="module")
def tiny_report(tiny_run):
    """`snakemake --report` of the tiny run: the HTML report's path."""
    snakemake("--report", "results/report.html", "--configfile", tiny_run["tiny"], cwd=tiny_run["work"],
              snakefile=tiny_run["src"] / "Snakefile", env=tiny_run["env"])
    return tiny_run["work"] / "results" / "report.html"


@pytest.mark.slow
def test_tiny_run_makes_every_artifact(tiny_run):
    work = tiny_run["work"]
    cfg = merged(CONFIG, TINY)
    methods = cfg["methods"]
    for dataset in cfg["datasets"]:
        metrics = pd.read_csv(work / f"results/{dataset}/metrics.csv", keep_default_na=False,
                              na_values={"value": ["", "nan", "NaN"]})
        got = set(zip(metrics.backbone, metrics.method))
        want = {("none", m) for m in ("initial", "demons", "syn")}
        want |= {(b, m) for b in cfg["backbones"] for m in methods
                 if m not in ("initial", "demons", "syn") and (m != "hypermorph" or b == "voxelmorph")}
        assert got == want, dataset
        dice = metrics[metrics.metric == "dice"].value
        # NaN only where a structure is absent from a slice (undefined by design)
        assert dice.notna().mean() > 0.8 and dice.dropna().between(0, 1).all()
        for method in methods:
            part = metrics[(metrics.method == method) & (metrics.metric == "njd_pct")].value
            assert len(part) and part.notna().all(), method
        assert (work / f"results/{dataset}/metrics.csv.provenance.json").is_file()

    # Table 1: a row per method with numbers, per backbone
    for backbone in cfg["backbones"]:
        table = (work / f"results/tables/table1_{backbone}.md").read_text()
        for method in methods:
            if method == "hypermorph" and backbone != "voxelmorph":
                continue
            name = DISPLAY[method].format(B=BACKBONE_DISPLAY[backbone])
            row = next((l for l in table.splitlines() if l.startswith(f"| {name} ")), None)
            assert row is not None, f"no row {name} in table1_{backbone}.md"
            assert re.search(r"\d+\.\d", row), row
    assert (work / "results/tables/table1_combined.tex").read_text().count("\\\\") >= len(methods)

    # figures: real images of a readable size
    figures = sorted((work / "results/figures").glob("*.png"))
    stems = {p.stem for p in figures}
    for dataset in cfg["datasets"]:
        for backbone in cfg["backbones"]:
            for kind in ("dice_boxplot", "qualitative", "pareto"):
                assert f"{kind}_{dataset}_{backbone}" in stems
            assert f"conflicts_{dataset}_{backbone}_gsmorph" in stems
    assert "tuning_cost" in stems
    for png in figures:
        width, height = png_size(png)
        assert width >= 400 and height >= 250, (png.name, width, height)
        assert png.stat().st_size > 10_000, png.name
        assert png.with_suffix(".pdf").stat().st_size > 1_000

    # statistics and provenance
    summary = pd.read_csv(work / "results/stats/summary.csv")
    assert len(summary) and summary.select_dtypes("number").notna().any().any()
    prov = json.loads((work / "results/provenance.json").read_text())
    assert prov["config"]["methods"] == methods and prov["seed"] == cfg["seeds"]
    assert prov["packages"]["snakemake"] and prov["packages"]["torch"]
    assert set(prov["code_versions"]) >= {"train", "tune", "evaluate", "report"}

    # every job of a verb left its benchmark
    counts = expected_jobs(cfg)
    verb_rules = ("synth", "prepare", "register", "train", "train_group", "tune_worker", "tune", "evaluate", "report")
    assert len(list((work / "logs/benchmarks").rglob("*.tsv"))) == sum(counts.get(r, 0) for r in verb_rules)
    tuned = json.loads((work / "runs/acdc/voxelmorph/weighted-tuned/seed0/study.json").read_text())
    assert tuned["n_trials"] == TINY["method"]["tune"]["trials"]


@pytest.mark.slow
def test_tiny_run_leaves_the_clone_clean(tiny_run):
    """A run changes no tracked file and leaves nothing unignored; its provenance names the
    clone's commit, not '+dirty'. The README figure is a maintainer's target of its own."""
    src, work = tiny_run["src"], tiny_run["work"]
    head = git("rev-parse", "HEAD", cwd=src).strip()
    assert git("status", "--porcelain", "--untracked-files=all", cwd=src) == ""
    prov = json.loads((work / "results/provenance.json").read_text())
    assert prov["config"]["git_commit"] == head and prov["git_commit"] == head
    sidecar = json.loads((work / "results/acdc/metrics.csv.provenance.json").read_text())
    assert sidecar["git_commit"] == head
    assert "readme_figure" not in tiny_run["stdout"]
    # the maintainer's target copies this run's figure over the tracked one
    snakemake("readme_figure", "--cores", "1", "--configfile", tiny_run["tiny"], cwd=work,
              snakefile=src / "Snakefile", env=tiny_run["env"])
    try:
        assert git("status", "--porcelain", cwd=src).split() == ["M", "docs/default_run_dice_boxplot.png"]
        assert (src / "docs/default_run_dice_boxplot.png").read_bytes() == \
            (work / "results/figures/dice_boxplot_acdc_voxelmorph.png").read_bytes()
    finally:
        git("checkout", "--", "docs/default_run_dice_boxplot.png", cwd=src)


@pytest.mark.slow
def test_tiny_run_html_report(tiny_run, tiny_report):
    work = tiny_run["work"]
    html = tiny_report.read_text(errors="replace")
    assert len(html) > 100_000
    # the front page: what was run (data, scale, methods, commit) and how to read it
    front = json.loads(re.search(r"var workflow_desc = (\".*?\");\n", html, re.S).group(1))
    assert "This run" in front and "synthetic phantom" in front and "not the paper's scale" in front
    assert "System Message" not in front  # the reStructuredText rendered cleanly
    assert "git commit" in front and "How to read it" in front
    # Table 1 as HTML tables, one row per method, and every figure in its category
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))
    table = results["results/tables/table1_combined.html"]
    assert table["mime_type"] == "text/html"
    page = base64.b64decode(table["data_uri"].split("base64,", 1)[1]).decode()
    rows = HtmlTable.parse(page)
    cfg = merged(CONFIG, TINY)
    assert len(rows) >= len(cfg["methods"]) and rows[0][0] == "Initial"
    assert any(r[0] == "GSMorph" and any(c != "--" for c in r[1:]) for r in rows)
    assert "ACDC-format phantom" in page
    categories = {path: category for category, subs in
                  json.loads(re.search(r"var categories = (\{.*?\});\n", html, re.S).group(1)).items()
                  for paths in subs.values() for path in paths}
    assert sorted(set(categories.values()))[:2] == ["1. Table 1", "2. Results"]  # listed first
    for key, category in (("dice_boxplot_acdc_voxelmorph.png", "2. Results"),
                          ("tuning_cost.png", "3. Trade-offs and cost"),
                          ("training_curves_acdc_voxelmorph.png", "4. Diagnostics")):
        path = f"results/figures/{key}"
        assert "phantom" in results[path]["caption"], key  # each caption says the data
        assert categories[path] == category, (key, categories[path])


@pytest.mark.slow
def test_tiny_run_html_report_in_chromium(tiny_report):
    """Headless Chromium opens the report and visits every category, subcategory and item
    (each label toggle's values too) and a search: no console error, no empty view, every
    figure, table, statistic and the provenance record shown in the page (none download-only)."""
    import report_browser

    reason = report_browser.unavailable()
    if reason:
        pytest.skip(reason)
    visit = report_browser.visit_report(tiny_report)
    assert visit.errors == []
    assert visit.empty == []
    assert visit.download_only == []
    html = tiny_report.read_text(errors="replace")
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))
    assert results and set(visit.shown) == set(results), sorted(set(results) ^ set(visit.shown))
    viewable = set(results)
    assert all(visit.shown[p] == "img" for p in viewable if p.endswith(".png"))
    assert any(p.startswith("results/stats/") for p in visit.shown)  # statistics as pages
    assert len(visit.categories) == 6 and visit.search_rows > 0


@pytest.mark.slow
def test_tiny_run_reruns_only_what_a_change_concerns(tiny_run):
    work, src, tiny = tiny_run["work"], tiny_run["src"], tiny_run["tiny"]
    up_to_date = snakemake("-n", "--configfile", tiny, cwd=work, snakefile=src / "Snakefile")
    assert "Nothing to be done" in up_to_date.stdout + up_to_date.stderr

    # a method-config change: only Demons' pairs and what reads them
    demons = write_config(work.parent / "demons.yaml", {"method": {"demons": {"iterations": 6}}})
    proc = snakemake("-n", "--configfile", tiny, demons, cwd=work, snakefile=src / "Snakefile")
    assert job_counts(proc.stdout) == {"register": 2, "evaluate": 2, "report": 1, "provenance": 1, "all": 1}

    # a code change in one verb's sources: only that verb's jobs and what follows
    source = src / "gsmorph" / "commands" / "evaluate.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# changed\n")
        proc = snakemake("-n", "--configfile", tiny, cwd=work, snakefile=src / "Snakefile")
        assert job_counts(proc.stdout) == {"evaluate": 2, "report": 1, "provenance": 1, "all": 1}
    finally:
        source.write_text(original)
