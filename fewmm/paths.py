"""Where fewmm looks for data and keeps its caches.

Data root, in order: an explicit ``root`` / ``--data-root``; ``$FEWMM_DATA``; the user cache
folder ``$XDG_CACHE_HOME/fewmm/data`` (``~/.cache/fewmm/data``), where downloads go.
Feature cache: ``$FEWMM_CACHE`` or ``$XDG_CACHE_HOME/fewmm/features``.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fewmm"


def data_root(root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Resolve the data root.

    Returns
    -------
    (path, source) : the folder, and where it came from (``"argument"``, ``"$FEWMM_DATA"`` or
    ``"user cache"``), for error messages.
    """
    if root is not None:
        return Path(root).expanduser(), "argument"
    env = os.environ.get("FEWMM_DATA")
    if env:
        return Path(env).expanduser(), "$FEWMM_DATA"
    return user_cache_dir() / "data", "user cache"


def feature_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder of the on-disk feature cache (argument, ``$FEWMM_CACHE``, or the user cache)."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("FEWMM_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "features"
