"""Accuracy against shots, per method, with 95% CI bands: ``python -m fewmm.bench.plot results/x.json``.

Works on any results JSON of the harness: ``python -m fewmm.bench`` (one panel per data set x
encoder x way), ``python -m fewmm.bench.backbone`` (one panel per way) and
``python -m fewmm.bench.fusion`` (handed to :mod:`fewmm.bench.plot_fusion`). Each method keeps one
colour across panels; every panel has its legend. Writes a PNG beside the JSON (or ``--out``).
A file that is missing or not a results file gives a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


class ResultsFileError(ValueError):
    """A results file that is missing, unreadable or of the wrong kind (one-line message)."""


def load_results(path: str | Path, required_row_keys=("accuracy", "ci95", "shots")) -> dict:
    """Read a results JSON and check that it has result rows with ``required_row_keys``.

    Returns
    -------
    dict
        The document; ``doc["results"]`` is a non-empty list of row dicts.

    Raises
    ------
    ResultsFileError
        The file does not exist, is not JSON, holds no rows, or its rows lack a required key
        (the message names the file and what is missing, on one line).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except IsADirectoryError:
        raise ResultsFileError(f"{path}: is a folder, not a results JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsFileError(f"{path}: not a readable results JSON ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ResultsFileError(f"{path}: not a fewmm results file (no 'results' list of rows)")
    if str(doc.get("experiment", "")).startswith("transfer"):
        raise ResultsFileError(f"{path}: a transfer results file (python -m fewmm.bench.transfer), which has no plot; "
                               f"print its table with: python -m fewmm.bench.transfer --report {path}")
    if not doc["results"]:
        raise ResultsFileError(f"{path}: no result rows (an unfinished run? 'finished': {doc.get('finished')})")
    for i, r in enumerate(doc["results"]):
        missing = [k for k in required_row_keys if not isinstance(r, dict) or k not in r]
        if missing:
            raise ResultsFileError(f"{path}: result row {i} has no {', '.join(map(repr, missing))}; "
                                   f"expected rows with {', '.join(required_row_keys)}")
    return doc


def series_colours(names) -> dict:
    """One distinct colour per name, in order of first appearance: matplotlib's tab10, then
    Dark2 and Set1 (26 colours; beyond that they repeat)."""
    import matplotlib

    names = list(dict.fromkeys(names))
    palette = [*matplotlib.colormaps["tab10"].colors, *matplotlib.colormaps["Dark2"].colors, *matplotlib.colormaps["Set1"].colors]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def plot(path: Path, out: Path | None = None) -> Path:
    """Draw the accuracy-vs-shots figure of a results file; returns the PNG path.

    Raises
    ------
    ResultsFileError
        See :func:`load_results`.
    """
    doc = load_results(path)
    if doc.get("experiment") == "adaptive modality weighting":
        from .plot_fusion import plot as plot_fusion

        return plot_fusion(path, out)
    import matplotlib.pyplot as plt

    fig = figure(doc, path)
    out = out or path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def figure(doc: dict, path: Path):
    """The matplotlib figure of a bench or backbone results document (see the module notes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    if "method" not in rows[0]:
        raise ResultsFileError(f"{path}: rows have no 'method' (not a bench or backbone results file)")
    backbone = "dataset" not in rows[0]

    def panel_of(r):
        if backbone:
            return (f"{doc.get('task', 'backbone')}", f"{r['ways']}-way")
        ds = r["dataset"] + (f" ({r['split']})" if r.get("split") and r["split"] != "all" else "")
        return (ds, f"{r['encoder']}, {r['ways']}-way")

    panels = defaultdict(lambda: defaultdict(list))
    for r in rows:
        panels[panel_of(r)][r["method"]].append((r["shots"], r["accuracy"], r["ci95"], r.get("queries")))
    colours = series_colours(r["method"] for r in rows)
    n = len(panels)
    ncol = min(n, 4)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(4.6 * ncol, 6.0), 3.6 * nrow + 0.6), squeeze=False)
    for ax, ((title, sub), series) in zip(axes.flat, panels.items()):
        shots_all = sorted({p[0] for pts in series.values() for p in pts})
        for m, pts in series.items():
            pts.sort()
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            lo = [p[1] - p[2] for p in pts]
            hi = [p[1] + p[2] for p in pts]
            ax.plot(x, y, marker="o", ms=4, color=colours[m], label=m)
            ax.fill_between(x, lo, hi, color=colours[m], alpha=0.2, lw=0)
        if len(shots_all) > 1 and shots_all[-1] / shots_all[0] >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(shots_all, [str(s) for s in shots_all])
        ax.minorticks_off()
        qs = sorted({p[3] for pts in series.values() for p in pts if p[3] is not None})
        ax.set_title(f"{title}\n{sub}" + (f", {'/'.join(map(str, qs))} queries" if qs else ""), fontsize=9)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    n_ep = sorted({r["episodes"] for r in rows if "episodes" in r})
    fig.suptitle(f"{path.name}\nmean accuracy with 95% CI band over {'/'.join(map(str, n_ep)) or '?'} episodes, seed {doc.get('seed')}"
                 + ("" if doc.get("finished", True) else " (UNFINISHED run)"), fontsize=10)
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m fewmm.bench.plot", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("results", help="results JSON of python -m fewmm.bench, fewmm.bench.backbone or fewmm.bench.fusion")
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
