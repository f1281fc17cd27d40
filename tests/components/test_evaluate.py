"""`gsmorph evaluate` on pairs folders built from known fields: identity and the true shift."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.data.loader import prepared_identity
from gsmorph.errors import GSMorphError
from gsmorph.evaluate import COLUMNS, evaluate, undefined_counts
from gsmorph.io import write_nifti

SHAPE = (24, 20, 3)
SPACING = (1.5, 1.25, 8.0)
SHIFT = 2  # ES is ED moved by +2 voxels along axis 0: ES(x + (2, 0)) = ED(x)


def labels_at(offset):
    lab = np.zeros(SHAPE, np.uint8)
    lab[6 + offset:12 + offset, 4:10, :] = 1      # LV 6x6
    lab[6 + offset:12 + offset, 12:16, :] = 2     # Myo 6x4
    lab[14 + offset:18 + offset, 4:10, :2] = 3    # RV 4x6, absent on slice 2
    return lab


@pytest.fixture()
def prepared(tmp_path):
    root = tmp_path / "prepared"
    ed_lab, es_lab = labels_at(0), labels_at(SHIFT)
    for subject in ("s01", "s02"):
        folder = root / subject
        write_nifti(folder / "ED.nii.gz", ed_lab.astype(np.float32) / 3, SPACING)
        write_nifti(folder / "ES.nii.gz", es_lab.astype(np.float32) / 3, SPACING)
        write_nifti(folder / "ED_gt.nii.gz", ed_lab, SPACING)
        write_nifti(folder / "ES_gt.nii.gz", es_lab, SPACING)
        true = np.zeros((*SHAPE, 3), np.float32)
        true[..., 0] = SHIFT
        write_nifti(folder / "true_disp.nii.gz", true, SPACING)
    pd.DataFrame({"subject": ["s01", "s02"], "dataset": "toy", "group": "NOR", "split": "test",
                  "n_slices": SHAPE[2], "spacing_x": SPACING[0], "spacing_y": SPACING[1], "spacing_z": SPACING[2],
                  "has_true_disp": True}).to_csv(root / "subjects.csv", index=False)
    return root


def write_pairs(root, prepared, method, perfect, mode="2d", spacing=None, backbone="none"):
    out = root / "pairs" / "toy" / backbone / method / "seed0"
    ed_lab, es_lab = labels_at(0), labels_at(SHIFT)
    for subject in ("s01", "s02"):
        if mode == "2d":
            k = SHAPE[2]
            disp = np.zeros((k, 2, *SHAPE[:2]), np.float32)
            if perfect:
                disp[:, 0] = SHIFT
            lab = ed_lab if perfect else es_lab
            sp = pairs.SubjectPairs(
                subject, np.arange(k), disp, np.moveaxis(lab, -1, 0).astype(np.float32) / 3,
                np.moveaxis(lab, -1, 0), np.full(k, 0.5), np.asarray(spacing or SPACING[:2], float))
        else:
            disp = np.zeros((1, 3, *SHAPE), np.float32)
            if perfect:
                disp[:, 0] = SHIFT
            lab = ed_lab if perfect else es_lab
            sp = pairs.SubjectPairs(subject, np.array([-1]), disp, lab[None].astype(np.float32) / 3, lab[None],
                                    np.array([2.0]), np.asarray(SPACING, float))
        pairs.save_subject(out, sp)
    meta = {"dataset": "toy", "backbone": "" if backbone == "none" else backbone, "method": method, "seed": 0,
            "split": "test", "prepared": str(prepared), "moving": "ES", "fixed": "ED"}
    pairs.finish(out, meta, ["s01", "s02"])
    return out


def value(table, method, metric, structure="", subject="s01", slice_=0):
    row = table[(table.method == method) & (table.metric == metric) & (table.structure == structure)
                & (table.subject == subject) & (table["slice"] == slice_)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


def test_identity_and_true_field_known_values(tmp_path, prepared):
    initial = write_pairs(tmp_path, prepared, "initial", perfect=False)
    perfect = write_pairs(tmp_path, prepared, "gsmorph", perfect=True, backbone="voxelmorph")
    table = evaluate([initial, perfect])
    assert list(table.columns) == COLUMNS
    # initial: squares shifted by 2 of 6 rows: Dice 2*4*6/(2*36) = 2/3 (LV); Myo 2*4*4/48
    assert value(table, "initial", "dice", "LV") == pytest.approx(2 / 3)
    assert value(table, "initial", "dice", "Myo") == pytest.approx(2 / 3)
    assert value(table, "initial", "dice", "RV") == pytest.approx(2 * 2 * 6 / 48)
    # a translation by 2 rows of 1.5 mm: no surface voxel is farther than 3 mm from the other surface
    assert 0 < value(table, "initial", "hd95_mm", "LV") <= 2 * 1.5 + 1e-9
    assert value(table, "initial", "epe_mm") == pytest.approx(SHIFT * 1.5)
    assert value(table, "initial", "njd_pct") == 0.0
    assert value(table, "initial", "sdlogj") == 0.0
    assert value(table, "initial", "runtime_s") == 0.5
    assert value(table, "initial", "mse") > 0
    # true field: perfect registration
    assert (table[table.method == "gsmorph"].backbone == "voxelmorph").all()
    for s in ("LV", "Myo", "RV"):
        assert value(table, "gsmorph", "dice", s) == 1.0
        assert value(table, "gsmorph", "hd95_mm", s) == 0.0
    assert value(table, "gsmorph", "epe_mm") == 0.0
    assert value(table, "gsmorph", "mse") == 0.0
    # RV absent on slice 2: NaN, never 0 or 1, and counted
    assert math.isnan(value(table, "gsmorph", "dice", "RV", slice_=2))
    assert math.isnan(value(table, "initial", "hd95_mm", "RV", subject="s02", slice_=2))
    counts = undefined_counts(table)
    rv = counts[(counts.method == "initial") & (counts.metric == "dice")]
    assert rv.structure.tolist() == ["RV"] and rv.n_undefined.tolist() == [2] and rv.n_values.tolist() == [6]
    assert table[(table.metric != "dice") & (table.metric != "hd95_mm")]["value"].notna().all()
    assert (table.backbone[table.method == "initial"] == "none").all()


def test_3d_pairs(tmp_path, prepared):
    folder = write_pairs(tmp_path, prepared, "syn", perfect=True, mode="3d")
    table = evaluate([folder])
    assert set(table["slice"]) == {-1}
    assert value(table, "syn", "dice", "RV", slice_=-1) == 1.0
    assert value(table, "syn", "epe_mm", slice_=-1) == 0.0


def test_workers_give_same_table(tmp_path, prepared):
    folders = [write_pairs(tmp_path, prepared, "initial", perfect=False),
               write_pairs(tmp_path, prepared, "demons", perfect=True)]
    pd.testing.assert_frame_equal(evaluate(folders, workers=1), evaluate(folders, workers=2))


def test_cli_writes_csv_sidecar_and_reports_nan(tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    out = tmp_path / "results" / "toy" / "metrics.csv"
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out), "--workers", "1"]) == 0
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    # per pair: 3 structures x 5 (dice, hd95_mm, l2r_hd95_vox, code_dice, code_hd95_px) and 9 others
    # (mse, njd_pct, sdlogj, epe_mm, epe_image_mm, runtime_s, l2r_sdlogj, l2r_num_foldings, code_njd_pct)
    assert len(table) == 2 * 3 * (3 * 5 + 9)
    side = json.loads((out.parent / "metrics.csv.provenance.json").read_text())
    assert side["n_pairs"] == 6
    assert {(u["metric"], u["structure"], u["n_undefined"], u["n_lost"]) for u in side["undefined"]} == \
        {("dice", "RV", 2, 0), ("hd95_mm", "RV", 2, 0), ("l2r_hd95_vox", "RV", 2, 0)}
    assert side["data"]["toy"] == {"phantom": True, "n_subjects": 2, "splits": {"test": 2}, "image_size": [24, 20],
                                   "epochs": [], "prepared_identity": prepared_identity(prepared)}
    assert "undefined (NaN)" in capsys.readouterr().out


def test_bad_inputs(tmp_path, prepared, capsys):
    good = write_pairs(tmp_path, prepared, "initial", perfect=False)
    with pytest.raises(GSMorphError, match="both hold"):
        evaluate([good, good])
    bad_spacing = write_pairs(tmp_path, prepared, "demons", perfect=False, spacing=(1.0, 1.0))
    with pytest.raises(GSMorphError, match="spacing"):
        evaluate([bad_spacing])
    (good / pairs.INDEX).unlink()
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(good), "--out", str(out)]) == 1
    assert "index.csv" in capsys.readouterr().err and not out.exists()
    other = write_pairs(tmp_path, prepared, "syn", perfect=False)
    meta = json.loads((other / "pairs.json").read_text())
    meta["prepared"] = str(tmp_path / "nowhere")
    (other / "pairs.json").write_text(json.dumps(meta))
    with pytest.raises(GSMorphError, match="prepared"):
        evaluate([other])


def test_a_pairs_folder_of_another_split_is_refused(tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    meta = json.loads((folder / "pairs.json").read_text())
    (folder / "pairs.json").write_text(json.dumps({**meta, "split": "val"}))
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out)]) == 1
    assert f"{folder / 'pairs.json'}: holds the 'val' split, not 'test'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out), "--split", "val"]) == 0


def test_a_structure_erased_by_the_warp_is_counted_as_lost(tmp_path, prepared):
    folder = write_pairs(tmp_path, prepared, "gsmorph", perfect=True, backbone="voxelmorph")
    sp = pairs.load_subject(folder / "s01.npz")
    sp.moved_label[sp.moved_label == 2] = 0  # the Myo is gone from every slice of s01
    pairs.save_subject(folder, sp)
    table = evaluate([folder])
    assert value(table, "gsmorph", "dice", "Myo") == 0.0
    assert math.isnan(value(table, "gsmorph", "hd95_mm", "Myo"))
    counts = undefined_counts(table)
    myo = counts[(counts.metric == "hd95_mm") & (counts.structure == "Myo")]
    assert myo.n_undefined.tolist() == [3] and myo.n_lost.tolist() == [3]
    rv = counts[(counts.metric == "hd95_mm") & (counts.structure == "RV")]
    assert rv.n_lost.tolist() == [0]  # RV missing from a frame is undefined, not lost


def _one_error_line(capsys, verb: str = "evaluate") -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"gsmorph {verb}: error: "), err
    return err


def _damage(npz, kind: str) -> None:
    """Rewrite one pairs file with values no registration gives (np.savez: no validation)."""
    with np.load(npz) as data:
        arrays = {k: data[k].copy() for k in data.files}
    if kind == "nan_image":
        arrays["moved_image"][0, 3, 4] = np.nan
    elif kind == "inf_image":
        arrays["moved_image"][-1, 0, 0] = np.inf
    elif kind == "unknown_label":
        arrays["moved_label"][0, 0, 0] = 7
    elif kind == "negative_runtime":
        arrays["runtime_s"][1] = -0.5
    elif kind == "duplicated_slice":
        arrays["slice_index"][2] = arrays["slice_index"][1]
    np.savez(npz, **arrays)


@pytest.mark.parametrize("kind, reason", [("nan_image", "moved_image has 1 non-finite"),
                                          ("inf_image", "moved_image has 1 non-finite"),
                                          ("unknown_label", "moved_label holds [7]"),
                                          ("negative_runtime", "runtime_s holds [-0.5]"),
                                          ("duplicated_slice", "slice_index repeats slice(s) [1]")])
def test_pairs_no_registration_gives_are_refused_naming_the_file(kind, reason, tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    _damage(folder / "s02.npz", kind)
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out), "--workers", "1"]) == 1
    err = _one_error_line(capsys)
    assert str(folder / "s02.npz") in err and reason in err, err
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "bit_flip"])
def test_a_damaged_pairs_file_is_one_error_line(damage, tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    npz = folder / "s01.npz"
    data = bytearray(npz.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 3]
    else:
        data[len(data) // 2] ^= 0xFF  # inside an array's bytes: the zip's CRC no longer matches
    npz.write_bytes(bytes(data))
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out), "--workers", "1"]) == 1
    err = _one_error_line(capsys)
    assert f"{npz}: cannot read pairs file" in err, err
    assert not out.exists()


def _prepare_again(prepared) -> None:
    """What a new `gsmorph prepare` into the same folder changes: its provenance."""
    (prepared / "provenance.json").write_text(json.dumps({"prepared": "again"}))


def test_pairs_record_the_preparation_and_a_re_prepared_folder_is_refused(tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    recorded = json.loads((folder / "pairs.json").read_text())[pairs.IDENTITY]
    assert recorded == prepared_identity(prepared)
    assert len(evaluate([folder]))
    _prepare_again(prepared)
    assert prepared_identity(prepared) != recorded
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(folder), "--out", str(out)]) == 1
    err = _one_error_line(capsys)
    assert f"{folder / 'pairs.json'}: registered on another preparation" in err and recorded in err, err
    assert not out.exists()


def test_pairs_of_two_preparations_of_one_dataset_are_not_merged(tmp_path, prepared, capsys):
    import shutil

    other = tmp_path / "prepared_again"
    shutil.copytree(prepared, other)
    _prepare_again(other)
    a = write_pairs(tmp_path, prepared, "initial", perfect=False)
    b = write_pairs(tmp_path, other, "demons", perfect=False)
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--pairs", str(a), str(b), "--out", str(out)]) == 1
    err = _one_error_line(capsys)
    assert str(a) in err and str(b) in err and "two different preparations" in err, err
    # evaluated apart, their tables are refused together by the report
    assert main(["evaluate", "--pairs", str(a), "--out", str(tmp_path / "a.csv")]) == 0
    assert main(["evaluate", "--pairs", str(b), "--out", str(tmp_path / "b.csv")]) == 0
    capsys.readouterr()
    report = tmp_path / "results"
    assert main(["report", "--metrics", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--no-runs",
                 "--out", str(report), "--n-boot", "10"]) == 1
    err = _one_error_line(capsys, "report")
    assert str(tmp_path / "b.csv") in err and "another preparation" in err, err
    assert not report.exists()


@pytest.mark.parametrize("column, value", [("n_slices", "three"), ("n_slices", "2.5"), ("spacing_x", "-1.5")])
def test_a_bad_number_in_subjects_csv_is_one_error_line(column, value, tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    table = pd.read_csv(prepared / "subjects.csv", dtype=str)
    table.loc[1, column] = value
    table.to_csv(prepared / "subjects.csv", index=False)
    folder_meta = json.loads((folder / "pairs.json").read_text())
    folder_meta.pop(pairs.IDENTITY)  # the check of the numbers, not of the preparation
    (folder / "pairs.json").write_text(json.dumps(folder_meta))
    assert main(["evaluate", "--pairs", str(folder), "--out", str(tmp_path / "m.csv")]) == 1
    err = _one_error_line(capsys)
    assert f"{prepared / 'subjects.csv'}: line 3: {column} = '{value}' of subject s02" in err, err


@pytest.mark.parametrize("seed", ["x", -1, 1.5])
def test_a_pairs_json_seed_that_is_not_a_seed_is_refused(seed, tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    meta = json.loads((folder / "pairs.json").read_text())
    (folder / "pairs.json").write_text(json.dumps({**meta, "seed": seed}))
    assert main(["evaluate", "--pairs", str(folder), "--out", str(tmp_path / "m.csv")]) == 1
    assert f"{folder / 'pairs.json'}: key 'seed' is {seed!r}, not an integer >= 0" in _one_error_line(capsys)


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xfe\x00 not a CSV", "cannot read CSV (UnicodeDecodeError"),
    (b"subject,file,n_pairs\ns01,../../elsewhere.npz,3\n", "file '../../elsewhere.npz' is not a plain name"),
    (b"subject,file,n_pairs\ns01,s01.npz,3\ns02,s01.npz,3\n", "line 3: file 's01.npz' of subject s02 is not 's02.npz'"),
])
def test_a_bad_index_csv_is_one_error_line(content, reason, tmp_path, prepared, capsys):
    folder = write_pairs(tmp_path, prepared, "initial", perfect=False)
    (folder / pairs.INDEX).write_bytes(content)
    assert main(["evaluate", "--pairs", str(folder), "--out", str(tmp_path / "m.csv")]) == 1
    err = _one_error_line(capsys)
    assert f"{folder / pairs.INDEX}: {reason}" in err, err
