"""Qualitative figure: for two test cases per dataset, the fixed and moving images, each
method's moved image and its deformation (a warped grid over the moved image), with
label contours (LV red, Myo green, RV light blue; a legend under the panels says so).

Layout per case, two rows: top: fixed | moved image of each method (moved label
contours); bottom: moving | the method's deformation phi(x) = x + u(x) drawn as a grid.
Cases: the first two subjects (sorted) that every method registered; the slice: the
one with the largest fixed foreground among the slices every method registered.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gsmorph import pairs
from gsmorph.evaluate import folder_meta
from gsmorph.data.loader import load_subject
from gsmorph.report import names
from matplotlib.lines import Line2D

from gsmorph.report.artifacts import FIGURES
from gsmorph.report.figures import footer_text, plt, save

# label value -> (structure, colour, its name in the caption); LV last: drawn over the inner Myo edge
CONTOURS = {2: ("Myo", "lime", "green"), 3: ("RV", "deepskyblue", "light blue"), 1: ("LV", "red", "red")}
CONTOUR_TEXT = ", ".join(f"{s} {name}" for s, _, name in sorted(CONTOURS.values(), key=lambda c: "LV Myo RV".index(c[0])))
PANEL_IN = 1.8  # inches per panel
N_CASES = 2


def _pairs_by_group(folders: list, skipped: list[str]) -> dict[tuple[str, str], list[tuple[dict, Path]]]:
    """{(dataset, backbone): [(meta, folder)]}, the lowest seed of each method; the
    classical folders of a dataset join every backbone's group."""
    metas = []
    for folder in folders:
        try:
            metas.append((folder_meta(folder), Path(folder)))
        except Exception as err:  # an optional figure: a bad folder is skipped, not fatal
            skipped.append(f"qualitative figure: {folder} skipped ({err})")
    metas.sort(key=lambda mf: mf[0]["seed"])
    chosen: dict[tuple[str, str, str], tuple[dict, Path]] = {}
    for meta, folder in metas:
        chosen.setdefault((meta["dataset"], meta["backbone"], meta["method"]), (meta, folder))
    groups: dict[tuple[str, str], list] = {}
    datasets = {d for d, _, _ in chosen}
    for dataset in datasets:
        backbones = sorted({b for d, b, _ in chosen if d == dataset and b != names.CLASSICAL},
                           key=names.backbone_rank) or [names.CLASSICAL]
        for backbone in backbones:
            members = [v for (d, b, _), v in chosen.items() if d == dataset and b in (backbone, names.CLASSICAL)]
            groups[(dataset, backbone)] = sorted(members, key=lambda mf: names.method_rank(mf[0]["method"]))
    return groups


def _load(folder: Path, subject: str) -> pairs.SubjectPairs:
    return pairs.load_subject(folder / f"{subject}.npz")


def _grid(ax, disp: np.ndarray, step: int) -> None:
    """Draw phi(x) = x + disp(x), disp (2, X, Y); array axis 0 is the image's vertical."""
    X, Y = disp.shape[1:]
    rows, cols = np.mgrid[0:X, 0:Y].astype(float)
    r, c = rows + disp[0], cols + disp[1]
    for i in range(0, X, step):
        ax.plot(c[i, :], r[i, :], color="yellow", lw=0.5)
    for j in range(0, Y, step):
        ax.plot(c[:, j], r[:, j], color="yellow", lw=0.5)


def _show(ax, image, label=None, title=None):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if label is not None:
        for value, (_, color, _) in CONTOURS.items():
            if np.any(label == value):
                ax.contour(label == value, levels=[0.5], colors=color, linewidths=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def qualitative(folders: list, out_dir: str | os.PathLike, skipped: list[str]) -> dict[str, str]:
    if not folders:
        skipped.append("qualitative figure: no --pairs folders given")
        return {}
    made = {}
    for (dataset, backbone), members in sorted(_pairs_by_group(folders, skipped).items()):
        subject_sets = [set(pairs.read_index(folder).subject) for _, folder in members]
        common = sorted(set.intersection(*subject_sets)) if subject_sets else []
        if not common:
            skipped.append(f"qualitative figure {dataset}/{backbone}: no subject registered by every method")
            continue
        cases = common[:N_CASES]
        n_cols = 1 + len(members)
        fig, axes = plt.subplots(2 * len(cases), n_cols, figsize=(PANEL_IN * n_cols, PANEL_IN * 2 * len(cases)),
                                 squeeze=False, layout="constrained")
        for c, subject in enumerate(cases):
            _case(axes[2 * c], axes[2 * c + 1], members, subject, dataset)
        legend = [Line2D([], [], color=color, lw=1.5, label=s)
                  for s, color, _ in sorted(CONTOURS.values(), key=lambda c: "LV Myo RV".index(c[0]))]
        fig.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=7, frameon=False,
                   title="label contours", title_fontsize=7)
        fig.suptitle(f"{names.dataset_name(dataset)}" + (f", {names.backbone_name(backbone)}"
                                                          if backbone != names.CLASSICAL else ""), fontsize=10)
        stem = FIGURES["qualitative"].name(dataset=dataset, backbone=backbone)
        n = len(subject_sets[0]) if subject_sets else 0
        save(fig, out_dir, stem, f"{len(cases)} of n = {n} test subjects. " + footer_text([dataset]))
        shown = ", ".join(names.subject_name(dataset, c) for c in cases)
        made[stem] = FIGURES["qualitative"].describe(dataset=names.dataset_name(dataset), cases=shown,
                                                     contours=CONTOUR_TEXT)
    return made


def _case(top, bottom, members, subject: str, dataset: str) -> None:
    meta0 = members[0][0]
    moving, fixed = meta0.get("moving", "ES"), meta0.get("fixed", "ED")
    subj = load_subject(meta0["prepared"], subject)
    fixed_img, fixed_lab = getattr(subj, fixed), getattr(subj, f"{fixed}_gt")
    moving_img, moving_lab = getattr(subj, moving), getattr(subj, f"{moving}_gt")
    loaded = [(meta, _load(f, subject)) for meta, f in members]
    slices = set(range(fixed_img.shape[2]))
    for _, sp in loaded:
        if sp.disp.shape[1] == 2:
            slices &= set(int(k) for k in sp.slice_index)
    k = max(sorted(slices), key=lambda z: int(np.count_nonzero(fixed_lab[:, :, z])))
    _show(top[0], fixed_img[:, :, k], fixed_lab[:, :, k], f"{names.subject_name(dataset, subject)}, z={k}\nfixed ({fixed})")
    _show(bottom[0], moving_img[:, :, k], moving_lab[:, :, k], f"moving ({moving})")
    step = max(4, fixed_img.shape[0] // 16)
    for j, (meta, sp) in enumerate(loaded, start=1):
        if sp.disp.shape[1] == 2:
            i = int(np.flatnonzero(sp.slice_index == k)[0])
            image, label, disp = sp.moved_image[i], sp.moved_label[i], sp.disp[i]
        else:
            image, label, disp = sp.moved_image[0][:, :, k], sp.moved_label[0][:, :, k], sp.disp[0][:2, :, :, k]
        _show(top[j], image, label, names.method_name(meta["method"], meta["backbone"]))
        _show(bottom[j], image * 0.6)
        _grid(bottom[j], disp, step)
        bottom[j].set_xlim(-0.5, image.shape[1] - 0.5)
        bottom[j].set_ylim(image.shape[0] - 0.5, -0.5)
