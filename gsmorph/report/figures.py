"""Figures from the subject-level metrics and the run folders (matplotlib Agg, seaborn).

Every figure is saved as PNG (100 dpi, the figure size fixed, so a W x H inch figure is
100W x 100H pixels) and PDF, and returned with its caption. A figure whose inputs are
missing is skipped: the function returns no figure and appends the reason to `skipped`.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gsmorph import methods  # noqa: E402
from gsmorph.io import atomic_path  # noqa: E402
from gsmorph.report import names  # noqa: E402

DPI = 100
STRUCTURES = ("LV", "Myo", "RV")


def surgery_methods() -> tuple[str, ...]:
    return tuple(methods.surgery_ids())


def fixed_lambda_methods() -> dict[str, str]:
    return methods.fixed_lambdas()


def tuned_methods() -> tuple[str, ...]:
    return tuple(methods.ids("tuned", None))


def one_training_methods() -> list[str]:
    """Methods whose reported model costs one training: the reference (no lambda) first,
    then those that choose their lambda themselves (e.g. HyperMorph's sweep)."""
    return [methods.REFERENCE] + methods.own_lambda_ids()


def save(fig, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically; close the figure."""
    out_dir = Path(out_dir)
    paths = []
    for fmt in ("png", "pdf"):
        path = out_dir / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        paths.append(path)
    plt.close(fig)
    return paths


def _groups(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, backbone) pairs of learned methods, in display order."""
    pairs = frame[frame.backbone != names.CLASSICAL][["dataset", "backbone"]].drop_duplicates()
    return sorted(map(tuple, pairs.to_numpy()), key=lambda p: (names.dataset_rank(p[0]), names.backbone_rank(p[1])))


def dice_boxplots(subjects: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Per dataset and backbone: subject Dice per structure (LV, Myo, RV) and method."""
    import seaborn as sns

    dice = subjects[(subjects.metric == "dice") & subjects.structure.isin(STRUCTURES)].dropna(subset=["value"])
    made = {}
    groups = _groups(dice) or [(d, names.CLASSICAL) for d in sorted(dice.dataset.unique(), key=names.dataset_rank)]
    if dice.empty:
        skipped.append("Dice boxplots: no Dice values in the metrics")
    for dataset, backbone in groups:
        part = dice[(dice.dataset == dataset) & dice.backbone.isin([backbone, names.CLASSICAL])].copy()
        part["Method"] = [names.method_name(m, b) for m, b in zip(part.method, part.backbone)]
        order = [names.method_name(m, backbone) for m in sorted(part.method.unique(), key=names.method_rank)]
        fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
        sns.boxplot(data=part.assign(value=part.value * 100), x="structure", y="value", hue="Method",
                    order=list(STRUCTURES), hue_order=order, ax=ax, fliersize=2, linewidth=0.8)
        ax.set_xlabel("")
        ax.set_ylabel("Dice (%)")
        title = f"{names.dataset_name(dataset)}" + (f", {names.backbone_name(backbone)}" if backbone != names.CLASSICAL else "")
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(order)), fontsize=8)
        stem = f"dice_boxplot_{dataset}_{backbone}"
        save(fig, out_dir, stem)
        made[stem] = (f"Dice (%) per structure on the {names.dataset_name(dataset)} test subjects "
                      f"({names.backbone_name(backbone)} backbone for learned methods); one value per subject "
                      "(mean over its slices and seeds); boxes: quartiles, whiskers: 1.5 IQR.")
    return made


def pareto(summaries: pd.DataFrame, trials: pd.DataFrame, sweeps: pd.DataFrame, out_dir,
           skipped: list[str]) -> dict[str, str]:
    """Validation Dice vs NJD: tuned trials, fixed lambdas, HyperMorph sweep, GSMorph."""
    made = {}
    keys = pd.concat([f[["dataset", "backbone"]] for f in (summaries, trials, sweeps) if not f.empty]
                     or [pd.DataFrame(columns=["dataset", "backbone"])])
    groups = _groups(keys)
    if not groups:
        skipped.append("Pareto plot: no summary.json, trials.csv or lambda_sweep.csv under --runs")
    for dataset, backbone in groups:
        fig, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
        n_points = 0
        t = _select(trials, dataset, backbone, tuned_methods())
        if not t.empty and {"val_dice", "val_njd_pct"} <= set(t.columns):
            if "state" in t.columns:
                t = t[t.state.astype(str).str.upper().str.endswith("COMPLETE")]
            t = t.dropna(subset=["val_dice", "val_njd_pct"])
            ax.scatter(t.val_njd_pct, t.val_dice, s=18, c="tab:gray", alpha=0.7, label="Tuned: Optuna trials")
            n_points += len(t)
        s = summaries[(summaries.dataset == dataset) & (summaries.backbone == backbone)] if not summaries.empty else summaries
        if not s.empty and {"best_val_dice", "val_njd_pct"} <= set(s.columns):
            keys = fixed_lambda_methods()
            fixed = s[s.method.isin(list(keys))].dropna(subset=["best_val_dice", "val_njd_pct"])
            if not fixed.empty:
                ax.scatter(fixed.val_njd_pct, fixed.best_val_dice, s=40, marker="s", c="tab:blue",
                           label=f"Fixed λ ({names.backbone_name(backbone)}-{'/-'.join(keys.values())})")
                for _, r in fixed.iterrows():
                    ax.annotate(keys[r.method], (r.val_njd_pct, r.best_val_dice), fontsize=8,
                                xytext=(3, 3), textcoords="offset points")
                n_points += len(fixed)
            gs = s[s.method == methods.REFERENCE].dropna(subset=["best_val_dice", "val_njd_pct"])
            if not gs.empty:
                ax.scatter([gs.val_njd_pct.mean()], [gs.best_val_dice.mean()], s=160, marker="*", c="tab:red",
                           zorder=5, label="GSMorph")
                n_points += 1
        h = _select(sweeps, dataset, backbone, tuple(sweeps.method.unique()) if not sweeps.empty else ())
        if not h.empty and {"lam", "val_dice", "val_njd_pct"} <= set(h.columns):
            h = h.groupby("lam", as_index=False)[["val_dice", "val_njd_pct"]].mean().sort_values("lam")
            ax.plot(h.val_njd_pct, h.val_dice, "o-", ms=4, c="tab:green", label="λ sweep (one network)")
            n_points += len(h)
        if n_points == 0:
            plt.close(fig)
            skipped.append(f"Pareto plot {dataset}/{backbone}: no validation Dice/NJD points")
            continue
        ax.set_xlabel("validation NJD (%)")
        ax.set_ylabel("validation Dice")
        ax.set_title(f"{names.dataset_name(dataset)}, {names.backbone_name(backbone)}")
        ax.legend(fontsize=8)
        stem = f"pareto_{dataset}_{backbone}"
        save(fig, out_dir, stem)
        made[stem] = (f"Accuracy-smoothness trade-off on the {names.dataset_name(dataset)} validation split "
                      f"({names.backbone_name(backbone)}): mean Dice vs NJD (%) of every Optuna trial of the "
                      "weighted loss, the fixed lambdas s/m/l, HyperMorph's lambda sweep, and GSMorph "
                      "(no lambda, mean over seeds).")
    return made


def _select(frame: pd.DataFrame, dataset: str, backbone: str, which: tuple[str, ...]) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame.dataset == dataset) & (frame.backbone == backbone) & frame.method.isin(which)]


def tuning_cost(summaries: pd.DataFrame, studies: pd.DataFrame) -> pd.DataFrame:
    """Wall seconds spent to obtain each method's reported model, per dataset and backbone
    (mean over seeds): GSMorph one training; the fixed lambdas all three trainings;
    Tuned the whole Optuna study; HyperMorph one training."""
    rows = []
    for dataset, backbone in _groups(pd.concat([f[["dataset", "backbone"]] for f in (summaries, studies)
                                                if not f.empty] or [pd.DataFrame(columns=["dataset", "backbone"])])):
        s = summaries[(summaries.dataset == dataset) & (summaries.backbone == backbone)] if not summaries.empty else summaries
        if not s.empty and "wall_s" in s.columns:
            devices = lambda f: ";".join(sorted(set(f["device"].dropna().astype(str)))) if "device" in f.columns else ""
            keys = fixed_lambda_methods()
            for method in [m for m in one_training_methods() if m in set(s.method)]:
                label = f"{names.method_name(method, backbone)} (1 training)"
                m = s[s.method == method].dropna(subset=["wall_s"])
                if not m.empty:
                    rows.append({"dataset": dataset, "backbone": backbone, "approach": label, "method": method,
                                 "n_trainings": 1, "wall_s": float(m.wall_s.mean()), "n_seeds": len(m),
                                 "device": devices(m)})
            fixed = s[s.method.isin(list(keys))].dropna(subset=["wall_s"])
            if not fixed.empty:
                per = fixed.groupby("method").wall_s.mean()
                ids = sorted(per.index, key=names.method_rank)
                prefix = os.path.commonprefix(ids)
                rows.append({"dataset": dataset, "backbone": backbone,
                             "approach": f"Fixed λ ({len(per)} trainings)",
                             "method": prefix + "/".join(i[len(prefix):] for i in ids),
                             "n_trainings": len(per), "wall_s": float(per.sum()),
                             "n_seeds": int(fixed.groupby("method").size().min()), "device": devices(fixed)})
        st = _select(studies, dataset, backbone, tuned_methods())
        if not st.empty and "total_wall_s" in st.columns:
            st = st.dropna(subset=["total_wall_s"])
            if not st.empty:
                n = int(st["n_trials"].max()) if "n_trials" in st.columns else 0
                for method, part in st.groupby("method"):
                    rows.append({"dataset": dataset, "backbone": backbone,
                                 "approach": f"{names.method_name(method, backbone)} (Optuna, {n} trials)",
                                 "method": method, "n_trainings": n, "wall_s": float(part.total_wall_s.mean()),
                                 "n_seeds": len(part), "device": ""})
    return pd.DataFrame(rows, columns=["dataset", "backbone", "approach", "method", "n_trainings", "wall_s",
                                       "n_seeds", "device"])


def tuning_cost_chart(cost: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Horizontal bars of the compute spent per approach, one panel per dataset x backbone."""
    if cost.empty:
        skipped.append("tuning-cost chart: no wall_s in summary.json nor total_wall_s in study.json under --runs")
        return {}
    groups = _groups(cost)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), layout="constrained", squeeze=False)
    top = cost.wall_s.max()
    unit, div = ("h", 3600.0) if top >= 7200 else ("min", 60.0) if top >= 120 else ("s", 1.0)
    for ax, (dataset, backbone) in zip(axes[0], groups):
        part = cost[(cost.dataset == dataset) & (cost.backbone == backbone)]
        colors = ["tab:red" if m == methods.REFERENCE else "tab:gray" for m in part.method]
        ax.barh(part.approach, part.wall_s / div, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel(f"wall-clock time ({unit})")
        ax.set_title(f"{names.dataset_name(dataset)}, {names.backbone_name(backbone)}", fontsize=10)
    stem = "tuning_cost"
    save(fig, out_dir, stem)
    return {stem: ("Compute spent to obtain each method's reported model (wall-clock training time, mean "
                   "over seeds): GSMorph needs one training; the fixed lambdas need one training each; the "
                   "tuned weighted loss needs the whole Optuna study; HyperMorph needs one training (its lambda "
                   "is then chosen by a validation sweep). Devices are listed in stats/tuning_cost.csv.")}


def short_names(groups: list[str]) -> list[str]:
    """Parameter names without MONAI's repeated 'submodule.' (kept whole if that makes
    two names equal)."""
    short = [g.replace("submodule.", "") for g in groups]
    return short if len(set(short)) == len(set(groups)) else list(groups)


def conflict_figures(conflicts: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Per layer and epoch: share of steps with conflicting gradients and mean cosine."""
    need = {"epoch", "group", "conflict_frac", "cosine_mean"}
    if conflicts.empty or not need <= set(conflicts.columns):
        skipped.append("gradient-conflict figure: no conflicts.csv (epoch, group, conflict_frac, cosine_mean) under --runs")
        return {}
    made = {}
    for (dataset, backbone, method), part in conflicts.groupby(["dataset", "backbone", "method"], sort=True):
        mean = part.groupby(["group", "epoch"], sort=False)[["conflict_frac", "cosine_mean"]].mean().reset_index()
        groups = list(dict.fromkeys(part["group"]))  # the network's parameter order
        epochs = sorted(mean.epoch.unique())
        fig, axes = plt.subplots(1, 2, figsize=(12, 8), layout="constrained")
        for ax, col, cmap, lim, label in ((axes[0], "conflict_frac", "viridis", (0, 1), "share of steps in conflict"),
                                          (axes[1], "cosine_mean", "coolwarm", (-1, 1), "mean cosine(g_sim, g_reg)")):
            grid = mean.pivot(index="group", columns="epoch", values=col).reindex(index=groups, columns=epochs)
            im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap=cmap, vmin=lim[0], vmax=lim[1],
                           interpolation="nearest")
            ax.set_yticks(range(len(groups)))
            ax.set_yticklabels(short_names(groups), fontsize=max(3, min(8, int(400 / max(1, len(groups))))))
            ticks = np.unique(np.linspace(0, len(epochs) - 1, min(8, len(epochs))).round().astype(int))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(epochs[i]) for i in ticks])
            ax.set_xlabel("epoch")
            ax.set_title(label, fontsize=10)
            fig.colorbar(im, ax=ax, shrink=0.6)
        fig.suptitle(f"{names.method_name(method, backbone)}: {names.dataset_name(dataset)}, "
                     f"{names.backbone_name(backbone)}")
        stem = f"conflicts_{dataset}_{backbone}_{method}"
        save(fig, out_dir, stem)
        made[stem] = (f"Gradient conflicts during {names.method_name(method, backbone)} training on "
                      f"{names.dataset_name(dataset)} ({names.backbone_name(backbone)}): per parameter group "
                      "(rows, network order) and epoch, the share of optimisation steps where the similarity "
                      "and smoothness gradients conflict (negative inner product) and their mean cosine; "
                      "mean over seeds.")
    return made
