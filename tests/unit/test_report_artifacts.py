"""The report's artifacts declared once (gsmorph/report/artifacts.py): the files the verb
writes are those the workflow expects, and the HTML report's caption files are the table's."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gsmorph import pairs
from gsmorph.evaluate import COLUMNS
from gsmorph.io import write_json, write_nifti
from gsmorph.report import artifacts
from gsmorph.report.build import make_report

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = REPO / "workflow" / "report"
METHODS = ["initial", "weighted-m", "gsmorph"]  # a workflow config's methods
SUBJECTS = ["s1", "s2", "s3"]


def metrics_csv(path: Path) -> Path:
    """Test metrics of METHODS on acdc (one seed, two slices per subject): Dice in both conventions, NJD."""
    rng = np.random.default_rng(1)
    rows = []
    for method, level in (("initial", 0.6), ("weighted-m", 0.75), ("gsmorph", 0.8)):
        backbone = "none" if method == "initial" else "voxelmorph"
        for subject in SUBJECTS:
            for sl in range(2):
                base = dict(dataset="acdc", backbone=backbone, method=method, seed=0, subject=subject, slice=sl)
                for structure in ("LV", "Myo", "RV"):  # ours and the authors' code's convention
                    for metric in ("dice", "code_dice"):
                        rows.append({**base, "metric": metric, "structure": structure,
                                     "value": level + 0.01 * rng.normal()})
                rows.append({**base, "metric": "njd_pct", "structure": "",
                             "value": 0.0 if method == "initial" else 1.0 - level + 0.01 * rng.normal()})
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def write_runs(root: Path) -> None:
    """summary.json and train_log.csv of both learned runs, conflicts.csv of GSMorph's."""
    for method, dice in (("weighted-m", 0.75), ("gsmorph", 0.8)):
        run = root / "acdc" / "voxelmorph" / method / "seed0"
        write_json(run / "summary.json", {"best_val_dice": dice, "val_njd_pct": 0.5, "wall_s": 10.0,
                                          "device": "cpu", "lam": 0.01 if method == "weighted-m" else None})
        pd.DataFrame({"epoch": [1, 2], "loss_sim": [0.02, 0.01], "loss_reg": [0.001, 0.002],
                      "val_dice": [dice - 0.05, dice]}).to_csv(run / "train_log.csv", index=False)
    rows = [{"epoch": e, "group": g, "conflict_frac": 0.2, "cosine_mean": -0.1}
            for e in (1, 2) for g in ("enc.weight", "flow.weight")]
    pd.DataFrame(rows).to_csv(root / "acdc" / "voxelmorph" / "gsmorph" / "seed0" / "conflicts.csv", index=False)


def write_pairs(root: Path) -> list[Path]:
    """A prepared folder of SUBJECTS and an identity-warp pairs folder of each method."""
    prepared = root / "prepared"
    label = np.zeros((16, 16, 2), np.uint8)
    label[4:12, 4:12] = 2
    label[6:10, 6:10] = 1
    for subject in SUBJECTS:
        for frame in ("ED", "ES"):
            write_nifti(prepared / subject / f"{frame}.nii.gz", label.astype(np.float32) / 3, (1.5, 1.5, 8.0))
            write_nifti(prepared / subject / f"{frame}_gt.nii.gz", label, (1.5, 1.5, 8.0))
    pd.DataFrame({"subject": SUBJECTS, "dataset": "acdc", "group": "NOR", "split": "test", "n_slices": 2,
                  "spacing_x": 1.5, "spacing_y": 1.5, "spacing_z": 8.0}).to_csv(prepared / "subjects.csv", index=False)
    folders = []
    for method in METHODS:
        backbone = "none" if method == "initial" else "voxelmorph"
        moved = np.moveaxis(label, -1, 0)
        subjects = [pairs.SubjectPairs(s, np.arange(2), np.zeros((2, 2, 16, 16), np.float32), moved / 3.0, moved,
                                       np.full(2, 0.1), np.array([1.5, 1.5])) for s in SUBJECTS]
        meta = {"dataset": "acdc", "backbone": backbone, "method": method, "seed": 0, "split": "test",
                "prepared": str(prepared)}
        folders.append(pairs.write_folder(root / "pairs" / backbone / method / "seed0", meta, subjects))
    return folders


@pytest.fixture(scope="module")
def report_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    write_runs(root / "runs")
    metrics = metrics_csv(root / "metrics" / "acdc" / "metrics.csv")
    out = root / "results"
    make_report([str(metrics)], root / "runs", out, pairs=[str(f) for f in write_pairs(root)], n_boot=50)
    return out


def test_the_verb_writes_the_files_the_workflow_expects(report_out):
    expected = artifacts.expected_files(["acdc"], ["voxelmorph"], METHODS)
    missing = [path for paths in expected.values() for path in paths if not (report_out / path).is_file()]
    assert missing == []
    written = {p.stem for p in (report_out / "figures").glob("*.png")}
    assert written == set(artifacts.expected_figures(["acdc"], ["voxelmorph"], METHODS))
    assert {"frontier_acdc_voxelmorph", "conflicts_acdc_voxelmorph_gsmorph", "tuning_cost"} <= written


def test_a_caption_without_names_is_the_same_text_in_captions_json_and_the_html_report(report_out):
    import json

    captions = json.loads((report_out / "report" / "captions.json").read_text())
    html = (CAPTIONS / "figure_tuning_cost.rst").read_text().replace(artifacts.SCALE, "")
    assert " ".join(html.split()) == captions["figures/tuning_cost.png"]
    assert "data loading and validation included" in captions["figures/tuning_cost.png"]


def test_every_figure_caption_names_its_figures_data(report_out):
    import json

    captions = json.loads((report_out / "report" / "captions.json").read_text())
    for stem, figure in artifacts.expected_figures(["acdc"], ["voxelmorph"], METHODS).items():
        text = captions[f"figures/{stem}.png"]
        assert ("ACDC" in text) == (figure.dataset != "all"), stem
        assert "{" not in text and "}" not in text, stem  # every field of the template filled


def test_the_caption_files_are_written_from_the_table():
    files = artifacts.caption_files()
    on_disk = {p.name for p in CAPTIONS.glob("*.rst")} - {"workflow.rst"}  # the front page is the workflow's own
    assert on_disk == set(files)
    stale = [name for name, text in files.items() if (CAPTIONS / name).read_text(encoding="utf-8") != text]
    assert stale == [], "run: python -m gsmorph.report.artifacts workflow/report"


def test_expected_figures_follow_the_methods_of_a_configuration():
    assert artifacts.expected_figures(["acdc"], ["voxelmorph"], ["initial", "demons"]) == {}
    only_gsmorph = artifacts.expected_figures(["acdc", "mnm"], ["voxelmorph"], ["gsmorph"])
    assert set(only_gsmorph) == {f"{kind}_{d}_voxelmorph" for kind in ("dice_boxplot", "qualitative", "pareto",
                                                                       "training_curves") for d in ("acdc", "mnm")} \
        | {"tuning_cost", "conflicts_acdc_voxelmorph_gsmorph", "conflicts_mnm_voxelmorph_gsmorph"}
    assert only_gsmorph["conflicts_mnm_voxelmorph_gsmorph"] == artifacts.Figure("conflicts", "mnm", "voxelmorph",
                                                                                 "gsmorph")
    tables = artifacts.expected_files(["acdc"], ["voxelmorph"], ["initial"])["tables"]
    assert {Path(t).stem for t in tables} == {"table1_combined", "table1_combined_code_convention"}


def test_every_artifact_has_a_category_and_a_caption():
    for kind, figure in artifacts.FIGURES.items():
        assert figure.category in artifacts.CATEGORIES, kind
        assert figure.html_caption() and "{" not in figure.html_caption(), kind
    assert all(s.title for s in artifacts.STATS.values())
