"""Tip-Adapter: a training-free cache of the support set blended with zero-shot logits.

Zhang, Zhang, Fang, Gao, Li, Qiao & Li, "Tip-Adapter: Training-free Adaption of CLIP for
Few-shot Classification", ECCV 2022 (arXiv:2207.09519), eq. (5)-(6)::

    A      = exp(-beta * (1 - q F^T))          F: (N*K, d) unit support features (the cache keys)
    logits = 100 * q W^T + alpha * A L         W: (C, d) unit class-text prototypes,
                                               L: (N*K, C) one-hot support labels (cache values)

Differences from the reference code (github.com/gaopengcuhk/Tip-Adapter):

* alpha and beta are FIXED defaults (1.0 and 5.5; the paper's ImageNet values). The reference
  searches them on the test (or validation) features; here nothing is chosen on query items.
* no image augmentation of the cache (features are cached, one view per item);
* any aligned item-text space (CLIP, CLAP or a bridge from :mod:`fewmm.aligned`).
"""

from __future__ import annotations

import torch

from .text import CLIP_LOGIT_SCALE, TextMethod, one_hot


class TipAdapter(TextMethod):
    """Training-free cache model + zero-shot logits.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    alpha : float, default 1.0
        Weight of the cache logits (residual ratio).
    beta : float, default 5.5
        Sharpness of the affinity ``exp(-beta (1 - cos))``.
    logit_scale : float, default 100.0
        Scale of the zero-shot logits (CLIP's).

    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"alpha": "nonneg", "beta": "nonneg", "logit_scale": "positive"}
    name = "tip-adapter"

    def __init__(self, class_text=None, alpha: float = 1.0, beta: float = 5.5, logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.alpha = alpha
        self.beta = beta
        self.logit_scale = logit_scale

    def _fit_text(self, x, y, n_classes, text):
        self.keys_ = x.detach()
        self.values_ = one_hot(y, n_classes)
        self.weights_ = text

    def _logits(self, q):
        zs = self.logit_scale * q @ self.weights_.T
        affinity = torch.exp(-self.beta * (1.0 - q @ self.keys_.T))
        return zs + self.alpha * affinity @ self.values_
