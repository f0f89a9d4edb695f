"""Multimodal few-shot tasks: items with several modalities, class text, and base/val/novel splits.

>>> import fewmm.tasks as T
>>> T.list_tasks()
['digits-av', 'esc50-text', 'manifest']
>>> task = T.build("digits-av", fold="A")                     # doctest: +SKIP
>>> task.features.modalities, task.features.dims              # doctest: +SKIP
(('image', 'audio'), {'image': 1280, 'audio': 384, 'class_text': 384})
>>> eps = task.episodes("novel", n_way=5, n_shot=1, n_query=15, n_episodes=600, seed=0)  # doctest: +SKIP
>>> batch = task.features.batch(eps)                          # doctest: +SKIP

A :class:`Task` bundles an :class:`~fewmm.multimodal.MMFeatures` table (per-item modality
features with a mask, labels, and class-level text embeddings ``class_text``) with class splits
written down in code: base classes (meta-train / fitting), validation classes or, where there
are no spare classes, held-out validation ITEMS of base classes, and novel classes (meta-test).
Hyperparameters are chosen on the validation split only, never on novel classes.

=============  ==================================================================================
task           content
=============  ==================================================================================
digits-av      MNIST test images paired within class with FSDD spoken digits (seeded shuffle),
               300 pairs per digit; class text "a spoken and handwritten digit: seven". Folds "A"
               (base 0-4, novel 5-9) and "B" (the reverse); validation = a seeded 20 % of the
               base-class items. See :mod:`fewmm.tasks.digits_av`.
esc50-text     ESC-50 clips (audio only) + class text "the sound of <category>"; 30 base / 10
               validation / 10 novel classes (fixed lists). See :mod:`fewmm.tasks.esc50_text`.
manifest       your own CSV/JSONL manifest (``path=``): items with any of image / audio / text,
               optional class text, splits from a ``split`` column or seeded and class-disjoint.
               See :mod:`fewmm.tasks.manifest`.
=============  ==================================================================================

Robustness settings, usable on any task:

* missing modality: :func:`apply_missing` (item level) / :func:`apply_missing_batch` (per
  episode, query and/or support items);
* corrupted modality: build the task with ``corruption="noise:0"`` (audio white noise at 0 dB
  SNR), ``"occlude:0.25"`` (a quarter of the image area occluded) or ``"pixel_noise:50"``
  (see :mod:`fewmm.corrupt`); ``task.corrupted`` then holds the same items with that modality's
  features recomputed from corrupted payloads, and :func:`apply_corruption` /
  :func:`apply_corruption_batch` swap a seeded fraction of items to them.

Every choice of items is seeded: ``choose_items(n, fraction, seed)`` picks ``round(fraction *
n)`` items with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..corrupt import Corruption, parse_corruption
from ..errors import FewmmError
from ..multimodal import MMBatch, MMFeatures
from ..registry import Registry

TASKS: Registry["Task"] = Registry("task")

#: Splits of a task.
SPLITS = ("base", "val", "novel")


class TaskError(FewmmError, ValueError):
    """A task was asked for with bad options, or a robustness setting does not fit the features."""


def register(name: str, folds: Sequence[str], help: str = "") -> Callable:
    """Register a task factory ``factory(root, cache, device, corruption, fold, **kw) -> Task``
    under ``name``; ``folds`` are its valid ``fold=`` values, the first being the default."""

    def deco(factory: Callable) -> Callable:
        factory.folds = tuple(folds)
        return TASKS.register(name, help)(factory)

    return deco


# ------------------------------------------------------------------------------ Task


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


# ------------------------------------------------------------------------- registry


def _import_builtin() -> None:
    from . import digits_av, esc50_text, manifest  # noqa: F401  (register themselves)


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    _import_builtin()
    return TASKS.names()


def task_folds(name: str) -> tuple[str, ...]:
    """The valid ``fold=`` values of task ``name``; the first is the default. Report every fold.

    Raises
    ------
    fewmm.errors.UnknownNameError
        Unknown task.
    """
    _import_builtin()
    return TASKS.get(name).folds


def task_help(name: str) -> str:
    """One-line description of a task."""
    _import_builtin()
    TASKS.get(name)
    return TASKS.help(name)


def build(name: str, root: str | os.PathLike | None = None, cache=None, device: str = "cpu",
          corruption: Corruption | dict | str | None = None, **kw: Any) -> Task:
    """Build a task: load its data, embed every modality (through the feature cache), split it.

    Parameters
    ----------
    name : str
        A name from :func:`list_tasks`.
    root : path or None
        Data root (default ``$FEWMM_DATA``, else ``~/.cache/fewmm/data``).
    cache : FeatureCache, path, True/None (default cache folder) or False (no cache)
        Passed to :func:`fewmm.cache.embed_table`.
    device : str, default "cpu"
        Device of the encoders built from names.
    corruption : Corruption, dict, str or None
        Also compute :attr:`Task.corrupted` (see :func:`fewmm.corrupt.parse_corruption`, e.g.
        ``"noise:10"`` = audio white noise at 10 dB SNR, seed 0).
    **kw
        Task options, e.g. ``fold="B"``, ``pair_seed=1``, ``image_encoder=<Encoder or name>``;
        see the task factory's docstring.

    Returns
    -------
    Task

    Raises
    ------
    fewmm.errors.UnknownNameError
        Unknown task name (the message lists the known ones).
    TaskError
        Unknown option or fold, or a corruption of a modality the task does not have.
    fewmm.errors.DataNotFoundError, fewmm.errors.DataError, fewmm.errors.EncoderError
        From loading the data or the encoders.
    """
    _import_builtin()
    factory = TASKS.get(name)
    params = inspect.signature(factory).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        opts = [k for k in params if k not in ("root", "cache", "device", "corruption")]
        raise TaskError(f"{name}: unknown option(s) {', '.join(unknown)}; its options: {', '.join(opts)}")
    fold = kw.get("fold", factory.folds[0])
    if fold not in factory.folds:
        raise TaskError(f"{name}: unknown fold {fold!r}; expected one of {', '.join(map(repr, factory.folds))}")
    return factory(root=root, cache=cache, device=device, corruption=parse_corruption(corruption), **kw)


# ------------------------------------------------------- helpers for task factories


def resolve_encoder(spec: Any, modality: str, device: str = "cpu"):
    """An encoder from a registry name or an :class:`~fewmm.encoders.Encoder` object.

    Raises
    ------
    TaskError
        The encoder embeds another modality than ``modality``.
    fewmm.errors.UnknownNameError, fewmm.errors.EncoderError
        From :func:`fewmm.encoders.create`.
    """
    if isinstance(spec, str):
        from .. import encoders

        enc = encoders.create(spec, device=device)
    else:
        enc = spec
    if getattr(enc, "modality", None) != modality:
        raise TaskError(f"encoder {getattr(enc, 'name', enc)!r} embeds {getattr(enc, 'modality', '?')!r}, "
                        f"but a {modality!r} encoder is needed here")
    return enc


def encoder_record(enc) -> dict:
    """JSON-able identity of an encoder: name, weights id, preprocessing, dim."""
    return {**enc.cache_key, "dim": int(enc.dim)}


def embed_class_text(task_name: str, class_names: Sequence[str], texts: Sequence[Sequence[str]], encoder,
                     cache=None) -> tuple[torch.Tensor, dict]:
    """Embed class-level texts: the mean over each class's texts, L2-normalised.

    The texts go through :func:`fewmm.cache.embed_table` as an :class:`~fewmm.data.ItemTable`
    named ``"class-text/<task_name>"`` whose item ids are the texts themselves, so a changed
    template can never hit a stale cache entry.

    Parameters
    ----------
    task_name : str
    class_names : sequence of str, length C
    texts : sequence of length C of sequences of str
        ``texts[c]``: the texts of class c (e.g. one per template); all texts must be distinct.
    encoder : Encoder with modality "text"
    cache : as for :func:`fewmm.cache.embed_table`

    Returns
    -------
    class_text : torch.Tensor of shape (C, encoder.dim), float32, rows of unit L2 norm
    record : dict
        The encoder's identity and the texts per class.

    Raises
    ------
    TaskError
        A class has no text, texts repeat, or the encoder is not a text encoder.
    """
    from ..cache import embed_table
    from ..data.table import ItemTable

    if len(texts) != len(class_names) or any(len(t) == 0 for t in texts):
        raise TaskError(f"{task_name}: every one of the {len(class_names)} classes needs at least one text")
    flat = [t for ts in texts for t in ts]
    labels = [c for c, ts in enumerate(texts) for _ in ts]
    if len(set(flat)) != len(flat):
        raise TaskError(f"{task_name}: class texts must be distinct")
    enc = resolve_encoder(encoder, "text")
    table = ItemTable(name=f"class-text/{task_name}", ids=flat, labels=np.asarray(labels), class_names=list(class_names),
                      modalities={"text": list(flat)})
    fs = embed_table(table, enc, cache=cache, progress=False)
    lab = torch.as_tensor(np.asarray(labels))
    out = torch.zeros((len(class_names), enc.dim), dtype=torch.float32)
    out.index_add_(0, lab, fs.features.float())
    out /= torch.bincount(lab, minlength=len(class_names)).clamp_min(1)[:, None].float()
    out = torch.nn.functional.normalize(out, dim=1)
    return out, {"encoder": encoder_record(enc), "texts": {class_names[c]: list(t) for c, t in enumerate(texts)},
                 "pooling": "mean over the class's texts, then L2-normalised"}


# ----------------------------------------------------------- robustness settings


def choose_items(items: int | Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded choice of ``round(fraction * n)`` items.

    Parameters
    ----------
    items : int or array-like of int
        ``n`` (choose among ``range(n)``) or the candidate item indices (n = their count).
    fraction : float in [0, 1]
    seed : int
        ``numpy.random.default_rng(seed).permutation(candidates)[:k]``.

    Returns
    -------
    numpy.ndarray of shape (k,), int64, sorted, ``k = round(fraction * n)`` (Python rounding:
    half to even).

    Raises
    ------
    TaskError
        ``fraction`` outside [0, 1] or repeated candidates.
    """
    cand = np.arange(int(items), dtype=np.int64) if np.isscalar(items) else np.asarray(items, dtype=np.int64).reshape(-1)
    f = float(fraction)
    if not 0.0 <= f <= 1.0:
        raise TaskError(f"fraction must lie in [0, 1], got {fraction!r}")
    if np.unique(cand).size != cand.size:
        raise TaskError("candidate items repeat an item")
    k = int(round(f * cand.size))
    return np.sort(np.random.default_rng(int(seed)).permutation(cand)[:k])


def _modality_index(features: MMFeatures, modality: str) -> int:
    if modality not in features.modalities:
        raise TaskError(f"modality {modality!r} is not in the features (has: {', '.join(features.modalities)})")
    return features.modalities.index(modality)


def _check_items(features: MMFeatures, items) -> np.ndarray | int:
    if items is None:
        return len(features)
    idx = np.asarray(items, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(features)):
        raise TaskError(f"items must lie in [0, {len(features)})")
    return idx


def _with(features: MMFeatures, feats: dict, mask: torch.Tensor, info_key: str, info_val: dict) -> MMFeatures:
    info = dict(features.info)
    info[info_key] = list(info.get(info_key, [])) + [info_val]
    return MMFeatures(feats, mask, features.modalities, features.labels, features.class_names,
                      features.class_text, info)


def apply_missing(features: MMFeatures, modality: str, fraction: float, seed: int,
                  items: Sequence[int] | np.ndarray | None = None) -> MMFeatures:
    """Mask ``modality`` off for a seeded fraction of items.

    Parameters
    ----------
    features : MMFeatures
        n items (not modified).
    modality : str
        One of ``features.modalities``.
    fraction : float in [0, 1]
        Fraction of the candidate items that lose the modality.
    seed : int
    items : array-like of int or None
        Candidate item indices (e.g. the novel-class items, or items used only as queries);
        default all items. Exactly ``round(fraction * len(candidates))`` of them are chosen by
        :func:`choose_items`.

    Returns
    -------
    MMFeatures
        A copy where the chosen items have ``mask[i, modality] = False`` and a zero feature row
        for ``modality`` (items already lacking it stay so and count among the chosen).
        ``info["missing"]`` gets ``{"modality", "fraction", "seed", "n_candidates", "n_masked"}``
        appended.

    Raises
    ------
    TaskError
        Unknown modality, ``fraction`` outside [0, 1], or items out of range.
    """
    j = _modality_index(features, modality)
    cand = _check_items(features, items)
    chosen = choose_items(cand, fraction, seed)
    mask = features.mask.clone()
    mask[torch.as_tensor(chosen), j] = False
    feats = dict(features.features)
    f = feats[modality].clone()
    f[torch.as_tensor(chosen)] = 0.0
    feats[modality] = f
    n_cand = cand if isinstance(cand, int) else int(cand.size)
    return _with(features, feats, mask, "missing",
                 {"modality": modality, "fraction": float(fraction), "seed": int(seed),
                  "n_candidates": n_cand, "n_masked": int(chosen.size)})


def apply_corruption(clean: MMFeatures, corrupted: MMFeatures, modality: str, fraction: float, seed: int,
                     items: Sequence[int] | np.ndarray | None = None) -> tuple[MMFeatures, np.ndarray]:
    """Swap a seeded fraction of items to their corrupted ``modality`` features.

    Parameters
    ----------
    clean, corrupted : MMFeatures
        The same n items (e.g. ``task.features`` and ``task.corrupted``).
    modality : str
        The corrupted modality.
    fraction : float in [0, 1]
    seed : int
    items : array-like of int or None
        Candidate item indices; default all items. Exactly ``round(fraction *
        len(candidates))`` are chosen by :func:`choose_items` (the same choice as
        :func:`apply_missing` with the same arguments).

    Returns
    -------
    features : MMFeatures
        A copy of ``clean`` whose ``modality`` rows of the chosen items come from ``corrupted``
        (where the item has the modality in ``clean``: a masked item stays masked with a zero
        row). ``info["corruption_swaps"]`` records the swap, plus ``corrupted.info`` 's
        ``"corruption"`` entry when present.
    corrupted_item_mask : numpy.ndarray of shape (n,), bool
        True for the chosen items.

    Raises
    ------
    TaskError
        The two tables differ in size, labels or modalities; unknown modality; bad fraction or items.
    """
    j = _modality_index(clean, modality)
    if (len(clean) != len(corrupted) or modality not in corrupted.modalities
            or not np.array_equal(clean.labels, corrupted.labels)):
        raise TaskError("apply_corruption: clean and corrupted features must hold the same items (size, labels, modality)")
    if clean.features[modality].shape != corrupted.features[modality].shape:
        raise TaskError(f"apply_corruption: {modality!r} features have shapes {tuple(clean.features[modality].shape)} "
                        f"and {tuple(corrupted.features[modality].shape)}")
    cand = _check_items(clean, items)
    chosen = choose_items(cand, fraction, seed)
    sel = np.zeros(len(clean), dtype=bool)
    sel[chosen] = True
    swap = torch.as_tensor(sel) & clean.mask[:, j]
    feats = dict(clean.features)
    f = clean.features[modality].clone()
    f[swap] = corrupted.features[modality][swap].to(f.dtype)
    feats[modality] = f
    n_cand = cand if isinstance(cand, int) else int(cand.size)
    rec = {"modality": modality, "fraction": float(fraction), "seed": int(seed), "n_candidates": n_cand,
           "n_corrupted": int(chosen.size)}
    if "corruption" in corrupted.info:
        rec["corruption"] = corrupted.info["corruption"]
    return _with(clean, feats, clean.mask.clone(), "corruption_swaps", rec), sel


def _batch_choice(shape: tuple[int, ...], fraction: float, seed: int) -> torch.Tensor:
    """(E, *item_shape) bool: per episode, exactly round(fraction * items per episode) items."""
    e, per = shape[0], int(np.prod(shape[1:]))
    f = float(fraction)
    if not 0.0 <= f <= 1.0:
        raise TaskError(f"fraction must lie in [0, 1], got {fraction!r}")
    k = int(round(f * per))
    rng = np.random.default_rng(int(seed))
    pick = np.argsort(rng.random((e, per)), axis=1)[:, :k]
    out = np.zeros((e, per), dtype=bool)
    np.put_along_axis(out, pick, True, axis=1)
    return torch.as_tensor(out.reshape(shape))


_PARTS = ("query", "support", "both")


def _parts(part: str) -> tuple[str, ...]:
    if part not in _PARTS:
        raise TaskError(f"part must be one of {', '.join(_PARTS)}, got {part!r}")
    return ("support", "query") if part == "both" else (part,)


def apply_missing_batch(batch: MMBatch, modality: str, fraction: float, seed: int, part: str = "query") -> MMBatch:
    """Mask ``modality`` off for a seeded fraction of the query and/or support items of every
    episode (an item is masked in its role in one episode, not globally).

    Parameters
    ----------
    batch : MMBatch
        E episodes, N ways, K shots, M queries (not modified).
    modality : str
    fraction : float in [0, 1]
        Per episode exactly ``round(fraction * M)`` query items and/or ``round(fraction * N * K)``
        support items lose the modality (mask False, zero features).
    seed : int
        Query choice ``default_rng(seed)``, support choice ``default_rng(seed + 1)``.
    part : {"query", "support", "both"}, default "query"

    Returns
    -------
    MMBatch

    Raises
    ------
    TaskError
        Unknown modality or part, or a fraction outside [0, 1].
    """
    if modality not in batch.modalities:
        raise TaskError(f"modality {modality!r} is not in the batch (has: {', '.join(batch.modalities)})")
    j = batch.modalities.index(modality)
    sup, qry = dict(batch.support), dict(batch.query)
    smask, qmask = batch.support_mask.clone(), batch.query_mask.clone()
    for p in _parts(part):
        if p == "query":
            sel = _batch_choice(tuple(qmask.shape[:2]), fraction, seed).to(qmask.device)
            qmask[..., j] &= ~sel
            qry[modality] = qry[modality].masked_fill(sel[..., None], 0.0)
        else:
            sel = _batch_choice(tuple(smask.shape[:3]), fraction, seed + 1).to(smask.device)
            smask[..., j] &= ~sel
            sup[modality] = sup[modality].masked_fill(sel[..., None], 0.0)
    return MMBatch(sup, smask, qry, qmask, batch.class_text, batch.query_labels, batch.modalities)


def apply_corruption_batch(clean: MMBatch, corrupted: MMBatch, modality: str, fraction: float, seed: int,
                           part: str = "query") -> tuple[MMBatch, dict[str, torch.Tensor]]:
    """Swap a seeded fraction of the query and/or support items of every episode to their
    corrupted ``modality`` features.

    Parameters
    ----------
    clean, corrupted : MMBatch
        The same episodes gathered from ``task.features`` and ``task.corrupted``.
    modality : str
    fraction : float in [0, 1]
        Per episode exactly ``round(fraction * M)`` query and/or ``round(fraction * N * K)``
        support items (choices as in :func:`apply_missing_batch`; masked items stay masked).
    seed : int
    part : {"query", "support", "both"}, default "query"

    Returns
    -------
    batch : MMBatch
    chosen : dict
        ``"query"`` -> bool (E, M) and/or ``"support"`` -> bool (E, N, K): the chosen items.

    Raises
    ------
    TaskError
        Batches of different shapes, unknown modality or part, or a bad fraction.
    """
    if modality not in clean.modalities or modality not in corrupted.modalities:
        raise TaskError(f"modality {modality!r} is not in both batches")
    if clean.shape != corrupted.shape:
        raise TaskError(f"apply_corruption_batch: batches have shapes {clean.shape} and {corrupted.shape}")
    j = clean.modalities.index(modality)
    sup, qry = dict(clean.support), dict(clean.query)
    chosen: dict[str, torch.Tensor] = {}
    for p in _parts(part):
        if p == "query":
            sel = _batch_choice(tuple(clean.query_mask.shape[:2]), fraction, seed).to(clean.query_mask.device)
            swap = (sel & clean.query_mask[..., j])[..., None]
            qry[modality] = torch.where(swap, corrupted.query[modality], clean.query[modality])
        else:
            sel = _batch_choice(tuple(clean.support_mask.shape[:3]), fraction, seed + 1).to(clean.support_mask.device)
            swap = (sel & clean.support_mask[..., j])[..., None]
            sup[modality] = torch.where(swap, corrupted.support[modality], clean.support[modality])
        chosen[p] = sel
    return MMBatch(sup, clean.support_mask.clone(), qry, clean.query_mask.clone(), clean.class_text,
                   clean.query_labels, clean.modalities), chosen


__all__ = [
    "Task",
    "TaskError",
    "TASKS",
    "SPLITS",
    "register",
    "build",
    "list_tasks",
    "task_folds",
    "task_help",
    "choose_items",
    "resolve_encoder",
    "encoder_record",
    "embed_class_text",
    "apply_missing",
    "apply_corruption",
    "apply_missing_batch",
    "apply_corruption_batch",
]
