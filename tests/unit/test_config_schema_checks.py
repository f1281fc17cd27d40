"""The method schema is the one home of value checks: a config edited in code, past
load_config's check, is refused by the same schema where a verb uses it, naming the key."""
import pytest

from gsmorph.config import load_config, optim_settings
from gsmorph.errors import GSMorphError


@pytest.mark.parametrize("key, value, reason", [
    ("lr", float("nan"), "nan is not a finite number"),
    ("lr", 0, "0 is less than or equal to the minimum of 0"),
    ("grad_clip", 0, "0 is less than or equal to the minimum of 0"),
    ("amsgrad", 1, "1 is not of type 'boolean'"),
    ("warmup_epochs", -1, "-1 is less than the minimum of 0"),
    ("schedule", "cosine", "'cosine' is not one of ['constant', 'poly']"),
])
def test_an_optimiser_value_edited_in_code_is_refused_by_the_schema(key, value, reason):
    cfg = load_config()
    with pytest.raises(GSMorphError, match=f"config key 'optim.voxelmorph.{key}'") as refused:
        load_config(overrides={"optim": {"voxelmorph": {key: value}}})
    assert reason in str(refused.value)  # load_config's message ...
    cfg["optim"]["voxelmorph"][key] = value
    with pytest.raises(GSMorphError) as err:
        optim_settings(cfg, "voxelmorph")
    assert str(err.value) == f"config key 'optim.voxelmorph.{key}': {reason}"  # ... and optim_settings' agree


def test_the_key_named_is_where_the_value_came_from():
    cfg = load_config()
    cfg["lr"] = -1.0  # the top-level lr replaces every backbone's
    with pytest.raises(GSMorphError, match=r"^config key 'lr': -1.0 is less than or equal to the minimum of 0$"):
        optim_settings(cfg, "transmorph")
    with pytest.raises(GSMorphError, match=r"^config key 'hypermorph.optim.weight_decay': -0.1 is less than"):
        optim_settings(load_config(), "voxelmorph", {"weight_decay": -0.1}, "hypermorph.optim")
    assert optim_settings(load_config(), "voxelmorph", {"lr": 1e-4}, "hypermorph.optim")["lr"] == 1e-4
