"""Figures from the subject-level metrics and the run folders (matplotlib Agg, seaborn).

Every figure is saved as PNG (300 dpi, the figure size fixed, so a W x H inch figure is
300W x 300H pixels) and PDF, with a small footer saying its data and scale (e.g. "ACDC-format
phantom (24 subjects: 8 train, 4 val, 12 test), 10 training epochs ..."), so that a figure
pasted alone keeps them, and returned with its caption. A figure whose inputs are
missing is skipped: the function returns no figure and appends the reason to `skipped`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# labels are method, backbone and dataset names (a plugin's may hold '$'), never math
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gsmorph import methods  # noqa: E402
from gsmorph.io import atomic_path  # noqa: E402
from gsmorph.report import layer_names, names  # noqa: E402
from gsmorph.report.artifacts import FIGURES  # noqa: E402

DPI = 300
FOOTER_PT = 6  # font size of the footer
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


def footer_text(datasets) -> str:
    """The data and scale of `datasets` (names.data_note), for a figure's footer."""
    return "Data: " + "; ".join(names.data_note(d) for d in sorted(set(datasets), key=names.dataset_rank)) + "."


def add_footer(fig, text: str) -> None:
    """`text` in small grey type along the figure's bottom edge, wrapped to its width. The
    figure's layout is run once, then frozen and lifted by the footer's height (axes,
    colour bars, legends outside the axes, titles), so that nothing overlaps the footer."""
    import textwrap

    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(text, width=max(20, int(width_in * 144 / FOOTER_PT / 1.1)))
    band = (len(lines) * FOOTER_PT * 1.25 + 4) / 72 / height_in  # of the figure's height

    def lift(y: float) -> float:
        return band + y * (1 - band)

    fig.canvas.draw()  # the constrained layout places everything once
    fig.set_layout_engine("none")
    for ax in fig.axes:
        x0, y0, w, h = ax.get_position(original=True).bounds
        ax.set_position([x0, lift(y0), w, h * (1 - band)])
    for legend in fig.legends:
        legend.set_bbox_to_anchor((0, band, 1, 1 - band), transform=fig.transFigure)
    for label in [*fig.texts, getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None)]:
        if label is not None:
            x, y = label.get_position()
            label.set_position((x, lift(y)))
    fig.text(0.005, 0.004, "\n".join(lines), fontsize=FOOTER_PT, color="0.35", ha="left", va="bottom")


def save(fig, out_dir: str | os.PathLike, stem: str, footer: str = "") -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically (with `footer` along the bottom edge);
    close the figure."""
    if footer:
        add_footer(fig, footer)
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
        palette = {names.method_name(m, b): names.method_colour(m) for m, b in zip(part.method, part.backbone)}
        fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11 a deprecated argument
            warnings.filterwarnings("ignore", message="vert: bool was deprecated")
            sns.boxplot(data=part.assign(value=part.value * 100), x="structure", y="value", hue="Method",
                        order=list(STRUCTURES), hue_order=order, palette=palette, saturation=1, ax=ax,
                        fliersize=2, linewidth=0.8)
        ax.set_xlabel("")
        ax.set_ylabel("Dice (%)")
        title = f"{names.dataset_name(dataset)}" + (f", {names.backbone_name(backbone)}" if backbone != names.CLASSICAL else "")
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(order)), fontsize=8)
        stem = FIGURES["dice_boxplot"].name(dataset=dataset, backbone=backbone)
        n = part.subject.nunique() if "subject" in part.columns else 0
        save(fig, out_dir, stem, f"n = {n} test subjects. " + footer_text([dataset]))
        made[stem] = FIGURES["dice_boxplot"].describe(dataset=names.dataset_name(dataset),
                                                      backbone=names.backbone_name(backbone))
    return made


def pareto(summaries: pd.DataFrame, trials: pd.DataFrame, sweeps: pd.DataFrame, studies: pd.DataFrame, out_dir,
           skipped: list[str]) -> dict[str, str]:
    """Validation Dice (%) vs NJD (%): every tuned trial (its chosen lambda marked), each
    fixed lambda, a lambda sweep (its chosen lambda marked) and GSMorph; each method in its
    colour and marker, every chosen lambda labelled, axes over every point."""
    made = {}
    keys = pd.concat([f[["dataset", "backbone"]] for f in (summaries, trials, sweeps) if not f.empty]
                     or [pd.DataFrame(columns=["dataset", "backbone"])])
    groups = _groups(keys)
    if not groups:
        skipped.append("Pareto plot: no summary.json, trials.csv or lambda_sweep.csv under --runs")
    for dataset, backbone in groups:
        fig, ax = plt.subplots(figsize=(7, 5.5), layout="constrained")
        points: list[tuple[float, float]] = []

        def mark(method: str, njd, dice, label: str, note: str = "", size: float = 60,
                 note_below: bool = False, **kwargs) -> None:
            ax.scatter(njd, np.asarray(dice) * 100, s=size, c=names.method_colour(method),
                       marker=names.method_marker(method), label=label, zorder=kwargs.pop("zorder", 3), **kwargs)
            points.extend(zip(np.atleast_1d(njd), np.atleast_1d(np.asarray(dice) * 100)))
            if note:  # chosen lambdas labelled below their point, fixed ones above: near points stay legible
                ax.annotate(note, (float(np.atleast_1d(njd)[0]), float(np.atleast_1d(dice)[0]) * 100), fontsize=8,
                            xytext=(6, -12) if note_below else (5, 4), textcoords="offset points")

        for method in tuned_methods():
            t = _select(trials, dataset, backbone, (method,))
            if t.empty or not {"val_dice", "val_njd_pct"} <= set(t.columns):
                continue
            if "state" in t.columns:
                t = t[t.state.astype(str).str.upper().str.endswith("COMPLETE")]
            t = t.dropna(subset=["val_dice", "val_njd_pct"])
            name = names.method_name(method, backbone)
            mark(method, t.val_njd_pct, t.val_dice, f"{name}: Optuna trials", size=22, alpha=0.45, zorder=2)
            st = _select(studies, dataset, backbone, (method,))
            if not st.empty and "best_trial" in st.columns and "number" in t.columns:
                best = t[t.number == st.best_trial.iloc[0]]
                if not best.empty:
                    mark(method, best.val_njd_pct, best.val_dice, f"{name}: chosen trial",
                         f"λ={best.lam.iloc[0]:.2g}", size=90, note_below=True, edgecolors="black")
        s = summaries[(summaries.dataset == dataset) & (summaries.backbone == backbone)] if not summaries.empty \
            else summaries
        if not s.empty and {"best_val_dice", "val_njd_pct"} <= set(s.columns):
            for method, key in fixed_lambda_methods().items():
                f = s[s.method == method].dropna(subset=["best_val_dice", "val_njd_pct"])
                if not f.empty:
                    lam = f"λ={f.lam.mean():.2g}" if "lam" in f.columns else ""
                    mark(method, [f.val_njd_pct.mean()], [f.best_val_dice.mean()],
                         names.method_name(method, backbone), f"{key} {lam}".strip())
            gs = s[s.method == methods.REFERENCE].dropna(subset=["best_val_dice", "val_njd_pct"])
            if not gs.empty:
                mark(methods.REFERENCE, [gs.val_njd_pct.mean()], [gs.best_val_dice.mean()],
                     f"{names.method_name(methods.REFERENCE, backbone)} (no λ)", size=180, zorder=5)
            for method in methods.general_ids():  # general gradient-aggregation methods (no λ either)
                f = s[s.method == method].dropna(subset=["best_val_dice", "val_njd_pct"])
                if not f.empty:
                    mark(method, [f.val_njd_pct.mean()], [f.best_val_dice.mean()], names.method_name(method, backbone),
                         size=50, edgecolors="black", linewidths=0.4)
        for method in sorted(sweeps.method.unique() if not sweeps.empty else [], key=names.method_rank):
            h = _select(sweeps, dataset, backbone, (method,))
            if h.empty or not {"lam", "val_dice", "val_njd_pct"} <= set(h.columns):
                continue
            # the line through the coarse grid (the same lambdas in every seed, mean over seeds);
            # each seed's fine grid lies around its own best, so its points are drawn unjoined
            coarse = h[h.stage == "coarse"] if "stage" in h.columns else h
            coarse = coarse.groupby("lam", as_index=False)[["val_dice", "val_njd_pct"]].mean().sort_values("lam")
            h = h.groupby("lam", as_index=False)[["val_dice", "val_njd_pct"]].mean().sort_values("lam")
            name = names.method_name(method, backbone)
            ax.plot(coarse.val_njd_pct, coarse.val_dice * 100, "-", lw=1, c=names.method_colour(method), zorder=1)
            mark(method, h.val_njd_pct, h.val_dice, f"{name}: λ sweep", size=16)
            chosen = s[s.method == method] if not s.empty else s
            if not chosen.empty and "hyper_lambda" in chosen.columns and chosen.hyper_lambda.notna().any():
                lam = float(chosen.hyper_lambda.dropna().iloc[0])
                row = h.iloc[(h.lam - lam).abs().argsort()[:1]]
                mark(method, row.val_njd_pct, row.val_dice, f"{name}: chosen λ", f"λ={lam:.2g}", size=90,
                     note_below=True, edgecolors="black")
        if not points:
            plt.close(fig)
            skipped.append(f"Pareto plot {dataset}/{backbone}: no validation Dice/NJD points")
            continue
        njd, dice = np.array(points).T
        ax.set_xlim(-0.02 * max(njd.max(), 0.1), max(njd.max(), 0.1) * 1.15)
        ax.set_ylim(max(0.0, dice.min() - 5), min(100.0, dice.max() + 3))
        ax.set_xlabel("validation NJD (%)")
        ax.set_ylabel("validation Dice (%)")
        ax.set_title(f"{names.dataset_name(dataset)}, {names.backbone_name(backbone)}")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
        stem = FIGURES["pareto"].name(dataset=dataset, backbone=backbone)
        save(fig, out_dir, stem, "Validation split. " + footer_text([dataset]))
        general = not s.empty and s.method.isin(methods.general_ids()).any()
        made[stem] = FIGURES["pareto"].describe(
            dataset=names.dataset_name(dataset), backbone=names.backbone_name(backbone),
            general=", and the general gradient-aggregation methods (no lambda, mean over seeds)" if general else "")
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
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 1, 3.5), layout="constrained",
                             squeeze=False, sharex=True)
    top = cost.wall_s.max()
    unit, div = ("h", 3600.0) if top >= 7200 else ("min", 60.0) if top >= 120 else ("s", 1.0)
    for ax, (dataset, backbone) in zip(axes[0], groups):
        part = cost[(cost.dataset == dataset) & (cost.backbone == backbone)]
        colors = [names.method_colour(m.split("/")[0]) for m in part.method]
        ax.barh(part.approach, part.wall_s / div, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel(f"wall-clock time ({unit})")
        ax.set_xlim(0, top / div * 1.05)
        # two lines: the long names of one panel must not run into the next panel's
        ax.set_title(f"{names.dataset_name(dataset)}\n{names.backbone_name(backbone)}", fontsize=9)
    stem = FIGURES["tuning_cost"].name()
    save(fig, out_dir, stem, footer_text(cost.dataset))
    return {stem: FIGURES["tuning_cost"].describe()}


def short_names(groups: list[str]) -> list[str]:
    """Parameter names without the wrapper's 'backbone.' and MONAI's repeated 'submodule.'
    (kept whole if that makes two names equal)."""
    short = [g.removeprefix("backbone.").replace("submodule.", "") for g in groups]
    return short if len(set(short)) == len(set(groups)) else list(groups)


MAX_ROWS = 40  # more parameter tensors than this: one row per module instead


def module_of(name: str) -> str:
    """The module a parameter belongs to, to two levels: 'stages.0.blocks.0.attn.qkv.weight'
    -> 'stages.0'; 'head.bias' -> 'head'."""
    parts = name.removeprefix("backbone.").replace("submodule.", "").split(".")[:-1]
    return ".".join(parts[:2]) or name


def conflict_figures(conflicts: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Per parameter group (or, for large networks, per module) and epoch: the share of
    steps with conflicting gradients and their mean cosine."""
    need = {"epoch", "group", "conflict_frac", "cosine_mean"}
    if conflicts.empty or not need <= set(conflicts.columns):
        skipped.append("gradient-conflict figure: no conflicts.csv (epoch, group, conflict_frac, cosine_mean) under --runs")
        return {}
    made = {}
    for (dataset, backbone, method), part in conflicts.groupby(["dataset", "backbone", "method"], sort=True):
        groups = list(dict.fromkeys(part["group"]))  # the order the network registers its parameters
        by_module = len(groups) > MAX_ROWS
        part = part.assign(row=part["group"].map(module_of) if by_module else part["group"])
        rows = list(dict.fromkeys(part["row"]))
        mean = part.groupby(["row", "epoch"], sort=False)[["conflict_frac", "cosine_mean"]].mean().reset_index()
        epochs = sorted(mean.epoch.unique())
        height = min(10.0, max(2.6, 0.19 * len(rows) + 1.6))
        fig, axes = plt.subplots(1, 2, figsize=(12, height), layout="constrained")
        labels = layer_names.readable(rows)
        if labels == rows and not by_module:
            labels = short_names(rows)
        for ax, col, cmap, lim, label in ((axes[0], "conflict_frac", "viridis", (0, 1), "share of steps in conflict"),
                                          (axes[1], "cosine_mean", "coolwarm", (-1, 1), "mean cosine(g_sim, g_reg)")):
            grid = mean.pivot(index="row", columns="epoch", values=col).reindex(index=rows, columns=epochs)
            im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap=cmap, vmin=lim[0], vmax=lim[1],
                           interpolation="nearest")
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels(labels, fontsize=max(5, min(8, int(300 / max(1, len(rows))))))
            step = max(1, int(np.ceil(len(epochs) / 25)))  # every epoch up to 25, evenly spaced beyond
            ticks = list(range(0, len(epochs), step))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(epochs[i]) for i in ticks], fontsize=7)
            ax.set_xlabel("epoch")
            ax.set_title(label, fontsize=10)
            fig.colorbar(im, ax=ax, shrink=0.8)
        fig.suptitle(f"{names.method_name(method, backbone)}: {names.dataset_name(dataset)}, "
                     f"{names.backbone_name(backbone)}" + (" (one row per module)" if by_module else ""))
        stem = FIGURES["conflicts"].name(dataset=dataset, backbone=backbone, method=method)
        seeds = part["seed"].nunique() if "seed" in part.columns else 1
        save(fig, out_dir, stem, f"Training split, mean over {seeds} seed{'s' if seeds != 1 else ''}. "
             + footer_text([dataset]))
        rows_text = ("per module (mean over its parameter tensors)" if by_module else "per parameter tensor")
        made[stem] = FIGURES["conflicts"].describe(method=names.method_name(method, backbone),
                                                   dataset=names.dataset_name(dataset),
                                                   backbone=names.backbone_name(backbone), rows=rows_text)
    return made


def training_curves(logs: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Per dataset and backbone: the similarity and smoothness losses and the validation
    Dice (%) per epoch of every learned run (each method in its colour; mean over seeds)."""
    need = {"epoch", "loss_sim", "loss_reg", "val_dice"}
    if logs.empty or not need <= set(logs.columns):
        skipped.append("training curves: no train_log.csv under --runs")
        return {}
    made = {}
    for dataset, backbone in _groups(logs):
        part = logs[(logs.dataset == dataset) & (logs.backbone == backbone)]
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
        for method in sorted(part.method.unique(), key=names.method_rank):
            run = part[part.method == method].groupby("epoch")[["loss_sim", "loss_reg", "val_dice"]].mean()
            style = dict(color=names.method_colour(method), lw=1.2, label=names.method_name(method, backbone))
            axes[0].plot(run.index, run.loss_sim, **style)
            axes[1].plot(run.index, run.loss_reg, **style)
            val = run.val_dice.dropna()
            axes[2].plot(val.index, val * 100, marker=names.method_marker(method), ms=4, **style)
        for ax, title, log in ((axes[0], "similarity loss (training)", True),
                               (axes[1], "smoothness loss (training)", True),
                               (axes[2], "validation Dice (%)", False)):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            if log:
                ax.set_yscale("log")
        handles, labels = axes[2].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=8)
        fig.suptitle(f"Training: {names.dataset_name(dataset)}, {names.backbone_name(backbone)}")
        stem = FIGURES["training_curves"].name(dataset=dataset, backbone=backbone)
        seeds = part["seed"].nunique() if "seed" in part.columns else 1
        save(fig, out_dir, stem, f"Mean over {seeds} seed{'s' if seeds != 1 else ''}. " + footer_text([dataset]))
        made[stem] = FIGURES["training_curves"].describe(dataset=names.dataset_name(dataset),
                                                         backbone=names.backbone_name(backbone))
    return made


def frontier_figure(points: pd.DataFrame, gap: pd.DataFrame, out_dir, skipped: list[str]) -> dict[str, str]:
    """Test Dice (%) vs test NJD (%) of every weighted-loss run (mean over seeds per
    method), the frontier through those means, GSMorph, and its gap (gsmorph.frontier)."""
    from gsmorph import frontier

    if points.empty or not (points.method != methods.REFERENCE).any():
        skipped.append("frontier figure: no weighted-loss run on test")
        return {}
    made = {}
    for dataset, backbone in _groups(points):
        part = points[(points.dataset == dataset) & (points.backbone == backbone)]
        means = part.groupby("method", as_index=False)[["dice_pct", "njd_pct", "lam"]].mean()
        weighted = means[means.method != methods.REFERENCE]
        if weighted.empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 5.5), layout="constrained")
        on = weighted[frontier.pareto_mask(weighted.njd_pct, weighted.dice_pct)].sort_values("njd_pct")
        ax.plot(on.njd_pct, on.dice_pct, "-", c="#555555", lw=1.2, label="weighted-loss frontier (test)", zorder=1)
        for r in weighted.itertuples():
            ax.scatter([r.njd_pct], [r.dice_pct], s=50, c=names.method_colour(r.method),
                       marker=names.method_marker(r.method), label=names.method_name(r.method, backbone), zorder=3)
            if np.isfinite(r.lam):
                ax.annotate(f"λ={r.lam:.2g}", (r.njd_pct, r.dice_pct), fontsize=8, xytext=(5, 4),
                            textcoords="offset points")
        text = ""
        gs = means[means.method == methods.REFERENCE]
        if not gs.empty:
            x, y = float(gs.njd_pct.iloc[0]), float(gs.dice_pct.iloc[0])
            ax.scatter([x], [y], s=180, c=names.method_colour(methods.REFERENCE),
                       marker=names.method_marker(methods.REFERENCE), label=names.method_name(methods.REFERENCE),
                       zorder=5)
            at, where = frontier.dice_at(on.njd_pct, on.dice_pct, x)
            if np.isfinite(at):
                ax.plot([x, x], [at, y], ":", c="black", lw=1, zorder=4)
            g = gap[(gap.dataset == dataset) & (gap.backbone == backbone) & (gap.seed.astype(str) == "all")]
            if not g.empty and np.isfinite(g.gap_dice_pct.iloc[0]):
                r = g.iloc[0]
                ci = (f", 95% CI {r.ci_low:.2f} to {r.ci_high:.2f}" if np.isfinite(r.ci_low)
                      else ", one seed: no CI")
                text = (f" GSMorph's gap to the frontier at its NJD: {r.gap_dice_pct:+.2f} Dice points "
                        f"(mean over {int(r.n_seeds)} seed(s) of the per-seed gaps{ci}; {r['where']}).")
                ax.set_title(f"{names.dataset_name(dataset)}, {names.backbone_name(backbone)}: "
                             f"gap {r.gap_dice_pct:+.2f} Dice points", fontsize=10)
        ax.set_xlabel("test NJD (%)")
        ax.set_ylabel("test Dice (%)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
        stem = FIGURES["frontier"].name(dataset=dataset, backbone=backbone)
        save(fig, out_dir, stem)
        made[stem] = FIGURES["frontier"].describe(dataset=names.dataset_name(dataset),
                                                  backbone=names.backbone_name(backbone), gap=text)
    return made
