"""results/provenance.json of a workflow run (called by the `provenance` rule).

Records the whole workflow config, the seeds, package versions, the git commit and the
hash of each verb's source (the `code` params that decide reruns).
"""
from pathlib import Path

from gsmorph.provenance import write_provenance

smk = snakemake  # noqa: F821  (given by Snakemake's script directive)
write_provenance(
    smk.output[0],
    config=smk.config,
    seed=smk.params.seeds,
    classical_seed=smk.params.classical_seed,
    code_versions=smk.params.code_versions,
    workflow="Snakefile",
)
Path(smk.log[0]).write_text(f"wrote {smk.output[0]}\n")
