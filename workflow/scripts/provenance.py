"""results/provenance.json of a workflow run (called by the `provenance` rule), and the
same record as a page for the HTML report (results/provenance.html).

Records the whole workflow config, the seeds, package versions, the git commit and the
hash of each verb's source (the `code` params that decide reruns).
"""
import html
from pathlib import Path

from gsmorph.io import atomic_path
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
record = Path(smk.output[0]).read_text()
with atomic_path(smk.output[1]) as tmp:
    tmp.write_text("<!doctype html><html><head><meta charset='utf-8'><title>Provenance</title></head>"
                   "<body style='font-family:sans-serif;font-size:12px'><h1 style='font-size:15px'>Provenance of "
                   f"these results</h1><p>The same record as JSON: {html.escape(smk.output[0])}.</p>"
                   f"<pre>{html.escape(record)}</pre></body></html>\n")
Path(smk.log[0]).write_text(f"wrote {smk.output[0]}\n")
