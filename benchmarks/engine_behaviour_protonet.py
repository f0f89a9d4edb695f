"""Conv-4 ProtoNet through the engine against the code before it, on the committed config cut short.

Both runs use ``benchmarks/omniglot_protonet.toml`` with 200 training episodes (validation every
100 on 100 episodes, 300 test episodes per setting, pixels as the frozen baseline, 1 thread); the
old one from a checkout of fa9f6c2 (the last commit before the engine), the new one from this
checkout::

    git worktree add /tmp/old fa9f6c2
    ARGS="--config benchmarks/omniglot_protonet.toml --episodes 200 --eval-every 100 --val-episodes 100 \\
          --test-episodes 300 --baselines pixels --threads 1 --checkpoints '' --quiet --overwrite"
    (cd /tmp/old && PYTHONPATH=$PWD python -m fewmm.bench.backbone $ARGS --out /tmp/beh/old --name protonet-short)
    python -m fewmm.bench.backbone $ARGS --out /tmp/beh/new --name protonet-short
    python benchmarks/engine_behaviour_protonet.py --old /tmp/beh/old/protonet-short.json \\
        --new /tmp/beh/new/protonet-short.json --json results/engine-behaviour-protonet.json

Each test setting passes when |new - old| <= sqrt(ci_old^2 + ci_new^2) (the combined 95% CI).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args(argv)
    old, new = json.loads(a.old.read_text()), json.loads(a.new.read_text())
    rows = []
    for o, n in zip(old["results"], new["results"]):
        key = [o[k] for k in ("method", "ways", "shots")]
        if key != [n[k] for k in ("method", "ways", "shots")]:
            sys.exit(f"rows differ: {key} vs {[n[k] for k in ('method', 'ways', 'shots')]}")
        tol = math.hypot(o["ci95"], n["ci95"])
        rows.append({"method": o["method"], "ways": o["ways"], "shots": o["shots"], "old": o["accuracy"], "old_ci95": o["ci95"],
                     "new": n["accuracy"], "new_ci95": n["ci95"], "delta": round(n["accuracy"] - o["accuracy"], 4),
                     "combined_ci95": round(tol, 4), "within": abs(n["accuracy"] - o["accuracy"]) <= tol})
    doc = {"experiment": "Conv-4 ProtoNet, benchmarks/omniglot_protonet.toml cut to 200 episodes: before the engine (fa9f6c2) vs now",
           "old_command": old["command"], "new_command": new["command"],
           "old_best_val_acc": old["training"].get("best_val_acc"), "new_best_val_acc": new["training"].get("best_val_acc"),
           "all_within": all(r["within"] for r in rows), "rows": rows}
    a.json.write_text(json.dumps(doc, indent=1) + "\n")
    for r in rows:
        print(f"{r['method']:>20} {r['ways']}-way {r['shots']}-shot: old {r['old']:.2f} new {r['new']:.2f} delta {r['delta']:+.2f} "
              f"(combined CI {r['combined_ci95']:.2f}) {'ok' if r['within'] else 'OUT'}")
    return 0 if doc["all_within"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
