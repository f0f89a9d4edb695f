"""The benchmark harness: ``python -m fewmm.bench`` (see :mod:`fewmm.bench.cli`)."""

from .runner import RunSpec, Suite, load_suite, run_suite

__all__ = ["RunSpec", "Suite", "load_suite", "run_suite"]
