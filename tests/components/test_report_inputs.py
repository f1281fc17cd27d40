"""`gsmorph report` refuses metrics and run files that would make a wrong table or figure,
with one error line naming the file (and line), writing nothing; LaTeX and matplotlib
take any method name as text."""
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from gsmorph.cli import main
from gsmorph.evaluate import COLUMNS
from gsmorph.report.tables import _tex_escape

SUBJECTS = [f"p{i}" for i in range(4)]
RUNS = [("none", "initial"), ("none", "demons"), ("voxelmorph", "weighted-s"), ("voxelmorph", "gsmorph")]


def rows(backbone, method, subjects=SUBJECTS, seeds=(0,), level=0.8):
    out = []
    for seed in seeds:
        for i, subject in enumerate(subjects):
            base = dict(dataset="acdc", backbone=backbone, method=method, seed=seed, subject=subject, slice=0)
            for structure in ("LV", "Myo", "RV"):
                out.append({**base, "metric": "dice", "structure": structure, "value": level + 0.01 * i})
            out.append({**base, "metric": "mse", "structure": "", "value": 0.01})
    return out


def write(path, table_rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table_rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def all_rows(**changes):
    return [r for backbone, method in RUNS for r in rows(backbone, method, **changes.get(method, {}))]


def refused(capsys, args, *expected):
    out = args[args.index("--out") + 1]
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gsmorph report: error: "), err
    for text in expected:
        assert text in err, err
    assert not Path(out).exists(), "nothing written"
    return err


def report_args(csv, out, *extra):
    return ["--metrics", str(csv), "--no-runs", "--out", str(out), "--n-boot", "10", "--workers", "1", *extra]


@pytest.mark.parametrize("structure", ["Aorta", "mean"])
def test_an_unknown_structure_or_a_mean_row_is_refused_naming_file_and_line(structure, tmp_path, capsys):
    """An "Aorta" or a "mean" row used to be averaged into the mean Dice."""
    table = all_rows()
    extra = {**table[0], "structure": structure, "value": 1.0}
    csv = write(tmp_path / "metrics.csv", table[:5] + [extra] + table[5:])
    refused(capsys, report_args(csv, tmp_path / "results"), f"{csv}: line 7: structure '{structure}' of dice",
            "not one of LV, Myo, RV")


def test_a_structure_on_a_per_pair_metric_is_refused(tmp_path, capsys):
    table = all_rows()
    mse = next(i for i, r in enumerate(table) if r["metric"] == "mse")
    table[mse] = {**table[mse], "structure": "LV"}
    csv = write(tmp_path / "metrics.csv", table)
    refused(capsys, report_args(csv, tmp_path / "results"), f"line {mse + 2}: structure 'LV' of mse",
            "empty (a per-pair metric)")


def test_a_method_on_fewer_subjects_is_refused(tmp_path, capsys):
    """Its row used to sit, bold, beside the others under a caption saying n = 4."""
    csv = write(tmp_path / "metrics.csv", all_rows(**{"weighted-s": {"subjects": SUBJECTS[:3], "level": 0.95}}))
    refused(capsys, report_args(csv, tmp_path / "results"),
            f"{csv}: weighted-s (voxelmorph, seed 0) on acdc holds 3 of the 4 subjects", "missing: p3")


def test_learned_methods_with_uneven_seeds_are_refused(tmp_path, capsys):
    csv = write(tmp_path / "metrics.csv", all_rows(**{"gsmorph": {"seeds": (0, 1)}}))
    refused(capsys, report_args(csv, tmp_path / "results"), "learned methods on acdc have different seeds",
            "gsmorph (voxelmorph): [0, 1]", "weighted-s (voxelmorph): [0]")


def test_a_seed_of_a_method_on_fewer_subjects_is_refused(tmp_path, capsys):
    table = all_rows(**{"gsmorph": {"seeds": (0, 1)}, "weighted-s": {"seeds": (0, 1)}})
    table = [r for r in table if not (r["method"] == "gsmorph" and r["seed"] == 1 and r["subject"] == "p0")]
    csv = write(tmp_path / "metrics.csv", table)
    refused(capsys, report_args(csv, tmp_path / "results"), "gsmorph (voxelmorph, seed 1) on acdc holds 3 of the 4")


def test_equal_sets_with_one_seed_for_the_classical_methods_are_reported(tmp_path):
    csv = write(tmp_path / "metrics.csv", all_rows(**{"gsmorph": {"seeds": (0, 1)}, "weighted-s": {"seeds": (0, 1)}}))
    assert main(["report", *report_args(csv, tmp_path / "results")]) == 0
    summary = pd.read_csv(tmp_path / "results" / "stats" / "summary.csv")
    assert set(summary["n"]) == {len(SUBJECTS)}


@pytest.mark.parametrize("flag, value, reason", [("--n-boot", "0", "--n-boot: must be at least 1"),
                                                 ("--n-boot", "-5", "--n-boot: must be at least 1"),
                                                 ("--seed", "-1", "--seed: must be >= 0")])
def test_bad_report_numbers_are_one_error_line(flag, value, reason, tmp_path, capsys):
    csv = write(tmp_path / "metrics.csv", all_rows())
    args = [a for a in report_args(csv, tmp_path / "results") if a not in ("--n-boot", "10")]
    refused(capsys, [*args, flag, value], reason)


def test_a_non_numeric_value_in_a_train_log_is_one_error_line(tmp_path, capsys):
    csv = write(tmp_path / "metrics.csv", all_rows())
    log = tmp_path / "runs" / "acdc" / "voxelmorph" / "gsmorph" / "seed0" / "train_log.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,loss_sim,loss_reg,val_dice\n1,0.5,0.1,\n2,0.4,0.1x,0.7\n")
    args = ["--metrics", str(csv), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "results"),
            "--n-boot", "10", "--workers", "1"]
    refused(capsys, args, f"{log}: line 3: loss_reg = '0.1x' is not a number")
    assert not (tmp_path / "results").exists()


def test_a_method_name_with_math_and_latex_characters_is_text(tmp_path):
    """A (plugin) method id matplotlib would parse as mathtext, and LaTeX as markup."""
    name = r"my$\frac$_x^{~}&#%"
    csv = write(tmp_path / "metrics.csv", all_rows() + rows("none", name))
    out = tmp_path / "results"
    assert main(["report", *report_args(csv, out)]) == 0
    assert (out / "figures" / "dice_boxplot_acdc.png").is_file() or list((out / "figures").glob("dice_boxplot*.png"))
    tex = (out / "tables" / "table1_combined.tex").read_text()
    assert r"my\$\textbackslash{}frac\$\_x\textasciicircum{}\{\textasciitilde{}\}\&\#\%" in tex
    if shutil.which("pdflatex") is None:
        return
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                         cwd=out / "tables", capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]


def test_tex_escape_of_every_special_character():
    assert _tex_escape("\\ & % $ # _ { } ~ ^") == (r"\textbackslash{} \& \% \$ \# \_ \{ \} \textasciitilde{} "
                                                   r"\textasciicircum{}")
    assert _tex_escape("a < b ± c") == "a $<$ b $\\pm$ c"
