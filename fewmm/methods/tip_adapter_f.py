"""Tip-Adapter-F: Tip-Adapter with the cache keys fine-tuned on the support set.

Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification", ECCV
2022, sec. 3.3: the cache keys ``F`` (initialised to the support features) become learnable
and are trained with cross-entropy on the support set; the values and the text stay frozen::

    logits = 100 * q W^T + alpha * exp(-beta * (1 - q F^T)) L

Training: full batch (all support items), AdamW, learning rate 1e-3, eps 1e-4, cosine schedule,
``epochs`` = 20 steps (the reference uses 20 epochs). Deterministic (no sampling).

Differences from the reference code (github.com/gaopengcuhk/Tip-Adapter):

* the number of epochs is FIXED. The reference keeps the epoch with the best accuracy on the
  test features (its issue 11) and searches alpha/beta on them; here alpha = 1, beta = 5.5 are
  fixed and the last epoch is used, so nothing is chosen on query items (as Silva-Rodriguez et
  al., CVPR 2024, insist);
* full-batch steps on cached features instead of mini-batches of augmented images;
* any aligned item-text space (CLIP, CLAP or a bridge from :mod:`fewmm.aligned`).
"""

from __future__ import annotations

import torch

from .text import CLIP_LOGIT_SCALE, TextMethod, one_hot, train_full_batch


class TipAdapterF(TextMethod):
    """Tip-Adapter with learnable cache keys.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    alpha, beta : float, default 1.0, 5.5
        As :class:`~fewmm.methods.tip_adapter.TipAdapter`, fixed.
    epochs : int, default 20
        Full-batch AdamW steps on the support set.
    lr : float, default 1e-3
    logit_scale : float, default 100.0

    Attributes (after fit): ``keys_`` (N*K, d) fine-tuned keys, ``losses_`` the training losses.
    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"alpha": "nonneg", "beta": "nonneg", "epochs": "count", "lr": "positive", "logit_scale": "positive"}
    name = "tip-adapter-f"

    def __init__(self, class_text=None, alpha: float = 1.0, beta: float = 5.5, epochs: int = 20, lr: float = 1e-3,
                 logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.alpha = alpha
        self.beta = beta
        self.epochs = epochs
        self.lr = lr
        self.logit_scale = logit_scale

    def _fit_text(self, x, y, n_classes, text):
        self.weights_ = text
        self.values_ = one_hot(y, n_classes)
        keys = torch.nn.Parameter(x.clone())
        zs = self.logit_scale * x @ text.T

        def loss():
            logits = zs + self.alpha * torch.exp(-self.beta * (1.0 - x @ keys.T)) @ self.values_
            return torch.nn.functional.cross_entropy(logits, y)

        self.losses_ = train_full_batch([keys], loss, self.epochs, self.lr, eps=1e-4)
        self.keys_ = keys.detach()

    def _logits(self, q):
        zs = self.logit_scale * q @ self.weights_.T
        return zs + self.alpha * torch.exp(-self.beta * (1.0 - q @ self.keys_.T)) @ self.values_
