"""The one contract every few-shot method and head follows.

scikit-learn style: the constructor stores hyper-parameters only; ``fit`` returns ``self``;
``predict_proba`` returns class probabilities in the order of ``classes_``::

    m = fewmm.methods.create("protonet")
    m.fit(support_features, support_labels)        # (n_support, d), (n_support,)
    proba = m.predict_proba(query_features)        # (n_query, n_classes)

For evaluation over thousands of episodes, :meth:`FewShotMethod.episode_logits` scores a whole
batch of episodes at once on tensors of shape (episodes, items, dim); methods with a closed form
(ProtoNet, SimpleShot, kNN) override it with batched tensor code, the others fall back to a loop of
``fit`` / ``predict_proba`` per episode. :meth:`FewShotMethod.transform` is applied once to the
whole feature table before episodes are gathered (e.g. L2 normalisation), not once per episode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ..errors import FeatureError


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as e:  # ragged lists, objects
            raise FeatureError(f"{name} must be a numeric array of shape (n, dim): {e}") from None
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise FeatureError(f"{name} must be a real numeric array, got dtype {t.dtype}")
    return t.to(torch.float32)


def check_features(x, name: str = "features", dim: int | None = None) -> torch.Tensor:
    """Validate a feature matrix -> float32 tensor of shape (n, d).

    Raises
    ------
    FeatureError
        Not 2-d, empty, wrong ``dim``, or NaN/inf values (the message gives the first bad rows).
    """
    t = _as_tensor(x, name)
    if t.ndim != 2:
        raise FeatureError(f"{name} must have shape (n, dim), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise FeatureError(f"{name} is empty (0 rows)")
    if dim is not None and t.shape[1] != dim:
        raise FeatureError(f"{name} has dim {t.shape[1]}, but the method was fitted on dim {dim}")
    bad = ~torch.isfinite(t).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise FeatureError(f"{name} contains NaN or inf values in {int(bad.sum())} rows (first rows: {rows})")
    return t


def check_labels(y, n: int, name: str = "support_labels") -> np.ndarray:
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if y.ndim != 1:
        raise FeatureError(f"{name} must have shape (n,), got shape {y.shape}")
    if y.shape[0] != n:
        raise FeatureError(f"{name} has {y.shape[0]} labels for {n} feature rows")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise FeatureError(f"{name} contains NaN")
    return y


class FewShotMethod(ABC):
    """Base class: validation, label encoding, and the batched-episode fallback.

    Subclasses implement :meth:`_fit` (encoded labels ``0..C-1``) and :meth:`_logits`.

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray of shape (n_classes,)
        The distinct support labels, sorted; columns of ``predict_proba``.
    n_features_in_ : int
    """

    name: str = ""

    # -- the scikit-learn style contract ------------------------------------------------
    def fit(self, support_features, support_labels) -> "FewShotMethod":
        """Fit on a labelled support set.

        Parameters
        ----------
        support_features : array-like or torch.Tensor of shape (n_support, dim)
        support_labels : array-like of shape (n_support,)
            Any hashable labels; at least one item per class.

        Returns
        -------
        self

        Raises
        ------
        FeatureError
            Bad shapes, NaN/inf features, or label/feature count mismatch.
        """
        x = check_features(support_features, "support_features")
        y = check_labels(support_labels, x.shape[0])
        self.classes_, enc = np.unique(y, return_inverse=True)
        self.n_features_in_ = int(x.shape[1])
        xt = self.transform(x)
        self._fit(xt, torch.as_tensor(enc, dtype=torch.int64), len(self.classes_))
        return self

    def predict_proba(self, query_features) -> np.ndarray:
        """Class probabilities, shape (n_query, n_classes), float32, columns as ``classes_``."""
        return torch.softmax(self.decision_function(query_features), dim=1).numpy()

    def decision_function(self, query_features) -> torch.Tensor:
        """Unnormalised class scores (logits), shape (n_query, n_classes), float32."""
        self._check_fitted()
        q = check_features(query_features, "query_features", dim=self.n_features_in_)
        return self._logits(self.transform(q))

    def predict(self, query_features) -> np.ndarray:
        """Predicted labels, shape (n_query,), values from ``classes_``."""
        scores = self.decision_function(query_features)
        return self.classes_[scores.argmax(dim=1).numpy()]

    # -- hooks -----------------------------------------------------------------------------
    def fit_base(self, base_features) -> "FewShotMethod":
        """Optionally learn statistics from base-class features (e.g. SimpleShot's mean).
        Default: nothing. Returns self."""
        return self

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """Per-item feature transform applied before fitting/scoring; default identity.
        Must act row by row (so it can be applied once to a whole table)."""
        return features

    @abstractmethod
    def _fit(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None: ...

    @abstractmethod
    def _logits(self, q: torch.Tensor) -> torch.Tensor: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(support_features, support_labels) first")

    # -- batched episodes ------------------------------------------------------------------
    def episode_logits(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Score a batch of episodes.

        Parameters
        ----------
        support : torch.Tensor of shape (E, N, K, d)
            Support features, already passed through :meth:`transform`, class-major: episode-local
            class ``c`` is ``support[:, c]``.
        query : torch.Tensor of shape (E, M, d)
            Query features, already transformed.

        Returns
        -------
        torch.Tensor of shape (E, M, N): logits; argmax is the predicted episode-local class.

        The default loops over episodes with :meth:`_fit` / :meth:`_logits`.
        """
        e, n, k, d = support.shape
        y = torch.arange(n).repeat_interleave(k)
        out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)
        for i in range(e):
            self._fit(support[i].reshape(n * k, d), y.to(support.device), n)
            out[i] = self._logits(query[i])
        return out

    def get_params(self) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm (rows of zeros stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def sq_euclidean_logits(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared euclidean distances, batched: (E, M, d), (E, N, d) -> (E, M, N).

    Uses ``-||q||^2 - ||p||^2 + 2 q.p`` (one batched matmul) instead of forming differences.
    """
    q2 = (query * query).sum(-1, keepdim=True)  # (E, M, 1)
    p2 = (protos * protos).sum(-1).unsqueeze(1)  # (E, 1, N)
    return torch.baddbmm(-(q2 + p2), query, protos.transpose(1, 2), alpha=2.0)
