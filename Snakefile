# GSMorph benchmark: from nothing (or the user's raw ACDC / M&Ms-1 folders) to Table 1,
# figures and statistics. Every rule calls one `gsmorph` verb; see README.md.
#
#   snakemake --cores all                                   # embedded default (config.yaml)
#   snakemake --cores all --configfile workflow/configs/paper.yaml \
#       --config acdc_root=/data/ACDC/database mnm_root=/data/MnM
#   snakemake --profile workflow/profiles/slurm             # GPU jobs on a SLURM cluster
#   snakemake --cores all readme_figure                     # maintainers: refresh docs/'s figure
from snakemake.utils import min_version

from gsmorph.errors import GSMorphError
from gsmorph.provenance import git_commit
from gsmorph.workflow_config import check as check_config

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


# A wrong key or type, or a dataset root that is not such a download, stops here, before
# any job (dry runs too), with one short line per problem.
try:
    config.update(check_config(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml"))
except GSMorphError as err:
    raise WorkflowError(str(err)) from None
# the commit of the clone this Snakefile is in, for the report's front page and provenance
config["git_commit"] = git_commit(workflow.basedir) or "unknown"


# Every output under config output_dir (e.g. paper.yaml's `paper/`): runs of different
# configs do not overwrite each other.
workdir: config["output_dir"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/classical.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    provenance,
    readme_figure,
    tune_study,


rule all:
    """Every artifact: metrics of both datasets, tables, figures, statistics, provenance."""
    input:
        expand("results/{dataset}/metrics.csv", dataset=DATASETS),
        report_targets(),
        "results/provenance.json",
    default_target: True


rule readme_figure:
    """A maintainer's target, not part of `all` (a run leaves the clone's tracked files as
    they were): `snakemake --cores all readme_figure` after the default run copies its
    figure to the repository's docs/, the figure the README shows; commit it then."""
    input:
        README_SOURCE,
    output:
        README_FIGURE,
    log:
        "logs/readme_figure.log",
    shell:
        "cp {input} {output} && echo copied {input} to {output} > {log}"
