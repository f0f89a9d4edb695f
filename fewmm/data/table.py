"""The one item table every data set loads into.

An :class:`ItemTable` holds ``n`` items: their ids, integer labels, class names, and one payload
list per modality ("image", "audio", "text"). A payload is ``None`` where an item lacks that
modality. Payloads stay lazy (a :class:`FileRef`) until an encoder reads them, so loading a table
is cheap and a feature-cache hit never touches the data files.

Payload types
-------------
image : :class:`FileRef` to a PNG/JPEG/..., a ``numpy.ndarray`` of shape (H, W) or (H, W, 3)
    (uint8, pixels), or a ``PIL.Image.Image``.
audio : :class:`FileRef` to a WAV/FLAC/OGG/MP3, or an :class:`AudioClip` (float32 waveform in
    [-1, 1] plus its sample rate in Hz).
text : ``str``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MODALITIES = ("image", "audio", "text")


@dataclass(frozen=True)
class FileRef:
    """A lazily read file, optionally a member of a zip archive.

    Parameters
    ----------
    path : pathlib.Path
        The file on disk (or the zip archive holding it).
    member : str or None
        Path of the file inside the zip archive ``path``; ``None`` for a plain file.
    """

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}::{self.member}" if self.member else str(self.path)

    @property
    def suffix(self) -> str:
        return Path(self.member or self.path).suffix.lower()


@dataclass
class AudioClip:
    """A decoded waveform.

    Attributes
    ----------
    waveform : numpy.ndarray of shape (n_samples,), float32, in [-1, 1]
    sample_rate : int, Hz
    """

    waveform: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.waveform) / float(self.sample_rate)


@dataclass
class ItemTable:
    """Items of one data set split.

    Attributes
    ----------
    name : str
        Data set and split, e.g. ``"omniglot/evaluation"``; part of every feature-cache key.
    ids : list of str, length n
        Unique, stable item ids (e.g. the file's relative path).
    labels : numpy.ndarray of shape (n,), int64
        Class index of each item, in ``range(len(class_names))``.
    class_names : list of str
        Human-readable class names; ``class_names[labels[i]]`` is item i's class.
    modalities : dict of str to list
        ``"image" | "audio" | "text"`` -> payload list of length n (``None`` where missing).
    meta : dict of str to numpy.ndarray
        Extra per-item columns of length n (e.g. ``speaker``, ``fold``, ``alphabet``).
    source_files : list of pathlib.Path
        The data files the table was read from (hashed into results for reproducibility).
    info : dict
        Free-form description: licence, source URL, split notes.
    payload_name : str or None
        Name of the payloads' source for the feature cache, when several tables share the same
        payloads under different labels (``fsdd/all`` for both the digit and the speaker task);
        default: ``name``. Features depend on payloads only, never on labels.
    """

    name: str
    ids: list[str]
    labels: np.ndarray
    class_names: list[str]
    modalities: dict[str, list[Any]]
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    source_files: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    payload_name: str | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.ids)
        if self.labels.shape != (n,):
            raise ValueError(f"{self.name}: labels has shape {self.labels.shape}, expected ({n},)")
        if len(set(self.ids)) != n:
            raise ValueError(f"{self.name}: item ids are not unique")
        for m, payloads in self.modalities.items():
            if m not in MODALITIES:
                raise ValueError(f"{self.name}: unknown modality {m!r}; expected one of {MODALITIES}")
            if len(payloads) != n:
                raise ValueError(f"{self.name}: modality {m!r} has {len(payloads)} payloads for {n} items")
        for k, v in self.meta.items():
            if len(v) != n:
                raise ValueError(f"{self.name}: meta column {k!r} has {len(v)} rows for {n} items")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}={int(self.mask(m).sum())}" for m in self.modalities)
        return f"ItemTable({self.name!r}, n={len(self)}, classes={len(self.class_names)}, {mods})"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def mask(self, modality: str) -> np.ndarray:
        """Boolean array of shape (n,): True where the item has ``modality``."""
        payloads = self.modalities.get(modality)
        if payloads is None:
            return np.zeros(len(self), dtype=bool)
        return np.array([p is not None for p in payloads], dtype=bool)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "ItemTable":
        """Items at ``indices`` (labels and class names unchanged). ``name`` defaults to
        ``"<name>[<hash of the kept ids>]"`` so feature-cache keys stay distinct."""
        idx = np.asarray(indices, dtype=np.int64)
        ids = [self.ids[i] for i in idx]
        if name is None:
            name = f"{self.name}[{ids_digest(ids)[:10]}]"
        return ItemTable(
            name=name,
            ids=ids,
            labels=self.labels[idx],
            class_names=list(self.class_names),
            modalities={m: [p[i] for i in idx] for m, p in self.modalities.items()},
            meta={k: np.asarray(v)[idx] for k, v in self.meta.items()},
            source_files=list(self.source_files),
            info=dict(self.info),
            payload_name=None if self.payload_name is None else f"{self.payload_name}[{ids_digest(ids)[:10]}]",
        )

    def classes_with_at_least(self, count: int) -> np.ndarray:
        """Class indices having at least ``count`` items."""
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return np.flatnonzero(counts >= count)


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 hex digest of an ordered list of item ids."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()
