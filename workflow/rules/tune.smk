# The Optuna-tuned weighted baseline (`gsmorph tune`): writes
# runs/<dataset>/<backbone>/weighted-tuned/seed<k>/ with trials.csv, study.json, trials/ and
# best/ (a complete run folder that infer reads).
#
# The study lives in a journal file outside that folder (tuning.storage_dir; on a cluster a
# shared folder). With tuning.workers = k > 1, k `tune_worker` jobs (k GPU jobs at once on
# a cluster) run `gsmorph tune` on that one study and the same output folder: the verb
# makes them finish exactly --trials trials together. A last `tune` job, with the same
# arguments, finds the study complete and writes trials.csv, study.json and best/.
#
# `tune_study` makes the journal: it reruns (and so the study starts from scratch) when
# the prepared data, the tuning config or the tuning code change. A tune job killed half
# way resumes the same study on the next run (its unfinished trial is trained again).


rule tune_study:
    """A fresh, empty Optuna journal for the study of {backbone} on {dataset}, seed {seed}."""
    input:
        "prepared/{dataset}/subjects.csv",
    output:
        f"{config['tuning']['storage_dir']}/{{dataset}}-{{backbone}}-weighted-tuned-seed{{seed}}.log",
    wildcard_constraints:
        backbone=regex(BACKBONES),
    params:
        cfg=tune_cfg,
        code=code_version("tune"),
    log:
        "logs/tune/{dataset}/{backbone}/seed{seed}.study.log",
    shell:
        ": > {output} && echo 'new study journal {output}' > {log}"


TUNE_SHELL = (
    "gsmorph tune --prepared {params.prepared} --backbone {wildcards.backbone}"
    " --trials {params.trials} --storage {input.journal} --study {params.study}"
    " --seed {wildcards.seed} --out {params.out} --set {params.cfg:q} > {log} 2>&1"
)

if config["tuning"]["workers"] > 1:

    rule tune_worker:
        """Worker {worker} of the shared study of {backbone} on {dataset}, seed {seed}."""
        input:
            prepared="prepared/{dataset}/subjects.csv",
            # ancient: workers append to the journal; that must not make it look newer
            journal=ancient(rules.tune_study.output[0]),
        output:
            touch("runs/{dataset}/{backbone}/weighted-tuned/seed{seed}/workers/worker{worker}.done"),
        wildcard_constraints:
            backbone=regex(BACKBONES),
            worker=r"\d+",
        params:
            prepared=lambda w, input: parent(input.prepared),
            out=lambda w, output: parent(parent(output[0])),
            study="{dataset}-{backbone}-weighted-tuned-seed{seed}",
            trials=tune_trials(),
            cfg=tune_cfg,
            code=code_version("tune"),
        threads: RES["tune"]["threads"]
        resources:
            gpu=RES["tune"]["gpu"],
            mem_mb=RES["tune"]["mem_mb"],
            runtime=RES["tune"]["runtime"],
        log:
            "logs/tune/{dataset}/{backbone}/seed{seed}.worker{worker}.log",
        benchmark:
            "logs/benchmarks/tune/{dataset}/{backbone}/seed{seed}.worker{worker}.tsv"
        shell:
            TUNE_SHELL


rule tune:
    """Tune lambda of the weighted baseline on {backbone}, {dataset}, seed {seed}."""
    input:
        prepared="prepared/{dataset}/subjects.csv",
        journal=ancient(rules.tune_study.output[0]),
        workers=tune_workers,
    output:
        "runs/{dataset}/{backbone}/weighted-tuned/seed{seed}/study.json",
    wildcard_constraints:
        backbone=regex(BACKBONES),
    params:
        prepared=lambda w, input: parent(input.prepared),
        out=lambda w, output: parent(output[0]),
        study="{dataset}-{backbone}-weighted-tuned-seed{seed}",
        trials=tune_trials(),
        cfg=tune_cfg,
        code=code_version("tune"),
    threads: RES["tune"]["threads"]
    resources:
        gpu=RES["tune"]["gpu"],
        mem_mb=RES["tune"]["mem_mb"],
        runtime=RES["tune"]["runtime"],
    log:
        "logs/tune/{dataset}/{backbone}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/tune/{dataset}/{backbone}/seed{seed}.tsv"
    shell:
        TUNE_SHELL
