"""Outer loop: meta-train a :class:`~fewmm.meta.maml.MAML` head on episodes of a feature table,
through the engine's fit loop (:func:`fewmm.engine.fit`).

Tasks come from the engine's task stream (:class:`fewmm.engine.TaskStream`: step ``t``'s tasks
depend on ``(seed, t)`` only, on base / meta-train classes only: pass ``classes``), so two
meta-learners trained with the same seed see exactly the same tasks.
"""

from __future__ import annotations

import numpy as np
import torch

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

    A thin front end of :func:`fewmm.engine.fit` (trainer: ``MAMLTrainer.wrap(maml)``, learner:
    :class:`fewmm.engine.TensorLearner` on the features, no validation, no gradient clipping).

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
        Adam step size.
    seed : int, default 0
        Seed of the task stream (and of torch's global generator at the start).
    classes : array-like of int, optional
        Restrict tasks to these (base) classes (default: every label).
    optimizer : None
        No longer accepted (the fit loop owns the optimiser); passing one raises ``TypeError``.
    callback : callable, optional
        Called as ``callback(step, loss, accuracy)`` after every meta-update (``step`` 1-based).

    Returns
    -------
    list of dict
        The engine's history, one entry per meta-update: ``{"step", "loss", "train_acc",
        "val_acc" (NaN), "lr", "seconds"}`` (query loss / accuracy after adaptation on that
        step's tasks, before the update).

    Raises
    ------
    FeatureError, EpisodeError
        Bad features, or episodes that cannot be sampled.
    TypeError
        ``optimizer`` given.
    """
    from ..engine import FitConfig, MAMLTrainer, TensorLearner, fit

    if optimizer is not None:
        raise TypeError("meta_train no longer takes an optimizer: the engine's fit loop owns it (Adam with lr=outer_lr); "
                        "use fewmm.engine.fit for other settings")
    feats = check_features(features, "features").to(dtype=next(maml.parameters()).dtype)
    labels = np.asarray(labels)
    learner = TensorLearner(maml.head, feats, labels, device=feats.device, inner_module=maml.head)
    cfg = FitConfig(n_way=n_way, n_shot=n_shot, n_query=n_query, episodes_per_step=meta_batch, steps=steps, lr=outer_lr,
                    grad_clip=None, validation="none", eval_every=1, seed=seed, progress=False, scale_lr_mult=1.0)
    res = fit(learner, MAMLTrainer.wrap(maml), np.unique(labels) if classes is None else classes, None, cfg, callback=callback,
              restore_best=False)
    return res.history
