"""ZS-LP: a linear probe initialised with the zero-shot (class text) classifier.

The zero-shot-initialised linear probe of Silva-Rodriguez, Hajimiri, Ben Ayed & Dolz, "A Closer
Look at the Few-Shot Adaptation of Large Vision-Language Models", CVPR 2024 (arXiv:2312.12730),
sec. 3: a linear classifier ``logits = scale * q W^T`` whose weights start at the unit class-text
prototypes (so before training it IS zero-shot) and are trained by cross-entropy on the support
set. Full batch, AdamW (lr 1e-3, cosine schedule), FIXED ``epochs`` = 100 steps, weights
L2-normalised in the logits (cosine classifier, as the paper's ZS-LP).

Differences from the reference code (github.com/jusiro/CLAP): no class-adaptive constraint
(that is their CLAP method, not implemented here); full-batch AdamW steps on cached features
instead of mini-batch SGD on augmented images; nothing chosen on query items; any aligned
item-text space (:mod:`fewmm.aligned`).
"""

from __future__ import annotations

import torch

from .base import l2_normalize
from .text import CLIP_LOGIT_SCALE, TextMethod, train_full_batch


class ZSLinearProbe(TextMethod):
    """Cosine linear probe initialised from the class text.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    epochs : int, default 100
        Full-batch AdamW steps (0: exactly zero-shot).
    lr : float, default 1e-3
    logit_scale : float, default 100.0

    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"epochs": "count", "lr": "positive", "logit_scale": "positive"}
    name = "zs-lp"

    def __init__(self, class_text=None, epochs: int = 100, lr: float = 1e-3, logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.epochs = epochs
        self.lr = lr
        self.logit_scale = logit_scale

    def _fit_text(self, x, y, n_classes, text):
        w = torch.nn.Parameter(text.clone())

        def loss():
            return torch.nn.functional.cross_entropy(self.logit_scale * x @ l2_normalize(w).T, y)

        self.losses_ = train_full_batch([w], loss, self.epochs, self.lr)
        self.weights_ = l2_normalize(w.detach())

    def _logits(self, q):
        return self.logit_scale * q @ self.weights_.T
