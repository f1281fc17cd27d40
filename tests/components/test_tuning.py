"""Optuna tuning of the weighted baseline: storage, resume, parallel workers, pruning, outputs.

Most tests use a stand-in training function (instant, with a known Dice(lambda)), so that
the study logic is tested exactly; one test runs the real CLI with tiny training runs.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from baselines import tuning
from gsmorph.config import load_config
from gsmorph.errors import GSMorphError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def known_dice(lam: float) -> float:
    """Stand-in validation Dice: peaks at lambda = 0.01, falls 0.1 per decade."""
    return 0.9 - 0.1 * abs(math.log10(lam) + 2.0)


def known_njd(lam: float) -> float:
    """Stand-in folding: 2 % at lambda 1e-4, falls 1 % per decade of lambda, floor 0."""
    return max(0.0, -2.0 - math.log10(lam)) * 1.0


def fake_train(prepared, backbone, method, seed, out, cfg, lam=None, report=None, sleep_s=0.0):
    """Writes a run folder like train_run and reports a known Dice each epoch."""
    assert method == "weighted"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dice = known_dice(lam)
    for epoch in range(1, cfg["epochs"] + 1):  # as the training loop: epochs count from 1
        time.sleep(sleep_s)
        if report is not None:
            report(epoch, dice)
    (out / "run.json").write_text(json.dumps({"method": method, "lam": lam, "backbone": backbone}))
    (out / "best.pt").write_bytes(b"weights")
    summary = {"best_val_dice": dice, "val_njd_pct": known_njd(lam), "device": "cpu",
               "epochs_done": cfg["epochs"], "wall_s": 0.0, "best_epoch": cfg["epochs"] - 1}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def slow_fake_train(*args, **kwargs):
    return fake_train(*args, sleep_s=0.05, **kwargs)


def parity_train(prepared, backbone, method, seed, out, cfg, lam=None, report=None):
    """Dice 0.9 for even trial numbers, 0.1 for odd ones (read from the run folder name)."""
    number = int(Path(out).name.split("_")[1])
    dice = 0.9 if number % 2 == 0 else 0.1
    for epoch in range(1, cfg["epochs"] + 1):
        report(epoch, dice)
    return fake_train(prepared, backbone, method, seed, out, cfg, lam=lam, report=None)


def cfg_for(**tune):
    return load_config(None, {"epochs": 3, "tune": {"heartbeat_s": 0.2, "stale_after_s": 5.0, **tune}})


@pytest.fixture()
def prepared(tmp_path):
    folder = tmp_path / "prepared"
    folder.mkdir()
    return str(folder)


def finished(study):
    trials = study.get_trials()
    retried = tuning.retried_numbers(trials)
    return [t for t in trials if tuning.is_finished(t, retried)]


def load(storage, name):
    store, _ = tuning.resolve_storage(storage)
    return optuna.load_study(study_name=name, storage=store)


# ---------------------------------------------------------------------------- storage

def test_resolve_storage_kinds(tmp_path):
    _, url = tuning.resolve_storage(str(tmp_path / "a.db"))
    assert url == f"sqlite:///{tmp_path / 'a.db'}"
    store, url = tuning.resolve_storage(str(tmp_path / "b.log"))
    assert url == f"journal://{tmp_path / 'b.log'}"
    assert isinstance(store, optuna.storages.JournalStorage)
    store, url = tuning.resolve_storage(f"journal://{tmp_path / 'c.log'}")
    assert isinstance(store, optuna.storages.JournalStorage) and url.endswith("c.log")
    with pytest.raises(GSMorphError, match="storage 'study.txt'"):
        tuning.resolve_storage("study.txt")
    with pytest.raises(GSMorphError, match="cannot open"):
        tuning.resolve_storage("nosuchdialect://x")


def test_trial_seeded_sampler_is_reproducible_and_distinct(tmp_path):
    def lams(seed):
        study = optuna.create_study(direction="maximize", sampler=tuning.TrialSeededTPE(seed))
        out = []
        for _ in range(4):
            trial = study.ask()
            out.append(trial.suggest_float("lam", 1e-4, 1.0, log=True))
            study.tell(trial, known_dice(out[-1]))
        return out

    a, b, c = lams(7), lams(7), lams(8)
    assert a == b
    assert len(set(a)) == 4 and a != c


# ---------------------------------------------------------------------------- resume

def test_study_persists_and_resumes_on_sqlite(tmp_path, prepared):
    storage = str(tmp_path / "study.db")
    out = tmp_path / "tune"
    cfg = cfg_for()
    info2 = tuning.tune(prepared, "voxelmorph", 2, storage, "s", 3, str(out), cfg, train_fn=fake_train)
    first = pd.read_csv(out / "trials.csv")
    assert info2["n_trials"] == 2 and list(first["number"]) == [0, 1]

    info3 = tuning.tune(prepared, "voxelmorph", 3, storage, "s", 3, str(out), cfg, train_fn=fake_train)
    again = pd.read_csv(out / "trials.csv")
    assert info3["n_trials"] == 3 and len(finished(load(storage, "s"))) == 3
    pd.testing.assert_frame_equal(again.iloc[:2][["number", "lam", "val_dice"]],
                                  first[["number", "lam", "val_dice"]])
    # same seed, fresh study: the same first two lambdas (trial k samples with seed + k)
    tuning.tune(prepared, "voxelmorph", 2, str(tmp_path / "other.db"), "s", 3, str(tmp_path / "t2"), cfg,
                train_fn=fake_train)
    assert list(pd.read_csv(tmp_path / "t2" / "trials.csv")["lam"]) == list(first["lam"])


def test_rerun_with_other_settings_is_refused(tmp_path, prepared):
    storage = str(tmp_path / "study.db")
    tuning.tune(prepared, "voxelmorph", 1, storage, "s", 0, str(tmp_path / "o"), cfg_for(), train_fn=fake_train)
    with pytest.raises(GSMorphError, match="lam_high"):
        tuning.tune(prepared, "voxelmorph", 2, storage, "s", 0, str(tmp_path / "o"), cfg_for(lam_high=0.5),
                    train_fn=fake_train)


def test_killed_worker_trial_is_failed_and_retried(tmp_path, prepared):
    """A RUNNING trial of a dead process is marked interrupted, not counted, and its lambda rerun."""
    storage = str(tmp_path / "study.log")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store, _ = tuning.resolve_storage(storage)
    cfg = cfg_for()
    settings = tuning.study_settings("voxelmorph", prepared, 0, cfg)
    study = tuning.open_study(store, storage, "s", 0, cfg, settings)
    ghost = study.ask()
    lam = ghost.suggest_float("lam", 1e-4, 1.0, log=True)
    ghost.set_user_attr("worker_host", socket.gethostname())
    ghost.set_user_attr("worker_pid", dead.pid)
    ghost.set_user_attr("worker_start", None)
    ghost.set_user_attr("elapsed_s", 12.5)

    info = tuning.tune(prepared, "voxelmorph", 2, storage, "s", 0, str(tmp_path / "o"), cfg, train_fn=fake_train)
    study = load(storage, "s")
    states = {t.number: (t.state, t.user_attrs.get(tuning.NOT_COUNTED)) for t in study.get_trials()}
    assert states[0] == (optuna.trial.TrialState.FAIL, "interrupted")
    assert info["n_trials"] == 2 and len(finished(study)) == 2
    retry = study.trials[1]
    assert retry.params["lam"] == lam and retry.user_attrs["retry_of"] == 0
    frame = pd.read_csv(tmp_path / "o" / "trials.csv")
    assert frame.loc[frame["number"] == 0, "wall_s"].item() == 12.5  # partial work is in the cost
    assert info["total_wall_s"] >= 12.5


# ---------------------------------------------------------------------------- parallel

@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_concurrent_workers_on_one_study(tmp_path, prepared, kind):
    """Journal file: the cluster case. SQLite: two workers on a fresh file (schema race)."""
    storage = f"journal://{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "tune"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from test_tuning import slow_fake_train, cfg_for
        from baselines.tuning import tune
        tune({prepared!r}, "voxelmorph", 6, {storage!r}, "par", 11, {str(out)!r}, cfg_for(),
             train_fn=slow_fake_train)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    study = load(storage, "par")
    done = finished(study)
    assert len(done) == 6
    assert len({t.number for t in done}) == 6
    assert len({t.params["lam"] for t in done}) == 6  # workers never proposed the same lambda
    workers = {t.user_attrs["worker_pid"] for t in done}
    assert len(workers) == 2  # both workers really trained
    frame = pd.read_csv(out / "trials.csv")
    assert sorted(frame["number"]) == sorted(t.number for t in done)
    assert json.loads((out / "study.json").read_text())["n_trials"] == 6


# ---------------------------------------------------------------------------- pruning

def test_median_pruner_stops_bad_trials(tmp_path, prepared):
    cfg = cfg_for(pruner_startup_trials=2, pruner_warmup_steps=0)
    cfg["epochs"] = 2  # warm-up max(0, round(0.25 x 2)) = 0: pruning from the first report
    info = tuning.tune(prepared, "voxelmorph", 6, str(tmp_path / "p.db"), "p", 0, str(tmp_path / "o"), cfg,
                       train_fn=parity_train)
    frame = pd.read_csv(tmp_path / "o" / "trials.csv").set_index("number")
    # trials 0, 1 are the pruner's start-up; after them every odd trial (Dice 0.1) is below the median
    assert list(frame.loc[[3, 5], "state"]) == ["PRUNED", "PRUNED"]
    assert list(frame.loc[[0, 1, 2, 4], "state"]) == ["COMPLETE"] * 4
    assert (frame.loc[[3, 5], "epochs_done"] == 1).all()  # stopped after the first report
    assert (frame.loc[[3, 5], "val_dice"] == 0.1).all()
    assert info["n_pruned"] == 2 and info["n_trials"] == 6


# ---------------------------------------------------------------------------- outputs

def test_outputs_single_objective(tmp_path, prepared):
    out = tmp_path / "o"
    info = tuning.tune(prepared, "voxelmorph", 4, str(tmp_path / "s.db"), "s", 5, str(out), cfg_for(),
                       train_fn=fake_train)
    frame = pd.read_csv(out / "trials.csv")
    assert list(frame.columns[:8]) == ["number", "lam", "lr", "state", "val_dice", "val_njd_pct", "wall_s",
                                       "device"]
    for _, row in frame.iterrows():
        assert row["val_dice"] == pytest.approx(known_dice(row["lam"]))
        assert row["val_njd_pct"] == pytest.approx(known_njd(row["lam"]))
    best = frame.loc[frame["val_dice"].idxmax()]
    study = json.loads((out / "study.json").read_text())
    assert study["best_trial"] == best["number"] and study["best_lam"] == pytest.approx(best["lam"])
    assert study["total_wall_s"] == pytest.approx(frame["wall_s"].sum())
    assert study["storage"].startswith("sqlite:///") and study["study"] == "s"
    run = json.loads((out / "best" / "run.json").read_text())
    assert run["lam"] == pytest.approx(best["lam"])  # best/ is the best trial's folder
    assert (out / "best" / "best.pt").is_file() and (out / "provenance.json").is_file()
    assert info == study


def test_outputs_multi_objective_pareto(tmp_path, prepared):
    out = tmp_path / "o"
    cfg = cfg_for(objective="dice-njd", njd_bound=0.5)
    info = tuning.tune(prepared, "voxelmorph", 6, str(tmp_path / "m.db"), "m", 2, str(out), cfg,
                       train_fn=fake_train)
    frame = pd.read_csv(out / "trials.csv")
    pareto = pd.read_csv(out / "pareto.csv")
    # Pareto: no other trial has higher-or-equal Dice and lower-or-equal NJD, one strictly
    for _, p in pareto.iterrows():
        dominated = ((frame["val_dice"] >= p["val_dice"]) & (frame["val_njd_pct"] <= p["val_njd_pct"])
                     & ((frame["val_dice"] > p["val_dice"]) | (frame["val_njd_pct"] < p["val_njd_pct"])))
        assert not dominated.any()
    ok = pareto[pareto["val_njd_pct"] <= 0.5]
    expected = ok.loc[ok["val_dice"].idxmax()] if len(ok) else pareto.loc[pareto["val_njd_pct"].idxmin()]
    assert info["best_trial"] == expected["number"]


def test_pruner_warmup_is_at_least_a_fraction_of_the_budget():
    cfg = cfg_for(pruner_warmup_steps=1)
    cfg["epochs"] = 40
    assert tuning.warmup_epochs(cfg) == 10
    cfg["epochs"] = 2
    assert tuning.warmup_epochs(cfg) == 1
    cfg["tune"]["pruner_warmup_steps"] = 15
    cfg["epochs"] = 40
    assert tuning.warmup_epochs(cfg) == 15


def test_bad_inputs(tmp_path, prepared):
    with pytest.raises(GSMorphError, match="prepared folder not found"):
        tuning.tune(str(tmp_path / "nope"), "voxelmorph", 2, str(tmp_path / "x.db"), "s", 0, str(tmp_path / "o"),
                    cfg_for(), train_fn=fake_train)
    with pytest.raises(GSMorphError, match="tune.objective"):
        tuning.tune(prepared, "voxelmorph", 2, str(tmp_path / "x.db"), "s", 0, str(tmp_path / "o"),
                    cfg_for(objective="accuracy"), train_fn=fake_train)
    with pytest.raises(GSMorphError, match="lam_low"):
        tuning.tune(prepared, "voxelmorph", 2, str(tmp_path / "x.db"), "s", 0, str(tmp_path / "o"),
                    cfg_for(lam_low=0.0), train_fn=fake_train)
    with pytest.raises(GSMorphError, match="trials"):
        tuning.tune(prepared, "voxelmorph", 0, str(tmp_path / "x.db"), "s", 0, str(tmp_path / "o"),
                    cfg_for(), train_fn=fake_train)


def test_a_failing_lambda_fails_its_trial_and_the_study_goes_on(tmp_path, prepared):
    def diverges_for_large_lambda(prepared, backbone, method, seed, out, cfg, lam=None, report=None):
        if lam > 0.01:
            raise tuning.TrialFailed("non-finite loss at epoch 1")
        return fake_train(prepared, backbone, method, seed, out, cfg, lam=lam, report=report)

    out = tmp_path / "o"
    info = tuning.tune(prepared, "voxelmorph", 6, str(tmp_path / "f.db"), "f", 1, str(out), cfg_for(),
                       train_fn=diverges_for_large_lambda)
    frame = pd.read_csv(out / "trials.csv")
    failed = frame[frame["state"] == "FAIL"]
    assert len(frame) == 6 and info["n_trials"] == 6  # failures count: the study cannot loop forever
    assert len(failed) == info["n_failed"] > 0 and (failed["lam"] > 0.01).all()
    assert failed["note"].str.contains("non-finite loss").all()
    assert (frame.loc[frame["state"] == "COMPLETE", "lam"] <= 0.01).all()


def test_bad_input_in_training_aborts_without_counting(tmp_path, prepared):
    def broken(*args, **kwargs):
        raise GSMorphError("prepared/subjects.csv: file not found")

    storage = str(tmp_path / "b.db")
    with pytest.raises(GSMorphError, match="subjects.csv"):
        tuning.tune(prepared, "voxelmorph", 2, storage, "s", 0, str(tmp_path / "o"), cfg_for(), train_fn=broken)
    study = load(storage, "s")
    assert [t.user_attrs.get(tuning.NOT_COUNTED) for t in study.trials] == ["aborted"]
    assert not (tmp_path / "o" / "study.json").exists()


# ---------------------------------------------------------------------------- real training, CLI

def test_cli_with_real_training_resumes_and_best_is_inferable(prepared_acdc, tmp_path):
    from gsmorph.cli import main

    overrides = json.dumps({"backbones": {"voxelmorph": {"features": [4, 8, 8]}}, "epochs": 1, "batch_size": 4,
                            "max_train_pairs": 4, "max_val_pairs": 4, "device": "cpu"})
    out = tmp_path / "tune"
    args = ["tune", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--storage",
            str(tmp_path / "study.db"), "--study", "weighted", "--seed", "0", "--out", str(out), "--set", overrides]
    assert main(args + ["--trials", "2"]) == 0
    first = pd.read_csv(out / "trials.csv")
    assert main(args + ["--trials", "3", "--pairs-out", str(tmp_path / "tuned_pairs")]) == 0
    again = pd.read_csv(out / "trials.csv")
    assert list(again["number"]) == [0, 1, 2] and (again["state"] == "COMPLETE").all()
    pd.testing.assert_frame_equal(again.iloc[:2][["number", "lam", "val_dice", "wall_s"]],
                                  first[["number", "lam", "val_dice", "wall_s"]])
    study = json.loads((out / "study.json").read_text())
    best = again.loc[again["val_dice"].idxmax()]
    assert study["best_trial"] == best["number"] and study["n_trials"] == 3
    run = json.loads((out / "best" / "run.json").read_text())
    assert run["method"] == "weighted" and run["lam"] == pytest.approx(best["lam"])
    for trial in again["number"]:  # every trial is a full run folder
        assert (out / "trials" / f"trial_{trial:04d}" / "summary.json").is_file()
    assert main(["infer", "--run", str(out / "best"), "--prepared", str(prepared_acdc), "--split", "test",
                 "--out", str(tmp_path / "pairs")]) == 0
    # --pairs-out (the workflow's tune job) wrote the same pairs from best/ in the tuning process
    from gsmorph import pairs

    meta = pairs.read_meta(tmp_path / "tuned_pairs")
    assert meta["method"] == "weighted-tuned" and meta["run"] == str((out / "best").resolve())
    alone = {sp.subject: sp.disp for sp in pairs.iter_subjects(tmp_path / "pairs")}
    together = {sp.subject: sp.disp for sp in pairs.iter_subjects(tmp_path / "tuned_pairs")}
    assert set(alone) == set(together) and alone
    for subject, disp in alone.items():
        np.testing.assert_array_equal(together[subject], disp)


def test_cli_bad_storage_is_a_clear_error(prepared_acdc, tmp_path, capsys):
    from gsmorph.cli import main

    rc = main(["tune", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--trials", "1",
               "--storage", str(tmp_path / "study.txt"), "--study", "s", "--seed", "0", "--out", str(tmp_path / "o")])
    assert rc == 1 and "study.txt" in capsys.readouterr().err
    assert not (tmp_path / "o" / "study.json").exists()


def test_an_rdb_study_uses_optunas_heartbeat_and_retry(tmp_path, prepared):
    """SQLite: Optuna's own heartbeat marks a trial of another host stale after
    stale_after_s and its RetryHeartbeatStaleTrialCallback queues it again (params and run
    folder kept); the stale trial no longer counts, so the study still ends with N trials."""
    storage = f"sqlite:///{tmp_path / 'hb.db'}"
    cfg = cfg_for(heartbeat_s=1.0, stale_after_s=2.0)
    store, url = tuning.resolve_storage(storage, 1.0, 2.0)
    assert store.get_heartbeat_interval() == 1  # Optuna's heartbeat is on for RDB storages
    settings = tuning.study_settings("voxelmorph", prepared, 0, cfg)
    study = tuning.open_study(store, url, "hb", 0, cfg, settings)
    ghost = study.ask()
    lam = ghost.suggest_float("lam", 1e-4, 1.0, log=True)
    ghost.set_user_attr("worker_host", "another-host")
    ghost.set_user_attr("worker_pid", 1)
    ghost.set_user_attr("run_dir", str(tmp_path / "o" / "trials" / "trial_0000"))
    store.record_heartbeat(ghost._trial_id)
    time.sleep(3.0)  # older than the grace period

    info = tuning.tune(prepared, "voxelmorph", 2, storage, "hb", 0, str(tmp_path / "o"), cfg, train_fn=fake_train)
    study = load(storage, "hb")
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.params["lam"] == lam and retry.user_attrs["run_dir"].endswith("trial_0000")
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert info["n_trials"] == 2 and len(finished(study)) == 2
    frame = pd.read_csv(tmp_path / "o" / "trials.csv")
    assert "interrupted" in frame.loc[frame["number"] == 0, "note"].item()


def test_an_rdb_trial_of_a_dead_local_process_is_retried_at_once(tmp_path, prepared):
    storage = f"sqlite:///{tmp_path / 'local.db'}"
    cfg = cfg_for(heartbeat_s=1.0, stale_after_s=600.0)  # Optuna's stale check would wait 10 minutes
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store, url = tuning.resolve_storage(storage, 1.0, 600.0)
    study = tuning.open_study(store, url, "l", 0, cfg, tuning.study_settings("voxelmorph", prepared, 0, cfg))
    ghost = study.ask()
    lam = ghost.suggest_float("lam", 1e-4, 1.0, log=True)
    for key, value in (("worker_host", socket.gethostname()), ("worker_pid", dead.pid), ("worker_start", None)):
        ghost.set_user_attr(key, value)
    start = time.monotonic()
    tuning.tune(prepared, "voxelmorph", 1, storage, "l", 0, str(tmp_path / "o"), cfg, train_fn=fake_train)
    assert time.monotonic() - start < 60
    study = load(storage, "l")
    assert study.trials[0].user_attrs[tuning.NOT_COUNTED] == "interrupted"
    assert study.trials[1].params["lam"] == lam and study.trials[1].system_attrs["failed_trial"] == 0
