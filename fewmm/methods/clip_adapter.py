"""CLIP-Adapter: a residual bottleneck MLP on the item features, trained on the support set.

Gao, Geng, Zhang, Ma, Fang, Zhang, Li & Qiao, "CLIP-Adapter: Better Vision-Language Models with
Feature Adapters", IJCV 2023 (arXiv:2110.04544), eq. (1)-(3)::

    A(f)   = ReLU(ReLU(f W1) W2)               W1: (d, d/reduction), W2: (d/reduction, d), no biases
    f'     = ratio * A(f) + (1 - ratio) * f    residual blend (ratio 0.2, the paper's default)
    logits = 100 * normalise(f') W^T           W: (C, d) frozen unit class-text prototypes

Training: cross-entropy on the support set, full batch, AdamW (lr 1e-3, cosine schedule),
``epochs`` = 100 steps, weights initialised from ``seed`` (PyTorch's default Linear init).

Differences from the reference code (github.com/gaopengcuhk/CLIP-Adapter):

* full-batch AdamW steps on cached features instead of SGD (lr 1e-5-ish, 200 epochs) on
  mini-batches of augmented images; the step count is FIXED (nothing chosen on query items);
* any aligned item-text space (CLIP, CLAP or a bridge from :mod:`fewmm.aligned`).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import l2_normalize
from .text import CLIP_LOGIT_SCALE, TextMethod, train_full_batch


class CLIPAdapter(TextMethod):
    """Residual feature adapter + frozen text classifier.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    ratio : float, default 0.2
        Residual ratio (share of the adapted feature).
    reduction : int, default 4
        Bottleneck reduction of the adapter MLP.
    epochs : int, default 100
        Full-batch AdamW steps.
    lr : float, default 1e-3
    weight_decay : float, default 0.01
    seed : int, default 0
        Seed of the adapter's initial weights (the fit is deterministic given it).
    logit_scale : float, default 100.0

    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"ratio": "unit", "reduction": "int1", "epochs": "count", "lr": "positive", "weight_decay": "nonneg", "seed": "count", "logit_scale": "positive"}
    name = "clip-adapter"

    def __init__(self, class_text=None, ratio: float = 0.2, reduction: int = 4, epochs: int = 100, lr: float = 1e-3,
                 weight_decay: float = 0.01, seed: int = 0, logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.ratio = ratio
        self.reduction = reduction
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.logit_scale = logit_scale

    def _build(self, d: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            h = max(1, d // int(self.reduction))
            return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False), nn.ReLU())

    def adapt(self, f: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
        """``ratio * A(f) + (1 - ratio) * f`` for unit features f of shape (n, d) -> (n, d)."""
        a = (adapter or self.adapter_)(f)
        return self.ratio * a + (1.0 - self.ratio) * f

    def _fit_text(self, x, y, n_classes, text):
        self.weights_ = text
        adapter = self._build(x.shape[1])

        def loss():
            logits = self.logit_scale * l2_normalize(self.adapt(x, adapter)) @ text.T
            return nn.functional.cross_entropy(logits, y)

        self.losses_ = train_full_batch(list(adapter.parameters()), loss, self.epochs, self.lr, self.weight_decay)
        self.adapter_ = adapter.eval().requires_grad_(False)

    def _logits(self, q):
        return self.logit_scale * l2_normalize(self.adapt(q)) @ self.weights_.T
