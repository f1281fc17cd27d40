# Learned methods trained by `gsmorph train` (the "trained" family of gsmorph/methods.py):
# fixed-lambda weighted losses, HyperMorph and the gradient-surgery methods.


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
        cfg=lambda w: as_json(method_cfg(w.backbone, w.method)),
        code=code_version("train"),
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
        # --fresh-if-changed: a run folder left by another config, code or input starts
        # afresh; one left by a killed job of the same run resumes from its last.pt
        "gsmorph train --prepared {params.prepared} --backbone {wildcards.backbone}"
        " --method {wildcards.method} --seed {wildcards.seed} --out {params.out}"
        " --fresh-if-changed --set {params.cfg:q} > {log} 2>&1"
