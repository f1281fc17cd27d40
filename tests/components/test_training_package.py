"""The training package's seams: injected data, the resumable state declared once, the
network rebuilt from run.json alone (old run folders too), and the one liveness check."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from gsmorph import plugins
from gsmorph.config import load_config
from gsmorph.errors import GSMorphError
from gsmorph.inference import load_run
from gsmorph.processes import pid_alive, start_time
from gsmorph.training import TrainingData, TrainingState, train_method
from gsmorph.training import data as training_data

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def tiny_cfg(**overrides):
    cfg = {"backbones": {"voxelmorph": {"features": [4, 8, 8]}}, "epochs": 2, "batch_size": 4, "val_every": 1,
           "max_train_pairs": 8, "max_val_pairs": 4, "device": "cpu", "num_threads": 1,
           "hypermorph": {"hidden": 8, "layers": 2, "val_lambdas": 3, "fine_lambdas": 2}}
    cfg.update(overrides)
    return load_config(None, cfg)


def weights(run):
    return torch.load(run / "best.pt", weights_only=True)


def pair(prepared, device="cpu"):
    bucket = training_data.load_split(prepared, "test", tiny_cfg(), torch.device(device), 2, 0)[0]
    return bucket["moving"], bucket["fixed"]


@pytest.fixture(scope="module")
def runs(prepared_acdc, tmp_path_factory):
    """A weighted-loss run and a HyperMorph run, trained once."""
    root = tmp_path_factory.mktemp("package_runs")
    train_method(prepared_acdc, "voxelmorph", "weighted", 0, root / "weighted", tiny_cfg(), lam=0.1)
    train_method(prepared_acdc, "voxelmorph", "hypermorph", 0, root / "hypermorph", tiny_cfg())
    return root


# --------------------------------------------------------------------- injected data
def test_injected_data_gives_the_same_run_without_reading_the_pairs(prepared_acdc, runs, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    data = TrainingData.load(prepared_acdc, cfg, torch.device("cpu"), 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer read the prepared folder's pairs")

    monkeypatch.setattr(training_data, "load_split", refuse)
    train_method(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", cfg, lam=0.1, data=data)
    expected, got = weights(runs / "weighted"), weights(tmp_path / "run")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    strip = [",".join(r.split(",")[:4]) for r in (runs / "weighted" / "train_log.csv").read_text().splitlines()]
    assert strip == [",".join(r.split(",")[:4]) for r in (tmp_path / "run" / "train_log.csv").read_text().splitlines()]


def test_injected_data_without_training_pairs_is_refused(prepared_acdc, tmp_path):
    cfg = tiny_cfg()
    val = TrainingData.load(prepared_acdc, cfg, torch.device("cpu"), 0).val
    with pytest.raises(GSMorphError, match="no training pairs"):
        train_method(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", cfg, lam=0.1,
                     data=TrainingData(train=[], val=val))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_config_dict_the_schema_refuses_is_refused_by_the_trainer(prepared_acdc, tmp_path):
    """A config built by hand rather than by load_config meets the same schema: the value
    checks live there, not in each trainer."""
    from baselines.hypermorph import HyperMorphTrainer

    for key, value, trainer in [("epochs", 0, train_method), ("batch_size", -2, train_method),
                                ("hypermorph", {"endpoint_prob": 1.5}, None),
                                ("hypermorph", {"mse_sigma": -0.1}, None)]:
        cfg = tiny_cfg()
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
        with pytest.raises(GSMorphError, match=f"config key '{key}"):
            if trainer is None:
                HyperMorphTrainer(prepared_acdc, "voxelmorph", "hypermorph", 0, tmp_path / "h", cfg)
            else:
                trainer(prepared_acdc, "voxelmorph", "weighted", 0, tmp_path / "run", cfg, lam=0.1)
    assert not (tmp_path / "run").exists() and not (tmp_path / "h").exists()


# ---------------------------------------------------------------- the resumable state
def test_training_state_round_trips_through_the_checkpoint_entries():
    state = TrainingState(epoch=7, best_val_dice=0.8, best_epoch=5, best_val_njd_pct=0.25, best_sha256="ab",
                          log_rows=[{"epoch": 1}], conflict_rows=[{"group": "g"}], wall_s=12.5,
                          selection_score=0.79, stopped_early=True)
    entries = state.entries({"best_score": 0.79, "since_best": 2})
    # last.pt's own names: the log rows under "log", the selection's fields with the tracker's
    assert entries["log"] == [{"epoch": 1}] and entries["conflicts"] == [{"group": "g"}]
    assert entries["selection"] == {"best_score": 0.79, "since_best": 2, "selection_score": 0.79,
                                    "stopped_early": True}
    back, selection = TrainingState.from_entries(entries)
    assert back == state and selection == entries["selection"]
    assert back.log_rows is not state.log_rows  # a copy: the restored run appends to its own


def test_a_checkpoint_from_before_model_selection_chose_by_best_dice():
    entries = TrainingState(epoch=3, best_val_dice=0.6, best_epoch=2).entries({})
    del entries["selection"]
    state, selection = TrainingState.from_entries(entries)
    assert state.selection_score == 0.6 and state.stopped_early is False
    assert selection == {"best_score": 0.6, "since_best": 0, "selection_score": 0.6, "stopped_early": False}


# ------------------------------------------------------- the network from run.json alone
@pytest.mark.parametrize("method", ["weighted", "hypermorph"])
def test_inference_needs_no_trainer_class_and_old_run_folders_give_the_same(prepared_acdc, runs, tmp_path,
                                                                            monkeypatch, method):
    run = runs / method
    info = json.loads((run / "run.json").read_text())
    assert info["network"]["kwargs"] and info["network"]["inputs"] == (
        [info["hyper_input"]] if method == "hypermorph" else [])
    moving, fixed = pair(prepared_acdc)
    resolve = plugins.resolve

    def no_trainers(dotted):
        if dotted == info["trainer"]:
            raise AssertionError(f"imported the trainer {dotted}")
        return resolve(dotted)

    monkeypatch.setattr(plugins, "resolve", no_trainers)
    predict, _, _ = load_run(run, device="cpu")
    new = predict(moving, fixed)
    monkeypatch.setattr(plugins, "resolve", resolve)

    old = tmp_path / "old"  # a run folder of before the record: rebuilt by its trainer class
    shutil.copytree(run, old)
    del info["network"]
    (old / "run.json").write_text(json.dumps(info))
    predict_old, _, _ = load_run(old, device="cpu")
    assert torch.equal(predict_old(moving, fixed), new)
    assert new.shape == (2, 2, *moving.shape[2:]) and new.abs().sum() > 0


def test_a_network_record_naming_another_builder_is_refused(runs, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(runs / "weighted", run)
    info = json.loads((run / "run.json").read_text())
    imported = []
    resolve = plugins.resolve
    monkeypatch.setattr(plugins, "resolve", lambda dotted: imported.append(dotted) or resolve(dotted))
    for builder in ("baselines.hypernet:HyperUNet", "os:system"):
        info["network"]["builder"] = builder
        (run / "run.json").write_text(json.dumps(info))
        with pytest.raises(GSMorphError, match=f"cannot rebuild the network .*'{builder}' is not one"):
            load_run(run, device="cpu")
    assert imported == []
    info["network"] = {**json.loads((runs / "weighted" / "run.json").read_text())["network"], "int_steps": 3}
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(GSMorphError, match="'network.int_steps' 3 disagrees"):
        load_run(run, device="cpu")


def test_an_unfinished_hypermorph_record_is_refused(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "hypermorph", run)
    info = json.loads((run / "run.json").read_text())
    info["network"]["inputs"] = [None]  # what run.json holds before lambda is chosen
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(GSMorphError, match="did training finish"):
        load_run(run, device="cpu")


# ----------------------------------------------------------------------- liveness
def test_pid_alive_tells_a_running_process_from_an_ended_or_recycled_one():
    me = os.getpid()
    assert pid_alive(me) and pid_alive(me, start_time(me))
    if start_time(me) is not None:  # Linux: a recycled id (another start time) is not the same process
        assert not pid_alive(me, str(int(start_time(me)) + 1))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


# ------------------------------------------------------------------------- the hooks
def test_the_readme_lists_every_trainer_hook_and_only_those():
    """README's "Extending" section and gsmorph/training/__init__.py name the same hooks as
    the Trainer's methods documented as one ("Hook: ..."), plus the two older-run ones."""
    import re
    from pathlib import Path

    import gsmorph.training as training
    from gsmorph.training import Trainer

    hooks = {name for name in dir(Trainer) if (getattr(getattr(Trainer, name), "__doc__", None) or "")
             .startswith("Hook:")} | {"build_from_info", "predictor"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Extending", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+)\(", section))
    assert hooks <= listed and listed - hooks <= {"Trainer", "f", "save_checkpoint"}  # and the registrar's f
    block = training.__doc__.split("calling these hooks", 1)[1].split("A run folder", 1)[0]
    assert set(re.findall(r"(\w+)\(", block)) == hooks
