"""Batched evaluation of a method over many episodes on cached features.

Features are transformed once (e.g. L2-normalised) for the whole table, then episodes are
processed in chunks: the support and query rows of ``chunk_size`` episodes are gathered with
``torch.index_select`` into buffers reused across chunks, and the method scores the whole chunk
with tensors of shape (episodes, items, dim). No Python loop per episode for methods with a
batched ``episode_logits`` (ProtoNet, SimpleShot, kNN).
"""

from __future__ import annotations

import numpy as np
import torch

from .episodes import Episodes
from .methods.base import FewShotMethod, check_features


def evaluate_episodes(
    method: FewShotMethod,
    features,
    episodes: Episodes,
    chunk_size: int = 1000,
    device: str | torch.device | None = None,
    return_predictions: bool = False,
):
    """Per-episode accuracy of ``method`` on ``episodes``.

    Parameters
    ----------
    method : FewShotMethod
        Any registered method (``fit_base`` already called if it uses base statistics).
    features : torch.Tensor or array of shape (n_items, dim)
        The feature table the episode indices point into.
    episodes : Episodes
    chunk_size : int, default 1000
        Episodes scored per batch (bounds memory: chunk * N * (K + Q) * dim * 4 bytes).
    device : torch device, optional
        Where to compute (default: the features' device).

    Returns
    -------
    numpy.ndarray of shape (E,), float64: fraction of queries correct per episode; with
    ``return_predictions``, also the predicted episode-local classes (E, N*Q), int64.

    Raises
    ------
    FeatureError
        NaN/inf features or a non-2-d table.
    """
    feats = check_features(features, "features")
    if device is not None:
        feats = feats.to(device)
    feats = method.transform(feats).contiguous()
    dev = feats.device
    e, n, k = episodes.support.shape
    q = episodes.query.shape[2]
    d = feats.shape[1]
    sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=dev)
    qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=dev)
    target = torch.arange(n, device=dev).repeat_interleave(q)
    c = max(1, min(int(chunk_size), e))
    sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)
    qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)
    acc = torch.empty(e, dtype=torch.float64)
    preds = torch.empty((e, n * q), dtype=torch.int64) if return_predictions else None
    with torch.inference_mode():
        for s in range(0, e, c):
            m = min(c, e - s)
            sup = torch.index_select(feats, 0, sup_idx[s : s + m].reshape(-1), out=sup_buf[: m * n * k])
            qry = torch.index_select(feats, 0, qry_idx[s : s + m].reshape(-1), out=qry_buf[: m * n * q])
            logits = method.episode_logits(sup.view(m, n, k, d), qry.view(m, n * q, d))
            pred = logits.argmax(dim=2)
            acc[s : s + m] = (pred == target).double().mean(dim=1).cpu()
            if preds is not None:
                preds[s : s + m] = pred.cpu()
    if return_predictions:
        return acc.numpy(), preds.numpy()
    return acc.numpy()
