"""``python -m fewmm.adapt``: fit, predict with and evaluate few-shot adapters from the command line.

See :mod:`fewmm.adapt.cli` for the commands and :class:`fewmm.adapter.Adapter` for the Python API.
"""

from ..adapter import Adapter, AdapterError

__all__ = ["Adapter", "AdapterError"]
