"""`gsmorph report`: tables (bold best, every method row, markers, pdflatex), figures, stats files."""
import json
import shutil
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest

from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.evaluate import COLUMNS
from gsmorph.io import write_json, write_nifti
from gsmorph.report import names, tables
from gsmorph import stats

METHODS = ["initial", "demons", "syn", "weighted-s", "weighted-m", "weighted-l", "weighted-tuned",
           "hypermorph", "gs-agr", "gs-pcgrad", "gsmorph"]
N_SUBJECTS = 12  # exact two-sided Wilcoxon p >= 2^-11: survives Holm over ~60 tests
# per-method Dice level: gsmorph best on acdc; syn best on mnm
LEVEL = {m: 0.6 + 0.02 * i for i, m in enumerate(METHODS)}


def metric_rows(dataset, backbone, method, rng):
    rows = []
    level = LEVEL[method] + (0.3 if dataset == "mnm" and method == "syn" else 0.0)
    for s in range(N_SUBJECTS):
        for sl in range(2):
            base = dict(dataset=dataset, backbone=backbone, method=method, seed=0, subject=f"p{s:02d}", slice=sl)
            for st in ("LV", "Myo", "RV"):
                dice = np.nan if (st == "RV" and sl == 1 and s == 0) else level + 0.01 * rng.normal()
                rows.append({**base, "metric": "dice", "structure": st, "value": dice})
                rows.append({**base, "metric": "hd95_mm", "structure": st, "value": 5 - 3 * level + 0.05 * rng.normal()})
            rows.append({**base, "metric": "mse", "structure": "", "value": 0.02 - 0.01 * level + 1e-4 * rng.normal()})
            njd = 0.0 if method == "initial" else 2.0 - level + 0.01 * rng.normal()
            rows.append({**base, "metric": "njd_pct", "structure": "", "value": njd})
            rows.append({**base, "metric": "runtime_s", "structure": "", "value": 0.1})
    return rows


@pytest.fixture(scope="module")
def metrics_csvs(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    rng = np.random.default_rng(0)
    paths = []
    for dataset in ("acdc", "mnm"):
        rows = []
        for method in METHODS:
            learned = method not in ("initial", "demons", "syn")
            for backbone in (["voxelmorph", "transmorph"] if learned else ["none"]):
                if backbone == "transmorph" and method not in ("weighted-m", "gsmorph"):
                    continue
                rows += metric_rows(dataset, backbone, method, rng)
        path = root / dataset / "metrics.csv"
        path.parent.mkdir()
        pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
        paths.append(path)
    return paths


def write_runs(root):
    """Minimal run folders: summaries, an Optuna study, a HyperMorph sweep, conflicts."""
    base = root / "acdc" / "voxelmorph"
    for method, dice, njd, wall in (("gsmorph", 0.85, 0.9, 100.0), ("weighted-s", 0.86, 2.0, 90.0),
                                    ("weighted-m", 0.84, 0.7, 95.0), ("weighted-l", 0.80, 0.1, 92.0),
                                    ("hypermorph", 0.83, 1.5, 150.0)):
        caveat = "its lambda-dependence was not learned" if method == "hypermorph" else ""
        write_json(base / method / "seed0" / "summary.json", {"best_val_dice": dice, "val_njd_pct": njd,
                                                               "wall_s": wall, "device": "cpu", "best_epoch": 3,
                                                               "epochs_done": 5, "caveat": caveat})
    tune = base / "weighted-tuned" / "seed0"
    pd.DataFrame({"number": range(4), "lam": [0.001, 0.01, 0.1, 1.0], "lr": 5e-3,
                  "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"], "val_dice": [0.86, 0.84, 0.7, 0.6],
                  "val_njd_pct": [2.1, 0.8, 0.1, 0.0], "wall_s": 100.0, "device": "cpu"}).to_csv(tune / "trials.csv", index=False) \
        if tune.mkdir(parents=True) is None else None
    write_json(tune / "study.json", {"best_lam": 0.001, "best_trial": 0, "n_trials": 4, "total_wall_s": 400.0,
                                     "storage": "sqlite:///x.db", "study": "s"})
    pd.DataFrame({"lam": [0.0, 0.5, 1.0], "val_dice": [0.86, 0.82, 0.7],
                  "val_njd_pct": [3.0, 0.5, 0.0]}).to_csv(base / "hypermorph" / "seed0" / "lambda_sweep.csv", index=False)
    rows = [{"epoch": e, "group": g, "n_steps": 10, "conflict_frac": 0.1 * e, "cosine_mean": -0.05 * e}
            for e in range(1, 6) for g in ("enc.0.weight", "enc.0.bias", "flow.weight")]
    pd.DataFrame(rows).to_csv(base / "gsmorph" / "seed0" / "conflicts.csv", index=False)
    for method, level in (("gsmorph", 0.8), ("weighted-m", 0.75)):
        log = pd.DataFrame({"epoch": range(1, 6), "loss_sim": [0.05 / e for e in range(1, 6)],
                            "loss_reg": [0.001 * e for e in range(1, 6)],
                            "val_dice": [None, level, None, level + 0.05, level + 0.06], "epoch_s": 1.0,
                            "wall_s": [2.0 * e for e in range(1, 6)], "lr": 5e-3})
        log.to_csv(base / method / "seed0" / "train_log.csv", index=False)


def write_pairs_folders(root):
    prepared = root / "prepared"
    lab = np.zeros((32, 28, 3), np.uint8)
    lab[10:18, 8:16] = 2
    lab[12:16, 10:14] = 1
    lab[20:26, 8:16] = 3
    folders = []
    for subject in ("s1", "s2", "s3"):
        for frame in ("ED", "ES"):
            write_nifti(prepared / subject / f"{frame}.nii.gz", lab.astype(np.float32) / 3, (1.5, 1.5, 8.0))
            write_nifti(prepared / subject / f"{frame}_gt.nii.gz", lab, (1.5, 1.5, 8.0))
    pd.DataFrame({"subject": ["s1", "s2", "s3"], "dataset": "acdc", "group": "NOR", "split": "test", "n_slices": 3,
                  "spacing_x": 1.5, "spacing_y": 1.5, "spacing_z": 8.0}).to_csv(prepared / "subjects.csv", index=False)
    for backbone, method in (("none", "initial"), ("voxelmorph", "gsmorph"), ("voxelmorph", "weighted-m")):
        out = root / "pairs" / "acdc" / backbone / method / "seed0"
        for subject in ("s1", "s2", "s3"):
            disp = np.zeros((3, 2, 32, 28), np.float32)
            disp[:, 0] = 0.5 * np.sin(np.arange(28) / 4)[None, None, :]
            pairs.save_subject(out, pairs.SubjectPairs(subject, np.arange(3), disp,
                                                       np.moveaxis(lab, -1, 0) / 3.0, np.moveaxis(lab, -1, 0),
                                                       np.full(3, 0.1), np.array([1.5, 1.5])))
        pairs.finish(out, {"dataset": "acdc", "backbone": "" if backbone == "none" else backbone,
                           "method": method, "seed": 0, "split": "test", "prepared": str(prepared),
                           "moving": "ES", "fixed": "ED"}, ["s1", "s2", "s3"])
        folders.append(out)
    return folders


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, metrics_csvs):
    root = tmp_path_factory.mktemp("report")
    write_runs(root / "runs")
    folders = write_pairs_folders(root)
    out = root / "results"
    argv = ["report", "--metrics", *map(str, metrics_csvs), "--runs", str(root / "runs"), "--out", str(out),
            "--pairs", *map(str, folders), "--n-boot", "300", "--workers", "2"]
    assert main(argv) == 0
    return out


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_method_row_and_bold_best(report_dir):
    tex = (report_dir / "tables" / "table1_voxelmorph.tex").read_text()
    for method in METHODS:
        display = names.method_name(method, "voxelmorph")
        assert any(line.startswith(display + " &") for line in tex.splitlines()), display
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"M\&Ms" in tex
    frame = pd.read_csv(report_dir / "tables" / "table1_voxelmorph.csv")
    best = frame[frame.best]
    dice_best = best[best.metric == "dice"].set_index("dataset")["method"]
    assert dice_best["acdc"] == "gsmorph" and dice_best["mnm"] == "syn"
    # the bold cell in LaTeX is GSMorph's Dice on ACDC
    gs_line = next(line for line in tex.splitlines() if line.startswith("GSMorph &"))
    assert gs_line.split(" & ")[1].startswith(r"$\mathbf{")
    # NJD best excludes Initial (whose NJD is 0)
    njd_best = best[best.metric == "njd_pct"]
    assert "initial" not in set(njd_best.method) and len(njd_best) >= 2
    md = (report_dir / "tables" / "table1_voxelmorph.md").read_text()
    assert "| GSMorph | **" in md and "VoxelMorph-m" in md


def test_significance_markers_follow_holm_and_show_direction(report_dir):
    frame = pd.read_csv(report_dir / "tables" / "table1_voxelmorph.csv", keep_default_na=False)
    wil = pd.read_csv(report_dir / "stats" / "wilcoxon.csv")

    def test_of(method, metric):
        return wil[(wil.dataset == "acdc") & (wil.metric == metric) & (wil.structure.isin(["mean", ""]))
                   & (wil.method == method) & (wil.backbone == "voxelmorph")].iloc[0]

    def cell(method, metric):
        return frame[(frame.dataset == "acdc") & (frame.method == method) & (frame.metric == metric)].iloc[0]

    initial = test_of("initial", "dice")
    assert float(cell("initial", "dice")["p_holm"]) == pytest.approx(initial.p_holm)
    assert initial.n == N_SUBJECTS and initial.p_holm < 0.01  # far below GSMorph on every subject
    # lower Dice than GSMorph: worse, two arrows down; lower HD95 would be better
    assert cell("initial", "dice")["marker"] == "↓↓" and cell("initial", "dice")["direction"] == "worse"
    hd = test_of("initial", "hd95_mm")
    assert hd.median_diff > 0 and cell("initial", "hd95_mm")["direction"] == "worse"  # higher HD95: worse
    assert hd.family == "acdc/hd95_mm/mean/voxelmorph"
    # in this fixture the methods' levels rise in table order: GS-PCGrad sits just below GSMorph,
    # SyN on M&Ms far above it
    syn = frame[(frame.dataset == "mnm") & (frame.method == "syn") & (frame.metric == "dice")].iloc[0]
    assert syn["direction"] == "better" and syn["marker"].startswith("↑")
    assert (frame[frame.method == "gsmorph"]["marker"] == "").all()
    # Initial's NJD means nothing: shown as a dash, never bold
    njd = cell("initial", "njd_pct")
    assert not njd["best"] and njd["marker"] == ""
    assert "| Initial | " in (md := (report_dir / "tables" / "table1_voxelmorph.md").read_text())
    initial_row = next(line for line in md.splitlines() if line.startswith("| Initial |"))
    assert initial_row.split(" | ")[4] == "–"
    assert "n = 12 (ACDC" in md


def test_stats_files_and_columns(report_dir):
    for name in ("summary", "wilcoxon", "friedman", "subject_values", "undefined", "tuning_cost"):
        assert (report_dir / "stats" / f"{name}.csv").is_file()
    wil = pd.read_csv(report_dir / "stats" / "wilcoxon.csv")
    assert {"n", "statistic", "p", "p_holm", "reason"} <= set(wil.columns)
    # classical methods are compared with the GSMorph of both backbones
    assert set(wil[wil.method == "syn"].backbone) == {"voxelmorph", "transmorph"}
    und = pd.read_csv(report_dir / "stats" / "undefined.csv", keep_default_na=False)
    assert (und[und.structure == "RV"].n_undefined == 1).all() and len(und) > 0
    cost = pd.read_csv(report_dir / "stats" / "tuning_cost.csv").set_index("method")
    assert cost.loc["weighted-s/m/l", "wall_s"] == pytest.approx(90 + 95 + 92)
    assert cost.loc["weighted-tuned", "wall_s"] == pytest.approx(400.0)


def test_combined_table_and_pdflatex(report_dir, tmp_path):
    tex = (report_dir / "tables" / "table1_combined.tex").read_text()
    assert "TransMorph backbone" in tex and "VoxelMorph backbone" in tex
    assert tex.count("GSMorph &") == 2 and "TransMorph-m &" in tex
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    work = tmp_path / "tex"
    work.mkdir()
    shutil.copy(report_dir / "tables" / "tables.tex", work)  # alone: it holds every table itself
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=work,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (work / "tables.pdf").stat().st_size > 1000
    log = (work / "tables.log").read_text(errors="replace")
    assert "Float too large" not in log and "Overfull \\hbox" not in log, log[-3000:]
    if shutil.which("pdftotext"):  # the caption's "p < 0.05" renders as "<", not a text-mode "¡"
        text = subprocess.run(["pdftotext", "tables.pdf", "-"], cwd=work, capture_output=True, text=True).stdout
        assert "p < 0.05" in text and "¡" not in text
    assert "p $<$ 0.05" in tex


def test_figures_are_png_of_expected_size_with_captions(report_dir):
    from gsmorph.report.figures import DPI

    assert DPI == 300  # print resolution: a W x H inch figure is 300 W x 300 H pixels
    fig = report_dir / "figures"
    assert png_size(fig / "dice_boxplot_acdc_voxelmorph.png") == (12 * DPI, 4.5 * DPI)
    assert png_size(fig / "pareto_acdc_voxelmorph.png") == (7 * DPI, 5.5 * DPI)
    width, height = png_size(fig / "conflicts_acdc_voxelmorph_gsmorph.png")
    assert width == 12 * DPI and 2.5 * DPI <= height <= 4 * DPI  # 3 parameter rows: a short figure
    assert png_size(fig / "tuning_cost.png") == ((4.2 * 1 + 1) * DPI, 3.5 * DPI)  # one panel (acdc, voxelmorph)
    assert png_size(fig / "training_curves_acdc_voxelmorph.png") == (13 * DPI, 4 * DPI)
    # qualitative: 2 cases x 2 rows, fixed/moving column + 3 methods, 1.8 inch panels
    assert png_size(fig / "qualitative_acdc_voxelmorph.png") == (round(1.8 * 4 * DPI), round(1.8 * 4 * DPI))
    for stem in ("dice_boxplot_mnm_transmorph", "qualitative_acdc_voxelmorph"):
        assert (fig / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    captions = json.loads((report_dir / "report" / "captions.json").read_text())
    assert "figures/pareto_acdc_voxelmorph.png" in captions and "tables/table1_combined.tex" in captions
    assert "Compute spent" in captions["figures/tuning_cost.png"]
    prov = json.loads((fig / "provenance.json").read_text())
    # mnm has no runs: no Pareto plot there, nothing crashed
    assert not (fig / "pareto_mnm_voxelmorph.png").exists()
    assert isinstance(prov["skipped"], list)


def test_missing_runs_skip_optional_figures(metrics_csvs, tmp_path, capsys):
    out = tmp_path / "results"
    # a --runs folder that does not exist is an error; --no-runs says they are not needed
    assert main(["report", "--metrics", str(metrics_csvs[0]), "--runs", str(tmp_path / "none"),
                 "--out", str(out), "--n-boot", "100"]) == 1
    assert f"--runs {tmp_path / 'none'}: folder not found" in capsys.readouterr().err
    assert not out.exists()
    assert main(["report", "--metrics", str(metrics_csvs[0]), "--no-runs", "--out", str(out), "--n-boot", "100"]) == 0
    text = capsys.readouterr().out
    assert "skipped: Pareto plot" in text and "skipped: qualitative figure" in text
    assert (out / "figures" / "dice_boxplot_acdc_voxelmorph.png").is_file()
    assert not (out / "figures" / "tuning_cost.png").exists()


def test_bad_metrics_inputs(tmp_path, metrics_csvs, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"dataset": ["acdc"], "value": [1.0]}).to_csv(bad, index=False)
    assert main(["report", "--metrics", str(bad), "--no-runs", "--out", str(tmp_path / "o")]) == 1
    assert "missing columns" in capsys.readouterr().err
    assert main(["report", "--metrics", str(metrics_csvs[0]), str(metrics_csvs[0]), "--no-runs",
                 "--out", str(tmp_path / "o")]) == 1
    assert "given twice" in capsys.readouterr().err
    assert main(["report", "--metrics", str(tmp_path / "absent.csv"), "--no-runs", "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_a_runs_caveat_ends_the_captions_of_its_backbones_tables(report_dir):
    said = "Caveats of the runs: HyperMorph (ACDC, seed 0): its lambda-dependence was not learned."
    for name in ("table1_voxelmorph", "table1_combined"):
        assert said in (report_dir / "tables" / f"{name}.md").read_text()
        assert said in (report_dir / "tables" / f"{name}.html").read_text()
    assert "Caveats" not in (report_dir / "tables" / "table1_transmorph.md").read_text()
    captions = json.loads((report_dir / "report" / "captions.json").read_text())
    assert said in captions["tables/table1_voxelmorph.md"]


def test_table_bold_ties_and_latex_cells():
    summary = pd.DataFrame([
        {"dataset": "acdc", "backbone": b, "method": m, "metric": met, "structure": st, "n": 5, "n_undefined": 0,
         "mean": v, "std": 0.01, "ci_low": v, "ci_high": v}
        for (b, m, v) in (("none", "initial", 0.5), ("voxelmorph", "weighted-m", 0.80001), ("voxelmorph", "gsmorph", 0.8))
        for met, st in (("dice", "mean"), ("hd95_mm", "mean"), ("mse", ""), ("njd_pct", ""))])
    wil = stats.wilcoxon_vs_reference(pd.DataFrame(columns=stats.SUBJECT_KEYS + ["value"]))
    t = tables.build(summary, wil, ["voxelmorph"], "t")
    dice_bold = [r.method for r in t.rows if r.cells[("acdc", 0)].bold]
    assert dice_bold == ["weighted-m", "gsmorph"]  # equal when shown with 2 decimals
    hd_bold = [r.method for r in t.rows if r.cells[("acdc", 1)].bold]
    assert hd_bold == ["initial"]
    njd_bold = [r.method for r in t.rows if r.cells[("acdc", 3)].bold]
    assert njd_bold == ["weighted-m", "gsmorph"]  # Initial excluded
    assert tables._tex_cell(t.rows[2].cells[("acdc", 0)]) == r"$\mathbf{80.0 \pm 1.0}$"  # Dice %: one decimal
    assert tables._tex_cell(t.rows[2].cells[("acdc", 1)]) == r"$0.80 \pm 0.01$"  # HD95 mm: two


def test_short_parameter_names_stay_unique():
    from gsmorph.report.figures import short_names

    assert short_names(["a.submodule.0.w", "a.submodule.1.w"]) == ["a.0.w", "a.1.w"]
    assert short_names(["a.submodule.0.w", "a.0.w"]) == ["a.submodule.0.w", "a.0.w"]


def colours_in(png) -> set[tuple[int, int, int]]:
    import matplotlib.image

    pixels = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(np.int64).reshape(-1, 3)
    packed = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2])  # one integer per colour
    return {(int(c >> 16), int(c >> 8 & 255), int(c & 255)) for c in packed}


def test_a_method_has_one_colour_in_every_figure(report_dir):
    """GSMorph, GS-PCGrad and Initial in the box plots, the trade-off plot and the training
    curves: each figure draws each method in the table's colour (gsmorph/methods.py)."""
    import matplotlib.colors

    from gsmorph import methods

    fig = report_dir / "figures"
    rgb = {m: tuple(round(255 * c) for c in matplotlib.colors.to_rgb(methods.get(m).colour))
           for m in ("gsmorph", "gs-pcgrad", "initial", "weighted-m")}
    assert len(set(rgb.values())) == len(rgb)  # distinct colours
    box = colours_in(fig / "dice_boxplot_acdc_voxelmorph.png")
    assert all(c in box for c in rgb.values())
    assert rgb["gsmorph"] in colours_in(fig / "pareto_acdc_voxelmorph.png")
    assert rgb["weighted-m"] in colours_in(fig / "pareto_acdc_voxelmorph.png")
    curves = colours_in(fig / "training_curves_acdc_voxelmorph.png")
    assert rgb["gsmorph"] in curves and rgb["weighted-m"] in curves
    table_colours = {methods.get(m).colour for m in methods.ids()}
    assert len(table_colours) == len(methods.ids())  # one colour per method of Table 1


def test_figures_drawn_in_one_process_are_the_same_files(report_dir, metrics_csvs, tmp_path):
    """The fixture drew its figures in two processes; one process gives the same PNGs,
    captions and skipped reasons."""
    given = json.loads((report_dir / "stats" / "provenance.json").read_text())["config"]
    assert given["workers"] == 2 and given["pairs"]
    argv = ["report", "--metrics", *map(str, metrics_csvs), "--runs", given["runs"], "--out", str(tmp_path / "one"),
            "--pairs", *given["pairs"], "--n-boot", "300", "--workers", "1"]
    assert main(argv) == 0
    two, one = report_dir / "figures", tmp_path / "one" / "figures"
    pngs = sorted(p.name for p in two.glob("*.png"))
    assert len(pngs) > 5 and pngs == sorted(p.name for p in one.glob("*.png"))
    for name in pngs:
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    captions = [(d / "report" / "captions.json").read_text() for d in (report_dir, tmp_path / "one")]
    assert captions[0] == captions[1]
    skipped = [json.loads((d / "provenance.json").read_text()).get("skipped") for d in (two, one)]
    assert skipped[0] == skipped[1]


def test_every_statistic_is_also_a_table_page(report_dir):
    """stats/<name>.html beside each CSV: one table row per CSV row, the same columns."""
    import html.parser

    class Cells(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.head = [], []

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])

        def handle_data(self, data):
            if self.rows and self.get_starttag_text().startswith(("<td", "<th")):
                self.rows[-1].append(data)

    for name in ("summary", "wilcoxon", "friedman", "subject_values", "undefined", "tuning_cost"):
        frame = pd.read_csv(report_dir / "stats" / f"{name}.csv")
        parser = Cells()
        parser.feed((report_dir / "stats" / f"{name}.html").read_text())
        assert parser.rows[0] == list(frame.columns), name
        assert len(parser.rows) - 1 == max(len(frame), 1), name
    page = (report_dir / "stats" / "wilcoxon.html").read_text()
    assert "Holm" in page and "<td" in page


def test_a_table_page_of_no_rows_says_so():
    from gsmorph.report.html_pages import frame_page

    page = frame_page(pd.DataFrame(columns=["a", "b"]), "t <x>")
    assert "(no rows)" in page and "t &lt;x&gt;" in page and "<th class=\"text\">a</th>" in page
    assert ">0.1235<" in frame_page(pd.DataFrame({"v": [0.123456]}), "t")


def test_conflict_rows_are_named_by_their_place_in_the_network():
    from gsmorph.report.layer_names import readable

    # MONAI VoxelMorphUNet of 3 levels: the 'submodule.' count is the level, the index after it
    # encoder (0) or decoder (2), the deepest level the bottleneck, net.1 the output convolution
    paths = ["backbone.unet.net.0.0.conv.weight", "backbone.unet.net.0.1.submodule.0.1.adn.N.bias",
             "backbone.unet.net.0.1.submodule.1.submodule.0.1.conv.bias",
             "backbone.unet.net.0.1.submodule.2.0.conv.weight", "backbone.unet.net.0.2.conv.bias",
             "backbone.unet.net.1.final_conv_out.weight"]
    assert readable(paths) == ["encoder level 0 conv weight", "encoder level 1 norm bias", "bottleneck conv bias",
                               "decoder level 1 conv weight", "decoder level 0 conv bias",
                               "flow head conv out weight"]
    assert readable(["stages.0", "merges.1", "up.2", "head", "patch_embed"]) == \
        ["encoder stage 0", "patch merging 1", "decoder level 2", "flow head", "patch embedding"]
    assert readable(["enc.0.weight", "flow.bias"]) == ["enc.0.weight", "flow.bias"]  # unknown: as given
    assert readable(["head.weight", "head.weight.x"]) == ["flow head weight", "flow head weight x"]


def code_convention_summary():
    """A summary of Initial, SyN and GSMorph (VoxelMorph) in the code convention, ACDC and M&Ms."""
    return pd.DataFrame([
        {"dataset": d, "backbone": b, "method": m, "metric": met, "structure": st, "n": 5, "n_undefined": 0,
         "mean": v, "std": 0.01, "ci_low": v, "ci_high": v}
        for d in ("acdc", "mnm")
        for (b, m, v) in (("none", "initial", 0.5), ("none", "syn", 0.7), ("voxelmorph", "gsmorph", 0.8))
        for met, st in (("code_dice", "mean"), ("code_hd95_px", "mean"), ("mse", ""), ("code_njd_pct", ""))])


def test_the_papers_table_1_as_reference_rows():
    from gsmorph.report import paper

    wil = stats.wilcoxon_vs_reference(pd.DataFrame(columns=stats.SUBJECT_KEYS + ["value"]))
    t = tables.build(code_convention_summary(), wil, ["voxelmorph"], "t", convention="gsmorph-code")
    t = paper.add_paper_rows(t)
    shown = [(r.display, r.reference) for r in t.rows]
    assert shown == [("Initial", ""), ("Initial (paper)", "paper"), ("SyN", ""), ("SyN (paper)", "paper"),
                     ("GSMorph", ""), ("GSMorph (paper)", "paper")]
    published = paper.read_paper_table().set_index(["dataset", "method"])
    gs = t.rows[5]
    assert gs.cells[("acdc", 0)].mean == float(published.loc[("ACDC", "GSMorph"), "dice_mean"])  # 87.45
    assert gs.cells[("mnm", 2)].std == float(published.loc[("M&M", "GSMorph"), "mse_e2_std"])
    assert gs.cells[("acdc", 0)].text() == "87.5 ± 2.3"  # Dice %: one decimal, as our rows
    assert t.rows[1].cells[("acdc", 3)].text() == "–"  # Initial's NJD means nothing
    assert not any(c.bold or c.level for r in t.rows if r.reference for c in r.cells.values())
    assert "Rows '(paper)'" in t.caption
    frame = tables.to_frame(t)
    assert set(frame.source) == {"this run", "paper"}
    assert "GSMorph (paper) &" in tables.to_latex(t, "x")


def test_paper_rows_show_a_published_bound_as_written():
    from gsmorph.report import paper

    summary = code_convention_summary().replace({"method": {"gsmorph": "gs-agr"}})
    wil = stats.wilcoxon_vs_reference(pd.DataFrame(columns=stats.SUBJECT_KEYS + ["value"]))
    t = paper.add_paper_rows(tables.build(summary, wil, ["voxelmorph"], "t", convention="gsmorph-code"))
    agr = next(r for r in t.rows if r.display == "GS-Agr (paper)")
    assert agr.cells[("mnm", 3)].text() == "<0.001" and agr.cells[("acdc", 3)].text() == "0.00"
    assert tables._tex_cell(agr.cells[("mnm", 3)]) == "$<$0.001"


def test_mean_ranks_by_hand():
    from gsmorph.report.ranks import mean_ranks

    # Dice of 3 methods on 2 subjects: subject a ranks C > B > A, subject b ties A and B above C
    dice = {("a", "initial"): 0.1, ("a", "syn"): 0.5, ("a", "gsmorph"): 0.9,
            ("b", "initial"): 0.6, ("b", "syn"): 0.6, ("b", "gsmorph"): 0.2}
    rows = [{"dataset": d, "backbone": "none" if m != "gsmorph" else "voxelmorph", "method": m, "subject": s,
             "metric": "dice", "structure": "mean", "value": v + (0.0 if d == "acdc" else -0.05 * (m == "gsmorph"))}
            for d in ("acdc", "mnm") for (s, m), v in dice.items()]
    ranks = mean_ranks(pd.DataFrame(rows)).set_index(["dataset", "method"])["mean_rank"]
    # acdc: initial (3 + 1.5) / 2, syn (2 + 1.5) / 2, gsmorph (1 + 3) / 2; mnm the same ranks
    assert ranks[("acdc", "initial")] == 2.25 and ranks[("acdc", "syn")] == 1.75 and ranks[("acdc", "gsmorph")] == 2.0
    assert ranks[("all", "gsmorph")] == 2.0 and ranks[("all", "initial")] == 2.25
