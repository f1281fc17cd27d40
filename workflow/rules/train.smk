# Learned methods trained by `gsmorph train`: the weighted baseline with the paper's fixed
# lambdas (weighted-s/-m/-l: --method weighted --lam <config lambdas.s|m|l>), HyperMorph,
# and the gradient-surgery modes (gsmorph, gs-pcgrad, gs-agr).


rule train:
    """Train {method} on the {backbone} backbone, {dataset}, seed {seed}."""
    input:
        "prepared/{dataset}/subjects.csv",
    output:
        "runs/{dataset}/{backbone}/{method}/seed{seed}/summary.json",
    wildcard_constraints:
        backbone=regex(BACKBONES),
        method=regex(TRAINED),
    params:
        prepared=lambda w, input: parent(input[0]),
        out=lambda w, output: parent(output[0]),
        method=train_method_args,
        cfg=lambda w: as_json(train_cfg(w.backbone, w.method)),
        code=code_version("train"),
        # run_folder.sh: a changed config, code or input trains afresh; a killed job resumes
        key=run_key,
    threads: RES["train"]["threads"]
    resources:
        gpu=RES["train"]["gpu"],
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
    log:
        "logs/train/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    shell:
        "bash {RUN_FOLDER} {params.out} {params.key} {input} > {log} 2>&1 && "
        "gsmorph train --prepared {params.prepared} --backbone {wildcards.backbone}"
        " {params.method} --seed {wildcards.seed} --out {params.out}"
        " --set {params.cfg:q} >> {log} 2>&1"
