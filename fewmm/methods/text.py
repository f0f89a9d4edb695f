"""Shared parts of the methods that use class text in a joint item-text space.

These methods (zero-shot, Tip-Adapter, Tip-Adapter-F, CLIP-Adapter, cross-modal linear probe,
LP++, ZS-LP) need, besides the labelled support set, one text embedding per class in the SAME
space as the item features: CLIP image/text, CLAP audio/text, or a bridge learned on base classes
(:mod:`fewmm.aligned`). How a method receives them
-----------------------------------------------------------------------------------------------
``class_text`` is a constructor parameter (as scikit-learn's ``class_weight``): a mapping from
class label to that class's text embedding(s)::

    m = fewmm.methods.create("tip-adapter", class_text={"dog": t_dog, "cat": t_cat, ...})
    m.fit(support_features, support_labels)     # labels "dog", "cat", ...
    m.predict_proba(query_features)             # (n_query, n_classes), columns = classes_

``class_text="support-means"`` is an explicit text-free ablation: each class's "text" is the unit
mean of its unit support features (zero-shot becomes nearest class mean by cosine, Tip-Adapter a
class-mean classifier plus its cache, ...). It shows how much the class text adds, and lets
scikit-learn's generic estimator checks (which know nothing of class text) run these methods.

A value may be one vector of shape (d,) or several of shape (n_templates, d) (e.g. one per
prompt template): each row is L2-normalised, the rows averaged and the mean L2-normalised again
(CLIP's prompt ensembling, Radford et al. 2021, sec. 3.1.4). The mapping may hold more classes
than an episode uses (e.g. every class of a task, keyed by global class index); ``fit`` takes
the rows of the support classes only. The harness (:mod:`fewmm.bench.transfer`) passes the whole
task's class text once. Query labels are never passed to a method.

Everything is L2-normalised (items and texts), as CLIP's features are before its logits.
Hyper-parameters are fixed defaults (never chosen on query items or novel-class test data).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..errors import FeatureError
from .base import FewShotMethod, l2_normalize

#: ``class_text`` value of the text-free ablation (class means of the support set as "text").
SUPPORT_MEANS = "support-means"
#: CLIP's final (learned, then clipped) logit scale: ``logits = 100 * cos``.
CLIP_LOGIT_SCALE = 100.0


def text_prototypes(class_text: Mapping, classes, dim: int | None = None, name: str = "class_text") -> torch.Tensor:
    """Class text embeddings of ``classes``, prompt-ensembled and L2-normalised.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (d,) or (n_templates, d)
    classes : sequence of labels, length C
    dim : int or None
        Expected d (the item feature dim); None: not checked.

    Returns
    -------
    torch.Tensor of shape (C, d), float32, unit rows.

    Raises
    ------
    FeatureError
        ``class_text`` is not a mapping, lacks a class, has the wrong dim, NaN/inf, or a zero vector.
    """
    if class_text is None:
        raise FeatureError(f"{name} is required: pass a mapping {{class label: text embedding (d,) or "
                           f"(n_templates, d)}} in the same space as the item features (see fewmm.aligned)")
    if not isinstance(class_text, Mapping):
        raise FeatureError(f"{name} must be a mapping {{class label: embedding}}, got {type(class_text).__name__}")
    rows = []
    for c in classes:
        key = c.item() if isinstance(c, np.generic) else c
        if key not in class_text:
            have = list(class_text)[:8]
            raise FeatureError(f"{name} has no entry for class {key!r} (a support label); it has {len(class_text)} "
                               f"classes, e.g. {have}")
        t = class_text[key]
        if isinstance(t, (str, bytes)) or (isinstance(t, (list, tuple)) and any(isinstance(v, (str, bytes)) for v in t)):
            raise FeatureError(f"{name}[{key!r}] is text ({t!r}); {name} takes text EMBEDDINGS (arrays of shape (d,) or "
                               "(n_templates, d)): embed the class texts with the text encoder of the aligned pair first "
                               "(e.g. fewmm.tasks.embed_class_text)")
        try:
            t = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise FeatureError(f"{name}[{key!r}] must be a numeric array of shape (d,) or (n_templates, d): {e}") from None
        t = t.to(torch.float32)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[0] == 0:
            raise FeatureError(f"{name}[{key!r}] must have shape (d,) or (n_templates, d), got {tuple(t.shape)}")
        if dim is not None and t.shape[1] != dim:
            raise FeatureError(f"{name}[{key!r}] has dim {t.shape[1]}, but the item features have dim {dim}: "
                               "text and items must live in one space (an aligned pair)")
        if not torch.isfinite(t).all():
            raise FeatureError(f"{name}[{key!r}] contains NaN or inf")
        if (t.norm(dim=1) == 0).any():
            raise FeatureError(f"{name}[{key!r}] has a zero vector (cannot be normalised)")
        rows.append(l2_normalize(l2_normalize(t).mean(0)))
    return torch.stack(rows)


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n,) int64 -> (n, n_classes) float32."""
    return torch.nn.functional.one_hot(y, n_classes).to(torch.float32)


def train_full_batch(params, loss_fn, steps: int, lr: float, weight_decay: float = 0.0, eps: float = 1e-8,
                     cosine: bool = True) -> list[float]:
    """Deterministic full-batch AdamW: ``steps`` updates of ``loss_fn()`` with a cosine learning
    rate schedule (as Tip-Adapter-F and CoOp), no early stopping. Runs with gradients on even
    inside ``torch.inference_mode`` callers. Returns the loss of every step."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps)) if cosine else None
    losses = []
    for _ in range(int(steps)):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
    return losses


class TextMethod(FewShotMethod):
    """Base of the methods that use class text (see the module docstring).

    Subclasses implement ``_fit_text(x, y, n_classes, text)`` with ``text`` the (C, d) unit text
    prototypes of ``classes_`` (in that order), and ``_logits``. Items are L2-normalised.

    Parameters
    ----------
    class_text : mapping of label to array-like (d,) or (n_templates, d), or "support-means"
    """

    uses_class_text = True
    #: hyper-parameter -> rule checked by :meth:`check_params`: "positive" (finite > 0),
    #: "nonneg" (finite >= 0), "count" (int >= 0), "int1" (int >= 1), "unit" (in [0, 1]),
    #: "finite" (any finite number).
    PARAM_RULES: dict = {}

    def __init__(self, class_text: Mapping | None = None):
        self.class_text = class_text

    def check_params(self) -> None:
        """Validate the hyper-parameters (:attr:`PARAM_RULES`) and the kind of ``class_text``.

        Raises
        ------
        ValueError
            Naming the parameter, its value and what was expected.
        """
        ct = self.class_text
        if not (ct is None or isinstance(ct, Mapping) or (isinstance(ct, str) and ct == SUPPORT_MEANS)):
            hint = (": a bare array has no class labels; pass {label: row} (e.g. dict(zip(class_labels, array)))"
                    if isinstance(ct, (np.ndarray, torch.Tensor, list, tuple)) else "")
            raise FeatureError(f"class_text must be a mapping {{class label: embedding}} or {SUPPORT_MEANS!r}, got "
                               f"{ct if isinstance(ct, str) else type(ct).__name__!r}{hint}")
        for name, rule in self.PARAM_RULES.items():
            v = getattr(self, name)
            is_num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            ok = is_num and np.isfinite(v)
            if rule in ("count", "int1"):
                ok = ok and isinstance(v, (int, np.integer)) and v >= (1 if rule == "int1" else 0)
            elif rule == "positive":
                ok = ok and v > 0
            elif rule == "nonneg":
                ok = ok and v >= 0
            elif rule == "unit":
                ok = ok and 0 <= v <= 1
            if not ok:
                want = {"positive": "a finite number > 0", "nonneg": "a finite number >= 0", "count": "an integer >= 0",
                        "int1": "an integer >= 1", "unit": "a number in [0, 1]", "finite": "a finite number"}[rule]
                raise ValueError(f"{type(self).__name__}: {name} must be {want}, got {v!r}")

    def transform_features(self, features):
        return l2_normalize(features)

    def _fit(self, x, y, n_classes):
        self.check_params()
        if isinstance(self.class_text, str):
            if self.class_text != SUPPORT_MEANS:
                raise FeatureError(f"class_text must be a mapping {{class label: embedding}} or {SUPPORT_MEANS!r}, "
                                   f"got the string {self.class_text!r}")
            oh = one_hot(y, n_classes).to(x.dtype)
            text = l2_normalize(oh.T @ x)
        else:
            text = text_prototypes(self.class_text, self.classes_, dim=x.shape[1]).to(x.device)
        self.text_ = text
        with torch.inference_mode(False), torch.enable_grad():
            self._fit_text(x.clone(), y.clone(), n_classes, text.clone())

    def _fit_text(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, text: torch.Tensor) -> None:
        raise NotImplementedError

    def episode_logits(self, support, query):
        raise FeatureError(f"{type(self).__name__} uses class text and needs each episode's real class labels: "
                           "score it with fit(support_features, support_labels) / predict_proba(query_features) "
                           "per episode (fewmm.bench.transfer does), not with episode-local labels")
