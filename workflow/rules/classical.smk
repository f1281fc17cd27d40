# Non-learned methods (`gsmorph register`, the "classical" family of gsmorph/methods.py):
# Initial (identity), Demons and SyN. CPU jobs, written under backbone "none".


rule register:
    """Register the test pairs of {dataset} with {method} (no network)."""
    input:
        "prepared/{dataset}/subjects.csv",
    output:
        "pairs/{dataset}/none/{method}/seed{seed}/index.csv",
    wildcard_constraints:
        method=regex(CLASSICAL),
    params:
        prepared=lambda w, input: parent(input[0]),
        split=config["split"],
        out=lambda w, output: parent(output[0]),
        cfg=lambda w: as_json(register_cfg(w.method)),
        code=code_version("register"),
    threads: RES["register"]["threads"]
    resources:
        mem_mb=RES["register"]["mem_mb"],
        runtime=RES["register"]["runtime"],
    log:
        "logs/register/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/register/{dataset}/{method}/seed{seed}.tsv"
    shell:
        with_nifti(
            "gsmorph register --method {wildcards.method} --prepared {params.prepared}"
            " --split {params.split} --out {params.out} --set {params.cfg:q}"
            " --workers {threads} --seed {wildcards.seed} > {log} 2>&1"
        )
