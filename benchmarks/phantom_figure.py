"""Figure of phantom slices: ED and ES of several groups beside their label maps.

Usage: python benchmarks/phantom_figure.py [--seed 0] [--size 96] [--out docs/phantom_slices.png]

Rows: the ACDC-layout phantom's five pathology groups (subjects 0-4 of the seed: DCM, HCM,
MINF, NOR, RV) and three M&M-layout subjects of vendors A, B and C. Each row shows a
mid-ventricular slice, cropped to --size voxels around the ED heart as `gsmorph prepare`
does: ED image, ED labels, ES image, ES labels (LV red, Myo green, RV blue), and the
subject's parameters (EF from the labels, SNR, in-plane spacing, slice thickness).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COLOURS = np.array([[0, 0, 0], [0.90, 0.20, 0.15], [0.25, 0.75, 0.30], [0.20, 0.45, 0.95]])  # bg, LV, Myo, RV


def subjects(seed: int) -> list[tuple[str, object]]:
    """(row title, phantom) for the rows of the figure."""
    from gsmorph.data.synth import acdc_phantom, mnm_phantom

    rows = []
    for index in range(5):  # DCM, HCM, MINF, NOR, RV
        ph = acdc_phantom(seed, index)[1]
        rows.append((f"ACDC {ph.params['group']}", ph))
    for index in (0, 1, 2):  # vendors A, B, C
        ph = mnm_phantom(seed, index)[1]
        rows.append((f"M&M vendor {ph.params['vendor']} ({ph.params['group']})", ph))
    return rows


def crop(volume: np.ndarray, labels_ed: np.ndarray, size: int) -> np.ndarray:
    """The size x size window around the ED labels, as prepare crops it."""
    from gsmorph.data.prepare import crop_inplane, crop_window

    x0, y0 = crop_window(labels_ed, size)
    return crop_inplane(volume, x0, y0, size)


def mid_slice(labels_ed: np.ndarray) -> int:
    """The slice nearest the middle of those holding LV, Myo and RV."""
    full = [k for k in range(labels_ed.shape[2]) if len(np.unique(labels_ed[..., k])) == 4]
    return full[len(full) // 2] if full else labels_ed.shape[2] // 2


def caption(ph) -> str:
    p = ph.params
    return (f"LV EF {100 * p['ef_lv']:.0f} %\nRV EF {100 * p['ef_rv']:.0f} %\nSNR {p['snr']:.0f}\n"
            f"{p['spacing'][0]:.2f} mm pixels\n{p['thickness']:.1f} mm slices")


def draw(rows: list[tuple[str, object]], size: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(8.2, 1.72 * len(rows) + 0.8),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 0.72], "wspace": 0.04, "hspace": 0.06})
    for col, title in enumerate(("ED", "ED labels", "ES", "ES labels")):
        axes[0, col].set_title(title, fontsize=11)
    for r, (name, ph) in enumerate(rows):
        k = mid_slice(ph.labels_ed)
        images = [crop(v, ph.labels_ed, size)[..., k] for v in (ph.ED, ph.ES)]
        labels = [crop(v, ph.labels_ed, size)[..., k] for v in (ph.labels_ed, ph.labels_es)]
        hi = np.percentile(np.concatenate([i.ravel() for i in images]), 99.5)
        for j in range(2):
            axes[r, 2 * j].imshow(images[j].T, cmap="gray", vmin=0, vmax=hi, interpolation="nearest")
            axes[r, 2 * j + 1].imshow(COLOURS[labels[j].T], interpolation="nearest")
        axes[r, 0].set_ylabel(name.replace(" (", "\n("), fontsize=9)
        axes[r, 4].text(0.08, 0.5, caption(ph), transform=axes[r, 4].transAxes, fontsize=8.5, va="center")
        axes[r, 4].axis("off")
    for ax in axes[:, :4].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[i]) for i in (1, 2, 3)]
    fig.legend(handles, ["LV", "Myo", "RV"], loc="lower center", ncol=3, fontsize=10, frameon=False)
    fig.suptitle(f"Phantom, mid-ventricular slice, {size} x {size} voxels around the ED heart", fontsize=11, y=0.995)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.955, bottom=0.035)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "phantom_slices.png")
    args = parser.parse_args()
    draw(subjects(args.seed), args.size, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
