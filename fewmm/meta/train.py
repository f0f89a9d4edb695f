"""Outer loop: meta-train a :class:`~fewmm.meta.maml.MAML` head on episodes of a feature table.

Tasks are N-way K-shot Q-query episodes sampled from the seed alone with
:func:`fewmm.episodes.sample_episodes` (on base / meta-train classes only: pass ``classes``), so
two meta-learners trained with the same seed see exactly the same task stream.
"""

from __future__ import annotations

import numpy as np
import torch

from ..episodes import sample_episodes
from ..methods.base import check_features
from .maml import MAML


def episode_tensors(features: torch.Tensor, support: np.ndarray, query: np.ndarray):
    """Gather a batch of class-major episodes into task tensors.

    Parameters
    ----------
    features : torch.Tensor of shape (n_items, d)
    support : numpy.ndarray of shape (T, N, K), int item indices (``Episodes.support``)
    query : numpy.ndarray of shape (T, N, Q), int item indices (``Episodes.query``)

    Returns
    -------
    support_x : (T, N*K, d), support_y : (T, N*K) int64, query_x : (T, N*Q, d), query_y : (T, N*Q) int64
        Episode-local labels ``0 .. N-1`` (class-major).
    """
    t, n, k = support.shape
    q = query.shape[2]
    dev = features.device
    sx = features[torch.as_tensor(support.reshape(t, n * k), device=dev)]
    qx = features[torch.as_tensor(query.reshape(t, n * q), device=dev)]
    sy = torch.arange(n, device=dev).repeat_interleave(k).expand(t, n * k)
    qy = torch.arange(n, device=dev).repeat_interleave(q).expand(t, n * q)
    return sx, sy, qx, qy


def meta_train(
    maml: MAML,
    features,
    labels,
    n_way: int = 5,
    n_shot: int = 1,
    n_query: int = 15,
    meta_batch: int = 32,
    steps: int = 100,
    outer_lr: float = 1e-3,
    seed: int = 0,
    classes=None,
    optimizer: torch.optim.Optimizer | None = None,
    callback=None,
) -> list[dict]:
    """Meta-train ``maml`` in place with Adam (Finn et al. 2017, Algorithm 2) on sampled episodes.

    Parameters
    ----------
    maml : MAML
    features : array-like or torch.Tensor of shape (n_items, d)
        Frozen features of the meta-train items.
    labels : array-like of shape (n_items,), int
    n_way, n_shot, n_query : int
        Task shape (N-way K-shot Q-query); the head must have ``n_way`` outputs.
    meta_batch : int, default 32
        Tasks per meta-update.
    steps : int, default 100
        Meta-updates.
    outer_lr : float, default 1e-3
        Adam step size (ignored when ``optimizer`` is given).
    seed : int, default 0
        Seed of the task stream (episodes depend on it alone).
    classes : array-like of int, optional
        Restrict tasks to these (base) classes.
    optimizer : torch.optim.Optimizer, optional
        Over ``maml.parameters()``; default Adam.
    callback : callable, optional
        Called as ``callback(step, loss, accuracy)`` after every meta-update.

    Returns
    -------
    list of dict
        One ``{"step", "loss", "accuracy"}`` per meta-update (query loss / accuracy after
        adaptation, on that step's tasks, before the update).

    Raises
    ------
    FeatureError, EpisodeError
        Bad features, or episodes that cannot be sampled.
    """
    feats = check_features(features, "features").to(dtype=next(maml.parameters()).dtype)
    episodes = sample_episodes(labels, n_way, n_shot, n_query, n_episodes=steps * meta_batch, seed=seed, classes=classes)
    opt = optimizer if optimizer is not None else torch.optim.Adam(maml.parameters(), lr=outer_lr)
    history = []
    for step in range(steps):
        sl = slice(step * meta_batch, (step + 1) * meta_batch)
        sx, sy, qx, qy = episode_tensors(feats, episodes.support[sl], episodes.query[sl])
        opt.zero_grad(set_to_none=True)
        loss, acc = maml.meta_loss(sx, sy, qx, qy)
        loss.backward()
        opt.step()
        rec = {"step": step, "loss": float(loss.detach()), "accuracy": float(acc)}
        history.append(rec)
        if callback is not None:
            callback(step, rec["loss"], rec["accuracy"])
    return history
