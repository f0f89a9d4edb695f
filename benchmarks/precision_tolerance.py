"""Mixed-precision extraction (bf16 / fp16 autocast) against float32: feature error and accuracy.

For each torch encoder and precision: the features of the same items in float32 and under
``torch.autocast`` (:mod:`fewmm.encoders.precision`), per item the cosine similarity and the
relative error ``||f_low - f_fp32|| / ||f_fp32||``; then ProtoNet (euclidean) 5-way 1-shot and
5-shot accuracy over the same seeded episodes on both feature tables, with the paired difference
(low precision - float32) and its 95% CI. Written to a JSON with the command, device, torch
version, CPU model and thread count. The tolerances ``tests/test_precision.py`` asserts come from
these numbers.

Usage (FEWMM_DATA must hold omniglot and banking77; digits ships with scikit-learn)::

    FEWMM_DATA=../shared/data .venv/bin/python benchmarks/precision_tolerance.py \\
        --json results/precision_tolerance.json --device cpu
    .venv/bin/python benchmarks/precision_tolerance.py --from-json results/precision_tolerance.json \\
        --readme README.md            # rewrite the README's <!-- results:precision --> table only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

SETS = {  # name -> (encoder, data set, split, classes, items per class)
    "omniglot": ("efficientnet-lite2", "omniglot", "evaluation", 20, 20),
    "digits": ("efficientnet-lite2", "digits", None, 10, 40),
    "banking77": ("minilm-l6", "banking77", "test", 20, 40),
}


def subset(table, n_classes: int, per_class: int):
    """The first ``per_class`` items of each of the first ``n_classes`` classes (in table order)."""
    keep = []
    for c in range(n_classes):
        keep += list(np.flatnonzero(table.labels == c)[:per_class])
    keep = np.asarray(keep)
    payloads = [table.modalities[next(iter(table.modalities))][i] for i in keep]
    return payloads, table.labels[keep]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def table(doc: dict) -> str:
    """The README table of a results document."""
    lines = [f"Measured on {doc['device']} ({doc['cpu']}, {doc['threads']} thread(s), torch {doc['torch']}), "
             f"{doc['episodes']} episodes per cell, ProtoNet, paired difference low precision - float32 (percent points, 95% CI).",
             f"Regenerate: `{doc['command']}`.", "",
             "| encoder | data (items) | precision | min cosine | median / max relative error | 5-way 1-shot delta | "
             "5-way 5-shot delta | seconds fp32 / low |", "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        a = r["accuracy"]
        d1, d5 = a["5way1shot"]["paired_delta"], a["5way5shot"]["paired_delta"]
        lines.append(f"| {r['encoder']} | {r['dataset']} ({r['items']}) | {r['precision']} | {r['cos_min']:.5f} | "
                     f"{r['rel_err_median']:.4f} / {r['rel_err_max']:.4f} | {d1[0]:+.2f} ± {d1[1]:.2f} | "
                     f"{d5[0]:+.2f} ± {d5[1]:.2f} | {r['seconds_fp32']:.0f} / {r['seconds_low']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import fewmm.data as D
    import fewmm.encoders as E
    from fewmm.encoders.precision import with_precision
    from fewmm.episodes import sample_episodes
    from fewmm.evaluate import evaluate_episodes
    from fewmm.methods import create
    from fewmm.metrics import mean_ci, paired_difference

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    p.add_argument("--precisions", default="bf16,fp16")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--from-json", help="measure nothing: read this results JSON (for --readme)")
    p.add_argument("--readme", help="rewrite the <!-- results:precision --> block of this Markdown file")
    a = p.parse_args(argv)
    if a.from_json:
        doc = json.loads(Path(a.from_json).read_text())
        if a.readme:
            from fewmm.bench.report import update_block

            path = Path(a.readme)
            path.write_text(update_block(path.read_text(), "precision", table(doc)))
        else:
            print(table(doc))
        return 0
    torch.set_num_threads(a.threads)
    out = {"command": "python benchmarks/precision_tolerance.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": a.device, "torch": torch.__version__,
           "cpu": cpu_model(), "threads": a.threads, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "episodes": a.episodes, "rows": []}
    t_start = time.time()
    for set_name in a.sets.split(","):
        name, ds, split, n_cls, per = SETS[set_name]
        payloads, labels = subset(D.load(ds, split=split), n_cls, per)
        enc = E.create(name, device=a.device)
        t0 = time.time()
        f32 = enc.embed(payloads)
        t32 = time.time() - t0
        for prec in a.precisions.split(","):
            t0 = time.time()
            low = with_precision(enc, prec).embed(payloads)
            tlow = time.time() - t0
            cos = torch.nn.functional.cosine_similarity(low, f32, dim=1).numpy()
            rel = ((low - f32).norm(dim=1) / f32.norm(dim=1)).numpy()
            row = {"encoder": name, "precision": prec, "dataset": f"{ds}/{split or 'all'}", "items": len(payloads),
                   "classes": n_cls, "cos_min": float(cos.min()), "cos_median": float(np.median(cos)),
                   "rel_err_max": float(rel.max()), "rel_err_median": float(np.median(rel)),
                   "seconds_fp32": round(t32, 2), "seconds_low": round(tlow, 2), "accuracy": {}}
            for shots in (1, 5):
                eps = sample_episodes(labels, 5, shots, 15, a.episodes, seed=0)
                acc32 = evaluate_episodes(create("protonet"), f32, eps)
                acclow = evaluate_episodes(create("protonet"), low, eps)
                d, m32, mlow = paired_difference(acclow, acc32), mean_ci(acc32), mean_ci(acclow)
                row["accuracy"][f"5way{shots}shot"] = {
                    "fp32": [round(m32.mean, 4), round(m32.ci95, 4)], prec: [round(mlow.mean, 4), round(mlow.ci95, 4)],
                    "paired_delta": [round(d.mean, 4), round(d.ci95, 4)]}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    out["wall_seconds"] = round(time.time() - t_start, 1)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    if a.readme:
        from fewmm.bench.report import update_block

        Path(a.readme).write_text(update_block(Path(a.readme).read_text(), "precision", table(out)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
