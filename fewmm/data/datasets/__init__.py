"""Built-in data set loaders, one module per data set, registered in :data:`DATASETS`.

Every loader has the signature ``loader(split=None, root=None, download=True, **kw) ->
ItemTable`` and documents its splits, its default split, its licence and its source.
Use them through :func:`fewmm.data.load`.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import DataError
from ...registry import Registry
from ..table import ItemTable

DATASETS: Registry[ItemTable] = Registry("data set")
register = DATASETS.register

#: Modules imported (and so registered) by :func:`import_builtin`.
BUILTIN_MODULES = ("omniglot", "fsdd", "esc50", "mnist", "banking77", "digits")


def import_builtin() -> None:
    """Import every built-in loader module so that it registers itself (idempotent)."""
    import importlib

    for mod in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def check_split(dataset: str, split: str | None, splits: Sequence[str], default: str) -> str:
    """``split`` (or ``default`` when None), checked against ``splits``.

    Raises
    ------
    fewmm.errors.DataError
        ``split`` is not one of ``splits``.
    """
    if split is None:
        return default
    if split not in splits:
        raise DataError(
            f"{dataset}: unknown split {split!r}; expected one of {', '.join(map(repr, splits))} "
            f"(default {default!r})"
        )
    return split


def read_csv_rows(path, what: str) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV file with a header, as dicts. Raises DataError naming the file."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the {what} CSV: {e}") from None


def require_columns(rows: list[dict[str, str]], path, columns: Sequence[str]) -> None:
    """Raise DataError if the CSV at ``path`` lacks any of ``columns``."""
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if not rows:
        raise DataError(f"{path}: CSV has no data rows")
    if missing:
        raise DataError(f"{path}: CSV lacks column(s) {', '.join(missing)}; it has {', '.join(sorted(have))}")


__all__ = ["DATASETS", "register", "import_builtin", "check_split", "BUILTIN_MODULES"]
