# Metrics of every method's per-pair outputs, one long-format CSV per dataset.


rule evaluate:
    """Dice, HD95, MSE, NJD, SDlogJ, EPE and runtime of every pairs folder of {dataset}."""
    input:
        lambda w: pairs_done(w.dataset),
    output:
        "results/{dataset}/metrics.csv",
    params:
        pairs=pairs_dirs,
        split=config["split"],
        code=code_version("evaluate"),
    threads: RES["evaluate"]["threads"]
    resources:
        mem_mb=RES["evaluate"]["mem_mb"],
        runtime=RES["evaluate"]["runtime"],
    log:
        "logs/evaluate/{dataset}.log",
    benchmark:
        "logs/benchmarks/evaluate/{dataset}.tsv"
    shell:
        "gsmorph evaluate --pairs {params.pairs} --out {output} --split {params.split}"
        " --workers {threads} > {log} 2>&1"
