#!/bin/bash
# One shard of a fewmm benchmark grid per Slurm array task (python -m fewmm.bench ... --shard I/N).
#
#   # 4 shards, then one merge job that runs once all 4 succeeded:
#   jid=$(sbatch --parsable --array=0-3 scripts/slurm/bench_array.sh --config benchmarks/omniglot_protonet.toml --name grid)
#   sbatch --dependency=afterok:$jid --wrap "python -m fewmm.bench.merge results/grid-shard*-of-4.json"
#
# Every argument is passed to python -m fewmm.bench; give --name (the shards' common file stem).
# Array indices must be 0..N-1 (--array=0-(N-1), a %K throttle is fine): the shard is
# $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT. PYTHON picks the interpreter (default: python).
# Shards share the feature cache ($FEWMM_CACHE) safely: cache entries are written atomically.
#SBATCH --job-name=fewmm-bench
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
set -euo pipefail
: "${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=0-(N-1) $0 ...}"
: "${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT is not set (Slurm >= 17.11 sets it for array jobs)}"
if [ "${SLURM_ARRAY_TASK_MAX:-$((SLURM_ARRAY_TASK_COUNT - 1))}" -ne "$((SLURM_ARRAY_TASK_COUNT - 1))" ]; then
    echo "error: array indices must be 0..N-1 (got max ${SLURM_ARRAY_TASK_MAX} for ${SLURM_ARRAY_TASK_COUNT} tasks)" >&2
    exit 2
fi
exec "${PYTHON:-python}" -m fewmm.bench "$@" --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}"
