"""Zero-shot classification with class-text prototypes (Radford et al., ICML 2021, CLIP).

Each class is represented by the L2-normalised mean of its prompt-template text embeddings; a
query's logits are ``logit_scale * cos(query, text_c)``. The support set is used only to know
which classes an episode has (its features are ignored): a zero-shot reference on the same
episodes as the few-shot methods.

Differences from the reference code: the text embeddings come in precomputed (``class_text``),
in any aligned item-text space (CLIP, CLAP or a bridge, :mod:`fewmm.aligned`), not from CLIP's
text tower at call time.
"""

from __future__ import annotations

from .text import CLIP_LOGIT_SCALE, TextMethod


class ZeroShot(TextMethod):
    """Nearest class text by cosine.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
        See :mod:`fewmm.methods.text`.
    logit_scale : float, default 100.0
        CLIP's logit scale (changes probabilities, not predictions).

    Shapes: ``fit(X (n, d), y (n,))``; ``predict_proba(Q (m, d)) -> (m, n_classes)`` float32.
    """

    PARAM_RULES = {"logit_scale": "positive"}
    name = "zero-shot"

    def __init__(self, class_text=None, logit_scale: float = CLIP_LOGIT_SCALE):
        super().__init__(class_text)
        self.logit_scale = logit_scale

    def _fit_text(self, x, y, n_classes, text):
        self.weights_ = text

    def _logits(self, q):
        return self.logit_scale * q @ self.weights_.T
