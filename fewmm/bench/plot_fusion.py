"""Plots of a fusion results JSON: ``python -m fewmm.bench.plot_fusion results/fusion-digits-av.json``.

One row of panels per fold. One panel per condition (clean; the corruptible modality corrupted for
half of the items; each modality missing for half of the items): novel-class accuracy (with 95%
CI bars) against shots, per head. Last panel: mean explained weight of the corrupted modality on
clean (grey) vs corrupted (red) query items, per head. Every head keeps one distinct colour (and a line style
per kind: single modality, fixed fusion, control, adaptive) across panels, and every panel has
its legend. Writes a PNG beside the JSON (or ``--out``). A missing file or one that is not a
fusion results file gives a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from .plot import ResultsFileError, load_results, series_colours

ROW_KEYS = ("fold", "condition", "head", "kind", "shots", "accuracy", "ci95")
STYLE = {"single": ":", "fixed": "--", "control": "-.", "adaptive": "-"}


def plot(path: Path, out: Path | None = None) -> Path:
    """Draw the fusion figure of ``path``; returns the PNG path.

    Raises
    ------
    ResultsFileError
        Missing or unreadable file, or not a fusion results file (the message names what is missing).
    """
    path = Path(path)
    doc = load_results(path, required_row_keys=ROW_KEYS)
    for k in ("corrupt_modality", "task"):
        if k not in doc:
            raise ResultsFileError(f"{path}: no {k!r}: not a fusion results file (python -m fewmm.bench.fusion)")
    import matplotlib.pyplot as plt

    fig = figure(doc)
    out = out or path.with_suffix(".png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def figure(doc: dict):
    """The matplotlib figure of a fusion results document (see the module notes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    cmod = doc["corrupt_modality"]
    cond_c = f"{cmod}-corrupt50"
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    folds = list(dict.fromkeys(r["fold"] for r in rows))
    colours = series_colours(r["head"] for r in rows)
    shots_all = sorted({r["shots"] for r in rows})
    fig, axes = plt.subplots(len(folds), len(conditions) + 1, figsize=(4.6 * (len(conditions) + 1), 4.4 * len(folds)),
                             squeeze=False)
    for fi, fold in enumerate(folds):
        for ci, cond in enumerate(conditions):
            ax = axes[fi, ci]
            series = defaultdict(list)
            for r in rows:
                if r["fold"] == fold and r["condition"] == cond:
                    series[r["head"]].append((r["shots"], r["accuracy"], r["ci95"], r["kind"]))
            for head, pts in series.items():
                pts.sort()
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], ls=STYLE.get(pts[0][3], "-"),
                            marker="o", ms=4, capsize=3, color=colours[head], label=head)
            ax.set_xlabel(f"shots ({rows[0].get('ways', '?')}-way)")
            ax.set_ylabel("novel-class accuracy (%)")
            ax.set_title(f"{doc['task']} fold {fold}: {cond}", fontsize=10)
            ax.set_xticks(shots_all)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
        ax = axes[fi, -1]
        heads, clean_w, cor_w = [], [], []
        for r in rows:
            if (r["fold"] == fold and r["condition"] == cond_c and r["shots"] == min(shots_all)
                    and cmod in (r.get("weight_names") or []) and r.get("mean_weights_clean_items")
                    and r.get("mean_weights_corrupted_items")):
                j = r["weight_names"].index(cmod)
                heads.append(r["head"])
                clean_w.append(r["mean_weights_clean_items"][j])
                cor_w.append(r["mean_weights_corrupted_items"][j])
        x = range(len(heads))
        ax.bar([i - 0.2 for i in x], clean_w, width=0.4, color="tab:gray", label=f"clean {cmod} items")
        ax.bar([i + 0.2 for i in x], cor_w, width=0.4, color="tab:red", label=f"corrupted {cmod} items")
        ax.set_xticks(list(x), heads, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"mean weight on {cmod}")
        ax.set_title(f"fold {fold}: weight of {cmod} ({min(shots_all)}-shot, {cond_c})", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{doc['task']}: {doc.get('episodes')} novel-class episodes per point, seed {doc.get('seed')}; "
                 f"corruption {doc.get('corruption')} on {cmod}" + ("" if doc.get("finished", True) else " (UNFINISHED run)"))
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m fewmm.bench.plot_fusion", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("results", help="fusion results JSON (python -m fewmm.bench.fusion)")
    p.add_argument("--out", help="PNG to write (default: the JSON's path with .png)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        print(plot(Path(a.results), Path(a.out) if a.out else None))
    except ResultsFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
