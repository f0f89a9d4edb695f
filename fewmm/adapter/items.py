"""Raw items -> item dicts: paths, inline text, pixel arrays, waveforms, item dicts and manifests
(see :mod:`fewmm.adapter`, "Items"); :func:`as_items`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from ..data.table import MODALITIES, AudioClip, FileRef, ItemTable
from ..errors import DataError
from ..util import check_item_labels

MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson")
TEXT_EXTENSIONS = (".txt",)


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array{tuple(x.shape)}"
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray):
        return f"(waveform{tuple(x[0].shape)}, {x[1]} Hz)"
    s = str(x)
    return s if len(s) <= 80 else s[:77] + "..."


def _path_modality(suffix: str) -> str | None:
    suffix = suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    return None


def _looks_like_path(s: str) -> bool:
    """A string meant as a file path rather than text: one line starting with / ./ ../ ~/, or one
    word with a path separator ending in a file extension. ("3.14", "Dr.Who", "and/or" are text.)"""
    if "\n" in s or len(s) > 4096:
        return False
    if s.startswith(("/", "./", "../", "~/")) or (os.sep != "/" and s.startswith(os.sep)):
        return True
    return not any(ch.isspace() for ch in s) and ("/" in s or os.sep in s) and re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", s) is not None


def _one_item(x: Any, i: int) -> dict[str, Any]:
    """One item -> {modality: payload}; raises DataError (naming item ``i``) on what is not an item."""
    from PIL import Image

    if isinstance(x, dict):
        bad = [k for k in x if k not in MODALITIES]
        if bad:
            raise DataError(f"item {i}: unknown modality key(s) {bad}; expected any of {list(MODALITIES)}")
        out = {m: _payload(m, v, i) for m, v in x.items() if v is not None and not (isinstance(v, str) and not v.strip())}
        if not out:
            raise DataError(f"item {i}: the dict has no modality" + (f" (all of {list(x)} are empty)" if x else "")
                            + f"; give at least one of {list(MODALITIES)}")
        return out
    if isinstance(x, FileRef):
        m = _path_modality(x.suffix)
        if m is None:
            raise DataError(f"item {i}: {x}: unknown file extension {x.suffix!r} (expected an image {' '.join(IMAGE_EXTENSIONS)}, "
                            f"audio {' '.join(AUDIO_EXTENSIONS)} or .txt file)")
        return {m: x}
    if isinstance(x, (str, os.PathLike)):
        s = os.fspath(x)
        if isinstance(s, str):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(f"item {i}: text is not valid Unicode ({e.reason} at position {e.start})") from None
        suffix = Path(s).suffix
        m = _path_modality(suffix) if suffix and len(suffix) <= 6 and "\n" not in s else None
        if m is not None:
            p = Path(s).expanduser()
            if p.is_dir():
                raise DataError(f"item {i}: {s}: is a directory, not a file")
            if not p.is_file():
                raise DataError(f"item {i}: {s}: file not found")
            if m == "text" and p.stat().st_size == 0:
                raise DataError(f"item {i}: {s}: empty text file")
            return {m: FileRef(p)}
        if "\n" not in s and len(s) < 4096 and Path(s).expanduser().is_dir():
            raise DataError(f"item {i}: {s}: is a directory, not a file")
        if isinstance(x, os.PathLike) or (len(s) < 4096 and "\n" not in s and Path(s).expanduser().is_file()):
            raise DataError(f"item {i}: {s}: unknown file extension {suffix!r} (expected an image {' '.join(IMAGE_EXTENSIONS)}, "
                            f"audio {' '.join(AUDIO_EXTENSIONS)} or .txt file); pass {{'text': ...}} for text")
        if not s.strip():
            raise DataError(f"item {i}: empty text")
        if _looks_like_path(s):
            raise DataError(f"item {i}: {s}: looks like a file path, but no such file"
                            + (f" (unknown extension {suffix!r})" if suffix else "") + "; pass {'text': ...} to use it as text")
        return {"text": s}
    if isinstance(x, Image.Image):
        return {"image": x}
    if isinstance(x, AudioClip):
        return {"audio": x}
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], (np.ndarray, list, torch.Tensor)):
        return {"audio": (np.asarray(x[0]), x[1])}
    if isinstance(x, np.ndarray):
        if x.ndim in (2, 3):
            return {"image": x}
        if x.ndim == 1:
            raise DataError(f"item {i}: a 1-d array is ambiguous; pass audio as (waveform, sample_rate_hz)")
        raise DataError(f"item {i}: array of shape {x.shape}: expected an image (H, W) or (H, W, 3)")
    raise DataError(
        f"item {i}: cannot use a {type(x).__name__} as an item; expected a dict of modalities, a file path, "
        "inline text, a PIL image, a pixel array or (waveform, sample_rate_hz)"
    )


def _payload(m: str, v: Any, i: int) -> Any:
    """The payload of modality ``m`` of item ``i`` given in a dict."""
    if m == "text" and isinstance(v, str):
        p = Path(v).expanduser()
        if v.lower().endswith(".txt") and "\n" not in v and " " not in v.strip():
            if not p.is_file():
                raise DataError(f"item {i}, text: {v}: looks like a .txt path but no such file; write inline text with spaces, or fix the path")
            if p.stat().st_size == 0:
                raise DataError(f"item {i}, text: {v}: empty text file")
            return FileRef(p)
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(f"item {i}, text: not valid Unicode ({e.reason} at position {e.start})") from None
        return v
    if isinstance(v, (str, os.PathLike, FileRef)):
        ref = v if isinstance(v, FileRef) else FileRef(Path(os.fspath(v)).expanduser())
        exts = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS, "text": TEXT_EXTENSIONS}[m]
        if ref.suffix not in exts:
            raise DataError(f"item {i}, {m}: {v}: unknown {m} file extension {ref.suffix!r} (expected {' '.join(exts)})")
        if ref.member is None and not Path(ref.path).is_file():
            raise DataError(f"item {i}, {m}: {v}: file not found")
        return ref
    got = _one_item(v, i)
    if m not in got:
        raise DataError(f"item {i}: the value given for {m!r} ({_describe(v)}) is {next(iter(got))} data")
    return got[m]


def as_items(items, labels=None, require_labels: bool = False) -> tuple[list[dict[str, Any]], list[str], np.ndarray | None]:
    """Normalise ``items`` (see the module notes) to ``(items, names, labels)``.

    Returns
    -------
    items : list of dict of modality -> payload
    names : list of str
        What to call each item in messages and outputs (its file, or ``item <i>``).
    labels : numpy.ndarray of shape (n,) or None
        ``labels`` as given, else the manifest's labels (class names), else None.

    Raises
    ------
    DataError
        Not items, or problems with them: every bad item is listed in one error.
    """
    table = None
    if isinstance(items, ItemTable):
        table = items
    elif isinstance(items, (str, os.PathLike)) and Path(os.fspath(items)).suffix.lower() in MANIFEST_EXTENSIONS:
        from ..data.manifest import load_manifest

        table = load_manifest(items, require_labels=require_labels and labels is None)
    if table is not None:
        out, names = [], []
        for i in range(len(table)):
            item = {m: p[i] for m, p in table.modalities.items() if p[i] is not None}
            out.append(item)
            names.append(next((str(v) for v in item.values() if isinstance(v, FileRef)), table.ids[i]))
        if labels is None:
            lab = np.asarray(table.class_names, dtype=str)[table.labels]
            labels = None if (lab == "").any() else lab  # unlabelled rows (require_labels=False)
        return out, names, check_item_labels(labels, len(out))
    if isinstance(items, np.ndarray) and items.ndim == 2:
        raise DataError(f"items is one array of shape {items.shape}; wrap a single image in a list ([image])")
    if isinstance(items, (str, os.PathLike, dict)) or not hasattr(items, "__len__"):
        raise DataError(
            f"items must be a sequence of items or a manifest (.csv/.tsv/.jsonl path or ItemTable), got "
            f"{type(items).__name__}" + (f" {_describe(items)!r}" if isinstance(items, (str, os.PathLike)) else "")
            + "; wrap a single item in a list"
        )
    out, names, problems = [], [], []
    for i, x in enumerate(items):
        try:
            out.append(_one_item(x, i))
        except DataError as e:
            problems.append(str(e))
            out.append({})
        names.append(str(x) if isinstance(x, (str, os.PathLike, FileRef)) and len(str(x)) < 300 else f"item {i}")
    if problems:
        raise DataError(f"{len(problems)} bad item{'s' if len(problems) > 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))
    if not out:
        raise DataError("no items given")
    return out, names, check_item_labels(labels, len(out))
