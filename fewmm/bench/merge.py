"""``python -m fewmm.bench.merge``: merge the results files of a sharded grid into one.

Example (four shards written by ``python -m fewmm.bench ... --name grid --shard I/4``)::

    python -m fewmm.bench.merge results/grid-shard*-of-4.json          # -> results/grid.{json,csv}

The merged file equals the one an unsharded run writes (see :mod:`fewmm.bench.shard`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..clihelp import HelpFormatter
from ..errors import FewmmError
from .shard import merge_results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fewmm.bench.merge",
        description="Merge the N results files of python -m fewmm.bench ... --shard I/N into the results file of "
        "the unsharded run (same rows in the same order; the CSV is byte for byte the unsharded one).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("results", nargs="+", help="the shards' JSON results files (<name>-shardI-of-N.json), any order")
    p.add_argument("--out", help="folder of the merged JSON + CSV (default: the first file's folder)")
    p.add_argument("--name", help="file stem of the merged files (default: the shards' <name>)")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line (see ``--help``); exit 0, or 2 with one ``error:`` line."""
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser().parse_args(argv)
    try:
        rep = merge_results(a.results, out_dir=a.out, stem=a.name,
                            command="python -m fewmm.bench.merge " + " ".join(shlex.quote(x) for x in argv))
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(a.results)} shard(s), {len(rep.rows)} rows: wrote {rep.json_path} and {rep.csv_path}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
