"""LP++: a linear probe with a class-wise blend of item weights and class text.

Huang, Shakeri, Dolz, Boudiaf, Bahig & Ben Ayed, "LP++: A Surprisingly Strong Linear Probe for
Few-Shot CLIP", CVPR 2024 (arXiv:2404.02285), eq. (2)::

    logits_c(q) = scale * (q . w_c + alpha_c * q . t_c)

with learnable item weights ``w_c`` (initialised to the class means of the unit support
features, the paper's initialisation) and learnable class-wise blending coefficients
``alpha_c`` (initialised to ``alpha_init``), the text prototypes ``t_c`` frozen. Trained by
cross-entropy on the support set, full batch.

Differences from the reference code (github.com/FereshteShakeri/FewShot-CLIP-Strong-Baseline):

* the reference minimises with block gradient steps whose step sizes come from Lipschitz
  constants and initialises alpha with a data-driven closed form; here both blocks are learned
  with full-batch AdamW (lr 1e-3, cosine schedule, FIXED ``epochs`` = 100 steps) from
  ``alpha_c = 1``, and a fixed scale (CLIP's 100) turns the cosines into logits;
* nothing is chosen on query items; any aligned item-text space (:mod:`fewmm.aligned`).
"""

from __future__ import annotations

import torch

from .text import CLIP_LOGIT_SCALE, TextMethod, one_hot, train_full_batch


class LPPlusPlus(TextMethod):
    """Class-wise blend of a linear probe and the text classifier.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    alpha_init : float, default 1.0
        Initial ``alpha_c`` for every class.
    epochs : int, default 100
        Full-batch AdamW steps.
    lr : float, default 1e-3
    logit_scale : float, default 100.0

    Attributes (after fit): ``weights_`` (C, d) item weights, ``alpha_`` (C,) blend coefficients.
    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"alpha_init": "finite", "epochs": "count", "lr": "positive", "logit_scale": "positive"}
    name = "lp++"

    def __init__(self, class_text=None, alpha_init: float = 1.0, epochs: int = 100, lr: float = 1e-3,
                 logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.alpha_init = alpha_init
        self.epochs = epochs
        self.lr = lr
        self.logit_scale = logit_scale

    def _fit_text(self, x, y, n_classes, text):
        oh = one_hot(y, n_classes)
        w = torch.nn.Parameter((oh.T @ x) / oh.sum(0)[:, None])  # class means of the unit features
        alpha = torch.nn.Parameter(torch.full((n_classes,), float(self.alpha_init)))
        self.text_ = text

        def loss():
            return torch.nn.functional.cross_entropy(self._blend(x, w, alpha), y)

        self.losses_ = train_full_batch([w, alpha], loss, self.epochs, self.lr)
        self.weights_, self.alpha_ = w.detach(), alpha.detach()

    def _blend(self, q, w, alpha):
        return self.logit_scale * (q @ w.T + alpha * (q @ self.text_.T))

    def _logits(self, q):
        return self._blend(q, self.weights_, self.alpha_)
