"""A training killed at any instant of its checkpoints resumes on rerun and ends with the
weights of an uninterrupted run; non-finite weights stop it with one clear error."""
from __future__ import annotations

import json
import os

import pytest
import torch

from gsmorph.cli import main
from gsmorph.config import load_config
from gsmorph.errors import GSMorphError
from gsmorph.training import Trainer

from tiny import NARROW, tiny

OVERRIDES = tiny(backbones=NARROW, epochs=2, batch_size=4, max_train_pairs=4, max_val_pairs=2)
SET = json.dumps(OVERRIDES)


class Killed(BaseException):
    """Stands for SIGKILL: nothing of gsmorph catches it."""


def train(prepared, out) -> list[str]:
    return ["train", "--method", "weighted-s", "--backbone", "voxelmorph", "--seed", "0", "--prepared",
            str(prepared), "--out", str(out), "--set", SET]


def weights(out) -> dict[str, torch.Tensor]:
    return torch.load(out / "best.pt", weights_only=True) | {
        f"last.{k}": v for k, v in torch.load(out / "last.pt", weights_only=True)["model"].items()}


@pytest.fixture(scope="module")
def uninterrupted(prepared_acdc, tmp_path_factory):
    """An uninterrupted run and the renames it made, in order (the instants a kill can hit)."""
    out = tmp_path_factory.mktemp("crash") / "run"
    real, renames = os.replace, []

    def counting(src, dst, *args, **kwargs):
        renames.append(os.path.basename(dst))
        return real(src, dst, *args, **kwargs)

    os.replace = counting
    try:
        assert main(train(prepared_acdc, out)) == 0
    finally:
        os.replace = real
    return weights(out), renames


def test_a_kill_at_any_checkpoint_instant_resumes_on_rerun(prepared_acdc, uninterrupted, tmp_path, monkeypatch):
    expected, renames = uninterrupted
    # every rename of a checkpoint or of run.json, killed just before and just after it
    instants = [(i, when) for i, name in enumerate(renames) if name in ("last.pt", "best.pt", "run.json")
                for when in ("before", "after")]
    assert len(instants) >= 8, renames
    real = os.replace
    for k, (index, when) in enumerate(instants):
        out = tmp_path / f"run{k}"
        calls = []

        def killing(src, dst, *args, **kwargs):
            calls.append(dst)
            if len(calls) - 1 == index and when == "before":
                raise Killed
            real(src, dst, *args, **kwargs)
            if len(calls) - 1 == index:
                raise Killed

        monkeypatch.setattr(os, "replace", killing)
        with pytest.raises(Killed):
            main(train(prepared_acdc, out))
        monkeypatch.setattr(os, "replace", real)
        assert main(train(prepared_acdc, out) + ["--fresh-if-changed"]) == 0, (renames[index], when)
        got = weights(out)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[key], expected[key]) for key in expected), (renames[index], when)


def test_non_finite_weights_stop_the_run_before_the_next_step(prepared_acdc, tmp_path):
    cfg = load_config(None, OVERRIDES)
    trainer = Trainer(prepared_acdc, "voxelmorph", "weighted-s", 0, tmp_path / "run", cfg)
    trainer.initialize()
    step, steps = trainer.optimizer.step, []

    def poisoned_step(*args, **kwargs):  # as an infinite learning rate would leave the weights
        steps.append(1)
        result = step(*args, **kwargs)
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("inf"))
        return result

    trainer.optimizer.step = poisoned_step
    with pytest.raises(GSMorphError, match="non-finite weights after step 1 of epoch 1"):
        trainer.fit()
    assert steps == [1]  # no further step (no backward through the infinite weights)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_damaged_last_pt_is_still_refused(prepared_acdc, uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train(prepared_acdc, out)) == 0
    data = bytearray((out / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "last.pt").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(train(prepared_acdc, out)) == 1
    assert "damaged or replaced" in capsys.readouterr().err
