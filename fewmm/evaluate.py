"""Batched evaluation of a method over many episodes on cached features.

Features are transformed once (e.g. L2-normalised) for the whole table, then episodes are
processed in chunks: the support and query rows of ``chunk_size`` episodes are gathered with
``torch.index_select`` into buffers reused across chunks, and the method scores the whole chunk
with tensors of shape (episodes, items, dim). No Python loop per episode for methods with a
batched ``episode_logits`` (ProtoNet, SimpleShot, kNN).

Speed notes (measured with ``benchmarks/episode_throughput.py``):

* On CPU the default chunk holds about :data:`CPU_CHUNK_BYTES` of gathered rows, so the buffers
  stay in cache between the gather and the scoring (a chunk of 1000 5-way 1-shot 15-query
  episodes of 1280-d features is 410 MB: the scoring then re-reads it from memory). On other
  devices the default is 1000 episodes.
* ProtoNet with the euclidean metric takes a fast path on CPU: the squared norms of all table
  rows are computed once and gathered (instead of a temporary ``query * query`` per chunk), and a
  1-shot prototype is the support row itself. Its logits are bit-for-bit those of
  ``ProtoNet.episode_logits`` (same reductions, same ``baddbmm``).
* Per-episode accuracies are computed once from all predictions at the end.
* Inputs are validated with one sum over the table (finite sum = no NaN/inf) before falling back
  to the elementwise check of :func:`fewmm.methods.base.check_features`.

Chunking never changes results: every episode is scored independently.
"""

from __future__ import annotations

import torch

from .episodes import Episodes
from .methods.base import FewShotMethod, check_features

#: Bytes of gathered support + query rows per chunk on CPU when ``chunk_size`` is None.
CPU_CHUNK_BYTES = 8 * 2**20
#: Episodes per chunk on other devices (and the upper bound on CPU) when ``chunk_size`` is None.
DEFAULT_CHUNK_EPISODES = 1000


def resolve_chunk_size(chunk_size: int | None, episodes: Episodes, dim: int, device=None, itemsize: int = 4) -> int:
    """Episodes per chunk that :func:`evaluate_episodes` uses.

    An explicit ``chunk_size`` is used as given (at least 1, at most the number of episodes). With
    None: on CPU, as many episodes as fit in :data:`CPU_CHUNK_BYTES` of gathered rows (at least 1,
    at most :data:`DEFAULT_CHUNK_EPISODES`); on other devices :data:`DEFAULT_CHUNK_EPISODES`.
    """
    e = max(1, episodes.n_episodes)
    if chunk_size is not None:
        return max(1, min(int(chunk_size), e))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type != "cpu":
        return min(DEFAULT_CHUNK_EPISODES, e)
    rows = episodes.n_way * (episodes.n_shot + episodes.n_query)
    per_episode = max(1, rows * int(dim) * int(itemsize))
    return max(1, min(CPU_CHUNK_BYTES // per_episode, DEFAULT_CHUNK_EPISODES, e))


def _euclidean_protonet(method) -> bool:
    """True when ``method.episode_logits`` is exactly ProtoNet's euclidean scoring (not overridden)."""
    from .methods.protonet import ProtoNet

    cls = type(method)
    return (
        isinstance(method, ProtoNet)
        and method.metric == "euclidean"
        and cls.episode_logits is ProtoNet.episode_logits
        and cls.episode_scores is ProtoNet.episode_scores
    )


def _row_sq_norms(feats: torch.Tensor, block_bytes: int = 2**20) -> torch.Tensor:
    """``(feats * feats).sum(-1)`` row by row, through one small reused buffer (no table-sized
    temporary). Each value is the same reduction over the same contiguous row as
    ``(x * x).sum(-1)`` on gathered rows."""
    n, d = feats.shape
    block = max(1, block_bytes // max(1, d * feats.element_size()))
    out = torch.empty(n, dtype=feats.dtype, device=feats.device)
    buf = torch.empty((min(block, n), d), dtype=feats.dtype, device=feats.device)
    for s in range(0, n, block):
        x = feats[s : s + block]
        sq = torch.mul(x, x, out=buf[: x.shape[0]])
        torch.sum(sq, dim=-1, out=out[s : s + x.shape[0]])
    return out


def _checked_features(features) -> torch.Tensor:
    """``check_features(features, "features")``, with a fast path for the usual input (a float32
    2-d tensor): one sum instead of an elementwise ``isfinite`` over the table. A NaN or inf makes
    the sum non-finite, and then (or on overflow) the full check runs and raises as usual."""
    if (
        isinstance(features, torch.Tensor)
        and features.dtype == torch.float32
        and features.ndim == 2
        and features.shape[0] > 0
        and bool(torch.isfinite(features.detach().sum()))
    ):
        return features.detach()
    return check_features(features, "features")


def evaluate_episodes(
    method: FewShotMethod,
    features,
    episodes: Episodes,
    chunk_size: int | None = None,
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
    chunk_size : int, optional
        Episodes scored per batch (bounds memory: chunk * N * (K + Q) * dim * 4 bytes). Default:
        see :func:`resolve_chunk_size` (about 8 MiB of rows on CPU, 1000 episodes on GPU).
        Results do not depend on it.
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
    feats = _checked_features(features)
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
    c = resolve_chunk_size(chunk_size, episodes, d, dev, feats.element_size())
    sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)
    qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)
    preds = torch.empty((e, n * q), dtype=torch.int64, device=dev)
    with torch.inference_mode():
        # CPU only: the bit-for-bit equality of the gathered norms rests on the CPU reduction
        # kernels (each row reduced alike whatever the tensor's shape); not checked on GPUs.
        row_sq = _row_sq_norms(feats) if dev.type == "cpu" and _euclidean_protonet(method) else None
        for s in range(0, e, c):
            m = min(c, e - s)
            sup = torch.index_select(feats, 0, sup_idx[s : s + m].reshape(-1), out=sup_buf[: m * n * k]).view(m, n, k, d)
            qry = torch.index_select(feats, 0, qry_idx[s : s + m].reshape(-1), out=qry_buf[: m * n * q]).view(m, n * q, d)
            if row_sq is None:
                logits = method.episode_logits(sup, qry)
            else:
                # = ProtoNet.episode_logits = sq_euclidean_logits(qry, sup.mean(dim=2)), with the
                # norms gathered instead of recomputed; the mean of one shot is that shot.
                if k == 1:
                    protos = sup.view(m, n, d)
                    p2 = row_sq[sup_idx[s : s + m]]
                else:
                    protos = sup.mean(dim=2)
                    p2 = (protos * protos).sum(-1)
                q2 = row_sq[qry_idx[s : s + m]]
                logits = torch.baddbmm(-(q2.unsqueeze(2) + p2.unsqueeze(1)), qry, protos.transpose(1, 2), alpha=2.0)
            torch.argmax(logits, dim=2, out=preds[s : s + m])
        acc = (preds == target).double().mean(dim=1).cpu()
    if return_predictions:
        return acc.numpy(), preds.cpu().numpy()
    return acc.numpy()
