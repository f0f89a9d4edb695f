"""Turn a results JSON of ``python -m fewmm.bench`` into a Markdown table.

    python -m fewmm.bench.report results/default.json                 # print the table
    python -m fewmm.bench.report results/default.json --readme README.md
        # rewrite the block between <!-- results:default --> and <!-- /results:default -->

Numbers are copied from the JSON by code, never by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def markdown_table(doc: dict) -> str:
    rows = doc["results"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["dataset"], r["split"], r["encoder"], r["ways"], r["shots"]) for r in rows))
    by = {(r["dataset"], r["split"], r["encoder"], r["ways"], r["shots"], r["method"]): r for r in rows}
    head = "| data set | encoder | way-shot (queries) | " + " | ".join(methods) + " |"
    sep = "|---|---|---|" + "---|" * len(methods)
    lines = [head, sep]
    for ds, split, enc, w, s in keys:
        cells = []
        best = max(by[(ds, split, enc, w, s, m)]["accuracy"] for m in methods if (ds, split, enc, w, s, m) in by)
        for m in methods:
            r = by.get((ds, split, enc, w, s, m))
            if r is None:
                cells.append("")
                continue
            txt = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
            cells.append(f"**{txt}**" if r["accuracy"] == best else txt)
        q = by[(ds, split, enc, w, s, methods[0])]["queries"] if (ds, split, enc, w, s, methods[0]) in by else ""
        name = f"{ds}" + (f" ({split})" if split and split not in ("all",) else "")
        lines.append(f"| {name} | {enc} | {w}-{s} ({q}) | " + " | ".join(cells) + " |")
    n_ep = sorted({r["episodes"] for r in rows})
    env = doc.get("environment", {})
    foot = (
        f"\nMean accuracy (%) ± 95% CI half-width over {', '.join(map(str, n_ep))} episodes per cell "
        f"(seed {doc.get('seed')}); the best method of each row in bold. Same episodes for every method of a row. "
        f"fewmm {env.get('fewmm_version')}, torch {env.get('packages', {}).get('torch')}, device {doc.get('device')}, "
        f"wall time {doc.get('wall_seconds', '?')} s. Command: `{doc.get('command')}`."
    )
    if doc.get("skipped"):
        foot += " Skipped (data not found): " + ", ".join(s["dataset"] for s in doc["skipped"]) + "."
    return "\n".join(lines) + "\n" + foot + "\n"


def update_block(text: str, tag: str, content: str) -> str:
    start, end = f"<!-- results:{tag} -->", f"<!-- /results:{tag} -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"no block {start} ... {end} in the file")
    return pat.sub(lambda _: f"{start}\n{content}{end}", text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fewmm.bench.report", description=__doc__.splitlines()[0])
    p.add_argument("results", help="results JSON written by python -m fewmm.bench")
    p.add_argument("--readme", help="Markdown file whose <!-- results:TAG --> block to rewrite")
    p.add_argument("--tag", help="block tag (default: the JSON file's stem)")
    a = p.parse_args(argv)
    doc = json.loads(Path(a.results).read_text())
    table = markdown_table(doc)
    if a.readme:
        path = Path(a.readme)
        path.write_text(update_block(path.read_text(), a.tag or Path(a.results).stem, table))
        print(f"updated {path}", file=sys.stderr)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
