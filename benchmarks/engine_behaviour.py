"""Behaviour kept (issue 10, item 3): rows of a results file made by a run through the engine,
against the committed rows of the same configuration, each checked for landing within the
committed row's 95% CI.

    # digits-av fold A, the GMU head (its training now runs through fewmm.engine.fit)
    FEWMM_DATA=../shared/data .venv/bin/python -m fewmm.bench.fusion --task digits-av --folds A --heads gmu \\
        --no-controls --checkpoints '' --quiet --out /tmp/engine-fusion --name fusion-digits-av-engine
    .venv/bin/python benchmarks/engine_behaviour.py --new /tmp/engine-fusion/fusion-digits-av-engine.json \\
        --committed results/fusion-digits-av.json --json results/engine-behaviour.json

Rows are matched on every key of the row that names a setting (task, fold, condition, head,
method, ways, shots, queries, episodes, seed); the accuracy fields are percentages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("task", "fold", "condition", "head", "method", "ways", "shots", "queries", "episodes", "seed")


def key(row: dict) -> tuple:
    return tuple((k, row.get(k)) for k in KEYS if k in row)


def compare(new: dict, committed: dict) -> list[dict]:
    """One record per row of ``new`` that ``committed`` also has."""
    old = {key(r): r for r in committed["results"]}
    out = []
    for r in new["results"]:
        o = old.get(key(r))
        if o is None or o.get("accuracy") is None or r.get("accuracy") is None:
            continue
        delta = float(r["accuracy"]) - float(o["accuracy"])
        out.append({**dict(key(r)), "committed": o["accuracy"], "committed_ci95": o["ci95"], "engine": r["accuracy"],
                    "engine_ci95": r["ci95"], "delta": round(delta, 4), "within_committed_ci95": abs(delta) <= float(o["ci95"])})
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--new", required=True, help="results JSON of the run through the engine")
    p.add_argument("--committed", required=True, help="the committed results JSON")
    p.add_argument("--json", default=None, help="write the comparison here (merged under the committed file's name)")
    a = p.parse_args(argv)
    new, committed = json.loads(Path(a.new).read_text()), json.loads(Path(a.committed).read_text())
    rows = compare(new, committed)
    if not rows:
        raise SystemExit(f"no row of {a.new} matches a row of {a.committed}")
    res = {"committed": a.committed, "committed_command": committed.get("command"), "engine_command": new.get("command"),
           "engine_git_commit": new.get("environment", {}).get("git_commit"), "rows": rows,
           "all_within_ci95": all(r["within_committed_ci95"] for r in rows)}
    for r in rows:
        label = " ".join(str(r.get(k)) for k in ("fold", "condition", "head", "method", "ways", "shots") if r.get(k) is not None)
        print(f"{label:48s} committed {r['committed']:7.3f} ± {r['committed_ci95']:.3f}   engine {r['engine']:7.3f}   "
              f"delta {r['delta']:+.3f}  {'ok' if r['within_committed_ci95'] else 'OUTSIDE'}")
    print(f"{len(rows)} rows, all within the committed 95% CI: {res['all_within_ci95']}")
    if a.json:
        path = Path(a.json)
        doc = json.loads(path.read_text()) if path.exists() else {}
        doc[Path(a.committed).name] = res
        path.write_text(json.dumps(doc, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
