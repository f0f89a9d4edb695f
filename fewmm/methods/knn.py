"""k-nearest-neighbour classifier on frozen features (cosine similarity).

A query's score for class c is the number of its ``k`` nearest support items in class c, plus a
tie-break of 1e-3 times the mean cosine similarity to those neighbours of class c. With ``k=1`` it
is the nearest-neighbour baseline of Vinyals et al. 2016 (Matching Networks, table 1).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import FewShotMethod, l2_normalize


class KNN(FewShotMethod):
    """Majority vote among the k most cosine-similar support items.

    Parameters
    ----------
    k : int, default 1
        Neighbours. A ``k`` larger than the support set (N x K items in an episode) is clamped
        to it, silently and by design: then every support item votes (no error, so one ``k``
        serves every shot count of a benchmark).
    """

    name = "knn"

    def __init__(self, k: int = 1):
        self.k = k

    def check_params(self) -> None:
        """Raise ValueError unless ``k`` is an int >= 1."""
        k = self.k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")

    def transform_features(self, features):
        return l2_normalize(features)

    def _fit(self, x, y, n_classes):
        self.support_, self.support_labels_, self.n_classes_ = x, y, n_classes

    def _logits(self, q):
        return self._vote(q.unsqueeze(0), self.support_.unsqueeze(0), self.support_labels_.unsqueeze(0), self.n_classes_)[0]

    @torch.no_grad()
    def _vote(self, q, s, y, n):
        """q (E, M, d), s (E, S, d), y (E, S) -> (E, M, n) scores."""
        sim = torch.bmm(q, s.transpose(1, 2))  # (E, M, S)
        k = min(int(self.k), s.shape[1])
        top, idx = sim.topk(k, dim=2)
        lab = torch.gather(y.unsqueeze(1).expand(-1, q.shape[1], -1), 2, idx)  # (E, M, k)
        votes = torch.zeros((q.shape[0], q.shape[1], n), dtype=q.dtype, device=q.device)
        votes.scatter_add_(2, lab, torch.ones_like(top))
        simsum = torch.zeros_like(votes).scatter_add_(2, lab, top)
        return votes + 1e-3 * simsum / votes.clamp_min(1)

    def episode_logits(self, support, query):
        e, n, k, d = support.shape
        y = torch.arange(n, device=support.device).repeat_interleave(k).expand(e, -1)
        return self._vote(query, support.reshape(e, n * k, d), y, n)
