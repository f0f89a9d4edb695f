"""SimpleShot (Wang, Chao, Weinberger & van der Maaten, 2019, arXiv:1911.04623).

Nearest class mean after the "CL2N" transform: subtract the mean feature of the base classes,
then L2-normalise. ``fit_base(base_features)`` sets that mean; without base features the mean of
each episode's support set is used instead (documented in results as ``centering="support"``).
"""

from __future__ import annotations

import torch

from .base import FewShotMethod, check_features, l2_normalize, sq_euclidean_logits


class SimpleShot(FewShotMethod):
    """Centering + L2 normalisation + nearest class mean (euclidean).

    Attributes
    ----------
    base_mean_ : torch.Tensor of shape (dim,)
        Mean of the base-class features given to :meth:`fit_base` (absent before; kept by
        ``fit``, dropped by ``sklearn.base.clone``, which copies hyper-parameters only).
    """

    name = "simpleshot"

    def __init__(self):
        pass  # no hyper-parameters; ``base_mean_`` exists only after fit_base

    @property
    def centering(self) -> str:
        """"base" after :meth:`fit_base`, else "support" (each support set's own mean)."""
        return "base" if getattr(self, "base_mean_", None) is not None else "support"

    def fit_base(self, base_features):
        """Set the centering mean from base-class features of shape (n_base, dim)."""
        self.base_mean_ = check_features(base_features, "base_features").mean(dim=0)
        return self

    def transform_features(self, features):
        if getattr(self, "base_mean_", None) is None:
            return features  # centred per episode on the support mean in _fit / episode_logits
        if features.shape[-1] != self.base_mean_.shape[0]:
            from ..errors import FeatureError

            raise FeatureError(f"features have dim {features.shape[-1]}, base features had dim {self.base_mean_.shape[0]}")
        return l2_normalize(features - self.base_mean_.to(features.device))

    def _fit(self, x, y, n_classes):
        self._center = None if getattr(self, "base_mean_", None) is not None else x.mean(dim=0)
        if self._center is not None:
            x = l2_normalize(x - self._center)
        protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)
        protos.index_add_(0, y, x)
        self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)

    def _logits(self, q):
        if self._center is not None:
            q = l2_normalize(q - self._center)
        return sq_euclidean_logits(q.unsqueeze(0), self.prototypes_.unsqueeze(0))[0]

    def episode_logits(self, support, query):
        if getattr(self, "base_mean_", None) is None:
            center = support.mean(dim=(1, 2), keepdim=True)  # (E, 1, 1, d)
            support = l2_normalize(support - center)
            query = l2_normalize(query - center[:, 0])
        return sq_euclidean_logits(query, support.mean(dim=2))
