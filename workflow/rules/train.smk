# Learned methods trained by `gsmorph train` (the "trained" family of gsmorph/methods.py):
# fixed-lambda weighted losses, HyperMorph and the gradient-surgery methods. The same job
# then registers the evaluated split with the trained model (--pairs-out: what `gsmorph
# infer` does), sparing a process start (torch and MONAI imports) per run; the tune job
# does the same with its study's best/ run.
#
# GPU jobs (train, tune, tune_worker) ask for `gpu` (GPUs, what SLURM grants) and
# `gpu_slots` (what the local profile bounds: GPUs x jobs per GPU), and start with
# GPU_SLOT: gsmorph.gpu_slots's gpu-slot command (run by `python3 -c`, no data folder on sys.path) claims a free slot for the job's shell and
# pins the job to GPU slot mod n (CUDA_VISIBLE_DEVICES) when the machine shows n >= 2
# GPUs; with one GPU or none (a CPU machine, a SLURM job) it does nothing. It runs the
# `python3` on PATH, as the verbs run the `gsmorph` on PATH (one environment).
from gsmorph.gpu_slots import slot_shell_prefix

GPU_SLOT = slot_shell_prefix("python3")

# --fresh-if-changed: a run folder left by another config, code or input starts afresh; one
# left by a killed job of the same run resumes from its last.pt (a finished one, rerun for
# another split, goes straight to --pairs-out). With several methods, out and pairs hold
# `{method}`.
TRAIN_SHELL = with_nifti(
    "{params.gpu_slot}gsmorph train --prepared {params.prepared} --backbone {wildcards.backbone}"
    " --method {params.methods} --seed {wildcards.seed} --out {params.out:q}"
    " --fresh-if-changed --set {params.cfg:q} --pairs-out {params.pairs:q} --split {params.split} > {log} 2>&1"
)


rule train:
    """Train {method} on the {backbone} backbone, {dataset}, seed {seed}."""
    input:
        "prepared/{dataset}/subjects.csv",
    output:
        run="runs/{dataset}/{backbone}/{method}/seed{seed}/summary.json",
        pairs="pairs/{dataset}/{backbone}/{method}/seed{seed}/index.csv",
    wildcard_constraints:
        backbone=regex(BACKBONES),
        method=regex(ALONE),
    params:
        prepared=lambda w, input: parent(input[0]),
        methods=lambda w: w.method,
        out=lambda w, output: parent(output.run),
        pairs=lambda w, output: parent(output.pairs),
        split=config["split"],
        cfg=lambda w: as_json(method_cfg(w.backbone, w.method)),
        code=code_version("train"),
        gpu_slot=GPU_SLOT,
    threads: RES["train"]["threads"]
    resources:
        gpu=RES["train"]["gpu"],
        gpu_slots=RES["train"]["gpu"],
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
    log:
        "logs/train/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    shell:
        TRAIN_SHELL


if GROUPED:

    rule train_group:
        """Train every method of GROUPED on {backbone}, {dataset}, seed {seed}, one after
        another in one process (config group_training), each into its own run folder."""
        priority: 2  # the longest jobs of the DAG first
        input:
            "prepared/{dataset}/subjects.csv",
        output:
            runs=expand("runs/{{dataset}}/{{backbone}}/{method}/seed{{seed}}/summary.json", method=GROUPED),
            pairs=expand("pairs/{{dataset}}/{{backbone}}/{method}/seed{{seed}}/index.csv", method=GROUPED),
        wildcard_constraints:
            backbone=regex(BACKBONES),
        params:
            prepared=lambda w, input: parent(input[0]),
            methods=" ".join(GROUPED),
            out=lambda w: f"runs/{w.dataset}/{w.backbone}/{{method}}/seed{w.seed}",
            pairs=lambda w: f"pairs/{w.dataset}/{w.backbone}/{{method}}/seed{w.seed}",
            split=config["split"],
            cfg=lambda w: as_json(group_cfg(w.backbone, GROUPED)),
            code=code_version("train"),
            gpu_slot=GPU_SLOT,
        threads: RES["train"]["threads"]
        resources:
            gpu=RES["train"]["gpu"],
            gpu_slots=RES["train"]["gpu"],
            mem_mb=RES["train"]["mem_mb"],
            runtime=RES["train"]["runtime"] * len(GROUPED),
        log:
            "logs/train/{dataset}/{backbone}/group-seed{seed}.log",
        benchmark:
            "logs/benchmarks/train/{dataset}/{backbone}/group-seed{seed}.tsv"
        shell:
            TRAIN_SHELL
