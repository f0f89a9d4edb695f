"""Small helpers shared across fewmm: one copy of each, imported wherever it is needed.

- :func:`l2_normalize`: rows to unit L2 norm (item features, prototypes, class text).
- :func:`atomic_write`, :func:`atomic_write_text`: write a file so that a reader never sees it
  half written (temporary file in the same folder, then :func:`os.replace`).
- :func:`sha256_file` (the file as it is now), :func:`file_sha256` (memoised per process on path,
  size and mtime), :func:`sha256_bytes`.
- :func:`check_labels`, :func:`check_label_types`: class labels of a support set, validated with
  errors that name the argument.

This module imports only numpy / torch / scikit-learn and :mod:`fewmm.errors`, so every layer of
the package can use it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import DataError, FeatureError

__all__ = [
    "l2_normalize", "atomic_write", "atomic_write_text", "sha256_file", "file_sha256", "sha256_bytes",
    "check_labels", "check_label_types", "label_kind", "check_item_labels", "check_query_classes",
]


# -- L2 normalisation ---------------------------------------------------------------------------
def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm along the last dimension.

    Parameters
    ----------
    x : torch.Tensor of shape (..., d)
        Any float dtype; the result keeps it.
    eps : float
        Norms below ``eps`` are clamped to it, so rows of zeros stay zero (no NaN).

    Returns
    -------
    torch.Tensor of the shape and dtype of ``x``: ``x / max(||x||_2, eps)`` (the formula of
    :func:`torch.nn.functional.normalize`).
    """
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


# -- atomic writes ------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], mode: int | None = None) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which
    then replaces ``path`` in one :func:`os.replace` (readers see the old file or the new one,
    never half of one; an interrupted write leaves no partial file behind).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    write : callable taking a :class:`pathlib.Path`
        Writes the whole content to the path it is given (e.g. ``lambda p: save_file(t, str(p))``).
    mode : int, optional
        File mode to set before the rename (e.g. ``0o644``); default: what ``open(path, "w")``
        gives under the current umask (:func:`tempfile.mkstemp` alone would make 0o600).

    Returns
    -------
    pathlib.Path : ``path``.

    Raises
    ------
    OSError
        From creating, writing or renaming the file (the temporary file is removed).
    """
    path = Path(path)
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", mode: int | None = 0o644) -> Path:
    """:func:`atomic_write` of a text file (default mode 0o644, as ``open(path, "w")`` gives)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding=encoding), mode=mode)


# -- sha256 -------------------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest (64 lowercase hex characters) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of the file as it is now (read in chunks, never memoised: use it for
    integrity checks).

    Raises
    ------
    OSError (FileNotFoundError, ...)
        The file cannot be read.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_SHA_MEMO: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, memoised per process on (resolved path, size, mtime), so
    weights files and data files are hashed once however often they are asked for (weights ids
    of file-backed encoders, data-file hashes in results). ``chunk`` is kept for compatibility."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(p)
    return _SHA_MEMO[key]


# -- label checks -------------------------------------------------------------------------------
def label_kind(v) -> str:
    """The kind of one label as messages name it: ``bool``, ``str``, ``int``, ``float`` or the
    type's name (numpy scalars count as their Python kind)."""
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (str, np.str_)):
        return "str"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    return type(v).__name__


def check_label_types(y, name: str = "labels") -> None:
    """Raise when the labels ``y`` mix Python types (e.g. ints and strs).

    numpy would either turn ``[1, "a"]`` silently into the strings ``"1", "a"`` or fail deep in
    ``np.unique`` on an object array; one clear message instead (the wording of
    :class:`fewmm.adapter.Adapter`).

    Parameters
    ----------
    y : sequence or numpy.ndarray of shape (n,)
        Only lists, tuples and object arrays are inspected (a typed numpy array has one type).
    name : str
        What messages call ``y``.

    Raises
    ------
    FeatureError (a ValueError)
        ``"{name}: labels mix types ['int', 'str']; use one type (e.g. all str)"``.
    """
    if isinstance(y, torch.Tensor) or (isinstance(y, np.ndarray) and y.dtype != object):
        return
    try:
        values = np.asarray(y, dtype=object).reshape(-1)
    except Exception:  # ragged: the shape checks report it
        return
    kinds = {label_kind(v) for v in values}
    if len(kinds) > 1:
        raise FeatureError(f"{name}: labels mix types {sorted(kinds)}; use one type (e.g. all str)")


def check_labels(y, n: int | None, name: str = "support_labels") -> np.ndarray:
    """Validate class labels -> numpy array of shape (n,).

    A column vector of shape (n, 1) is flattened with a ``DataConversionWarning`` (scikit-learn's
    convention).

    Parameters
    ----------
    y : array-like or torch.Tensor of shape (n,) or (n, 1)
    n : int or None
        The number of labels expected (the feature rows they label); None: any number (the caller
        compares it with the features itself).
    name : str
        What the messages call ``y``.

    Raises
    ------
    FeatureError (a ValueError)
        ``y`` is None, not 1-d (a scalar or 0-d array included), of another length than ``n``,
        contains NaN, mixes types (ints and strs: "labels mix types"), or is not class labels
        (continuous values: "Unknown label type").
    """
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise FeatureError(f"{name} is None: fit requires y to be passed, but the target y is None (one label per support item)")
    check_label_types(y, name)
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise FeatureError(f"{name} must have shape (n,), got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise FeatureError(f"{name} has {y.shape[0]} labels for {n} feature rows")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise FeatureError(f"{name} contains NaN")
    try:
        check_classification_targets(y)
    except ValueError as e:
        raise FeatureError(f"{name} must be class labels: {e}") from None
    return y


def check_item_labels(labels, n: int) -> np.ndarray | None:
    """Validate the labels of ``n`` raw items (:class:`fewmm.adapter.Adapter`'s ``fit(items, labels)``).

    Parameters
    ----------
    labels : sequence of str or int, of length n, or None
    n : int
        Number of items.

    Returns
    -------
    numpy.ndarray of shape (n,), str or integer dtype (whole-number floats become int64), or None.

    Raises
    ------
    DataError (a ValueError)
        A single str, not a sequence, bools, mixed types, other length than ``n``, floats that are
        not whole numbers, empty labels (the items named by index).
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        raise DataError("labels must be a sequence (one label per item), not a single str")
    if not hasattr(labels, "__len__"):
        raise DataError(f"labels must be a sequence (list, tuple or array), got {type(labels).__name__}")
    if not isinstance(labels, np.ndarray):
        kinds = set()
        for v in labels:
            if isinstance(v, (bool, np.bool_)):
                raise DataError(f"labels must be str or int, got a bool ({v!r}); use class names")
            kinds.add(label_kind(v))
        if len(kinds) > 1:
            raise DataError(f"labels mix types {sorted(kinds)}; use one type (e.g. all str)")
    y = np.asarray(labels)
    if y.dtype == bool:
        raise DataError("labels must be str or int, got bools; use class names")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"labels has shape {y.shape}, expected ({n},): one label per item")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise DataError("labels are floats that are not whole numbers; pass class names or integer labels")
        y = y.astype(np.int64)
    if y.dtype == object:
        kinds = {type(v) for v in y}
        if len(kinds) > 1:
            raise DataError(f"labels mix types {sorted(k.__name__ for k in kinds)}; use one type (e.g. all str)")
        if any(v is None or (isinstance(v, str) and not v.strip()) for v in y):
            bad = [i for i, v in enumerate(y) if v is None or (isinstance(v, str) and not v.strip())]
            raise DataError(f"empty label for item(s) {bad[:10]}")
        if kinds <= {str}:
            y = y.astype(str)
    if y.dtype.kind == "U" and (np.char.strip(y) == "").any():
        raise DataError(f"empty label for item(s) {np.flatnonzero(np.char.strip(y) == '')[:10].tolist()}")
    if y.dtype.kind not in "iuUb":
        raise DataError(f"labels must be str or int, got dtype {y.dtype}")
    return y


def check_query_classes(y, classes, name: str = "query_labels", error: type[Exception] = FeatureError) -> None:
    """Raise unless every label of ``y`` is one of ``classes`` (the fitted support classes).

    A few-shot classifier can only predict the classes of its support set; scoring queries of a
    class missing from it would count them as wrong without saying why.

    Parameters
    ----------
    y : array-like of shape (n,)
        Query labels.
    classes : numpy.ndarray of shape (n_classes,)
        ``classes_`` of the fitted classifier.
    name : str
        What the message calls ``y``.
    error : exception class
        Raised (default :class:`~fewmm.errors.FeatureError`; the adapter raises DataError).

    Raises
    ------
    error
        ``"{name}: classes [...] are missing from the support set (support classes: [...])"``.
    """
    unknown = sorted(set(np.asarray(y).reshape(-1).tolist()) - set(np.asarray(classes).tolist()), key=repr)
    if unknown:
        raise error(f"{name}: classes {unknown[:10]} are missing from the support set (support classes: "
                    f"{np.asarray(classes).tolist()[:20]}); a few-shot classifier predicts only the classes it was fitted on")
