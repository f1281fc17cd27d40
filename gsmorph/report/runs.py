"""Read what training and tuning left under runs/<dataset>/<backbone>/<method>/seed<k>/.

Every reader returns a DataFrame with the keys dataset, backbone, method, seed in front
(empty when nothing is found) and records unreadable files in `problems` instead of
raising: the figures these feed are optional.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from gsmorph.errors import GSMorphError

KEYS = ["dataset", "backbone", "method", "seed"]
_SEED = re.compile(r"^seed(\d+)$")


def run_folders(root: str | os.PathLike | None) -> list[tuple[dict, Path]]:
    """(keys, folder) of every runs/<dataset>/<backbone>/<method>/seed<k>/ under root
    (none when root is None)."""
    if root is None or not Path(root).is_dir():
        return []
    root = Path(root)
    found = []
    for folder in sorted(root.glob("*/*/*/seed*")):
        match = _SEED.match(folder.name)
        if match and folder.is_dir():
            dataset, backbone, method = folder.parts[-4:-1]
            found.append(({"dataset": dataset, "backbone": backbone, "method": method,
                           "seed": int(match.group(1))}, folder))
    return found


def _run_files(root, name: str, methods: tuple[str, ...] | None, fallback: str | None = None):
    """(keys, `<run>/<name>`, or `<run>/<fallback>` where only that exists) for every run
    folder holding it (optionally only some methods)."""
    for keys, folder in run_folders(root):
        if methods and keys["method"] not in methods:
            continue
        for candidate in (name, fallback):
            if candidate and (folder / candidate).is_file():
                yield keys, folder / candidate
                break


def read_csvs(root, name: str, problems: list[str], methods: tuple[str, ...] | None = None,
              fallback: str | None = None, numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """Concatenate `<run>/<name>` (or `<run>/<fallback>`, e.g. a tuned run's best/) of every
    run folder (optionally only some methods). A value of a `numeric` column that is not
    a number (empty is NaN) is a GSMorphError naming the file, line and column."""
    frames = []
    for keys, path in _run_files(root, name, methods, fallback):
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as err:
            problems.append(f"{path}: unreadable ({err})")
            continue
        check_numeric(frame, numeric, path)
        for i, key in enumerate(KEYS):
            frame.insert(i, key, keys[key])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS)


def check_numeric(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    """Every present column of `columns` holds numbers or blanks; else GSMorphError."""
    for column in (c for c in columns if c in frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = (values.isna() & frame[column].notna()).to_numpy()
        if bad.any():
            i = int(bad.nonzero()[0][0])
            raise GSMorphError(f"{path}: line {i + 2}: {column} = '{frame[column].iloc[i]}' is not a number")
        frame[column] = values


def read_jsons(root, name: str, problems: list[str], methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per `<run>/<name>` JSON object (top-level scalar keys only)."""
    rows = []
    for keys, path in _run_files(root, name, methods):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            problems.append(f"{path}: unreadable ({err})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path}: not a JSON object")
            continue
        rows.append({**keys, **{k: v for k, v in data.items()
                                if k not in keys and (v is None or isinstance(v, (int, float, str, bool)))}})
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=KEYS)
