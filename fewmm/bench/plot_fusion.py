"""Plots of a fusion results JSON: ``python -m fewmm.bench.plot_fusion results/fusion-digits-av.json``.

Left: novel-class accuracy (with 95% CI) against shots, per head, on clean data and with the
corruptible modality corrupted for half of the items. Right: mean explained weight of the
corrupted modality on clean vs corrupted query items, per adaptive head. Writes a PNG beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def plot(path: Path, out: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(path.read_text())
    rows = doc["results"]
    cmod = doc["corrupt_modality"]
    cond_c = f"{cmod}-corrupt50"
    folds = sorted({r["fold"] for r in rows})
    fig, axes = plt.subplots(len(folds), 3, figsize=(16, 4.2 * len(folds)), squeeze=False)
    for fi, fold in enumerate(folds):
        for ci, cond in enumerate(("clean", cond_c)):
            ax = axes[fi, ci]
            series = defaultdict(list)
            for r in rows:
                if r["fold"] == fold and r["condition"] == cond:
                    series[r["head"]].append((r["shots"], r["accuracy"], r["ci95"], r["kind"]))
            for head, pts in series.items():
                pts.sort()
                style = {"single": ":", "fixed": "--", "control": "-.", "adaptive": "-"}[pts[0][3]]
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], ls=style,
                            marker="o", capsize=3, label=head)
            ax.set_xlabel("shots (5-way)")
            ax.set_ylabel("novel-class accuracy (%)")
            ax.set_title(f"{doc['task']} fold {fold}: {cond}")
            ax.set_xticks(sorted({r['shots'] for r in rows}))
            ax.grid(alpha=0.3)
            if ci == 0:
                ax.legend(fontsize=7, ncol=2)
        ax = axes[fi, 2]
        heads, clean_w, cor_w = [], [], []
        for r in rows:
            if r["fold"] == fold and r["condition"] == cond_c and r["shots"] == 1 and r["kind"] in ("adaptive", "fixed"):
                j = r["weight_names"].index(cmod)
                if r["mean_weights_clean_items"] and r["mean_weights_corrupted_items"]:
                    heads.append(r["head"])
                    clean_w.append(r["mean_weights_clean_items"][j])
                    cor_w.append(r["mean_weights_corrupted_items"][j])
        x = range(len(heads))
        ax.bar([i - 0.2 for i in x], clean_w, width=0.4, label=f"clean {cmod} items")
        ax.bar([i + 0.2 for i in x], cor_w, width=0.4, label=f"corrupted {cmod} items")
        ax.set_xticks(list(x), heads, rotation=20)
        ax.set_ylabel(f"mean weight on {cmod}")
        ax.set_title(f"fold {fold}: explained weight of {cmod} (1-shot, {cond_c})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{doc['task']}: {doc['episodes']} novel-class episodes per point, seed {doc['seed']}; corruption {doc['corruption']}")
    fig.tight_layout()
    out = out or path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.plot_fusion", description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--out")
    a = p.parse_args(argv)
    print(plot(Path(a.results), Path(a.out) if a.out else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
