"""``mahalanobis-text``: Mahalanobis prototypes with a base-class covariance, plus a class-text
prior in a joint item-text space.

Two feature blocks per item, concatenated: ``[item features (d_item) | joint-space features
(joint_dim)]`` -- e.g. raw BirdNET audio features and the same clips mapped into the MiniLM text
space by a bridge learned on base classes (:func:`fewmm.aligned.train_bridge`)::

    u        = normalise(x_item)
    x~       = normalise((u - mu_B) S^(-1/2)),  S = (1 - lambda) C_B + lambda tr(C_B)/d_item I
    z        = normalise(x_joint)
    p_c      = mean of x~ over the K_c support items of class c
    q_c      = (K_c mean(z) + w t_c) / (K_c + w)          t_c: unit class text (w = text_weight)
    logit_c  = -( ||x~_q - p_c||^2 + a ||z_q - q_c||^2 )  (a = joint_weight)

``mu_B`` and ``C_B`` (the pooled within-class covariance of the unit item features, class means
removed, divided by the number of items) come from labelled BASE-class items through
:meth:`MahalanobisTextPrior.fit_base`; without it ``mu_B = 0`` and ``S = I`` (plain prototypes).

Sources
-------
* The shared covariance of the nearest-class-mean rule under a Gaussian model with one covariance
  for all classes: Fisher's linear discriminant (Fisher 1936; Hastie, Tibshirani & Friedman,
  *Elements of Statistical Learning*, sec. 4.3), here estimated on base classes and transferred to
  novel ones, as the Mahalanobis distances of Simple CNAPS (Bateni, Goyal, Masrani, Wood & Sigal,
  CVPR 2020), which also shrink the covariance towards the identity. Shrinkage towards a scaled
  identity as Ledoit & Wolf (J. Multivariate Analysis 2004), with a fixed lambda.
* Centring on the base mean and L2 normalisation: SimpleShot's CL2N (Wang, Chao, Weinberger &
  van der Maaten, arXiv:1911.04623, 2019).
* The class text as ``w`` extra support "shots" of its class in the joint space: the
  cross-modal view of Lin et al., CVPR 2023 ("Multimodality helps unimodality": text embeddings
  as training samples) and AM3's convex mix of a prototype and a text embedding (Xing et al.,
  NeurIPS 2019), here with a fixed weight instead of a learned one.
* The two blocks are combined by adding their squared distances (a product of the two
  prototype classifiers' softmax distributions, with weight ``a``).

Differences from those references: the covariance is estimated once on base classes and never
adapted per episode or class (Simple CNAPS mixes in per-class covariances); no learned weights.

Hyper-parameters: ``shrinkage=0.5``, ``joint_weight=0.5``, ``text_weight=2.0`` were chosen on the
VALIDATION classes of esc50-text only (``python benchmarks/transfer_goal_selection.py``, results
in ``results/transfer-goal-selection.json``: the highest validation accuracy of 55 candidates;
38 more configurations explored on the same validation episodes are listed there too), never on
novel classes or query items.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import FeatureError
from .base import check_features, check_labels, l2_normalize
from .text import SUPPORT_MEANS, TextMethod, one_hot, text_prototypes


class MahalanobisTextPrior(TextMethod):
    """Base-whitened prototypes on the item block + class-text prior on the joint block.

    Parameters
    ----------
    class_text : mapping of label to array-like of shape (joint_dim,) or (n_templates, joint_dim), or "support-means"
        Class text in the joint space (e.g. ``AlignedPair.class_text``). Not read when
        ``joint_dim == 0``.
    joint_dim : int, default 0
        Width of the joint-space block: the LAST ``joint_dim`` feature columns. 0: no joint block
        (Mahalanobis prototypes on the item features only; no text used).
    shrinkage : float in [0, 1], default 0.5
        lambda of ``S = (1 - lambda) C_B + lambda tr(C_B)/d I``.
    joint_weight : float >= 0, default 0.5
        ``a``: weight of the joint block's squared distance.
    text_weight : float >= 0, default 2.0
        ``w``: the class text counts as ``w`` support items of its class in the joint block.

    Attributes
    ----------
    base_mean_ : torch.Tensor of shape (d_item,) ; whitening_ : torch.Tensor of shape (d_item, d_item)
        From :meth:`fit_base` (absent before; dropped by ``sklearn.base.clone``).
    base_info_ : dict
        Base items and classes used.

    Shapes: ``fit(X (n, d_item + joint_dim), y (n,))``; ``predict_proba(Q (m, d_item + joint_dim))
    -> (m, n_classes)`` float32.
    """

    name = "mahalanobis-text"
    PARAM_RULES = {"joint_dim": "count", "shrinkage": "unit", "joint_weight": "nonneg", "text_weight": "nonneg"}

    def __init__(self, class_text=None, joint_dim: int = 0, shrinkage: float = 0.5, joint_weight: float = 0.5,
                 text_weight: float = 2.0):
        super().__init__(class_text)
        self.joint_dim = joint_dim
        self.shrinkage = shrinkage
        self.joint_weight = joint_weight
        self.text_weight = text_weight

    # -------------------------------------------------------------------- base statistics
    def _item_dim(self, width: int, what: str) -> int:
        d = int(width) - int(self.joint_dim)
        if d < 1:
            raise FeatureError(f"{what} have {width} columns but joint_dim={self.joint_dim}: the item block "
                               "(the first width - joint_dim columns) would be empty")
        return d

    def fit_base(self, base_features, base_labels=None) -> "MahalanobisTextPrior":
        """Estimate ``mu_B`` and ``S^(-1/2)`` from labelled base-class items (item block only).

        Parameters
        ----------
        base_features : array-like of shape (n_base, d_item + joint_dim)
        base_labels : array-like of shape (n_base,)
            At least 2 classes (the within-class covariance needs class labels).

        Returns
        -------
        self

        Raises
        ------
        FeatureError
            Missing labels, fewer than 2 base classes, a width not above ``joint_dim``, NaN / inf.
        """
        self.check_params()
        x = check_features(base_features, "base_features")
        if base_labels is None:
            raise FeatureError("mahalanobis-text: fit_base needs base_labels (the within-class covariance of the base "
                               "classes is estimated with class labels)")
        y = check_labels(base_labels, x.shape[0], "base_labels")
        d = self._item_dim(x.shape[1], "base_features")
        classes, inv = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise FeatureError(f"mahalanobis-text: base_labels hold {classes.size} class; at least 2 are needed")
        u = l2_normalize(x[:, :d]).double()
        inv_t = torch.as_tensor(inv.reshape(-1), dtype=torch.int64)
        means = torch.zeros(classes.size, d, dtype=torch.float64).index_add_(0, inv_t, u)
        means = means / torch.bincount(inv_t, minlength=classes.size).unsqueeze(1).to(torch.float64)
        r = u - means[inv_t]
        cov = r.T @ r / r.shape[0]
        lam = float(self.shrinkage)
        s = (1.0 - lam) * cov + lam * (torch.trace(cov) / d) * torch.eye(d, dtype=torch.float64)
        ev, v = torch.linalg.eigh(s)
        if float(ev.max()) <= 0:
            raise FeatureError("mahalanobis-text: the base items have no within-class spread (every class's items are identical)")
        self.whitening_ = ((v * ev.clamp_min(1e-12 * float(ev.max())).rsqrt()) @ v.T).to(torch.float32)
        self.base_mean_ = u.mean(0).to(torch.float32)
        self.base_info_ = {"n_items": int(x.shape[0]), "n_classes": int(classes.size), "item_dim": int(d),
                           "shrinkage": lam}
        return self

    # -------------------------------------------------------------------- contract
    def transform_features(self, features):
        d = self._item_dim(features.shape[-1], "features")
        u = l2_normalize(features[..., :d])
        if getattr(self, "whitening_", None) is not None:
            if self.whitening_.shape[0] != d:
                raise FeatureError(f"mahalanobis-text: the item block has {d} columns, the base features had "
                                   f"{self.whitening_.shape[0]}")
            u = l2_normalize((u - self.base_mean_.to(u.device)) @ self.whitening_.to(u.device))
        if int(self.joint_dim) == 0:
            return u
        return torch.cat([u, l2_normalize(features[..., d:])], -1)

    def _fit(self, x, y, n_classes):
        self.check_params()
        jd = int(self.joint_dim)
        d = x.shape[1] - jd
        counts = torch.bincount(y, minlength=n_classes).to(x.dtype).unsqueeze(1)
        oh = one_hot(y, n_classes).to(x.dtype)
        self.prototypes_ = oh.T @ x[:, :d] / counts
        if jd:
            z = x[:, d:]
            if isinstance(self.class_text, str) and self.class_text == SUPPORT_MEANS:
                text = l2_normalize(oh.T @ z)
            else:
                text = text_prototypes(self.class_text, self.classes_, dim=jd).to(x.device)
            self.text_ = text
            w = float(self.text_weight)
            self.joint_prototypes_ = (oh.T @ z + w * text) / (counts + w)

    def _logits(self, q):
        jd = int(self.joint_dim)
        d = q.shape[1] - jd
        dist = torch.cdist(q[:, :d].double(), self.prototypes_.double()).pow(2)
        if jd:
            dist = dist + float(self.joint_weight) * torch.cdist(q[:, d:].double(), self.joint_prototypes_.double()).pow(2)
        return (-dist).to(torch.float32)


def register_into(registry) -> None:
    """Register :class:`MahalanobisTextPrior` as ``"mahalanobis-text"`` in ``registry`` (a
    :class:`fewmm.registry.Registry`) unless it is there already."""
    if "mahalanobis-text" not in registry:
        registry.register("mahalanobis-text", "Mahalanobis prototypes (base-class covariance) + class-text prior in a "
                          "joint space; needs class_text, joint_dim and fit_base(base_features, base_labels)")(MahalanobisTextPrior)


__all__ = ["MahalanobisTextPrior", "register_into"]
