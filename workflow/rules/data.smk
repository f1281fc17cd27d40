# Data: a synthetic phantom in the raw ACDC / M&Ms-1 layout (unless the user's download
# is given as <dataset>_root), then `gsmorph prepare` into prepared/<dataset>/.


rule synth:
    """Write a synthetic cine-MRI phantom in the raw layout of {dataset}."""
    output:
        "raw/{dataset}/phantom_provenance.json",
    params:
        out=lambda w, output: parent(output[0]),
        subjects=synth_subjects,
        seed=config["synth"]["seed"],
        code=code_version("synth"),
    threads: 2
    log:
        "logs/synth/{dataset}.log",
    benchmark:
        "logs/benchmarks/synth/{dataset}.tsv"
    shell:
        "gsmorph synth --format {wildcards.dataset} --out {params.out}"
        " --subjects {params.subjects} --seed {params.seed} --workers {threads} > {log} 2>&1"


rule prepare:
    """ED/ES pairs, canonical labels, crop to size x size, intensities to [0, 1], train/val/test split."""
    input:
        prepare_input,
    output:
        "prepared/{dataset}/subjects.csv",
    params:
        raw=lambda w: raw_dir(w.dataset),
        out=lambda w, output: parent(output[0]),
        size=config["prepare"]["size"],
        seed=config["prepare"]["seed"],
        on_error=config["prepare"]["on_error"],
        intensity=config["prepare"].get("intensity", "percentile"),
        split=split_args,
        folders=folder_args,
        subjects=subjects_args,
        code=code_version("prepare"),
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare/{dataset}.tsv"
    shell:
        "gsmorph prepare --dataset {wildcards.dataset} --raw {params.raw:q} --out {params.out}"
        " --size {params.size} --seed {params.seed} --on-error {params.on_error} --intensity {params.intensity}"
        " {params.split} {params.folders} {params.subjects} > {log} 2>&1"
