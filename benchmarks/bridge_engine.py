"""The bridge through the episodic engine vs the plain mini-batch loop it replaced (issue 14, B).

``fewmm.aligned.train_bridge`` used to train with its own loop: random mini-batches of 128 base
items (a seeded ``torch.randperm``), InfoNCE over every base-class text, AdamW. It now trains
through ``fewmm.engine.fit``: each step one task over every base class with a few items of each
(the engine's task stream), the same loss, optimiser and settings. The batches differ (class-
balanced tasks instead of random mini-batches), so the weights are not the same; this script
measures what changes on esc50-text's VALIDATION classes (as ``transfer_bridge_selection.py``
chose the settings): zero-shot over the 10 validation classes and 5-way 1-shot episodes (seed 0,
7 queries, 300 episodes) of zero-shot, ProtoNet on the bridge features and the cross-modal linear
probe, for the default :class:`fewmm.aligned.BridgeConfig`. Writes
results/bridge-engine.json. Run::

    FEWMM_DATA=../shared/data python benchmarks/bridge_engine.py
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

import bridge_validation
from bridge_validation import METHODS
from fewmm.aligned import AlignedPair, BridgeConfig, train_bridge
from fewmm.util import l2_normalize


def plain_loop_bridge(item_features, labels, class_text, base_classes, cfg: BridgeConfig) -> AlignedPair:
    """The bridge's former training loop (fewmm/aligned.py before the engine), kept as the reference."""
    x = torch.as_tensor(np.asarray(item_features), dtype=torch.float32)
    t = l2_normalize(torch.as_tensor(np.asarray(class_text), dtype=torch.float32))
    y = np.asarray(labels)
    base = np.unique(np.asarray(base_classes, dtype=np.int64))
    keep = np.isin(y, base)
    xb = l2_normalize(x[torch.as_tensor(np.flatnonzero(keep))])
    yb = torch.as_tensor(np.searchsorted(base, y[keep]), dtype=torch.int64)
    tb = t[torch.as_tensor(base)]
    d_in, d_out = x.shape[1], t.shape[1]
    gen = torch.Generator().manual_seed(int(cfg.seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        g = nn.Linear(d_in, d_out) if cfg.hidden == 0 else nn.Sequential(nn.Linear(d_in, cfg.hidden), nn.ReLU(),
                                                                         nn.Linear(cfg.hidden, d_out))
    opt = torch.optim.AdamW(g.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = xb.shape[0]
    bs = min(int(cfg.batch_size), n)
    perm, pos = torch.randperm(n, generator=gen), 0
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(int(cfg.steps)):
            if pos + bs > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos : pos + bs]
            pos += bs
            opt.zero_grad()
            logits = l2_normalize(g(xb[idx])) @ tb.T / cfg.temperature
            nn.functional.cross_entropy(logits, yb[idx]).backward()
            opt.step()
    g.eval().requires_grad_(False)
    with torch.no_grad():
        logits = l2_normalize(g(xb)) @ tb.T / cfg.temperature
        loss = float(nn.functional.cross_entropy(logits, yb))
    return AlignedPair("bridge", int(d_in), int(d_out), int(d_out), g, {"training": {"loss_end": round(loss, 4)}})


def main() -> int:
    torch.set_num_threads(1)
    s = bridge_validation.setup()
    cfg = BridgeConfig()
    rows = {}
    for kind in ("plain-loop", "engine"):
        t0 = time.time()
        pair = bridge_validation.train_on_base(plain_loop_bridge if kind == "plain-loop" else train_bridge, s, cfg)
        zs, per = bridge_validation.score(pair, s)
        accs = {}
        for m, a in per.items():
            accs[m] = {"accuracy": round(100 * float(a.mean()), 2),
                       "ci95": round(196 * float(a.std(ddof=1)) / np.sqrt(a.size), 2), "per_episode": a}
        rows[kind] = {"train_loss_end": pair.info["training"]["loss_end"], "val_zero_shot_10way": round(100 * zs, 2),
                      "val_5way_1shot": accs, "seconds": round(time.time() - t0, 1),
                      "weights": [p.detach().clone() for p in pair.item_map.parameters()]}
        print(kind, {k: v for k, v in rows[kind].items() if k not in ("weights", "val_5way_1shot")},
              {m: v["accuracy"] for m, v in accs.items()}, flush=True)
    wa, wb = rows["plain-loop"].pop("weights"), rows["engine"].pop("weights")
    paired = {}
    for m in METHODS:
        d = rows["engine"]["val_5way_1shot"][m].pop("per_episode") - rows["plain-loop"]["val_5way_1shot"][m].pop("per_episode")
        paired[m] = {"delta": round(100 * float(d.mean()), 2), "ci95": round(196 * float(d.std(ddof=1)) / np.sqrt(d.size), 2)}
    doc = {"command": "python benchmarks/bridge_engine.py", "task": "esc50-text", "config": asdict(cfg),
           "evaluation": "validation classes only: zero-shot over all 10; 5-way 1-shot 7-query, 300 episodes, seed 0",
           "rows": rows, "engine_minus_plain_loop_paired": paired,
           "max_abs_weight_difference": max(float((a - b).abs().max()) for a, b in zip(wa, wb)),
           "note": "the engine's tasks are class-balanced (every base class, a few items each) where the plain loop drew "
                   "random mini-batches: the trajectories differ, so the weights are not equal"}
    out = Path("results/bridge-engine.json")
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(paired), doc["max_abs_weight_difference"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
