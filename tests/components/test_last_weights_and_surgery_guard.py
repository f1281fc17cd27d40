"""`gsmorph infer --weights last` registers with the last epoch's weights (last.pt), and
config `surgery_zero_eps` reaches the gradient surgery of a trained run."""
from __future__ import annotations

import json

import pytest
import torch

from gsmorph import checkpoints
from gsmorph.cli import main
from gsmorph.errors import GSMorphError
from gsmorph.inference import load_predictor, network_of, read_run_info
from gsmorph.surgery import ZERO_EPS
from gsmorph.training import Trainer

from tiny import tiny_config, tiny_set


@pytest.fixture(scope="module")
def two_checkpoints(prepared_acdc, tmp_path_factory):
    """A run of 3 epochs whose best check (validation every epoch) is kept in best.pt and
    whose last epoch is in last.pt."""
    out = tmp_path_factory.mktemp("weights") / "run"
    assert main(["train", "--method", "weighted-m", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
                 str(prepared_acdc), "--out", str(out), "--set", tiny_set(epochs=3)]) == 0
    return out


def _displacement(run, weights, x):
    info = read_run_info(run)
    with torch.no_grad():
        return load_predictor(run, info, torch.device("cpu"), weights)(x[:, :1], x[:, 1:])


def test_last_weights_are_last_pts_model_and_best_weights_best_pts(two_checkpoints):
    run = two_checkpoints
    info = read_run_info(run)
    x = torch.rand(1, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    for name, state in (("last", checkpoints.load(run / "last.pt")["model"]), ("best", checkpoints.load(run / "best.pt"))):
        model, predictor = network_of(info, run)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            expected = predictor(model)(x[:, :1], x[:, 1:])
        assert torch.equal(_displacement(run, name, x), expected)
    summary = json.loads((run / "summary.json").read_text())
    same = summary["best_epoch"] == summary["epochs_done"]
    assert torch.equal(_displacement(run, "best", x), _displacement(run, "last", x)) == same


def test_infer_with_last_weights_records_them(two_checkpoints, prepared_acdc, tmp_path):
    out = tmp_path / "pairs"
    assert main(["infer", "--run", str(two_checkpoints), "--prepared", str(prepared_acdc), "--out", str(out),
                 "--weights", "last"]) == 0
    assert json.loads((out / "pairs.json").read_text())["params"]["weights"] == "last"
    best = tmp_path / "best"
    assert main(["infer", "--run", str(two_checkpoints), "--prepared", str(prepared_acdc), "--out", str(best)]) == 0
    assert "weights" not in json.loads((best / "pairs.json").read_text())["params"]


def test_unknown_weights_and_a_missing_checksum_are_clear_errors(two_checkpoints, tmp_path):
    info = read_run_info(two_checkpoints)
    with pytest.raises(GSMorphError, match="unknown weights 'first'"):
        load_predictor(two_checkpoints, info, torch.device("cpu"), "first")
    info = {**info, "checksums": {"best.pt": info["checksums"]["best.pt"]}}
    with pytest.raises(GSMorphError, match="no checksum of last.pt"):
        load_predictor(two_checkpoints, info, torch.device("cpu"), "last")


@pytest.mark.parametrize("eps", [None, 0.0, 1e-6])
def test_surgery_zero_eps_reaches_the_surgery(prepared_acdc, tmp_path, eps):
    cfg = tiny_config(**({} if eps is None else {"surgery_zero_eps": eps}))
    trainer = Trainer(prepared_acdc, "voxelmorph", "gsmorph", 0, tmp_path / "run", cfg)
    trainer.initialize()
    assert trainer.surgery.eps == (ZERO_EPS if eps is None else eps)


def test_a_negative_surgery_zero_eps_is_refused():
    with pytest.raises(GSMorphError, match="surgery_zero_eps"):
        tiny_config(surgery_zero_eps=-1.0)
