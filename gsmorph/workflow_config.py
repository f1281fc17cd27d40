"""The workflow's config: normalised as people type it on the command line, checked against
one schema, with short messages.

Schema: workflow/schemas/config.schema.yaml for the workflow's own keys; its `method`
section is gsmorph/schemas/method.schema.yaml (the one the verbs check `--set` with); the
allowed methods, backbones and datasets (and each dataset's keys) come from the tables
(gsmorph/methods.py, backbones.py, datasets.py).

Command-line forms accepted (`snakemake --config ...`):
  epochs=3                    a method key at top level goes under `method:`
  'tune={trials: 5}'          a method section, merged into the configured one
  datasets=acdc               one item for a list key (also 'datasets=[acdc, mnm]')
  'method={"epochs": 3}'      strings that Snakemake passes for nested values are read
                              as the schema's type (integer, number, boolean, null)
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gsmorph.config import DEFAULTS, method_schema, schema_messages
from gsmorph.errors import GSMorphError

LIST_KEYS = ("datasets", "backbones", "methods", "seeds")


def workflow_schema(path: str | Path) -> dict:
    """The whole schema: the workflow file, its method section and the tables' names."""
    import yaml

    from gsmorph import backbones, datasets, methods

    path = Path(path)
    schema = yaml.safe_load(path.read_text())
    props = schema["properties"]
    props["method"] = {**method_schema(), "description": props["method"].get("description", "")}
    props["method"].pop("$schema", None)
    schema["$defs"] = {**schema.get("$defs", {}), **props["method"].pop("$defs", {})}
    props["methods"]["items"] = {"enum": methods.ids()}
    props["backbones"]["items"] = {"enum": backbones.names()}
    props["datasets"]["items"] = {"enum": datasets.ids()}
    for dataset in datasets.DATASETS:  # the keys each dataset has
        props[f"{dataset.id}_root"] = {"$ref": "#/$defs/root"}
        props["synth"]["properties"]["subjects"]["oneOf"][1]["properties"][dataset.id] = {"$ref": "#/$defs/posint"}
        prepare = props["prepare"]["properties"]
        prepare["subjects_file"]["oneOf"][1]["properties"][dataset.id] = {"type": ["string", "null"]}
        prepare["folders"]["properties"][dataset.id] = {"type": ["null", "array"], "minItems": 1, "uniqueItems": True,
                                                        "items": {"enum": list(dataset.folders)}}
    return schema


def deep_merge(base: dict, update: dict | None) -> dict:
    """A copy of `base` with `update`'s keys in place, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def _coerce(value: Any, schema: dict, defs: dict) -> Any:
    """A string read as the type the schema asks for (Snakemake passes nested values as text)."""
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        return {k: _coerce(v, props.get(k, {}), defs) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [_coerce(v, schema["items"], defs) for v in value]
    if not isinstance(value, str):
        return value
    options = [schema] + list(schema.get("oneOf", [])) + list(schema.get("allOf", []))
    types = set()
    for option in options:
        option = defs.get(option["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in option else option
        kind = option.get("type")
        types |= set(kind) if isinstance(kind, list) else {kind}
    text = value.strip()
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind, convert in (("integer", int), ("number", float)):
        if kind in types:
            try:
                return convert(text)
            except ValueError:
                pass
    return value


def normalise(config: dict, schema: dict) -> dict:
    """The config with the command-line forms of the module docstring made regular."""
    config = copy.deepcopy(config)
    props = schema["properties"]
    for key in [k for k in config if k not in props and k in DEFAULTS]:
        value = config.pop(key)
        method = config.setdefault("method", {}) or {}
        config["method"] = deep_merge(method, {key: value}) if isinstance(value, dict) else {**method, key: value}
    for key in LIST_KEYS:
        value = config.get(key)
        if isinstance(value, str):
            config[key] = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            config[key] = [value]
    return _coerce(config, {**schema, "type": "object"}, schema.get("$defs", {}))


def check(config: dict, schema_path: str | Path) -> dict:
    """Normalise and validate the workflow config; GSMorphError with one short line per
    problem (the key, what is wrong, the allowed keys or values) otherwise."""
    schema = workflow_schema(schema_path)
    config = normalise(config, schema)
    messages = schema_messages(config, schema)
    if messages:
        raise GSMorphError("invalid config:\n  " + "\n  ".join(messages))
    check_roots(config)
    for dataset in config.get("datasets", []):  # roots hold when the workflow changes to output_dir
        if config.get(f"{dataset}_root"):
            config[f"{dataset}_root"] = str(Path(config[f"{dataset}_root"]).resolve())
    return config


def check_roots(config: dict) -> None:
    """A given dataset root must exist and look like that download (checked at once, in a
    dry run too, rather than when the prepare job fails)."""
    from gsmorph import datasets

    for dataset in config.get("datasets", []):
        root = config.get(f"{dataset}_root")
        if not root:
            continue
        if not Path(root).is_dir():
            raise GSMorphError(f"config key '{dataset}_root': {root}: folder not found")
        try:
            datasets.reader(dataset).check_root(root)
        except GSMorphError as err:
            raise GSMorphError(f"config key '{dataset}_root': {err}") from None
