"""The dataset table (gsmorph/datasets.py): the workflow schema, the CLI, the readers and
the report take the datasets' ids, names and raw folders from it."""
from pathlib import Path

import pytest

from gsmorph import datasets
from gsmorph.cli import main
from gsmorph.data.prepare import layout_folders
from gsmorph.errors import GSMorphError
from gsmorph.report import names
from gsmorph.workflow_config import workflow_schema
from gsmorph.workflow_notices import phantom_notices

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def test_names_order_and_folders_come_from_the_table():
    assert datasets.ids() == ["acdc", "mnm"]
    assert [names.dataset_name(d) for d in datasets.ids()] == ["ACDC", "M&Ms-1"]
    assert sorted(["zzz", "mnm", "acdc"], key=names.dataset_rank) == ["acdc", "mnm", "zzz"]
    assert layout_folders("mnm") == ("Training", "Validation", "Testing")
    assert layout_folders("acdc", ["testing"]) == ("testing",)
    assert "synthetic M&Ms-1-format data" in phantom_notices({"datasets": ["mnm"]})[0]


def test_an_unknown_dataset_is_refused_with_the_tables_ids(capsys):
    with pytest.raises(GSMorphError, match=r"unknown dataset 'ukbb'; use one of \['acdc', 'mnm'\]"):
        layout_folders("ukbb")
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "ukbb", "--raw", "x", "--out", "y"])
    assert "choose from 'acdc', 'mnm'" in capsys.readouterr().err


def test_the_workflow_schema_gives_each_dataset_of_the_table_its_keys(monkeypatch):
    monkeypatch.setattr(datasets, "DATASETS", [*datasets.DATASETS, datasets.Dataset("ukbb", "UK Biobank",
                                                                                    ("images",), "")])
    props = workflow_schema(SCHEMA)["properties"]
    assert props["datasets"]["items"] == {"enum": ["acdc", "mnm", "ukbb"]}
    assert {f"{d}_root" for d in ("acdc", "mnm", "ukbb")} <= set(props)
    assert set(props["synth"]["properties"]["subjects"]["oneOf"][1]["properties"]) == {"acdc", "mnm", "ukbb"}
    folders = props["prepare"]["properties"]["folders"]["properties"]
    assert folders["ukbb"]["items"] == {"enum": ["images"]}
    assert folders["acdc"]["items"] == {"enum": ["training", "testing"]}
    assert set(props["prepare"]["properties"]["subjects_file"]["oneOf"][1]["properties"]) == {"acdc", "mnm", "ukbb"}
