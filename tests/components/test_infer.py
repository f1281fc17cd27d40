"""`gsmorph train` + `gsmorph infer` through the CLI: the shared per-pair outputs."""
import json

import numpy as np
import pytest
import torch

from gsmorph import checkpoints, pairs
from gsmorph.cli import main
from gsmorph.data.loader import pairs_2d, read_subjects
from gsmorph.errors import GSMorphError
from gsmorph.inference import infer_split, load_run

from tiny import tiny_set

SET = tiny_set()

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")


def write_run(run, info: dict, state: dict) -> None:
    """A run folder with these weights as best.pt and run.json recording their checksum."""
    run.mkdir(exist_ok=True)
    sha = checkpoints.save(state, run / "best.pt")
    (run / "run.json").write_text(json.dumps({**info, "checksums": {"best.pt": sha}}))


@pytest.fixture(scope="module")
def trained_run(prepared_acdc, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "weighted"
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method",
                 "weighted", "--lam", "0.01", "--seed", "1", "--out", str(run), "--set", SET]) == 0
    return run


def test_infer_writes_pairs_readable_by_evaluation(prepared_acdc, trained_run, tmp_path):
    out = tmp_path / "pairs"
    assert main(["infer", "--run", str(trained_run), "--prepared", str(prepared_acdc), "--split", "test",
                 "--out", str(out), "--method-name", "weighted-m", "--device", "cpu"]) == 0
    meta = pairs.read_meta(out)
    assert meta["method"] == "weighted-m" and meta["backbone"] == "voxelmorph" and meta["seed"] == 1
    assert meta["dataset"] == read_subjects(prepared_acdc)["dataset"].iloc[0]
    assert meta["params"]["lam"] == 0.01

    expected = pairs_2d(prepared_acdc, "test")
    by_subject = {}
    for p in expected:
        by_subject.setdefault(p.subject, []).append(p)
    got = {sp.subject: sp for sp in pairs.iter_subjects(out)}
    assert set(got) == set(by_subject)
    for subject, group in by_subject.items():
        sp = got[subject]
        k, shape = len(group), group[0].moving.shape
        assert sp.slice_index.tolist() == [p.slice_index for p in group]
        assert sp.disp.shape == (k, 2, *shape) and sp.disp.dtype == np.float32
        assert sp.moved_image.shape == (k, *shape) and sp.moved_label.shape == (k, *shape)
        assert set(np.unique(sp.moved_label)) <= {0, 1, 2, 3}
        assert (sp.runtime_s > 0).all()
        np.testing.assert_allclose(sp.spacing, group[0].spacing)


def test_zero_network_is_the_identity(prepared_acdc, trained_run, tmp_path):
    # a run whose weights are all zero predicts u = 0: moved == moving exactly
    run = tmp_path / "zero"
    state = torch.load(trained_run / "best.pt", weights_only=True)
    write_run(run, json.loads((trained_run / "run.json").read_text()), {k: torch.zeros_like(v) for k, v in state.items()})

    predict, info, _ = load_run(run, device="cpu")
    assert info["method"] == "weighted"
    out = infer_split(run, prepared_acdc, "test", tmp_path / "pairs", device="cpu")
    expected = {}
    for p in pairs_2d(prepared_acdc, "test"):
        expected.setdefault(p.subject, []).append(p)
    for sp in pairs.iter_subjects(out):
        group = expected[sp.subject]
        assert np.all(sp.disp == 0)
        np.testing.assert_allclose(sp.moved_image, np.stack([p.moving for p in group]), atol=1e-6)
        np.testing.assert_array_equal(sp.moved_label, np.stack([p.moving_label for p in group]))


def test_infer_bad_inputs(prepared_acdc, trained_run, tmp_path, capsys):
    with pytest.raises(GSMorphError, match="run.json"):
        load_run(tmp_path)
    assert main(["infer", "--run", str(tmp_path), "--prepared", str(prepared_acdc), "--out",
                 str(tmp_path / "p")]) == 1
    assert "run.json" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((trained_run / "run.json").read_text())
    with pytest.raises(GSMorphError, match="best.pt"):
        load_run(broken, device="cpu")
    info = json.loads((trained_run / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**info, "backbone": "unet"}))
    with pytest.raises(GSMorphError, match="cannot rebuild the network"):
        load_run(broken, device="cpu")


def test_train_cli_errors(prepared_acdc, tmp_path, capsys):
    args = ["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--seed", "0",
            "--out", str(tmp_path / "run"), "--set", SET]
    assert main(args + ["--method", "weighted"]) == 1
    assert "--lam" in capsys.readouterr().err
    assert main(args + ["--method", "gsmorph", "--set", '{"epochz": 3}']) == 1
    assert "epochz" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("backbone, method, overrides", [
    ("transmorph", "gs-pcgrad", {"backbones": {"transmorph": {"embed_dim": 8, "depths": [1, 1, 1, 1],
                                                              "num_heads": [2, 2, 2, 2], "window_size": 4}}}),
    ("voxelmorph", "gs-agr", {"mode": "3d", "batch_size": 1, "smoothness": "bending"}),
    ("voxelmorph", "weighted", {"diffeomorphic": True, "int_steps": 4, "similarity": "lncc",
                                "smoothness": "l2", "lncc_kernel": 5}),
])
def test_backbones_modes_and_losses_end_to_end(prepared_acdc, tmp_path, backbone, method, overrides):
    cfg = {**json.loads(SET), "max_train_pairs": 4, "max_val_pairs": 2, **overrides}
    if "backbones" in overrides:
        cfg["backbones"] = overrides["backbones"]
    run, out = tmp_path / "run", tmp_path / "pairs"
    lam = ["--lam", "0.1"] if method == "weighted" else []
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", backbone, "--method", method,
                 "--seed", "0", "--out", str(run), "--set", json.dumps(cfg)] + lam) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and 0 <= summary["best_val_dice"] <= 1
    infer_split(run, prepared_acdc, "test", out, device="cpu")
    ndim = 3 if cfg.get("mode") == "3d" else 2
    for sp in pairs.iter_subjects(out):
        assert sp.disp.shape[1] == ndim and sp.disp.shape[2:] == sp.moved_image.shape[1:]
        if ndim == 3:
            assert sp.slice_index.tolist() == [-1]


def test_diffeomorphic_smoothness_sees_the_velocity_and_infer_integrates(prepared_acdc, trained_run, tmp_path):
    from gsmorph.config import load_config
    from gsmorph.networks import integrate
    from gsmorph.training import Trainer

    cfg = load_config(None, {**json.loads(SET), "diffeomorphic": True, "int_steps": 5})
    trainer = Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    for p in trainer.model.parameters():  # a visible velocity: the flow head is near zero at init
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    trainer.model.eval()
    bucket = trainer.train_data[0]
    moving, fixed = bucket["moving"][:2], bucket["fixed"][:2]
    with torch.no_grad():
        disp, smooth_field = trainer.model(torch.cat([moving, fixed], dim=1), with_velocity=True)
        velocity = trainer.model.backbone(torch.cat([moving, fixed], dim=1))
    assert torch.equal(smooth_field, velocity)
    assert torch.allclose(disp, integrate(velocity, 5))
    assert not torch.allclose(disp, velocity)

    run = tmp_path / "diffeo"
    info = json.loads((trained_run / "run.json").read_text())
    info.update(diffeomorphic=True, int_steps=5)
    info["network"]["int_steps"] = 5
    write_run(run, info, trainer.model.state_dict())
    predict, _, _ = load_run(run, device="cpu")
    assert torch.allclose(predict(moving, fixed), disp, atol=1e-6)


def test_train_with_pairs_out_infers_in_the_same_process(prepared_acdc, trained_run, tmp_path):
    """The workflow's train job: a finished run rerun with --pairs-out trains nothing more and
    writes the pairs `gsmorph infer` writes (the same displacements, bit for bit)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = (run / "best.pt").read_bytes()
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "weighted",
                 "--lam", "0.01", "--seed", "1", "--out", str(run), "--set", SET,
                 "--pairs-out", str(tmp_path / "pairs"), "--split", "val"]) == 0
    assert (run / "best.pt").read_bytes() == best
    assert main(["infer", "--run", str(trained_run), "--prepared", str(prepared_acdc), "--split", "val",
                 "--out", str(tmp_path / "alone"), "--device", "cpu"]) == 0
    together, alone = pairs.read_meta(tmp_path / "pairs"), pairs.read_meta(tmp_path / "alone")
    assert together["split"] == alone["split"] == "val" and together["method"] == alone["method"] == "weighted"
    got = {sp.subject: sp for sp in pairs.iter_subjects(tmp_path / "pairs")}
    want = {sp.subject: sp for sp in pairs.iter_subjects(tmp_path / "alone")}
    assert set(got) == set(want) and got
    for subject, sp in want.items():
        np.testing.assert_array_equal(got[subject].disp, sp.disp)
        np.testing.assert_array_equal(got[subject].moved_label, sp.moved_label)


def test_pairs_out_inside_the_run_folder_is_refused_before_training(prepared_acdc, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--method", "weighted",
                 "--lam", "0.01", "--seed", "1", "--out", str(run), "--set", SET,
                 "--pairs-out", str(run / "pairs")]) == 1
    assert str(run / "pairs") in capsys.readouterr().err
    assert not run.exists()


def test_several_methods_in_one_process_equal_one_process_each(prepared_acdc, tmp_path):
    """The workflow's grouped training job: runs trained one after another in one process
    hold the same weights and pairs as runs trained each in its own process."""
    import subprocess
    import sys

    common = ["--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--seed", "2", "--set", SET]
    assert main(["train", "--method", "weighted-s", "gsmorph", *common, "--out", str(tmp_path / "one/{method}"),
                 "--pairs-out", str(tmp_path / "one_pairs/{method}")]) == 0
    for method in ("weighted-s", "gsmorph"):
        proc = subprocess.run([sys.executable, "-m", "gsmorph.cli", "train", "--method", method, *common,
                               "--out", str(tmp_path / "each" / method),
                               "--pairs-out", str(tmp_path / "each_pairs" / method)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        together = torch.load(tmp_path / "one" / method / "best.pt", weights_only=True)
        alone = torch.load(tmp_path / "each" / method / "best.pt", weights_only=True)
        assert together.keys() == alone.keys()
        for key in alone:
            assert torch.equal(together[key], alone[key]), (method, key)
        for got, want in zip(pairs.iter_subjects(tmp_path / "one_pairs" / method),
                             pairs.iter_subjects(tmp_path / "each_pairs" / method)):
            np.testing.assert_array_equal(got.disp, want.disp)
        assert pairs.read_meta(tmp_path / "one_pairs" / method)["method"] == method


@pytest.mark.parametrize("extra, message", [
    (["--method", "weighted-s", "gsmorph", "--out", "runs/x"], "must hold {method}"),
    (["--method", "weighted-s", "gsmorph", "--out", "runs/{method}", "--pairs-out", "pairs/x"], "must hold {method}"),
    (["--method", "weighted", "gsmorph", "--out", "runs/{method}", "--lam", "0.1"], "--lam"),
    (["--method", "gsmorph", "gsmorph", "--out", "runs/{method}"], "twice"),
])
def test_several_methods_bad_arguments(prepared_acdc, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--prepared", str(prepared_acdc), "--backbone", "voxelmorph", "--seed", "0",
                 "--set", SET, *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
