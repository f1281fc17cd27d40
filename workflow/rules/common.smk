# Shared definitions of the workflow: the method lists (from gsmorph/methods.py), paths,
# and what each job is given. Logic lives in the package (gsmorph.workflow_config,
# gsmorph.code_version, gsmorph.methods); this file only maps it onto rules.
import json
import shlex
from pathlib import Path

from gsmorph import datasets, methods
from gsmorph.backbones import display as backbone_display
from gsmorph.cli import VERBS
from gsmorph.code_version import code_version as module_version
from gsmorph.config import DEFAULTS as METHOD_DEFAULTS
from gsmorph.report import artifacts

REPO = Path(workflow.basedir)

CLASSICAL = methods.ids("classical")  # `gsmorph register`, backbone "none"
TRAINED = methods.ids("trained")  # `gsmorph train`
TUNED = methods.ids("tuned")  # `gsmorph tune`

DATASETS = config["datasets"]
BACKBONES = config["backbones"]
METHODS = config["methods"]
SEEDS = config["seeds"]
CLASSICAL_SEED = SEEDS[0]  # classical methods and Initial are run once, with the first seed
LEARNED_METHODS = [m for m in METHODS if m not in CLASSICAL]
CLASSICAL_METHODS = [m for m in METHODS if m in CLASSICAL]
METHOD_CFG = config.get("method") or {}
NIFTI = " --nifti" if config.get("nifti") else ""  # config nifti: pairs also as NIfTI (gsmorph/pairs.py)


def with_nifti(command: str) -> str:
    """A verb's shell command with --nifti before its log redirection when the config asks
    for NIfTI outputs (config key nifti); unchanged otherwise."""
    return command.replace(" > {log}", f"{NIFTI} > {{log}}", 1)
RES = config["resources"]


def learned_pairs():
    """(backbone, method) of every learned method of the config, on the backbones it has."""
    return [(b, m) for b in BACKBONES for m in LEARNED_METHODS if methods.get(m).supports(b)]


def grouped_training():
    """Trained methods of the config that one job per dataset, backbone and seed trains
    together (config group_training): those every backbone of the config has, if at least two."""
    if not config["group_training"]:
        return []
    group = [m for m in LEARNED_METHODS if m in TRAINED and all(methods.get(m).supports(b) for b in BACKBONES)]
    return group if len(group) >= 2 else []


GROUPED = grouped_training()
ALONE = [m for m in TRAINED if m not in GROUPED]  # one `train` job per run


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


def run_file(dataset, backbone, method, seed):
    """The file a learned run ends with: summary.json, or study.json for a tuned one."""
    name = "study.json" if method in TUNED else "summary.json"
    return f"runs/{dataset}/{backbone}/{method}/seed{seed}/{name}"


def run_summaries():
    return [run_file(d, b, m, s) for d in DATASETS for b, m in learned_pairs() for s in SEEDS]


def parent(path):
    """The folder of a file (params derived from outputs, not hard-coded)."""
    return str(Path(path).parent)


def pairs_dirs(w, input):
    return " ".join(parent(f) for f in input)


# ---------------------------------------------------------------- method config per verb
# Each verb gets only the keys of config["method"] it reads, so that Snakemake's params
# trigger reruns exactly the jobs a config change concerns. Threads are not passed:
# Snakemake sets OMP_NUM_THREADS to a job's threads and torch follows it.

SECTIONS = {s for m in methods.METHODS for s in m.sections} | {"lambdas", "backbones", "optim"}
TRAIN_KEYS = [k for k in METHOD_DEFAULTS if k not in SECTIONS]
PAIR_KEYS = ["mode", "moving", "fixed", "drop_missing"]


def method_cfg(backbone, method):
    """What `gsmorph train`/`tune` need: training keys, the backbone's kwargs and
    optimiser settings, the method's own sections and, for a fixed-lambda method, its lambda."""
    spec = methods.get(method)
    cfg = {k: v for k, v in METHOD_CFG.items() if k in TRAIN_KEYS}
    for section in ("backbones", "optim"):
        if backbone in (METHOD_CFG.get(section) or {}):
            cfg[section] = {backbone: METHOD_CFG[section][backbone]}
    cfg.update({s: METHOD_CFG[s] for s in spec.sections if s in METHOD_CFG})
    if spec.lam_key:
        lambdas = {**METHOD_DEFAULTS["lambdas"], **(METHOD_CFG.get("lambdas") or {})}
        cfg["lambdas"] = {spec.lam_key: lambdas[spec.lam_key]}
    return cfg


def group_cfg(backbone, members):
    """method_cfg of several methods trained in one process: their union (each run reads
    its own part; the run fingerprints ignore the others' sections and lambdas)."""
    cfg = {}
    for method in members:
        for key, value in method_cfg(backbone, method).items():
            cfg[key] = {**cfg[key], **value} if key == "lambdas" and key in cfg else value
    return cfg


def register_cfg(method):
    cfg = {k: v for k, v in METHOD_CFG.items() if k in PAIR_KEYS}
    cfg.update({s: METHOD_CFG[s] for s in methods.get(method).sections if s in METHOD_CFG})
    return cfg


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def code_version(verb):
    """The hash of the sources the `gsmorph <verb>` module depends on (gsmorph/code_version.py)."""
    return module_version(VERBS[verb][0])


# ---------------------------------------------------------------- per-rule arguments

def prepare_input(w):
    """The phantom when no raw root is configured (nothing for a user's folder), and the
    subjects file when one is configured (so that editing it prepares the data again)."""
    inputs = [] if config.get(f"{w.dataset}_root") else [f"raw/{w.dataset}/phantom_provenance.json"]
    listed = subjects_file(w.dataset)
    return inputs + ([listed] if listed else [])


def subjects_file(dataset):
    """config prepare.subjects_file for `dataset`: one path for every dataset, or a mapping
    {dataset: path}; None when not set."""
    value = config["prepare"].get("subjects_file")
    return value.get(dataset) if isinstance(value, dict) else value


def subjects_args(w):
    """`--subjects-file FILE` when a subjects file is configured for the dataset."""
    listed = subjects_file(w.dataset)
    return f"--subjects-file {shlex.quote(str(listed))}" if listed else ""


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


def journal(w):
    """The Optuna journal file of a tuned run (a folder shared with the workers on a cluster)."""
    return f"{config['tuning']['storage_dir']}/{w.dataset}-{w.backbone}-{w.method}-seed{w.seed}.log"


def tune_trials():
    return (METHOD_CFG.get("tune") or {}).get("trials", METHOD_DEFAULTS["tune"]["trials"])


def tune_workers(w):
    """The marker files of the tune_worker jobs of one study (none with one worker)."""
    return [
        f"runs/{w.dataset}/{w.backbone}/{w.method}/seed{w.seed}/workers/worker{i}.done"
        for i in range(config["tuning"]["workers"])
    ] if config["tuning"]["workers"] > 1 else []


# ---------------------------------------------------------------- report artifacts
# What `gsmorph report` writes, its categories, labels and captions: gsmorph/report/artifacts.py
# (the one table of the report's files). The captions are the files workflow/report/*.rst
# written from it (Jinja: they may use the report job's params, e.g.
# {{ snakemake.params.scale }}); the front page is workflow/report/workflow.rst.

README_SOURCE = f"results/figures/{artifacts.FIGURES['dice_boxplot'].name(dataset='acdc', backbone='voxelmorph')}.png"
README_FIGURE = str(REPO / "docs" / "default_run_dice_boxplot.png")  # the repository's, whatever output_dir
DATASET_NAMES = datasets.names()
CATEGORIES = artifacts.CATEGORIES
FIGURE_STEMS = artifacts.expected_figures(DATASETS, BACKBONES, METHODS)  # the config is fixed once parsed


def report_files():
    """{kind: [paths]} that `gsmorph report` writes for this config."""
    files = artifacts.expected_files(DATASETS, BACKBONES, METHODS)
    return {kind: [f"results/{path}" for path in paths] for kind, paths in files.items()}


def report_labels(stem):
    """The labels of a figure in the HTML report: {figure, backbone} and, for a conflict map,
    the method. The report's viewer makes a label (bar the first) a toggle when it has two
    values, each on half of the items; every figure exists for every backbone of the config,
    so a backbone toggle always finds the other backbone's figure. (A label unique to each
    item, such as the file name, beside such a toggle leaves rows without a figure: the
    viewer then fails, "Cannot read properties of undefined (reading 'mime_type')".)"""
    figure = FIGURE_STEMS[stem]
    backbone, method = figure.backbone, figure.method
    labels = {"figure": artifacts.FIGURES[figure.kind].title,
              "backbone": "all" if backbone == "all" else backbone_display(backbone)}
    if method:
        labels["method"] = methods.get(method).name(backbone_display(backbone))
    return labels


def report_entry(path, kind):
    """An output path, registered for Snakemake's HTML report where it belongs there."""
    stem = Path(path).stem
    captions = REPO / "workflow" / "report"
    if kind == "figures":
        figure = FIGURE_STEMS[stem]
        return report(path, caption=str(captions / artifacts.figure_caption_file(figure.kind)),
                      category=CATEGORIES[artifacts.FIGURES[figure.kind].category],
                      subcategory=DATASET_NAMES.get(figure.dataset, "All datasets"), labels=report_labels(stem))
    if kind == "tables" and path.endswith(".html"):  # rendered in the report; CSV, Markdown, LaTeX beside
        return report(path, caption=str(captions / "table1.rst"), category=CATEGORIES["tables"],
                      labels={"table": stem.replace("table1_", "").replace("_", " ")})
    if kind == "stats_pages":  # each statistic as a table page; its CSV beside it
        return report(path, caption=str(captions / artifacts.stats_caption_file(stem)), category=CATEGORIES["stats"],
                      labels={"statistic": stem.replace("_", " ")})
    return path


def report_targets():
    return [path for paths in report_files().values() for path in paths]


def scale_text():
    """What data and scale the run used, for the captions."""
    data = [f"{DATASET_NAMES.get(d, d)}" + ("" if config.get(f"{d}_root") else "-format phantom") for d in DATASETS]
    m = {**METHOD_DEFAULTS, **METHOD_CFG}
    size = config["prepare"]["size"]
    epochs = f"{m['epochs']} training epoch" + ("s" if m["epochs"] != 1 else "")
    return f"Data: {', '.join(data)}; {epochs}, {size} x {size} images."


# ---------------------------------------------------------------- notices when planning
# Printed before any job (dry runs too): which datasets are phantoms, and that the GPU jobs
# will train on the CPU where they run on this machine and it shows no CUDA GPU.
from snakemake.logging import logger

from gsmorph.gpu_slots import visible_gpus
from gsmorph.workflow_notices import gpu_notice, phantom_notices


def planning_notices():
    gpu_runs = len(run_summaries()) if (RES["train"]["gpu"] or RES["tune"]["gpu"]) else 0
    try:
        gpus = visible_gpus()
    except GSMorphError as err:
        raise WorkflowError(str(err)) from None
    return phantom_notices(config) + gpu_notice(gpu_runs, gpus, workflow.local_exec)


if workflow.is_main_process:
    for line in planning_notices():
        logger.warning(f"Notice: {line}")
