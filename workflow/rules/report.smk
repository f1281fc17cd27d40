# Statistics, tables and figures of every dataset (`gsmorph report`), and the workflow's
# provenance record.

REPORT_OUTPUTS = [
    "results/tables",
    "results/figures",
    "results/stats",
]


rule report:
    """Table 1, figures and paired statistics from every dataset's metrics and the runs."""
    input:
        metrics=expand("results/{dataset}/metrics.csv", dataset=DATASETS),
        runs=run_summaries(),
    output:
        tables=directory("results/tables"),
        figures=directory("results/figures"),
        stats=directory("results/stats"),
    params:
        runs="runs",
        out="results",
        code=code_version("report"),
    threads: RES["report"]["threads"]
    resources:
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    shell:
        "gsmorph report --metrics {input.metrics} --runs {params.runs} --out {params.out} > {log} 2>&1"


rule provenance:
    """results/provenance.json: config, seeds, package versions, git commit, code versions."""
    output:
        "results/provenance.json",
    params:
        cfg=as_json(config),
        seeds=SEEDS,
        classical_seed=CLASSICAL_SEED,
        code_versions={verb: code_version(verb) for verb in VERBS},
    log:
        "logs/provenance.log",
    script:
        "../scripts/provenance.py"
