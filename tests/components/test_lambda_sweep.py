"""The weighted loss's lambda sweep: fixed-lambda methods weighted-sweep1..6, log-spaced with
s, m, l, recorded like them, and run only where a config lists them (study.yaml)."""
import json
from pathlib import Path

import numpy as np
import yaml

from gsmorph import methods
from gsmorph.config import DEFAULTS
from gsmorph.training import train_method

from tiny import tiny_config

REPO = Path(__file__).resolve().parents[2]
SWEEP = [f"weighted-sweep{i}" for i in range(1, 7)]


def test_the_sweep_is_half_decades_with_s_m_l_and_not_in_the_default_run():
    lambdas = DEFAULTS["lambdas"]
    assert [methods.fixed_lambdas()[m] for m in SWEEP] == [f"sweep{i}" for i in range(1, 7)]
    values = sorted(lambdas[k] for k in methods.fixed_lambdas().values())
    assert len(values) == 9 and values[0] == 1e-4 and values[-1] == 1.0
    np.testing.assert_allclose(np.diff(np.log10(values)), 0.5, atol=0.001)  # log-spaced, s/m/l among them
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    assert not set(SWEEP) & set(default["methods"])
    study = yaml.safe_load((REPO / "workflow" / "configs" / "study.yaml").read_text())
    assert set(SWEEP) <= set(study["methods"])


def test_a_sweep_run_records_its_lambda_like_weighted_m(prepared_acdc, tmp_path):
    cfg = tiny_config(batch_size=4, max_train_pairs=4, max_val_pairs=2, lambdas={"sweep3": 0.004},
                      without=("val_every",))
    summary = train_method(prepared_acdc, "voxelmorph", "weighted-sweep3", 0, tmp_path / "run", cfg)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["lam"] == info["lam"] == 0.004 and info["method"] == "weighted-sweep3"
    assert summary["method"] == "weighted-sweep3"
