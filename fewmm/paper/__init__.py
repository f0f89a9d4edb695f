"""Reproducible paper experiments: ``paper/`` from ``results/*.json``, every number traceable.

    python -m fewmm.paper build                 # tables, figures, in-text numbers, then paper/main.pdf
    python -m fewmm.paper check                 # every generated number (paper/ and README blocks) == its JSON
    python -m fewmm.paper reproduce NAME --quick

One registry, ``paper/experiments.toml``, maps each table and figure to its config(s), command(s)
and results file(s) (:mod:`fewmm.paper.registry`). Tables are made by the same functions that write
the README result blocks (:mod:`fewmm.paper.generators`), turned into LaTeX, each with the command,
config, commit and data / encoder-weight hashes its results file records; in-text numbers are
macros (:mod:`fewmm.paper.numbers`). Following showyourwork (Luger et al. 2021), the PDF prints
the commit it was built from; following DVC, each generated file records the sha256 of the inputs
it was made from, so ``check`` lists stale outputs.
"""

from .commands import build, build_tables, check, compare_cells, reproduce
from .registry import Experiment, load_registry

__all__ = ["Experiment", "build", "build_tables", "check", "compare_cells", "load_registry", "reproduce"]
