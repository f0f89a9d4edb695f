"""Robustness settings on any task: missing and corrupted modalities, per item
(:func:`apply_missing`, :func:`apply_corruption`) or per episode (:func:`apply_missing_batch`,
:func:`apply_corruption_batch`), with seeded choices (:func:`choose_items`). Re-exported by
:mod:`fewmm.tasks`."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..multimodal import MMBatch, MMFeatures
from .task import TaskError


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
