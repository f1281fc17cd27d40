"""Extending the benchmark: a method and a backbone added from outside the package (the
README's "Extending" section) appear everywhere the built-in ones do: `gsmorph train
--help`, the workflow's DAG, training and inference, and the report's table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gsmorph.evaluate import COLUMNS

from tiny import tiny_set

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV = {**os.environ, "GSMORPH_PLUGINS": "toy_plugin",
       "PYTHONPATH": os.pathsep.join([str(HERE / "plugins"), str(REPO), os.environ.get("PYTHONPATH", "")])}
TINY = tiny_set(backbones={"tinynet": {"width": 3}}, without=("num_threads",))


def gsmorph(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gsmorph.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"gsmorph {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_the_plugin_adds_a_method_and_a_backbone_to_the_cli():
    text = gsmorph("train", "--help").stdout
    assert "toy" in text.split("--method")[1].split("]")[0]
    assert "tinynet" in text.split("--backbone")[1].split("}")[0]
    # without the plugin neither exists
    plain = subprocess.run([sys.executable, "-m", "gsmorph.cli", "train", "--help"], capture_output=True, text=True,
                           env={k: v for k, v in ENV.items() if k != "GSMORPH_PLUGINS"})
    assert "toy" not in plain.stdout and "tinynet" not in plain.stdout


def test_the_toy_method_trains_on_the_toy_backbone_and_infers(prepared_acdc, tmp_path):
    run = tmp_path / "run"
    gsmorph("train", "--prepared", str(prepared_acdc), "--backbone", "tinynet", "--method", "toy", "--seed", "0",
            "--out", str(run), "--set", TINY)
    info = json.loads((run / "run.json").read_text())
    assert info["trainer"] == "toy_trainer:ToyTrainer" and info["lam"] == 0.05
    gsmorph("infer", "--run", str(run), "--prepared", str(prepared_acdc), "--out", str(tmp_path / "pairs"))
    assert (tmp_path / "pairs" / "index.csv").is_file()


def test_the_workflow_plans_the_toy_method_on_every_backbone(tmp_path):
    proc = subprocess.run(["snakemake", "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory",
                           str(tmp_path), "--config", "methods=[initial,gsmorph,toy]", "backbones=[voxelmorph,tinynet]",
                           "datasets=[acdc]"], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for backbone in ("voxelmorph", "tinynet"):  # trained with GSMorph in one job (group_training)
        assert f"--backbone {backbone} --method gsmorph toy" in proc.stdout
        assert f"pairs/acdc/{backbone}/toy/seed0/index.csv" in proc.stdout


def test_the_report_table_names_the_toy_method(tmp_path):
    rows = []
    for method, backbone, base in (("initial", "none", 0.6), ("gsmorph", "tinynet", 0.8), ("toy", "tinynet", 0.7)):
        for subject in range(4):
            for structure in ("LV", "Myo", "RV"):
                rows.append(dict(dataset="acdc", backbone=backbone, method=method, seed=0, subject=f"s{subject}",
                                 slice=0, metric="dice", structure=structure, value=base + 0.01 * subject))
    metrics = tmp_path / "metrics.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(metrics, index=False)
    gsmorph("report", "--metrics", str(metrics), "--no-runs", "--out", str(tmp_path / "results"), "--n-boot", "50")
    table = (tmp_path / "results" / "tables" / "table1_tinynet.md").read_text()
    lines = table.splitlines()
    assert any(line.startswith("| Toy-TinyNet ") for line in lines)
    # in table order: after the built-in methods
    order = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "Method" not in line]
    assert order == ["Initial", "GSMorph", "Toy-TinyNet"]
