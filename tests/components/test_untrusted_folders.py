"""Run and prepared folders are data, never code: run.json's trainer string is never
imported, subject ids never name a path, and no workflow job puts its working folder on
sys.path."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from gsmorph.cli import main
from gsmorph.gpu_slots import slot_shell_prefix


def test_run_json_trainer_is_never_imported(gsmorph_run, prepared_acdc, tmp_path, capsys, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(gsmorph_run, copy)
    (tmp_path / "evil_trainer.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "trainer": "evil_trainer:Trainer"}))
    capsys.readouterr()
    assert main(["infer", "--run", str(copy), "--prepared", str(prepared_acdc), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "evil_trainer:Trainer" in err and str(copy / "run.json") in err
    assert not (tmp_path / "ran").exists() and "evil_trainer" not in sys.modules
    (copy / "run.json").write_text(json.dumps({**info, "method": "initial"}))  # not a trained method
    assert main(["infer", "--run", str(copy), "--prepared", str(prepared_acdc), "--out", str(tmp_path / "p")]) == 1
    assert "not a trained method" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["../escaped", "/abs/escaped", "sub/escaped"])
def test_a_subject_id_holding_a_path_is_refused(prepared_acdc, tmp_path, capsys, bad):
    copy = tmp_path / "prepared"
    shutil.copytree(prepared_acdc, copy)
    table = pd.read_csv(copy / "subjects.csv", dtype={"subject": str})
    victim = table.loc[table["split"] == "test", "subject"].iloc[0]
    table.loc[table["subject"] == victim, "subject"] = bad
    table.to_csv(copy / "subjects.csv", index=False)
    out = tmp_path / "deep" / "pairs"
    assert main(["register", "--method", "initial", "--prepared", str(copy), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{copy / 'subjects.csv'}: subject id {bad!r} is not a plain name" in err
    assert not list(tmp_path.rglob("escaped*")) and not out.exists()


def test_a_pairs_index_naming_a_path_is_refused(prepared_acdc, tmp_path, capsys):
    pairs = tmp_path / "pairs"
    assert main(["register", "--method", "initial", "--prepared", str(prepared_acdc), "--out", str(pairs)]) == 0
    index = pd.read_csv(pairs / "index.csv", dtype={"subject": str})
    index.loc[0, "file"] = "../elsewhere.npz"
    index.to_csv(pairs / "index.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", "--pairs", str(pairs), "--out", str(tmp_path / "m.csv"), "--workers", "1"]) == 1
    assert "file '../elsewhere.npz' is not a plain name" in capsys.readouterr().err


def test_the_gpu_slot_command_never_imports_from_its_working_folder(tmp_path):
    (tmp_path / "shlex.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    shell = slot_shell_prefix(sys.executable) + 'echo "slot: $GSMORPH_SLOT"'
    done = subprocess.run(["sh", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    assert "slot: true" in done.stdout and not (tmp_path / "ran").exists()
    # `python -m` would have run it: the reason the prefix does not use it
    subprocess.run([sys.executable, "-m", "gsmorph.gpu_slots", "gpu-slot", "--owner", "1"], cwd=tmp_path,
                   capture_output=True, timeout=120)
    assert (tmp_path / "ran").exists()
