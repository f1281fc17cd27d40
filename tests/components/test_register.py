"""`gsmorph register` on the prepared ACDC-layout phantom: per-pair outputs every method
shares, known answers (identity, consistency of moved labels with the displacement,
better than identity against the phantom's true motion), determinism, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from baselines import classical
from baselines.registration import register_split
from gsmorph import pairs
from gsmorph.cli import main
from gsmorph.config import load_config
from gsmorph.data import loader
from gsmorph.errors import GSMorphError

# Fewer iterations than the defaults: the phantom's 64 x 64 slices register in well under a second.
FAST = {"demons": {"iterations": 50}, "syn": {"aff_iterations": [200, 100, 50, 0], "reg_iterations": [30, 15, 0]}}


def run_cli(method, prepared, out, *extra):
    return main(["register", "--method", method, "--prepared", str(prepared), "--split", "test",
                 "--out", str(out), "--set", json.dumps(FAST), *extra])


def dice_and_epe(folder, prepared):
    """Mean Dice (LV, Myo, RV) of moved vs fixed labels and mean end-point error (mm, inside
    the fixed heart) against the phantom's true displacement, over all pairs of the folder."""
    by_key = {(p.subject, p.slice_index): p for p in loader.pairs_2d(prepared, "test")}
    dices, epes = [], []
    for sub in pairs.iter_subjects(folder):
        mm = sub.spacing.reshape(-1, 1, 1)
        for k, s in enumerate(sub.slice_index):
            p = by_key[(sub.subject, int(s))]
            for c in (1, 2, 3):
                a, b = sub.moved_label[k] == c, p.fixed_label == c
                if a.sum() + b.sum():
                    dices.append(2 * np.sum(a & b) / (a.sum() + b.sum()))
            heart = p.fixed_label > 0
            epes.append(np.linalg.norm((sub.disp[k] - p.true_disp) * mm, axis=0)[heart].mean())
    return float(np.mean(dices)), float(np.mean(epes))


@pytest.fixture(scope="module")
def registered(prepared_acdc, tmp_path_factory):
    """The test split registered with each method (2 workers)."""
    root = tmp_path_factory.mktemp("register")
    out = {}
    for method in ("initial", "demons", "syn"):
        out[method] = root / method
        assert run_cli(method, prepared_acdc, out[method], "--workers", "2", "--seed", "0") == 0
    return out


@pytest.mark.parametrize("method", ["initial", "demons", "syn"])
def test_register_writes_a_pairs_folder_for_every_test_pair(registered, prepared_acdc, method):
    folder = registered[method]
    meta = pairs.read_meta(folder)
    assert (meta["dataset"], meta["backbone"], meta["method"], meta["seed"], meta["split"]) == \
        ("acdc", "none", method, 0, "test")
    assert (meta["moving"], meta["fixed"], meta["mode"]) == ("ES", "ED", "2d")
    assert "provenance" in meta and (folder / "provenance.json").is_file()
    expected = loader.pairs_2d(prepared_acdc, "test")
    subjects = list(pairs.iter_subjects(folder))
    got = [(s.subject, int(k)) for s in subjects for k in s.slice_index]
    assert got == [(p.subject, p.slice_index) for p in expected]
    by_key = {(p.subject, p.slice_index): p for p in expected}
    for sub in subjects:
        assert sub.disp.shape[1:] == (2, 64, 64)
        np.testing.assert_allclose(sub.spacing, by_key[(sub.subject, int(sub.slice_index[0]))].spacing)
        for k, s in enumerate(sub.slice_index):
            pair = by_key[(sub.subject, int(s))]
            # moved outputs are the moving frame warped by the stored displacement
            np.testing.assert_allclose(sub.moved_image[k], classical.warp(pair.moving, sub.disp[k], order=1), atol=1e-6)
            np.testing.assert_array_equal(sub.moved_label[k], classical.warp(pair.moving_label, sub.disp[k], order=0))
        if method == "initial":
            assert not sub.disp.any()
        else:
            assert np.all(sub.runtime_s > 0) and np.abs(sub.disp).max() > 0.5


def test_initial_moved_equals_moving(registered, prepared_acdc):
    by_key = {(p.subject, p.slice_index): p for p in loader.pairs_2d(prepared_acdc, "test")}
    for sub in pairs.iter_subjects(registered["initial"]):
        for k, s in enumerate(sub.slice_index):
            np.testing.assert_array_equal(sub.moved_image[k], by_key[(sub.subject, int(s))].moving)
            np.testing.assert_array_equal(sub.moved_label[k], by_key[(sub.subject, int(s))].moving_label)


@pytest.mark.parametrize("method", ["demons", "syn"])
def test_classical_methods_beat_identity_on_the_phantom(registered, prepared_acdc, method):
    dice0, epe0 = dice_and_epe(registered["initial"], prepared_acdc)
    dice, epe = dice_and_epe(registered[method], prepared_acdc)
    assert dice > dice0 + 0.1
    assert epe < 0.5 * epe0


def test_syn_is_deterministic_for_a_seed_whatever_the_workers(registered, prepared_acdc, tmp_path):
    assert run_cli("syn", prepared_acdc, tmp_path / "one", "--workers", "1", "--seed", "0") == 0
    for a, b in zip(pairs.iter_subjects(registered["syn"]), pairs.iter_subjects(tmp_path / "one")):
        np.testing.assert_array_equal(a.disp, b.disp)
        np.testing.assert_array_equal(a.moved_label, b.moved_label)
    assert pairs.read_meta(tmp_path / "one")["workers"] == 1


def test_volume_mode_registers_one_3d_pair_per_subject(prepared_acdc, tmp_path):
    # 3D registration itself is checked in test_classical.py; here: 3D pairs in, 3D pairs out
    cfg = load_config(overrides={"mode": "3d"})
    register_split("initial", prepared_acdc, "test", tmp_path / "v", cfg, seed=0)
    volumes = {p.subject: p for p in loader.pairs_3d(prepared_acdc, "test")}
    subjects = list(pairs.iter_subjects(tmp_path / "v"))
    assert sorted(s.subject for s in subjects) == sorted(volumes)
    assert pairs.read_meta(tmp_path / "v")["mode"] == "3d"
    for sub in subjects:
        volume = volumes[sub.subject]
        assert sub.slice_index.tolist() == [-1] and sub.disp.shape == (1, 3, *volume.moving.shape)
        np.testing.assert_allclose(sub.spacing, volume.spacing)
        np.testing.assert_array_equal(sub.moved_label[0], volume.moving_label)


def test_rerun_replaces_the_folder_whole(prepared_acdc, tmp_path):
    out = tmp_path / "init"
    assert run_cli("initial", prepared_acdc, out) == 0
    # a file an older run wrote (listed in the folder's marker) goes with the folder
    marker = out / ".gsmorph-output.json"
    listed = json.loads(marker.read_text())
    marker.write_text(json.dumps({**listed, "files": listed["files"] + ["stale.npz"]}))
    (out / "stale.npz").write_bytes(b"left from an older run")
    assert run_cli("initial", prepared_acdc, out) == 0
    assert not (out / "stale.npz").exists() and (out / "index.csv").is_file()


# ------------------------------------------------------------------------------ bad input


def test_missing_prepared_folder_is_a_clear_error(tmp_path, capsys):
    assert run_cli("initial", tmp_path / "nowhere", tmp_path / "out") == 1
    assert "nowhere: prepared folder not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_split_is_a_clear_error(prepared_acdc, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--split", "testing",
              "--out", str(tmp_path / "out")])
    assert exc.value.code != 0 and "invalid choice: 'testing'" in capsys.readouterr().err
    with pytest.raises(GSMorphError, match="unknown split 'testing'"):
        register_split("initial", prepared_acdc, "testing", tmp_path / "out", load_config())
    assert not (tmp_path / "out" / "index.csv").exists()


def test_unknown_method_is_a_clear_error(prepared_acdc, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("elastix", prepared_acdc, tmp_path / "out")
    assert exc.value.code != 0 and "invalid choice: 'elastix'" in capsys.readouterr().err
    with pytest.raises(GSMorphError, match="unknown method 'elastix'"):
        register_split("elastix", prepared_acdc, "test", tmp_path / "out", load_config())
    assert not (tmp_path / "out").exists()


def test_config_typo_and_bad_workers_are_clear_errors(prepared_acdc, tmp_path, capsys):
    rc = main(["register", "--method", "demons", "--prepared", str(prepared_acdc), "--out", str(tmp_path / "o"),
               "--set", '{"demons": {"iteration": 5}}'])
    assert rc == 1 and "unknown config key 'demons.iteration'" in capsys.readouterr().err
    for flag, value, message in (("--workers", "0", "must be at least 1"), ("--seed", "-1", "must be >= 0")):
        with pytest.raises(SystemExit) as exc:
            main(["register", "--method", "syn", "--prepared", str(prepared_acdc), "--out", str(tmp_path / "o"),
                  flag, value])
        err = capsys.readouterr().err
        assert exc.value.code != 0 and flag in err and message in err
    with pytest.raises(GSMorphError, match="--workers must be at least 1"):
        register_split("syn", prepared_acdc, "test", tmp_path / "o", load_config(), workers=0)
    with pytest.raises(GSMorphError, match="--seed must be >= 0"):
        register_split("syn", prepared_acdc, "test", tmp_path / "o", load_config(), seed=-1)
    assert not (tmp_path / "o").exists()


def test_failed_registration_leaves_nothing_and_names_the_pair(prepared_acdc, tmp_path, capsys):
    # ANTs refuses the transform inside the worker: the error crosses the process pool
    bad = json.dumps({"syn": {"type_of_transform": "NoSuchTransform"}})
    rc = main(["register", "--method", "syn", "--prepared", str(prepared_acdc), "--out", str(tmp_path / "o"),
               "--workers", "1", "--set", bad])
    err = capsys.readouterr().err
    assert rc == 1 and "syn on subject" in err and "NoSuchTransform" in err
    # a value the schema knows to be wrong is refused before any worker starts
    rc = main(["register", "--method", "demons", "--prepared", str(prepared_acdc), "--out", str(tmp_path / "o"),
               "--set", json.dumps({"demons": {"variant": "thirion"}})])
    err = capsys.readouterr().err
    assert rc == 1 and "config key 'demons.variant': 'thirion' is not one of" in err
    assert not (tmp_path / "o").exists()


def test_refuses_to_replace_a_folder_that_is_not_a_pairs_folder(prepared_acdc, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "precious.txt").write_text("keep me")
    assert run_cli("initial", prepared_acdc, tmp_path / "results") == 1
    assert "was not written by gsmorph" in capsys.readouterr().err
    assert (tmp_path / "results" / "precious.txt").read_text() == "keep me"
