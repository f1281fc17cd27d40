"""pairs.json's one schema (gsmorph/schemas/pairs.schema.yaml): checked when a folder is
written and when it is read, with one message per kind of fault."""
import json

import numpy as np
import pytest

from gsmorph import pairs
from gsmorph.errors import GSMorphError

GOOD = {"dataset": "acdc", "backbone": "voxelmorph", "method": "gsmorph", "seed": 0, "split": "test",
        "prepared": "../prepared", "moving": "ES", "fixed": "ED"}


def test_a_complete_meta_passes_and_an_old_classical_backbone_may_be_empty():
    pairs.check_meta(GOOD, "pairs.json", written=True)
    pairs.check_meta({**GOOD, "backbone": ""}, "pairs.json")
    pairs.check_meta({**GOOD, "backbone": None, "run": None, "params": {"lam": 0.01}}, "pairs.json")


@pytest.mark.parametrize("key, value, reason", [
    ("seed", True, "key 'seed' is True, not an integer >= 0"),
    ("seed", 1.0, "key 'seed' is 1.0, not an integer >= 0"),
    ("seed", -1, "key 'seed' is -1, not an integer >= 0"),
    ("split", "validation", "key 'split' is 'validation', not train, val or test"),
    ("moving", "es", "key 'moving' is 'es', not ED or ES"),
    ("dataset", "", "key 'dataset' is '', not a dataset id"),
    ("prepared", 3, "key 'prepared' is 3, not the prepared folder's path"),
])
def test_a_bad_value_is_refused_naming_the_key(key, value, reason):
    with pytest.raises(GSMorphError) as err:
        pairs.check_meta({**GOOD, key: value}, "x/pairs.json")
    assert str(err.value).startswith(f"x/pairs.json: {reason}")


def test_missing_keys_are_listed_and_a_writer_must_record_the_split():
    meta = {k: v for k, v in GOOD.items() if k not in ("method", "seed")}
    with pytest.raises(GSMorphError, match=r"^p: missing keys \['method', 'seed'\]$"):
        pairs.check_meta(meta, "p")
    no_split = {k: v for k, v in GOOD.items() if k != "split"}
    pairs.check_meta(no_split, "p")  # a reader does without it
    with pytest.raises(GSMorphError, match=r"^pairs metadata: missing keys \['split'\]$"):
        pairs.check_meta(no_split, "pairs metadata", written=True)
    with pytest.raises(GSMorphError, match="not a JSON object"):
        pairs.check_meta([GOOD], "p")


def test_the_writer_refuses_before_writing_and_the_reader_checks_what_it_reads(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    subject = pairs.SubjectPairs("s1", np.arange(1), np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 4, 4)),
                                 np.zeros((1, 4, 4), np.uint8), np.full(1, 0.1), np.array([1.0, 1.0]))
    with pytest.raises(GSMorphError, match=r"missing keys \['split'\]"):
        pairs.write_folder(tmp_path / "bad", {**{k: v for k, v in GOOD.items() if k != "split"},
                                              "prepared": str(prepared)}, [subject])
    assert not (tmp_path / "bad").exists()
    folder = pairs.write_folder(tmp_path / "good", {**GOOD, "prepared": str(prepared)}, [subject])
    assert pairs.read_meta(folder)["prepared"] == str(prepared)
    meta = json.loads((folder / pairs.META).read_text())
    (folder / pairs.META).write_text(json.dumps({**meta, "seed": "0"}))
    with pytest.raises(GSMorphError, match=rf"^{folder / pairs.META}: key 'seed' is '0', not an integer >= 0$"):
        pairs.read_meta(folder)


def test_every_property_has_the_description_its_message_uses():
    schema = pairs.meta_schema()
    assert set(schema["required"]) <= set(schema["properties"])
    assert all(spec.get("description") for spec in schema["properties"].values())
