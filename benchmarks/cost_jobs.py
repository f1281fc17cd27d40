"""The jobs the workflow runs for a config, as Snakemake plans them: a dry run of the
repository's Snakefile (`snakemake -n --forceall`) in an empty output folder, parsed.

paper_cost.py --project times these jobs, so its projection follows the workflow's own
rules (grouped training, tuning workers, methods a backbone lacks) instead of a copy of
them. Where the data lie does not change the jobs: the dry run drops the config's dataset
roots and subject/split files (the phantom stands in)."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULE_LINE = re.compile(r"^(?:local)?rule (\w+):$")
FIELD_LINE = re.compile(r"^    (\w+): (.*)$")
TOTAL_LINE = re.compile(r"^total\s+(\d+)$")


@dataclass(frozen=True)
class WorkflowJob:
    rule: str
    wildcards: dict[str, str]
    outputs: tuple[str, ...]

    def methods(self) -> list[str]:
        """The methods whose run folders (runs/<dataset>/<backbone>/<method>/seed<k>/) the job writes."""
        return [Path(o).parts[3] for o in self.outputs if o.startswith("runs/") and len(Path(o).parts) >= 5]


def parse_dry_run(text: str) -> list[WorkflowJob]:
    """The jobs of `snakemake -n`'s output: each `rule NAME:` block's wildcards and outputs.
    The count is checked against the output's own job total: a format this parser does not
    read raises instead of giving a short list. Sorted (by rule, wildcards and outputs): the
    dry run prints its jobs in an order that changes from run to run."""
    jobs, rule, fields = [], None, {}

    def close():
        if rule is not None:
            wildcards = dict(p.split("=", 1) for p in fields.get("wildcards", "").split(", ") if "=" in p)
            outputs = tuple(o for o in fields.get("output", "").split(", ") if o)
            jobs.append(WorkflowJob(rule, wildcards, outputs))

    total = None
    for line in text.splitlines():
        if m := RULE_LINE.match(line):
            close()
            rule, fields = m.group(1), {}
        elif rule is not None and (m := FIELD_LINE.match(line)):
            fields[m.group(1)] = m.group(2)
        elif m := TOTAL_LINE.match(line.strip()):
            total = int(m.group(1))
    close()
    if total is None or total != len(jobs):
        raise RuntimeError(f"snakemake's dry run listed {len(jobs)} job block(s) but a total of {total}: "
                           "its output format is not the one this parser reads")
    return sorted(jobs, key=lambda j: (j.rule, sorted(j.wildcards.items()), j.outputs))


def without_data_paths(config: dict) -> dict:
    """`config` with no dataset root, subjects file or split file (they do not change the jobs)."""
    config = copy.deepcopy(config)
    for dataset in config.get("datasets", []):
        config[f"{dataset}_root"] = None
    for key in ("subjects_file", "split_file"):
        (config.get("prepare") or {}).pop(key, None)
    return config


def dry_run_text(config: dict) -> str:
    """What `snakemake -n --forceall` prints for `config` (a full config: config.yaml with
    the user's on top), run in an empty temporary output folder."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="cost_jobs-") as tmp:
        planned = {**without_data_paths(config), "output_dir": tmp}
        config_file = Path(tmp) / "config.yaml"
        config_file.write_text(yaml.safe_dump(planned, sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock", "--snakefile",
                               str(REPO / "Snakefile"), "--configfile", str(config_file), "--directory", tmp],
                              cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"snakemake's dry run of the config failed:\n{done.stderr[-3000:]}")
    return done.stdout + "\n" + done.stderr


def workflow_jobs(config: dict) -> list[WorkflowJob]:
    """Every job `snakemake --cores all` runs from scratch with `config`."""
    return parse_dry_run(dry_run_text(config))


def main(argv=None) -> int:
    """`python benchmarks/cost_jobs.py [CONFIG]`: the dry run's text of config.yaml with CONFIG
    on top, saved for a machine without Snakemake (paper_cost.py --project --planned FILE)."""
    import argparse

    from cost_tables import workflow_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("config", nargs="?", default=None, help="a config file on top of config.yaml")
    args = parser.parse_args(argv)
    text = dry_run_text(workflow_config(args.config))
    parse_dry_run(text)  # a text this module cannot read is not saved
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
