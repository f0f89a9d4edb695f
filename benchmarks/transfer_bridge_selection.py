"""Choose the bridge's settings on esc50-text's VALIDATION classes (never the novel ones).

For each candidate :class:`fewmm.aligned.BridgeConfig` the bridge (BirdNET audio -> MiniLM text)
is trained on the 30 base classes, then scored on the 10 validation classes: zero-shot over all
of them, and 5-way 1-shot episodes (seed 0) with zero-shot, ProtoNet on the bridge features and
the cross-modal linear probe. Writes results/transfer-bridge-selection.json. Run::

    FEWMM_DATA=../shared/data python benchmarks/transfer_bridge_selection.py
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import bridge_validation
from fewmm.aligned import BridgeConfig, train_bridge

CANDIDATES = [
    BridgeConfig(hidden=0, temperature=0.01, steps=300),
    BridgeConfig(hidden=0, temperature=0.01, steps=100),
    BridgeConfig(hidden=0, temperature=0.03, steps=300),
    BridgeConfig(hidden=0, temperature=0.05, steps=300),
    BridgeConfig(hidden=0, temperature=0.07, steps=100),
    BridgeConfig(hidden=0, temperature=0.07, steps=300),
    BridgeConfig(hidden=0, temperature=0.07, steps=1000),
    BridgeConfig(hidden=0, temperature=0.1, steps=300),
    BridgeConfig(hidden=512, temperature=0.07, steps=300),
]


def main() -> int:
    torch.set_num_threads(1)
    s = bridge_validation.setup()
    rows = []
    for cfg in CANDIDATES:
        t0 = time.time()
        pair = bridge_validation.train_on_base(train_bridge, s, cfg)
        zs_all, per = bridge_validation.score(pair, s)
        accs = {m: round(100 * float(a.mean()), 2) for m, a in per.items()}
        row = {"config": asdict(cfg), "train": pair.info["training"], "val_zero_shot_10way": round(100 * zs_all, 2),
               "val_5way_1shot": accs, "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["val_5way_1shot"]["cross-modal-lp"] + r["val_5way_1shot"]["zero-shot"])
    doc = {"command": "python benchmarks/transfer_bridge_selection.py", "task": "esc50-text",
           "selection": "validation classes only: 5-way 1-shot 7-query, 300 episodes, seed 0; criterion = "
                        "cross-modal-lp + zero-shot accuracy", "rows": rows, "chosen": best["config"]}
    out = Path(__file__).resolve().parents[1] / "results" / "transfer-bridge-selection.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print("chosen", best["config"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
