#!/usr/bin/env bash
# The Omniglot one-shot challenge (20 official runs; results/omniglot-challenge.{json,csv} and the
# README block). Trains on images_background ONLY (validation: 96 held-out background characters).
#   FEWMM_DATA=../shared/data bash benchmarks/run_omniglot_challenge.sh
# The committed numbers: ProtoNet and MAML trained side by side (1 torch thread each) under a wall-clock
# budget (`timeout 4400`) on a shared 2-core CPU; the episodes each reached are in the results JSON
# (methods.*.training.trained). Training again straight to that count (--episodes N, this script's
# PROTONET_EPISODES / MAML_STEPS) gives the same checkpoints: episode i depends on (seed, i) only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PROTONET_EPISODES=${PROTONET_EPISODES:?set it to methods.protonet-conv4.training.trained of results/omniglot-challenge.json}
MAML_STEPS=${MAML_STEPS:?set it to methods.maml-first-order-conv4.training.trained of results/omniglot-challenge.json}
"$PY" -m fewmm.bench.omniglot_challenge --threads 1 train --method protonet --episodes "$PROTONET_EPISODES" --eval-every 100 --overwrite
"$PY" -m fewmm.bench.omniglot_challenge --threads 1 train --method maml --episodes "$MAML_STEPS" --eval-every 100 --overwrite
"$PY" -m fewmm.bench.omniglot_challenge --threads 2 evaluate --readme README.md  # the committed run adds --training-note (see the JSON)
