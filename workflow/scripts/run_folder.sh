#!/usr/bin/env bash
# Prepare a run folder before `gsmorph train` runs in it:  run_folder.sh DIR KEY [INPUT...]
#
# `gsmorph train` resumes from DIR/last.pt, which is what a job killed half way needs.
# But when Snakemake reruns a job because its config, code or input data changed, that
# checkpoint belongs to another run and training must start from scratch. KEY (a hash of
# the job's config, code and arguments) and the modification times of the INPUT files
# identify the run: DIR is kept when its recorded stamp matches, emptied otherwise.
set -euo pipefail
dir=$1
key=$2
shift 2
stamp=$({ echo "$key"; for f in "$@"; do stat -c '%n %Y' "$f"; done; } | sha256sum | cut -c1-32)
if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ "$(cat "$dir/.run_stamp" 2>/dev/null || true)" != "$stamp" ]; then
    find "$dir" -mindepth 1 -delete
    echo "run_folder: emptied $dir (made with another config, code or input)"
fi
mkdir -p "$dir"
echo "$stamp" >"$dir/.run_stamp"
