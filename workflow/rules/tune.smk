# Tuned methods (`gsmorph tune`, the "tuned" family of gsmorph/methods.py): writes
# runs/<dataset>/<backbone>/<method>/seed<k>/ with trials.csv, study.json, trials/ and
# best/ (a complete run folder), then registers the evaluated split with best/
# (--pairs-out, as `gsmorph infer` does) into pairs/<dataset>/<backbone>/<method>/seed<k>/.
#
# The study lives in a journal file outside that folder (tuning.storage_dir; on a cluster
# a shared folder). With tuning.workers = k > 1, k `tune_worker` jobs (k GPU jobs at once
# on a cluster) run `gsmorph tune` on that one study and the same output folder: the verb
# makes them finish exactly --trials trials together. The `tune` job, with the same
# arguments, then finds the study complete and writes trials.csv, study.json and best/.
#
# `tune_study` names a new study (and empties the tune folder) whenever the prepared data,
# the tuning config or the tuning code change; the other jobs read that name. A job killed
# half way therefore resumes its study on the next run (the verb trains the interrupted
# trial again), while a change starts afresh. The journal is deliberately neither an
# input nor an output: the workers append to it while they run.


# The tuning jobs are the longest of the DAG: they start first (priority), so that none of
# them runs alone on a machine whose other jobs are done.


rule tune_study:
    """A new Optuna study for {method} of {backbone} on {dataset}, seed {seed}."""
    priority: 1
    input:
        "prepared/{dataset}/subjects.csv",
    output:
        "runs/{dataset}/{backbone}/{method}/seed{seed}/study_name.txt",
    wildcard_constraints:
        backbone=regex(BACKBONES),
        method=regex(TUNED),
    params:
        folder=lambda w, output: parent(output[0]),
        name="{dataset}-{backbone}-{method}-seed{seed}",
        cfg=lambda w: as_json(method_cfg(w.backbone, w.method)),
        code=code_version("tune"),
    log:
        "logs/tune/{dataset}/{backbone}/{method}/seed{seed}.study.log",
    shell:
        "find {params.folder} -mindepth 1 -delete && "
        "echo {params.name}-$(date -u +%Y%m%dT%H%M%S)-$$ > {output} && "
        "echo new study $(cat {output}) > {log}"


TUNE_SHELL = (
    "{params.gpu_slot}gsmorph tune --method {wildcards.method} --prepared {params.prepared} --backbone {wildcards.backbone}"
    " --trials {params.trials} --storage {params.journal} --study $(cat {input.study})"
    " --seed {wildcards.seed} --out {params.out} --set {params.cfg:q}{params.pairs} > {log} 2>&1"
)

if config["tuning"]["workers"] > 1:

    rule tune_worker:
        """Worker {worker} of the shared study of {method}, {backbone}, {dataset}, seed {seed}."""
        priority: 1
        input:
            prepared="prepared/{dataset}/subjects.csv",
            study=rules.tune_study.output[0],
        output:
            touch("runs/{dataset}/{backbone}/{method}/seed{seed}/workers/worker{worker}.done"),
        wildcard_constraints:
            backbone=regex(BACKBONES),
            method=regex(TUNED),
            worker=r"\d+",
        params:
            prepared=lambda w, input: parent(input.prepared),
            out=lambda w, output: parent(parent(output[0])),
            journal=journal,
            trials=tune_trials(),
            cfg=lambda w: as_json(method_cfg(w.backbone, w.method)),
            code=code_version("tune"),
            gpu_slot=GPU_SLOT,
            pairs="",  # the tune job registers the pairs once the study is complete
        threads: RES["tune"]["threads"]
        resources:
            gpu=RES["tune"]["gpu"],
            gpu_slots=RES["tune"]["gpu"],
            mem_mb=RES["tune"]["mem_mb"],
            runtime=RES["tune"]["runtime"],
        log:
            "logs/tune/{dataset}/{backbone}/{method}/seed{seed}.worker{worker}.log",
        benchmark:
            "logs/benchmarks/tune/{dataset}/{backbone}/{method}/seed{seed}.worker{worker}.tsv"
        shell:
            TUNE_SHELL


rule tune:
    """Tune {method} on {backbone}, {dataset}, seed {seed}."""
    priority: 1
    input:
        prepared="prepared/{dataset}/subjects.csv",
        study=rules.tune_study.output[0],
        workers=tune_workers,
    output:
        run="runs/{dataset}/{backbone}/{method}/seed{seed}/study.json",
        pairs="pairs/{dataset}/{backbone}/{method}/seed{seed}/index.csv",
    wildcard_constraints:
        backbone=regex(BACKBONES),
        method=regex(TUNED),
    params:
        prepared=lambda w, input: parent(input.prepared),
        out=lambda w, output: parent(output.run),
        pairs=lambda w, output: f" --pairs-out {parent(output.pairs)} --split {config['split']}{NIFTI}",
        journal=journal,
        trials=tune_trials(),
        cfg=lambda w: as_json(method_cfg(w.backbone, w.method)),
        code=code_version("tune"),
        gpu_slot=GPU_SLOT,
    threads: RES["tune"]["threads"]
    resources:
        gpu=RES["tune"]["gpu"],
        gpu_slots=RES["tune"]["gpu"],
        mem_mb=RES["tune"]["mem_mb"],
        runtime=RES["tune"]["runtime"],
    log:
        "logs/tune/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/tune/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    shell:
        TUNE_SHELL
