"""python -m fewmm.paper build | check | reproduce NAME [--quick]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import FewmmError


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m fewmm.paper", formatter_class=HelpFormatter,
                                description="Reproducible paper experiments: build the paper from results/*.json, check "
                                            "every number against its JSON, re-run one experiment.")
    p.add_argument("--root", default=".", help="repository root (holds paper/experiments.toml, results/, README.md)")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="regenerate tables, figures and in-text numbers, then paper/main.pdf (latexmk or pdflatex)",
                       formatter_class=HelpFormatter)
    b.add_argument("--no-pdf", action="store_true", help="write the tables and figures only (default: also the PDF)")
    b.add_argument("--readme", action="store_true", help="also rewrite README.md's result blocks from their JSON (default: leave README.md alone)")
    sub.add_parser("check", help="compare every generated number in paper/ and the README result blocks with the results "
                                 "JSON; list stale outputs and numbers with no source; exit 1 naming the table",
                   formatter_class=HelpFormatter)
    r = sub.add_parser("reproduce", help="re-run the experiment of one table from its registered config and compare cell by "
                                         "cell within the combined 95%% CI", formatter_class=HelpFormatter)
    r.add_argument("name", help="experiment name in paper/experiments.toml")
    r.add_argument("--quick", action="store_true", help="fewer test episodes (the registry's `quick` flags; the report says so)")
    r.add_argument("--out", help="folder of the report (default paper/reproduce/)")
    sub.add_parser("list", help="list the registered experiments", formatter_class=HelpFormatter)
    return p


def main(argv=None) -> int:
    from .commands import build, check, reproduce
    from .registry import load_registry

    a = build_parser().parse_args(argv)
    root = Path(a.root)
    try:
        if a.cmd == "build":
            return build(root, pdf=not a.no_pdf, readme=a.readme)
        if a.cmd == "check":
            return check(root)
        if a.cmd == "reproduce":
            from ..clihelp import sigterm_as_interrupt

            with sigterm_as_interrupt():  # a plain kill stops the re-run too (the child is terminated), exit 130
                return reproduce(root, a.name, quick=a.quick, out_dir=a.out)
        for e in load_registry(root):
            print(f"{e.name:<32} {e.kind:<7} {', '.join(e.results)}{'  [--quick]' if e.quick else ''}")
        return 0
    except FewmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
