#!/usr/bin/env bash
# The GPU measurements of the paper's scale, in one run of at most ~9.5 minutes on one GPU
# (written for a lent H100: PyTorch with CUDA, no MONAI/nibabel/jsonschema, nothing to
# download there). Every step has its own time limit, cut to what is left of the budget;
# the most important run first; each writes its results as it goes, so a step that runs
# out of time loses only itself.
#
# Here, once, in the repository root (fetches the wheels the GPU machine lacks into .whl/,
# kept out of git by .git/info/exclude, with paper.yaml's planned jobs, .whl/paper_jobs.txt):
#     bash benchmarks/gpu_measurements.sh --download
# On the GPU machine, from the repository root (device tool: carry [".whl"], timeout 600):
#     OUT=/some/folder bash benchmarks/gpu_measurements.sh
# Results (9 files at most, flat) in $OUT:
#     env.txt             GPU, driver, torch, the commit
#     tests.txt           the CUDA tests (fast steps; the surgery engine's CPU-vs-CUDA tests)
#     times.csv           seconds per epoch of every job type and option set (paper_cost.py --measure)
#     concurrency.csv     k = 1, 2, 4, 8 trainings at once on the GPU (VoxelMorph), k = 1, 2, 4 (TransMorph-S)
#     quality.csv         validation Dice, fp32 vs bf16-cl, GSMorph-VoxelMorph at paper scale, 2 seeds
#     projection.md       all of it as tables, and paper.yaml projected (today and with the options and k)
#     surgery_overhead.md the surgery engine's step cost (benchmarks/surgery_overhead.py), eager and CUDA graph
#     aggregator_cost.md  the aggregation modes' step cost against GSMorph's (benchmarks/aggregator_cost.py; optional)
#     log.txt             everything printed
# Then commit them as benchmarks/results/paper_cost_<gpu>.md (projection.md, with the
# CSVs beside it) and set the defaults the numbers choose (see that file's reading).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(monai==1.6.1 nibabel==5.4.2 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
        referencing==0.37.0 rpds-py==0.30.0)
if [[ "${1:-}" == "--download" ]]; then
    exclude="$(git rev-parse --git-common-dir)/info/exclude"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}" || exit 1
    # paper.yaml's jobs as the workflow plans them (Snakemake's dry run): the GPU machine has no Snakemake
    python3 benchmarks/cost_jobs.py workflow/configs/paper.yaml > .whl/paper_jobs.txt.part \
        || { rm -f .whl/paper_jobs.txt.part; exit 1; }
    exec mv .whl/paper_jobs.txt.part .whl/paper_jobs.txt  # a failed dry run leaves no file to carry
fi

OUT=${OUT:?set OUT to the folder for the results}
BUDGET=${BUDGET:-570}   # seconds for everything; the device tool's limit is 600
START=$SECONDS
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1

left() { echo $(( BUDGET - (SECONDS - START) )); }
RESERVE=40  # seconds kept for the final projection
step() {  # step NAME CAP_SECONDS COMMAND...: run with min(CAP, time left - RESERVE)
    local name=$1 cap=$2; shift 2
    local limit=$(( $(left) - RESERVE < cap ? $(left) - RESERVE : cap ))
    if (( limit < 20 )); then echo "=== $name: skipped, $(left) s left"; return; fi
    echo "=== $name (limit ${limit} s, $(left) s left) $(date -u +%T)"
    timeout --kill-after=5 "$limit" "$@"
    echo "=== $name: exit $? after $(( SECONDS - START )) s in all"
}

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
{
    date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    nproc; free -g | head -2
    python3 -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'monai', monai.__version__, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
    git rev-parse HEAD 2>/dev/null || echo "commit: (no git here)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# DEVICE=cpu and EXTRA (arguments added to every paper_cost.py call, e.g. smaller phantoms)
# only serve to try this script's steps on a machine without a GPU
PC="python3 benchmarks/paper_cost.py --out-dir $OUT --work ${WORK:-/tmp/paper_cost} --device ${DEVICE:-cuda} ${EXTRA:-}"
PLANNED=$([[ -f .whl/paper_jobs.txt ]] && echo "--planned .whl/paper_jobs.txt")  # from --download

# 1. correctness on CUDA: the fast steps (compile last, below) and the surgery engine
step "CUDA tests" 120 python3 -m pytest -q -p no:cacheprovider -rs \
    tests/components/test_gpu_options.py tests/unit/test_surgery_exact.py tests/unit/test_surgery.py -k "cuda and not compile" \
    > "$OUT/tests.txt" 2>&1
tail -5 "$OUT/tests.txt"

# 2. seconds per epoch: fp32 (today) and bf16 + channels-last, every job type; M&Ms scaled
#    from ACDC by steps per epoch (both phantoms are made: 100 and 219 subjects at 128 x 128)
step "measure fp32, bf16-cl" 200 $PC --measure --options fp32 bf16-cl --time-datasets acdc --epochs 6

# 3. k trainings at once on the GPU (GSMorph-VoxelMorph, 8 epochs, bf16-cl)
step "concurrency VoxelMorph" 120 $PC --concurrency --append --concurrency-options bf16-cl --k 1 2 4 8 \
    --concurrency-epochs 8
grep -q "bf16-cl" "$OUT/concurrency.csv" 2>/dev/null || \
    step "concurrency VoxelMorph (fp32: bf16-cl failed)" 120 $PC --concurrency --append --k 1 2 4 8 \
    --concurrency-epochs 8

# 4. the same for TransMorph-S, which holds most of the paper's GPU time: whether k jobs
#    per GPU gain here decides the goal (heavier steps: maybe less to gain)
step "concurrency TransMorph-S" 100 $PC --concurrency --append --concurrency-backbones transmorph \
    --concurrency-options bf16-cl --k 1 2 4 --concurrency-epochs 4

step "projection" 30 $PC --project $PLANNED --slots 1 2 4 8

# 5. the other option sets (weighted and surgery; HyperMorph keeps its fp32 times there)
step "measure tf32, bf16" 100 $PC --measure --append --options tf32 bf16 --families weighted surgery \
    --time-datasets acdc --epochs 6
step "measure surgery CUDA graph" 50 $PC --measure --append --options bf16-cl-graph --families surgery \
    --time-datasets acdc --epochs 6

# 6. validation Dice at paper scale: fp32 vs bf16-cl, 20 epochs, 2 seeds
step "quality" 80 $PC --quality --quality-backbones voxelmorph --quality-epochs 20 --quality-options bf16-cl \
    --quality-seeds 2

# 7. the surgery engine's overhead on this GPU (benchmarks/results/surgery_overhead.md, "To measure on a GPU")
step "surgery overhead" 60 python3 benchmarks/surgery_overhead.py --device cuda --rounds 15 --warmup 3 \
    --cuda-graph --case voxelmorph-8 --case voxelmorph-32 --case transmorph-s-32 --no-batched-vjp \
    --out "$OUT/surgery_overhead.md"

# 8. torch.compile: its test, then its epoch time for GSMorph-VoxelMorph
step "compile test" 60 python3 -m pytest -q -p no:cacheprovider -rs tests/components/test_gpu_options.py -k "cuda and compile" \
    >> "$OUT/tests.txt" 2>&1
step "measure compile" 70 $PC --measure --append --options bf16-cl-compile --families surgery \
    --backbones voxelmorph --time-datasets acdc --epochs 6

# 9. optional: the general aggregation modes' step cost against GSMorph's (no torchjd needed there)
step "aggregator cost" 40 python3 benchmarks/aggregator_cost.py --device cuda --case voxelmorph-8 --size 128 \
    --rounds 5 --warmup 2 --out "$OUT/aggregator_cost.md"

# the projection again, with everything measured
RESERVE=5
step "projection (final)" 30 $PC --project $PLANNED --slots 1 2 4 8
echo "done after $(( SECONDS - START )) s"
