"""What the CLI tells a user: the epochs `gsmorph train` runs and where that number came
from; --set errors with the allowed keys and a close match."""
import json

import pytest

from gsmorph.cli import main
from gsmorph.config import DEFAULTS, close_match, load_config, schema_messages
from gsmorph.errors import GSMorphError

from tiny import tiny

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")

SMALL = tiny(max_train_pairs=4, max_val_pairs=2, without=("epochs",))


def train_args(prepared, out, *extra):
    return ["train", "--prepared", str(prepared), "--backbone", "voxelmorph", "--method", "weighted",
            "--lam", "0.01", "--seed", "0", "--out", str(out), *extra]


def test_train_prints_the_epochs_and_their_source(prepared_acdc, tmp_path, capsys):
    assert main(train_args(prepared_acdc, tmp_path / "a", "--set", json.dumps({**SMALL, "epochs": 1}))) == 0
    assert "training 1 epochs (from --set)" in capsys.readouterr().out
    config = tmp_path / "c.yaml"
    config.write_text("method:\n  epochs: 2\n")
    assert main(train_args(prepared_acdc, tmp_path / "b", "--config", str(config), "--set", json.dumps(SMALL))) == 0
    assert f"training 2 epochs (from {config})" in capsys.readouterr().out


def test_train_names_the_default_epochs_before_training(tmp_path, capsys, monkeypatch):
    import gsmorph.training

    seen = []

    def no_training(prepared, backbone, method, seed, out, cfg, **kwargs):
        seen.append(cfg["epochs"])
        return {"epochs_done": 0}

    monkeypatch.setattr(gsmorph.training, "train_method", no_training)
    assert main(train_args(tmp_path, tmp_path / "a")) == 0
    out = capsys.readouterr().out
    assert seen == [DEFAULTS["epochs"]]
    assert f"training {DEFAULTS['epochs']} epochs (the default, the paper's {DEFAULTS['epochs']}; " in out
    assert """--set '{"epochs": N}'""" in out


@pytest.mark.parametrize("overrides, key, suggestion", [
    ({"epoch": 3}, "epoch", "epochs"),
    ({"tune": {"trial": 3}}, "tune.trial", "tune.trials"),
    ({"hypermorph": {"optim": {"l_r": 1e-3}}}, "hypermorph.optim.l_r", "hypermorph.optim.lr"),
])
def test_set_errors_suggest_the_close_key_and_list_the_allowed(overrides, key, suggestion):
    with pytest.raises(GSMorphError) as err:
        load_config(None, json.dumps(overrides))
    text = str(err.value)
    assert text.startswith(f"unknown config key '{key}' (did you mean '{suggestion}'?); allowed keys: ")
    assert suggestion.rpartition(".")[2] in text.split("allowed keys: ")[1].split(", ")


def test_set_error_without_a_close_key_lists_the_allowed(capsys, tmp_path):
    rc = main(train_args(tmp_path, tmp_path / "out", "--set", '{"zzzz": 1}'))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("gsmorph train: error: unknown config key 'zzzz'; allowed keys: backbones, ")
    assert "did you mean" not in err[0] and "epochs" in err[0]
    rc = main(train_args(tmp_path, tmp_path / "out", "--set", "[3]"))
    assert rc == 1 and "must be a JSON object" in capsys.readouterr().err


def test_close_match_and_schema_messages():
    assert close_match("epoch", ["epochs", "seed"]) == " (did you mean 'epochs'?)"
    assert close_match("zzzz", ["epochs", "seed"]) == ""
    schema = {"type": "object", "properties": {"datasets": {}, "seeds": {}}, "additionalProperties": False}
    (message,) = schema_messages({"dataset": ["acdc"]}, schema)
    assert "(did you mean 'datasets'?); allowed keys: datasets, seeds" in message
