# Shared definitions of the workflow: method families, paths, and what each job is given.
import ast
import hashlib
import json
import shlex
from pathlib import Path

from gsmorph.cli import VERBS
from gsmorph.config import DEFAULTS as METHOD_DEFAULTS

REPO = Path(workflow.basedir)

CLASSICAL = ["initial", "demons", "syn"]
FIXED_LAMBDA = {"weighted-s": "s", "weighted-m": "m", "weighted-l": "l"}
GS_MODES = ["gsmorph", "gs-pcgrad", "gs-agr"]
TRAINED = [*FIXED_LAMBDA, "hypermorph", *GS_MODES]  # methods made by `gsmorph train`
TUNED = "weighted-tuned"  # made by `gsmorph tune`

DATASETS = config["datasets"]
BACKBONES = config["backbones"]
METHODS = config["methods"]
SEEDS = config["seeds"]
CLASSICAL_SEED = SEEDS[0]  # classical methods and Initial are run once, with the first seed
LEARNED_METHODS = [m for m in METHODS if m not in CLASSICAL]
CLASSICAL_METHODS = [m for m in METHODS if m in CLASSICAL]
METHOD_CFG = config.get("method") or {}
RES = config["resources"]
# Methods that exist for some backbones only: HyperMorph's hypernetwork is built on the
# VoxelMorph U-Net (baselines/hypermorph.py refuses other backbones).
ONLY_ON = {"hypermorph": ["voxelmorph"]}


def learned_pairs():
    """(backbone, method) of every learned method of the config, on the backbones it has."""
    return [(b, m) for b in BACKBONES for m in LEARNED_METHODS if b in ONLY_ON.get(m, [b])]


def regex(names):
    """A wildcard constraint matching exactly one of `names`."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!)"


wildcard_constraints:
    dataset=regex(DATASETS),
    seed=r"\d+",


# ---------------------------------------------------------------- paths

def raw_dir(dataset):
    """The raw folder prepare reads: the user's download if its root is set, else the phantom."""
    return config.get(f"{dataset}_root") or f"raw/{dataset}"


def pairs_done(dataset):
    """Every pairs folder's index.csv (written last by the verb) of one dataset."""
    learned = [
        f"pairs/{dataset}/{backbone}/{method}/seed{seed}/index.csv"
        for backbone, method in learned_pairs()
        for seed in SEEDS
    ]
    classical = expand(
        "pairs/{dataset}/none/{method}/seed{seed}/index.csv",
        dataset=dataset, method=CLASSICAL_METHODS, seed=CLASSICAL_SEED,
    )
    return [*learned, *classical]


def run_summaries():
    """The file each learned run ends with (summary.json, or study.json for the tuned one)."""
    return [
        f"runs/{dataset}/{backbone}/{method}/seed{seed}/{'study' if method == TUNED else 'summary'}.json"
        for dataset in DATASETS
        for backbone, method in learned_pairs()
        for seed in SEEDS
    ]


# ---------------------------------------------------------------- method config per verb
# Each verb gets only the keys of config["method"] it reads, so that Snakemake's params
# trigger reruns exactly the jobs a config change concerns. Threads are not passed:
# Snakemake sets OMP_NUM_THREADS to a job's threads and torch follows it, so running the
# same config under another profile (other threads) reruns nothing.

SECTION_KEYS = {"tune", "demons", "syn", "hypermorph", "lambdas", "backbones"}
TRAIN_KEYS = [k for k in METHOD_DEFAULTS if k not in SECTION_KEYS]
PAIR_KEYS = ["mode", "moving", "fixed", "drop_missing"]


def train_cfg(backbone, method):
    cfg = {k: v for k, v in METHOD_CFG.items() if k in TRAIN_KEYS}
    if backbone in (METHOD_CFG.get("backbones") or {}):
        cfg["backbones"] = {backbone: METHOD_CFG["backbones"][backbone]}
    if method == "hypermorph" and "hypermorph" in METHOD_CFG:
        cfg["hypermorph"] = METHOD_CFG["hypermorph"]
    if method == TUNED and "tune" in METHOD_CFG:
        cfg["tune"] = METHOD_CFG["tune"]
    return cfg


def register_cfg(method):
    cfg = {k: v for k, v in METHOD_CFG.items() if k in PAIR_KEYS}
    if method in METHOD_CFG:
        cfg[method] = METHOD_CFG[method]
    return cfg


def lam(method):
    """The fixed lambda of weighted-s/-m/-l from config (or gsmorph's defaults)."""
    lambdas = {**METHOD_DEFAULTS["lambdas"], **(METHOD_CFG.get("lambdas") or {})}
    return lambdas[FIXED_LAMBDA[method]]


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- code versions
# A job's `code` param is a hash of the source of its verb and of every gsmorph/baselines
# module that verb imports (transitively, lazy imports included). Snakemake's params
# trigger then reruns a job when that code changes, and only then: unlike listing the
# sources as inputs, a checkout that only touches file times reruns nothing.

def _module_file(name):
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path, name):
    """Names of gsmorph/baselines modules imported by the module `name` at `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n.split(".")[0] in ("gsmorph", "baselines")}


_CODE_HASHES = {}


def code_version(verb):
    """sha256 (16 hex) of the sources the `gsmorph <verb>` module depends on."""
    if verb not in _CODE_HASHES:
        todo, seen, files = [VERBS[verb][0]], set(), {}
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            parts = name.split(".")
            todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run too
            path = _module_file(name)
            if path is not None:
                files[str(path.relative_to(REPO))] = path.read_bytes()
                todo.extend(sorted(_imports(path, name)))
        digest = hashlib.sha256()
        for rel in sorted(files):
            digest.update(b"\0".join([rel.encode(), files[rel], b""]))
        _CODE_HASHES[verb] = digest.hexdigest()[:16] if files else "missing"
    return _CODE_HASHES[verb]


def parent(path):
    """The folder of a file (params derived from outputs, not hard-coded)."""
    return str(Path(path).parent)


# ---------------------------------------------------------------- per-rule arguments


def prepare_input(w):
    """The phantom when no raw root is configured; nothing (a user's folder) otherwise."""
    return [] if config.get(f"{w.dataset}_root") else f"raw/{w.dataset}/phantom_provenance.json"


def synth_subjects(w):
    subjects = config["synth"]["subjects"]
    return subjects[w.dataset] if isinstance(subjects, dict) else subjects


def split_args(w):
    p = config["prepare"]
    if p.get("split_file"):
        return f"--split-file {shlex.quote(str(p['split_file']))}"
    return f"--split-ratios {' '.join(str(r) for r in p['split_ratios'])}"


def folder_args(w):
    """`--folders ...` when config prepare.folders names a subset of the raw layout."""
    folders = (config["prepare"].get("folders") or {}).get(w.dataset)
    return f"--folders {' '.join(folders)}" if folders else ""


def train_method_args(w):
    """CLI method (and lambda) of a workflow method name."""
    if w.method in FIXED_LAMBDA:
        return f"--method weighted --lam {lam(w.method)}"
    return f"--method {w.method}"


RUN_FOLDER = f"{REPO}/workflow/scripts/run_folder.sh"


def run_key(w):
    """What identifies a training run besides its input data: arguments, config, code."""
    key = as_json([train_method_args(w), train_cfg(w.backbone, w.method), code_version("train")])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def tune_cfg(w):
    return as_json(train_cfg(w.backbone, TUNED))


def journal(w):
    """The Optuna journal file of a tuned run (a folder shared with the workers on a cluster)."""
    return f"{config['tuning']['storage_dir']}/{w.dataset}-{w.backbone}-{TUNED}-seed{w.seed}.log"


def tune_trials():
    return (METHOD_CFG.get("tune") or {}).get("trials", METHOD_DEFAULTS["tune"]["trials"])


def tune_workers(w):
    """The marker files of the tune_worker jobs of one study (none with one worker)."""
    return [
        f"runs/{w.dataset}/{w.backbone}/weighted-tuned/seed{w.seed}/workers/worker{i}.done"
        for i in range(config["tuning"]["workers"])
    ] if config["tuning"]["workers"] > 1 else []


def trained_run(w, input):
    """The run folder infer reads: the training run, or the tuned study's best/ copy."""
    folder = parent(input.run)
    return f"{folder}/best" if w.method == TUNED else folder


def run_done(w):
    name = "study.json" if w.method == TUNED else "summary.json"
    return f"runs/{w.dataset}/{w.backbone}/{w.method}/seed{w.seed}/{name}"


def pairs_dirs(w, input):
    return " ".join(parent(f) for f in input)


# ---------------------------------------------------------------- report artifacts

STATS = ["summary", "wilcoxon", "friedman", "subject_values", "undefined", "tuning_cost"]
PARETO_METHODS = {"weighted-s", "weighted-m", "weighted-l", TUNED, "hypermorph", "gsmorph"}


def report_files():
    """{kind: [paths]} that `gsmorph report` writes for this config (see its docstring)."""
    learned_backbones = BACKBONES if LEARNED_METHODS else []
    groups = [(d, b) for d in DATASETS for b in learned_backbones]
    tables = [f"table1_{b}" for b in learned_backbones] + ["table1_combined"]
    figures = [f"dice_boxplot_{d}_{b}" for d, b in groups]
    figures += [f"qualitative_{d}_{b}" for d, b in groups]
    if PARETO_METHODS & set(LEARNED_METHODS):
        figures += [f"pareto_{d}_{b}" for d, b in groups]
        figures.append("tuning_cost")
    figures += [f"conflicts_{d}_{b}_{m}" for d, b in groups for m in GS_MODES if m in METHODS]
    return {
        "tables": [f"results/tables/{t}.{ext}" for t in tables for ext in ("csv", "md", "tex")],
        "tables_doc": ["results/tables/tables.tex"],
        "figures": [f"results/figures/{f}.png" for f in figures],
        "figures_pdf": [f"results/figures/{f}.pdf" for f in figures],
        "stats": [f"results/stats/{s}.csv" for s in STATS],
    }


def report_entry(path, kind):
    """An output path, registered for Snakemake's HTML report where it belongs there."""
    stem = Path(path).stem
    # captions written by `gsmorph report`; absolute, as they live in the working folder
    made_caption = str(Path("results/report/captions", f"{stem}.rst").resolve())
    if kind == "figures":
        return report(path, caption=made_caption, category="Figures", labels={"figure": stem})
    if kind == "tables" and path.endswith(".csv"):
        return report(path, caption=made_caption, category="Table 1", labels={"table": stem})
    if kind == "stats":
        return report(path, caption=f"{REPO}/workflow/report/stats_{stem}.rst", category="Statistics and tests",
                      labels={"file": stem})
    return path


def report_targets():
    return [path for paths in report_files().values() for path in paths]
