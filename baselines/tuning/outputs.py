"""What a tuning study leaves in its output folder (atomic, under a lock so parallel
workers do not collide): `trials.csv`, `study.json` (total_wall_s = the tuning cost:
training seconds of every trial as a run's wall_s counts them, pruned, failed and
interrupted ones included), `best/` (a
copy of the best trial's run folder), for the multi-objective study `pareto.csv`, and
`provenance.json`."""
from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from baselines.tuning.counting import is_finished, trials_and_retried
from baselines.tuning.liveness import NOT_COUNTED
from baselines.tuning.storage import recorded_url
from gsmorph.config import optim_settings
from gsmorph.errors import GSMorphError
from gsmorph.io import atomic_dir, read_json, write_csv, write_json
from gsmorph.locations import relative, resolve
from gsmorph.provenance import write_provenance

TRIALS_COLUMNS = ["number", "lam", "lr", "state", "val_dice", "val_njd_pct", "wall_s", "device",
                  "epochs_done", "note"]


def trials_frame(study: optuna.Study, snapshot: tuple[list, set] | None = None) -> pd.DataFrame:
    """One row per trial that did work (surplus placeholders left out); snapshot: the
    study's trials_and_retried when already read."""
    rows = []
    trials, retried = snapshot or trials_and_retried(study)
    for t in trials:
        note = t.user_attrs.get(NOT_COUNTED, "") if t.state in (TrialState.FAIL, TrialState.RUNNING) else ""
        if t.number in retried and not note:
            note = "interrupted"
        if note == "surplus" or t.state == TrialState.WAITING:
            continue
        if t.state == TrialState.FAIL and not note:
            note = t.user_attrs.get("error", "failed")
        origin = t.user_attrs.get("retry_of", t.system_attrs.get("failed_trial"))
        if origin is not None:
            note = (note + "; " if note else "") + f"retry of trial {origin}"
        wall = t.user_attrs.get("wall_s", t.user_attrs.get("elapsed_s"))
        dice = t.user_attrs.get("val_dice")
        if dice is None and t.state == TrialState.PRUNED and t.intermediate_values:
            dice = t.intermediate_values[max(t.intermediate_values)]
        rows.append({
            "number": t.number, "lam": t.params.get("lam"), "lr": t.params.get("lr"),
            "state": t.state.name, "val_dice": dice, "val_njd_pct": t.user_attrs.get("val_njd_pct"),
            "wall_s": wall, "device": t.user_attrs.get("device"),
            "epochs_done": t.user_attrs.get("epochs_done"), "note": note,
        })
    return pd.DataFrame(rows, columns=TRIALS_COLUMNS)


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    rows = [{"number": t.number, "lam": t.params.get("lam"), "lr": t.params.get("lr"),
             "val_dice": t.values[0], "val_njd_pct": t.values[1]} for t in study.best_trials]
    return pd.DataFrame(rows, columns=["number", "lam", "lr", "val_dice", "val_njd_pct"]).sort_values("number")


def choose_best(study: optuna.Study, cfg: dict) -> optuna.trial.FrozenTrial | None:
    """Single objective: the highest validation Dice. Multi-objective: among the Pareto
    trials with NJD % <= tune.njd_bound the one with the highest Dice; if none meets the
    bound, the Pareto trial with the lowest NJD."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    if len(study.directions) == 1:
        return max(complete, key=lambda t: (t.values[0], -t.number))
    pareto = study.best_trials
    within = [t for t in pareto if t.values[1] <= float(cfg["tune"]["njd_bound"])]
    if within:
        return max(within, key=lambda t: (t.values[0], -t.number))
    return min(pareto, key=lambda t: (t.values[1], -t.values[0], t.number))


def write_outputs(study: optuna.Study, out: Path, storage_url: str, cfg: dict, seed: int, n_target: int,
                  settings: dict) -> dict:
    trials, retried = trials_and_retried(study)
    frame = trials_frame(study, (trials, retried))
    best = choose_best(study, cfg)
    finished = [t for t in trials if is_finished(t, retried)]
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    info = {
        "study": study.study_name, "storage": recorded_url(storage_url, out), "objective": cfg["tune"]["objective"],
        "n_trials": len(finished), "n_target": int(n_target),
        "n_complete": int(states.get("COMPLETE", 0)), "n_pruned": int(states.get("PRUNED", 0)),
        "n_failed": int(states.get("FAIL", 0)),
        "total_wall_s": float(pd.to_numeric(frame["wall_s"], errors="coerce").fillna(0).sum()),
        "best_trial": best.number if best else None,
        "best_lam": best.params.get("lam") if best else None,
        "best_lr": best.params.get("lr", optim_settings(cfg, settings["backbone"])["lr"]) if best else None,
        "best_val_dice": best.values[0] if best else None,
        "best_val_njd_pct": best.user_attrs.get("val_njd_pct") if best else None,
        "njd_bound": float(cfg["tune"]["njd_bound"]) if len(study.directions) > 1 else None,
        "devices": sorted({str(d) for d in frame["device"].dropna()}),
        "seed": int(seed), "settings": settings,
    }
    write_csv(out / "trials.csv", frame)
    if len(study.directions) > 1:
        write_csv(out / "pareto.csv", pareto_frame(study))
    if best is not None:
        source = out / "trials" / Path(best.user_attrs["run_dir"]).name  # the folder may have moved
        if not (source / "run.json").is_file():
            raise GSMorphError(f"{source}: the best trial's run folder has no run.json")
        with atomic_dir(out / "best", made_by="tune") as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            rebase_paths(tmp, source, out / "best")
    write_json(out / "study.json", info)
    write_provenance(out / "provenance.json", config=cfg, seed=seed, study=study.study_name,
                     storage=recorded_url(storage_url, out))
    if best is None:
        raise GSMorphError(f"study '{study.study_name}' in {storage_url}: no trial completed "
                           f"(see {out / 'trials.csv'})")
    return info


def rebase_paths(copy: Path, source: Path, final: Path) -> None:
    """The relative `prepared` of run.json and provenance.json in `copy` (a copy of the
    run folder `source` that becomes `final`) made relative to `final`."""
    for name in ("run.json", "provenance.json"):
        path = copy / name
        if not path.is_file():
            continue
        record = read_json(path)
        if isinstance(record, dict) and isinstance(record.get("prepared"), str):
            record["prepared"] = relative(resolve(record["prepared"], source), final)
            write_json(path, record)
