"""Cross-modal linear probe: class text as extra training samples.

Lin, Yu, Kaur, Tiwari, Du, Ramanan & Pathak, "Multimodality Helps Unimodality: Cross-Modal
Few-Shot Learning with Multimodal Models", CVPR 2023 (arXiv:2301.06267), "cross-modal linear
probing": in a joint item-text space the class text embedding is one more labelled sample of its
class, so a linear classifier is trained on the union of the support items and the class texts::

    X' = [normalise(support features); text prototypes]     (n + C, d)
    y' = [support labels; 0..C-1]
    multinomial logistic regression (scikit-learn, L2, C = 10) on (X', y')

Differences from the reference code (github.com/linzhiqiu/cross_modal_adaptation):

* a convex L2-regularised logistic regression solved to its optimum (``fewmm``'s
  :class:`~fewmm.methods.linear_probe.LinearProbe`, fixed ``C``) instead of SGD with a head
  initialised from the text weights and hyper-parameters chosen on a validation split: with a
  unique optimum the initialisation does not matter, and nothing is chosen on query items;
* one text sample per class (the prompt-ensembled prototype) instead of one per template;
* no partial fine-tuning of the encoders (they are frozen and cached).
"""

from __future__ import annotations

import torch

from .linear_probe import LinearProbe
from .text import TextMethod


class CrossModalLinearProbe(TextMethod):
    """Logistic regression on support items plus class texts as extra samples.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    C : float, default 10.0
        Inverse L2-regularisation strength (as :class:`~fewmm.methods.linear_probe.LinearProbe`).
    text_copies : int, default 1
        How many times each class text enters the training set (1 in the paper).

    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"C": "positive", "text_copies": "int1"}
    name = "cross-modal-lp"

    def __init__(self, class_text=None, C: float = 10.0, text_copies: int = 1):
        super().__init__(class_text)
        self.C = C
        self.text_copies = text_copies

    def _fit_text(self, x, y, n_classes, text):
        reps = int(self.text_copies)
        xx = torch.cat([x] + [text] * reps)
        yy = torch.cat([y] + [torch.arange(n_classes)] * reps)
        self.probe_ = LinearProbe(C=self.C).fit(xx.detach(), yy)

    def _logits(self, q):
        # log-probabilities: logits up to a per-row constant (same softmax, same argmax)
        p = self.probe_.predict_proba(q)
        return torch.log(torch.as_tensor(p, dtype=torch.float32).clamp_min(1e-30))
