# Statistics, tables and figures of every dataset (`gsmorph report`), registered for
# `snakemake --report results/report.html`, and the workflow's provenance record.
# What the report writes and how it is registered: report_files() and report_entry() in
# common.smk.


rule report:
    """Table 1, figures and paired statistics from every dataset's metrics and the runs."""
    input:
        metrics=expand("results/{dataset}/metrics.csv", dataset=DATASETS),
        runs=run_summaries(),
        pairs=[f for dataset in DATASETS for f in pairs_done(dataset)],
    output:
        [report_entry(path, kind) for kind, paths in report_files().items() for path in paths],
        captions="results/report/captions.json",
    params:
        runs=lambda w, input: f"--runs {Path(input.runs[0]).parts[0]}" if input.runs else "--no-runs",
        out=lambda w, output: parent(parent(output.captions)),
        pairs=lambda w, input: " ".join(parent(f) for f in input.pairs),
        scale=scale_text(),
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
        "gsmorph report --metrics {input.metrics} {params.runs} --out {params.out}"
        " --pairs {params.pairs} --workers {threads} > {log} 2>&1"


rule provenance:
    """results/provenance.json: config, seeds, package versions, git commit, code versions
    (and the same as a page, provenance.html, for the HTML report).

    Written after every result it describes, so it is rewritten whenever they are.
    """
    input:
        expand("results/{dataset}/metrics.csv", dataset=DATASETS),
        report_targets(),
    output:
        "results/provenance.json",
        report("results/provenance.html", caption="../report/provenance.rst", category=CATEGORIES["provenance"]),
    params:
        # the config decides reruns, bar the commit: a new commit that changes no verb's code
        # (code_versions) leaves the results, and the provenance of the commit that made them
        cfg=as_json({k: v for k, v in config.items() if k != "git_commit"}),
        seeds=SEEDS,
        classical_seed=CLASSICAL_SEED,
        code_versions={verb: code_version(verb) for verb in VERBS},
    log:
        "logs/provenance.log",
    script:
        "../scripts/provenance.py"
