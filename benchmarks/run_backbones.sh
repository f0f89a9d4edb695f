#!/usr/bin/env bash
# Re-run every backbone-from-scratch experiment and rewrite the README tables:
#   FEWMM_DATA=../shared/data bash benchmarks/run_backbones.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for cfg in omniglot_protonet omniglot_maml omniglot_maml20 fsdd_protonet esc50_protonet; do
  "$PY" -m fewmm.bench.backbone --config "benchmarks/$cfg.toml" --overwrite   # train afresh
done
for r in omniglot-protonet omniglot-maml omniglot-maml20 fsdd-digits-protonet esc50-protonet; do
  "$PY" -m fewmm.bench.report "results/$r.json" --readme README.md
done
"$PY" -m fewmm.bench.report results/omniglot-protonet.json results/omniglot-maml.json results/omniglot-maml20.json \
  --readme README.md --tag omniglot
