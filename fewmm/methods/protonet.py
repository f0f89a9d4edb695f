"""Prototypical Networks on frozen features (Snell, Swersky & Zemel, NeurIPS 2017).

Each class is represented by the mean of its support features (its prototype); a query's logits
are the negative squared euclidean distances to the prototypes (``metric="euclidean"``, as in the
paper), or the cosine similarities scaled by ``temperature`` (``metric="cosine"``; features are
L2-normalised once, prototypes are the mean of normalised shots).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import FewShotMethod, l2_normalize, sq_euclidean_logits


class ProtoNet(FewShotMethod):
    """Nearest-prototype classifier.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default "euclidean"
    temperature : float, default 10.0
        Scale of cosine logits (only used for ``predict_proba`` with ``metric="cosine"``; it does
        not change predictions).
    """

    name = "protonet"

    def __init__(self, metric: str = "euclidean", temperature: float = 10.0):
        self.metric = metric
        self.temperature = temperature

    def check_params(self) -> None:
        """Raise ValueError for a ``metric`` other than "euclidean" / "cosine" or a
        ``temperature`` that is not a positive finite number."""
        if self.metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {self.metric!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not np.isfinite(t) or t <= 0:
            raise ValueError(f"temperature must be a positive finite number, got {t!r}")

    def transform_features(self, features: torch.Tensor) -> torch.Tensor:
        return l2_normalize(features) if self.metric == "cosine" else features

    def _fit(self, x, y, n_classes):
        protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)
        protos.index_add_(0, y, x)
        self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)

    def _logits(self, q):
        return self.episode_scores(q.unsqueeze(0), self.prototypes_.unsqueeze(0))[0]

    def episode_scores(self, query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        """(E, M, d) queries x (E, N, d) prototypes -> (E, M, N) logits."""
        if self.metric == "euclidean":
            return sq_euclidean_logits(query, protos)
        if self.metric != "cosine":
            self.check_params()
        return self.temperature * torch.bmm(query, l2_normalize(protos).transpose(1, 2))

    def episode_logits(self, support, query):
        return self.episode_scores(query, support.mean(dim=2))
