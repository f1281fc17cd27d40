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


@pytest.mark.parametrize("dataset", datasets.ids())
def test_each_dataset_has_a_reader_and_a_phantom_writer(dataset, request, tmp_path):
    """The reader module the table names lists the phantom's 8 labelled subjects (M&Ms-1
    also 1 unlabelled) and reads them; its root check refuses a folder of the other layout."""
    from gsmorph.data import synth

    raw = request.getfixturevalue(f"raw_{dataset}")
    reader = datasets.reader(dataset)
    assert reader.__name__ == f"gsmorph.data.{dataset}" and dataset in synth.WRITERS
    reader.check_root(raw)
    items = reader.list_subjects(raw, datasets.get(dataset).folders)
    labelled = [(s, read) for s, read, lab in items if lab]
    assert len(labelled) == 8 and len(items) == 8 + (1 if dataset == "mnm" else 0)
    subject, read = labelled[0]
    raw_subject = read()
    assert (raw_subject.subject, raw_subject.dataset) == (subject, dataset)
    assert raw_subject.ED.shape == raw_subject.ED_gt.shape == raw_subject.ES_gt.shape
    (tmp_path / "empty").mkdir()
    with pytest.raises(GSMorphError, match=f"not an {datasets.get(dataset).name} folder"):
        reader.check_root(tmp_path / "empty")


def test_a_dataset_without_a_reader_module_is_refused():
    with pytest.raises(GSMorphError, match="unknown dataset 'ukbb'"):
        datasets.reader("ukbb")
