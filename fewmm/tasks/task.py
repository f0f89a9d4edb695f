"""The :class:`Task` (features of a task's items plus its base / val / novel class splits),
:data:`SPLITS` and :class:`TaskError`. Re-exported by :mod:`fewmm.tasks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FewmmError
from ..multimodal import MMFeatures

#: Splits of a task.
SPLITS = ("base", "val", "novel")


class TaskError(FewmmError, ValueError):
    """A task was asked for with bad options, or a robustness setting does not fit the features."""


@dataclass
class Task:
    """A multimodal few-shot task: features of its items plus its class splits.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"digits-av"``.
    features : MMFeatures
        n items: ``features[m]`` (n, d_m) float32 per modality, ``mask`` (n, n_mod) bool,
        ``labels`` (n,) int64 global class indices, ``class_names``, ``class_text`` (C, d_t).
    base_classes, val_classes, novel_classes : numpy.ndarray of shape (n_split,), int64
        Global class indices, pairwise disjoint. ``val_classes`` may be empty.
    val_items : numpy.ndarray of shape (n_val,), int64
        Item indices held out for validation (all of base classes) when there are no validation
        classes; empty otherwise. They are not part of the ``"base"`` split.
    fold : str
        Which fold of the task (e.g. ``"A"``/``"B"`` for digits-av, ``"default"``).
    description : str
        One paragraph: data, pairing, splits, class text.
    info : dict
        JSON-able provenance: encoders (name, weights id, preprocessing) per modality and for the
        class text, templates, pairing / validation seeds, data sources (tables, licences, URLs),
        the corruption, the split lists and per-class item counts.
    corrupted : MMFeatures or None
        The same items (same order, labels and mask) with the corrupted modality's features
        recomputed from corrupted payloads (``None`` unless built with ``corruption=``); other
        modalities share the clean tensors.
    item_ids : dict of str to list of str
        Per modality, the id (in its source table) of each item's payload.
    meta : dict of str to numpy.ndarray of shape (n,)
        Extra per-item columns (e.g. FSDD ``speaker``, ESC-50 ``fold``).
    """

    name: str
    features: MMFeatures
    base_classes: np.ndarray
    val_classes: np.ndarray
    novel_classes: np.ndarray
    val_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fold: str = "default"
    description: str = ""
    info: dict = field(default_factory=dict)
    corrupted: MMFeatures | None = None
    item_ids: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for a in ("base_classes", "val_classes", "novel_classes", "val_items"):
            setattr(self, a, np.asarray(getattr(self, a), dtype=np.int64).reshape(-1))
        n, c = len(self.features), len(self.features.class_names)
        sets = {"base": self.base_classes, "val": self.val_classes, "novel": self.novel_classes}
        for s, cls in sets.items():
            if cls.size and (cls.min() < 0 or cls.max() >= c):
                raise TaskError(f"{self.name}: {s} classes must lie in [0, {c})")
            if np.unique(cls).size != cls.size:
                raise TaskError(f"{self.name}: {s} classes repeat a class")
        for a, b in (("base", "val"), ("base", "novel"), ("val", "novel")):
            common = np.intersect1d(sets[a], sets[b])
            if common.size:
                raise TaskError(f"{self.name}: {a} and {b} classes overlap: {common.tolist()}")
        if self.val_items.size:
            if self.val_items.min() < 0 or self.val_items.max() >= n:
                raise TaskError(f"{self.name}: val_items must lie in [0, {n})")
            if not np.isin(self.features.labels[self.val_items], self.base_classes).all():
                raise TaskError(f"{self.name}: val_items must all belong to base classes")
        if self.corrupted is not None:
            cf = self.corrupted
            if (len(cf) != n or cf.modalities != self.features.modalities
                    or not np.array_equal(cf.labels, self.features.labels)):
                raise TaskError(f"{self.name}: corrupted features must hold the same items, labels and modalities")
        for m, ids in self.item_ids.items():
            if len(ids) != n:
                raise TaskError(f"{self.name}: item_ids[{m!r}] has {len(ids)} entries for {n} items")

    # -------------------------------------------------------------------- splits
    @property
    def class_names(self) -> list[str]:
        return self.features.class_names

    @property
    def labels(self) -> np.ndarray:
        """(n,) int64 global class of every item."""
        return self.features.labels

    def split_classes(self, split: str) -> np.ndarray:
        """Global class indices of ``split`` (``"base"``, ``"val"`` or ``"novel"``).

        For ``"val"`` without validation classes: the base classes (validation uses held-out
        items of them, :attr:`val_items`).

        Raises
        ------
        TaskError
            Unknown split, or ``"val"`` on a task with neither val classes nor val items.
        """
        if split == "base":
            return self.base_classes
        if split == "novel":
            return self.novel_classes
        if split == "val":
            if self.val_classes.size:
                return self.val_classes
            if self.val_items.size:
                return np.unique(self.features.labels[self.val_items])
            raise TaskError(f"{self.name}: no validation split (neither val classes nor val items)")
        raise TaskError(f"{self.name}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")

    def split_items(self, split: str) -> np.ndarray:
        """Item indices of ``split``, increasing, (n_split_items,) int64.

        ``"base"``: items of base classes minus :attr:`val_items`; ``"val"``: items of validation
        classes plus :attr:`val_items`; ``"novel"``: items of novel classes.
        """
        labels = self.features.labels
        if split == "base":
            keep = np.isin(labels, self.base_classes)
            keep[self.val_items] = False
        elif split == "val":
            self.split_classes("val")  # raises when there is none
            keep = np.isin(labels, self.val_classes)
            keep[self.val_items] = True
        elif split == "novel":
            keep = np.isin(labels, self.novel_classes)
        else:
            raise TaskError(f"{self.name}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(keep).astype(np.int64)

    def episodes(self, split: str, n_way: int, n_shot: int, n_query: int, n_episodes: int, seed: int = 0,
                 **kw: Any):
        """N-way K-shot Q-query episodes over the items of ``split`` (see
        :func:`fewmm.episodes.sample_episodes`; ``kw`` e.g. ``allow_fewer_queries=True``).

        Returns
        -------
        fewmm.episodes.Episodes
            Indices into :attr:`features` (global item indices) and global classes; they depend
            on the split's items, the counts and ``seed`` only.

        Raises
        ------
        fewmm.errors.EpisodeError
            Too few classes or items per class for the asked counts.
        """
        from ..episodes import Episodes, sample_episodes

        idx = self.split_items(split)
        ep = sample_episodes(self.features.labels[idx], n_way, n_shot, n_query, n_episodes, seed=seed,
                             classes=self.split_classes(split), class_names=self.class_names, **kw)
        return Episodes(ep.classes, idx[ep.support], idx[ep.query], ep.seed)

    def items_per_class(self, split: str | None = None) -> dict[str, int]:
        """``{class name: item count}`` over all items or over the items of ``split``."""
        idx = np.arange(len(self.features)) if split is None else self.split_items(split)
        counts = np.bincount(self.features.labels[idx], minlength=len(self.class_names))
        classes = range(len(self.class_names)) if split is None else self.split_classes(split)
        return {self.class_names[c]: int(counts[c]) for c in classes}

    def splits_record(self) -> dict:
        """JSON-able record of the splits, for results files: task, fold, class indices and names
        per split, validation rule, and item counts."""
        names = self.class_names
        rec = {
            "task": self.name,
            "fold": self.fold,
            "n_items": len(self.features),
            "modalities": list(self.features.modalities),
        }
        for s, cls in (("base", self.base_classes), ("val", self.val_classes), ("novel", self.novel_classes)):
            rec[f"{s}_classes"] = [int(c) for c in cls]
            rec[f"{s}_class_names"] = [names[c] for c in cls]
        rec["n_val_items"] = int(self.val_items.size)
        rec["validation"] = self.info.get("validation", "validation classes" if self.val_classes.size else "none")
        rec["items_per_split"] = {s: int(self.split_items(s).size) for s in SPLITS
                                  if s != "val" or self.val_classes.size or self.val_items.size}
        if self.corrupted is not None:
            rec["corruption"] = self.info.get("corruption")
        return rec

    def __repr__(self) -> str:
        f = self.features
        return (f"Task({self.name!r}, fold={self.fold!r}, n={len(f)}, modalities={f.modalities}, "
                f"base={self.base_classes.size}, val={self.val_classes.size} classes/{self.val_items.size} items, "
                f"novel={self.novel_classes.size}, corrupted={self.corrupted is not None})")
