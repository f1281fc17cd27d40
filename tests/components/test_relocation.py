"""Relocatable outputs: a results tree copied elsewhere (the original deleted) still
evaluates; pairs copied alone evaluate with --prepared; old absolute paths still read."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.evaluate import evaluate, read_metrics
from gsmorph.locations import relative, resolve

from tiny import tiny_set

SET = tiny_set()

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def test_relative_and_resolve_are_inverse(tmp_path):
    folder = tmp_path / "pairs" / "acdc" / "m" / "seed0"
    data = tmp_path / "prepared" / "acdc"
    rel = relative(data, folder)
    assert rel == "../../../../prepared/acdc"  # four levels up, then down: computed by hand
    assert resolve(rel, folder) == data.resolve()
    assert resolve(str(data), tmp_path / "elsewhere") == data  # absolute paths stay as they are


@pytest.fixture(scope="module")
def tree(prepared_acdc, tmp_path_factory):
    """A finished results tree: prepared/acdc, a trained run, its pairs and Initial's pairs."""
    root = tmp_path_factory.mktemp("tree") / "results"
    prepared = root / "prepared" / "acdc"
    shutil.copytree(prepared_acdc, prepared)
    run = root / "runs" / "acdc" / "voxelmorph" / "weighted" / "seed0"
    learned = root / "pairs" / "acdc" / "voxelmorph" / "weighted" / "seed0"
    initial = root / "pairs" / "acdc" / "none" / "initial" / "seed0"
    assert main(["train", "--prepared", str(prepared), "--backbone", "voxelmorph", "--method", "weighted",
                 "--lam", "0.01", "--seed", "0", "--out", str(run), "--set", SET]) == 0
    assert main(["infer", "--run", str(run), "--prepared", str(prepared), "--split", "test",
                 "--out", str(learned), "--device", "cpu", "--nifti"]) == 0
    assert main(["register", "--method", "initial", "--prepared", str(prepared), "--split", "test",
                 "--out", str(initial)]) == 0
    return root


def folders(root):
    return [root / "pairs" / "acdc" / "voxelmorph" / "weighted" / "seed0",
            root / "pairs" / "acdc" / "none" / "initial" / "seed0"]


def test_recorded_paths_are_relative(tree):
    for folder in folders(tree):
        text = (folder / "pairs.json").read_text()
        assert str(tree) not in text  # no absolute path of the tree anywhere in pairs.json
        assert json.loads(text)["prepared"] == "../../../../../prepared/acdc"  # pairs/acdc/<b>/<m>/seed0
    run = tree / "runs" / "acdc" / "voxelmorph" / "weighted" / "seed0"
    for name in ("run.json", "provenance.json"):
        assert json.loads((run / name).read_text())["prepared"] == "../../../../../prepared/acdc"
    meta = pairs.read_meta(folders(tree)[0])
    assert meta["prepared"] == str((tree / "prepared" / "acdc").resolve())
    assert meta["run"] == str(run.resolve())


def test_a_copied_tree_evaluates_after_the_original_is_gone(tree, tmp_path, capsys):
    before = evaluate(folders(tree), conventions=())
    original = tmp_path / "original"
    shutil.copytree(tree, original)
    moved = tmp_path / "scratch" / "copy"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", "--pairs", *map(str, folders(moved)), "--out", str(out), "--conventions"]) == 0
    after = read_metrics([str(out)])
    pd.testing.assert_frame_equal(after, before, check_dtype=False)
    assert (after["method"] == "weighted").any() and (after["method"] == "initial").any()
    # the moved run still infers, and its pairs name the moved data
    again = tmp_path / "again"
    run = moved / "runs" / "acdc" / "voxelmorph" / "weighted" / "seed0"
    assert main(["infer", "--run", str(run), "--prepared", str(moved / "prepared" / "acdc"), "--split", "test",
                 "--out", str(again), "--device", "cpu"]) == 0
    assert pairs.read_meta(again)["prepared"] == str((moved / "prepared" / "acdc").resolve())


def test_pairs_copied_alone_evaluate_with_prepared(tree, prepared_acdc, prepared_mnm, tmp_path, capsys):
    alone = tmp_path / "alone"
    shutil.copytree(folders(tree)[1], alone)
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", "--pairs", str(alone), "--out", str(out), "--conventions"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gsmorph evaluate: error: ") and "pairs.json" in err and "--prepared" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    assert main(["evaluate", "--pairs", str(alone), "--out", str(out), "--conventions",
                 "--prepared", str(prepared_acdc)]) == 0
    expected = evaluate([folders(tree)[1]], conventions=())
    np.testing.assert_allclose(read_metrics([str(out)])["value"], expected["value"], equal_nan=True)
    provenance = json.loads((tmp_path / "metrics.csv.provenance.json").read_text())
    assert provenance["config"]["prepared"] == str(prepared_acdc)
    # a prepared folder of another dataset is refused, naming it
    other = tmp_path / "other.csv"
    assert main(["evaluate", "--pairs", str(alone), "--out", str(other), "--prepared", str(prepared_mnm)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gsmorph evaluate: error: {prepared_mnm}: holds dataset") and not other.exists()
    assert main(["evaluate", "--pairs", str(alone), "--out", str(other), "--prepared", str(tmp_path)]) == 1
    assert "not a prepared folder" in capsys.readouterr().err and not other.exists()


def test_old_absolute_paths_still_read(tree, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(folders(tree)[1], old)
    meta = json.loads((old / "pairs.json").read_text())
    meta["prepared"] = str((tree / "prepared" / "acdc").resolve())  # as earlier versions wrote it
    (old / "pairs.json").write_text(json.dumps(meta))
    assert pairs.read_meta(old)["prepared"] == meta["prepared"]
    np.testing.assert_allclose(evaluate([old], conventions=())["value"],
                               evaluate([folders(tree)[1]], conventions=())["value"], equal_nan=True)


def run_writing_train(prepared, backbone, method, seed, out, cfg, lam=None, report=None):
    """A stand-in trainer: a run folder whose run.json names the data as the trainer does."""
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, cfg["epochs"] + 1):
        report(epoch, 0.5 + lam)
    (out / "run.json").write_text(json.dumps({"method": method, "lam": lam, "prepared": relative(prepared, out)}))
    return {"best_val_dice": 0.5 + lam, "val_njd_pct": 0.0, "device": "cpu", "epochs_done": cfg["epochs"],
            "wall_s": 0.0}


def test_a_copied_tuning_folder_finds_its_journal_and_data(tmp_path):
    from baselines import tuning
    from baselines.tuning.storage import storage_of
    from gsmorph.config import load_config

    cfg = load_config(None, {"epochs": 2, "tune": {"heartbeat_s": 0.2, "stale_after_s": 5.0}})
    root = tmp_path / "results"
    prepared = root / "prepared" / "acdc"
    prepared.mkdir(parents=True)
    out = root / "runs" / "acdc" / "voxelmorph" / "weighted-tuned" / "seed0"
    journal = root / "journals" / "study.log"
    info = tuning.tune(str(prepared), "voxelmorph", 2, str(journal), "s", 0, str(out), cfg,
                       train_fn=run_writing_train)
    assert info["storage"] == "journal:../../../../../journals/study.log"
    assert info["settings"]["prepared"] == "../../../../../prepared/acdc"
    # best/ is one level above trials/trial_k: its run.json names the data from there
    assert json.loads((out / "best" / "run.json").read_text())["prepared"] == "../../../../../../prepared/acdc"

    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    new_out = moved / "runs" / "acdc" / "voxelmorph" / "weighted-tuned" / "seed0"
    spec = storage_of(new_out)
    assert spec == f"journal://{(moved / 'journals' / 'study.log').resolve()}"
    store, _ = tuning.resolve_storage(spec)
    import optuna

    assert len(optuna.load_study(study_name="s", storage=store).trials) == 2
    assert resolve(json.loads((new_out / "best" / "run.json").read_text())["prepared"], new_out / "best") \
        == (moved / "prepared" / "acdc").resolve()
    # the moved study resumes there with the same settings (one more trial)
    again = tuning.tune(str(moved / "prepared" / "acdc"), "voxelmorph", 3, spec, "s", 0, str(new_out), cfg,
                        train_fn=run_writing_train)
    assert again["n_trials"] == 3


def test_a_study_recorded_with_an_absolute_data_path_resumes(tmp_path):
    import optuna

    from baselines import tuning
    from gsmorph.config import load_config

    cfg = load_config(None, {"epochs": 2, "tune": {"heartbeat_s": 0.2, "stale_after_s": 5.0}})
    prepared, out, journal = tmp_path / "prepared", tmp_path / "tune", tmp_path / "study.log"
    prepared.mkdir()
    tuning.tune(str(prepared), "voxelmorph", 1, str(journal), "s", 0, str(out), cfg, train_fn=run_writing_train)
    store, _ = tuning.resolve_storage(str(journal))
    study = optuna.load_study(study_name="s", storage=store)
    old = {**study.user_attrs["settings"], "prepared": str(prepared.resolve())}  # as earlier versions stored it
    study.set_user_attr("settings", old)
    assert tuning.tune(str(prepared), "voxelmorph", 2, str(journal), "s", 0, str(out), cfg,
                       train_fn=run_writing_train)["n_trials"] == 2
    other = tmp_path / "other"
    other.mkdir()
    from gsmorph.errors import GSMorphError

    with pytest.raises(GSMorphError, match="other settings"):
        tuning.tune(str(other), "voxelmorph", 3, str(journal), "s", 0, str(out), cfg, train_fn=run_writing_train)


def test_infer_nifti_holds_the_pairs_with_the_prepared_affine(tree):
    import nibabel as nib

    learned, prepared = folders(tree)[0], tree / "prepared" / "acdc"
    subjects = list(pairs.iter_subjects(learned))
    assert sorted(p.name for p in (learned / "nifti").iterdir()) == sorted(
        f"{sp.subject}_{kind}.nii.gz" for sp in subjects for kind in ("moved_image", "moved_label", "disp"))
    for sp in subjects:
        reference = nib.load(str(prepared / sp.subject / "ED.nii.gz"))
        image = nib.load(str(learned / "nifti" / f"{sp.subject}_moved_image.nii.gz"))
        np.testing.assert_allclose(image.affine, reference.affine)
        for k, index in enumerate(sp.slice_index):
            np.testing.assert_allclose(np.asarray(image.dataobj)[:, :, index], sp.moved_image[k])
