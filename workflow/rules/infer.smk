# Per-pair outputs of every learned method on the evaluated split (`gsmorph infer`);
# a tuned method is inferred from its study's best/ run folder.


rule infer:
    """Register the evaluated pairs of {dataset} with {method} on {backbone}, seed {seed}."""
    input:
        run=run_done,
        prepared="prepared/{dataset}/subjects.csv",
    output:
        "pairs/{dataset}/{backbone}/{method}/seed{seed}/index.csv",
    wildcard_constraints:
        backbone=regex(BACKBONES),
        method=regex(TRAINED + TUNED),
    params:
        run=trained_run,
        prepared=lambda w, input: parent(input.prepared),
        split=config["split"],
        out=lambda w, output: parent(output[0]),
        code=code_version("infer"),
        gpu_slot=GPU_SLOT,
    threads: RES["infer"]["threads"]
    resources:
        gpu=RES["infer"]["gpu"],
        gpu_slots=RES["infer"]["gpu"],
        mem_mb=RES["infer"]["mem_mb"],
        runtime=RES["infer"]["runtime"],
    log:
        "logs/infer/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/infer/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    shell:
        "{params.gpu_slot}gsmorph infer --run {params.run} --prepared {params.prepared} --split {params.split}"
        " --out {params.out} --method-name {wildcards.method} > {log} 2>&1"
