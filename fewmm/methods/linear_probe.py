"""Logistic-regression linear probe on frozen features (scikit-learn).

The standard transfer baseline (e.g. Radford et al. 2021, CLIP; Tian et al. 2020, "Rethinking
few-shot image classification"): L2-normalise the features, fit a multinomial
``sklearn.linear_model.LogisticRegression`` on the support set, predict the queries.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import FewShotMethod, l2_normalize


class LinearProbe(FewShotMethod):
    """Multinomial logistic regression on L2-normalised features.

    Parameters
    ----------
    C : float, default 10.0
        Inverse L2-regularisation strength (scikit-learn's ``C``).
    max_iter : int, default 1000
    """

    name = "linear-probe"

    def __init__(self, C: float = 10.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def transform(self, features):
        return l2_normalize(features)

    def _fit(self, x, y, n_classes):
        from sklearn.linear_model import LogisticRegression

        self.n_classes_ = n_classes
        yy = y.cpu().numpy()
        if n_classes == 1:
            self.clf_ = None
            return
        self.clf_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x.cpu().numpy().astype(np.float64), yy)

    def _logits(self, q):
        if self.clf_ is None:
            return torch.zeros((q.shape[0], 1), dtype=torch.float32)
        z = self.clf_.decision_function(q.cpu().numpy().astype(np.float64))
        if z.ndim == 1:  # binary: sklearn returns the logit of class 1
            z = np.stack([np.zeros_like(z), z], axis=1)
        return torch.as_tensor(z, dtype=torch.float32, device=q.device)
