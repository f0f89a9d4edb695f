#!/usr/bin/env bash
# GPU check of the speed benchmarks: one prepared script for a GPU machine lent for a few minutes.
#
#   benchmarks/gpu_check.sh [--out DIR]      # on a CUDA machine; fits in ~8 min on one H200
#   benchmarks/gpu_check.sh --dry-run        # the same steps on the CPU with tiny sizes (tests/test_gpu_check.py)
#
# Steps (each under its own `timeout`, JSON files under DIR, default results/gpu; a failed step
# is recorded in DIR/gpu_check.json and the others still run):
#   1. harness: python -m fewmm.bench on cached features with --device cuda and --device cpu, same
#      episodes; the accuracies must agree within TOL_ACC points (0.1: up to 1 query in 1000 may flip
#      on a near-tie, GPU and CPU sum in different orders);
#   2. episode throughput on the GPU: fewmm's batched evaluation against a bare gather of the same
#      bytes, both on the device (benchmarks/episode_throughput.py --device cuda);
#   3. MAML meta-steps/s on the GPU, Gram and general path vs learn2learn, MLP and GMU heads
#      (benchmarks/maml_speed.py --device cuda);
#   4. bf16 Conv-4 ProtoNet training steps/s (benchmarks/protonet_train_speed.py --device cuda --bf16).
# Python: $PYTHON (default: python). Data: $FEWMM_DATA as usual.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
OUT="$REPO/results/gpu"
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
TOL_ACC=0.1
if [ "$DRY" = 1 ]; then
  DEV=cpu
  HARNESS=(--dataset digits --encoder pixels --methods protonet,simpleshot --ways 5 --shots 1 --episodes 20)  # 2 settings, whatever the CLI defaults
  TPUT=(--synthetic --episodes 200 --loop-episodes 20 --no-l2l --no-compile --no-1000 --repeats 1)
  MAML=(--dim 64 --hidden 16 --meta-batch 4 --inner-steps 1 --orders first --repeats 1 --train-steps 0 --no-memory)
  CONV=(--way 5 --shot 1 --query 1 --episodes 1 --rounds 1 --warmup 1)
  T=400  # the dry run's time is mostly Python start-up and imports: slow on a loaded machine
else
  DEV=cuda
  if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: no CUDA device visible to torch; run with --dry-run to exercise the steps on the CPU" >&2
    exit 2
  fi
  HARNESS=(--dataset omniglot:evaluation --encoder efficientnet-lite2 --methods protonet,simpleshot,protonet-cosine --episodes 1000)
  TPUT=(--episodes 20000 --loop-episodes 200 --no-l2l --no-compile --repeats 5)
  MAML=(--repeats 5 --train-steps 0 --no-memory)
  CONV=(--episodes 20 --rounds 3 --warmup 5)
  T=150
fi
STATUS="$OUT/steps.tsv"
: > "$STATUS"
step() {  # step NAME CMD...: run under timeout, record the exit status and seconds
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*" >&2
  timeout "$T" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo -e "$name\t$rc\t$((SECONDS - t0))" >> "$STATUS"
  tail -n 5 "$OUT/$name.log" >&2
}
if [ "$DEV" != cpu ]; then  # a dry run compares the CPU run with itself
  step harness_$DEV "$PY" -m fewmm.bench "${HARNESS[@]}" --device "$DEV" --out "$OUT" --name "harness-$DEV" --quiet
fi
step harness_cpu "$PY" -m fewmm.bench "${HARNESS[@]}" --device cpu --out "$OUT" --name harness-cpu --quiet
step episode_throughput "$PY" "$REPO/benchmarks/episode_throughput.py" "${TPUT[@]}" --device "$DEV" --json "$OUT/episode_throughput_$DEV.json"
step maml_mlp "$PY" "$REPO/benchmarks/maml_speed.py" "${MAML[@]}" --device "$DEV" --json "$OUT/maml_speed_$DEV.json"
step maml_gmu "$PY" "$REPO/benchmarks/maml_speed.py" "${MAML[@]}" --head gmu --device "$DEV" --json "$OUT/maml_speed_gmu_$DEV.json"
step conv4_bf16 "$PY" "$REPO/benchmarks/protonet_train_speed.py" "${CONV[@]}" --device "$DEV" --bf16 --json "$OUT/protonet_train_speed_bf16_$DEV.json"
"$PY" - "$OUT" "$DEV" "$DRY" "$TOL_ACC" <<'PYEOF'
import json, sys
from pathlib import Path
out, dev, dry, tol = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, sec = line.split("\t")
    steps[name] = {"exit_status": int(rc), "seconds": int(sec)}
res = {"device": dev, "dry_run": dry, "steps": steps}
try:
    import torch
    res["device_name"] = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (dry run)"
except Exception as e:
    res["device_name"] = f"unknown ({e})"
def rows(name):
    d = json.loads((out / f"{name}.json").read_text())
    return {(r["dataset"], r["encoder"], r["method"], r["ways"], r["shots"]): r["accuracy"] for r in d["results"]}
try:
    a, b = rows(f"harness-{dev}"), rows("harness-cpu")
    diffs = {" ".join(map(str, k)): a[k] - b[k] for k in a if k in b}
    res["harness"] = {"settings": len(diffs), "max_abs_accuracy_diff_points": max(abs(v) for v in diffs.values()) if diffs else None,
                      "tolerance_points": tol, "diffs": diffs,
                      "agree": bool(diffs) and set(a) == set(b) and all(abs(v) <= tol for v in diffs.values())}
except Exception as e:
    res["harness"] = {"error": f"{type(e).__name__}: {e}"}
for key, f in [("episode_throughput", f"episode_throughput_{dev}.json"), ("maml_mlp", f"maml_speed_{dev}.json"),
               ("maml_gmu", f"maml_speed_gmu_{dev}.json"), ("conv4_bf16", f"protonet_train_speed_bf16_{dev}.json")]:
    p = out / f
    if not p.exists():
        res[key] = {"error": "no JSON (see the step's log)"}
        continue
    d = json.loads(p.read_text())
    if key == "episode_throughput":
        res[key] = {k: v["median"] for k, v in d["stable_ratios"].items()} | {"fewmm_episodes_per_s": d["fewmm"]["episodes_per_s"]}
    elif key.startswith("maml"):
        res[key] = [{"inner_steps": r["inner_steps"], "order": r["order"],
                     **{m: {"steps_per_s": v["steps_per_s_median"], **({"x_l2l": v["ratio_vs_l2l"]["median"]} if "ratio_vs_l2l" in v else {})}
                        for m, v in r["methods"].items()}} for r in d["speed"]]
    else:
        res[key] = {"episodes_per_s": d["episodes_per_s"], "ratio_fewmm_over_reference": d["ratio_fewmm_over_reference"]}
ok = all(s["exit_status"] == 0 for s in steps.values()) and res["harness"].get("agree") is True
res["all_steps_ok"] = ok
(out / "gpu_check.json").write_text(json.dumps(res, indent=2) + "\n")
print(f"wrote {out / 'gpu_check.json'}: all steps ok: {ok}")
sys.exit(0 if ok else 1)
PYEOF
