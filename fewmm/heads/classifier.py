"""The scikit-learn contract for fusion heads, and batched evaluation over episodes.

:class:`HeadClassifier` wraps any :class:`~fewmm.heads.base.FusionHead` (trained or not) in the
``fit`` / ``predict_proba`` / ``predict`` contract of :mod:`fewmm.methods`, on
:class:`~fewmm.multimodal.MMFeatures` instead of plain matrices, plus ``explain``. It is a
scikit-learn classifier as far as its input allows (``get_params`` / ``set_params``,
``sklearn.base.clone``, ``score``, tags; see ``tests/test_sklearn.py`` for the checks it passes
and why the array-based ones cannot run on MMFeatures)::

    clf = HeadClassifier(head).fit(support, support.labels)     # support: MMFeatures
    proba = clf.predict_proba(query)                              # (n_query, n_classes)
    w = clf.explain(query)                                        # (n_query, n_w)

:func:`evaluate_head` scores thousands of episodes in batches (the benchmark path).
"""

from __future__ import annotations

import numpy as np
import torch

from sklearn.base import BaseEstimator, ClassifierMixin

from ..episodes import Episodes
from ..errors import FeatureError
from ..util import check_labels, check_query_classes
from ..multimodal import MMBatch, MMFeatures
from .base import FusionHead


def align_features(head: FusionHead, features: MMFeatures, name: str = "features") -> MMFeatures:
    """Check ``features`` against ``head`` and keep the head's modalities, in its order.

    Returns
    -------
    MMFeatures with ``modalities == head.modalities``.

    Raises
    ------
    FeatureError
        Not an MMFeatures; a modality of the head missing; a dimension differing from the head's;
        no class text for a class-text head (or a text dimension differing).
    """
    if not isinstance(features, MMFeatures):
        raise FeatureError(f"{name} must be a fewmm.multimodal.MMFeatures, got {type(features).__name__}")
    missing = [m for m in head.modalities if m not in features.modalities]
    if missing:
        raise FeatureError(f"{name} lack modalities {missing} that head {head.name!r} was built for (they have {list(features.modalities)})")
    if features.modalities != head.modalities:
        features = features.select_modalities(head.modalities)
    for m in head.modalities:
        d = int(features.features[m].shape[1])
        if d != head.dims[m]:
            raise FeatureError(f"{name}: modality {m!r} has dim {d}, but head {head.name!r} was built for dim {head.dims[m]}")
    if head.text_dim is not None:
        if features.class_text is None:
            raise FeatureError(f"head {head.name!r} uses class text (dim {head.text_dim}) but {name} have no class_text")
        if features.class_text.shape[1] != head.text_dim:
            raise FeatureError(f"{name}: class_text has dim {features.class_text.shape[1]}, but head {head.name!r} was built for dim {head.text_dim}")
    return features


def check_items_have_modality(features: MMFeatures, name: str = "features", items=None) -> None:
    """Raise FeatureError naming the first items (row indices) that have no modality at all.

    Parameters
    ----------
    items : array-like of int, optional
        Only check these rows (default all).
    """
    has = features.mask.any(1).cpu().numpy()
    rows = np.arange(has.shape[0]) if items is None else np.asarray(items)
    bad = rows[~has[rows]]
    if bad.size:
        raise FeatureError(
            f"{name}: item {int(bad[0])} has no modality at all ({bad.size} such items, first: {bad[:10].tolist()}); "
            f"every item needs one of {list(features.modalities)}"
        )


def _check_finite(features: MMFeatures, name: str) -> None:
    """FeatureError when a modality's features hold NaN/inf. MMFeatures checks this when built;
    this catches values edited in afterwards (one isfinite pass per modality)."""
    for m in features.modalities:
        f = features.features[m]
        if not bool(torch.isfinite(f).all()):
            rows = torch.nonzero(~torch.isfinite(f).all(dim=1)).flatten()[:5].tolist()
            raise FeatureError(f"{name} features[{m!r}] contain NaN or inf (rows {rows}; edited after the MMFeatures was built?)")


def features_to(features: MMFeatures, device) -> MMFeatures:
    """A copy of ``features`` with its tensors on ``device`` (the same object if already there)."""
    dev = torch.device(device)
    if features.mask.device == dev:
        return features
    return MMFeatures(
        {m: v.to(dev) for m, v in features.features.items()}, features.mask.to(dev), features.modalities, features.labels,
        features.class_names, None if features.class_text is None else features.class_text.to(dev), dict(features.info),
    )


class HeadClassifier(ClassifierMixin, BaseEstimator):
    """A fusion head with the ``fit`` / ``predict_proba`` / ``predict`` / ``explain`` contract.

    A scikit-learn classifier whose ``X`` is an :class:`~fewmm.multimodal.MMFeatures` (not an
    array): the constructor only stores its arguments (checked at ``fit``), ``get_params`` /
    ``set_params`` / ``sklearn.base.clone`` work (``clone`` deep-copies the head, trained
    parameters included), ``score`` is accuracy.

    Parameters
    ----------
    head : FusionHead
        Trained (see :func:`fewmm.train.train_head`) or fixed (``avg-proto``, ``concat``, ...).
    device : str or torch.device, optional
        Where to compute (default: the head's device).
    query_chunk : int, default 4096
        Queries scored per forward pass (bounds memory).

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray of shape (n_classes,)
        Sorted distinct support labels; columns of ``predict_proba``.
    weight_names : tuple of str
        Columns of ``explain``: the head's modalities, then ``"class_text"`` for class-text heads.

    Notes
    -----
    Classes may have different numbers of shots (the support set is padded internally). The head
    runs in eval mode (no dropout) under ``torch.inference_mode``. For heads with a support state
    (:meth:`FusionHead.support_state`: ``gmu``, ``attention``) the support embeddings are computed
    once, at the first scoring after ``fit``, and reused: call ``fit`` again after changing the
    head's parameters.
    """

    #: caches rebuilt at the first scoring; :func:`fewmm.persist.save` stores them as None
    transient_attributes = ("_state",)

    def __init__(self, head: FusionHead, device=None, query_chunk: int = 4096):
        self.head = head
        self.device = device
        self.query_chunk = query_chunk

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.target_tags.required = False  # y defaults to the support set's own labels
        # X is a fewmm.multimodal.MMFeatures (per-modality feature tables + a presence mask),
        # none of the array kinds scikit-learn's tags describe.
        tags.input_tags.two_d_array = False
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    def check_params(self) -> None:
        """Raise TypeError / ValueError for a ``head`` that is not a FusionHead, a ``query_chunk``
        that is not an int >= 1, a ``device`` torch does not know, or a CUDA ``device`` on a
        machine where torch sees no CUDA GPU."""
        if not isinstance(self.head, FusionHead):
            raise TypeError(f"head must be a fewmm.heads.FusionHead, got {type(self.head).__name__}")
        qc = self.query_chunk
        if isinstance(qc, bool) or not isinstance(qc, (int, np.integer)) or qc < 1:
            raise ValueError(f"query_chunk must be an int >= 1, got {qc!r}")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as e:
                raise ValueError(f"device {self.device!r} is not a torch device (e.g. 'cpu', 'cuda'): {e}") from None
            self._check_cuda(torch.device(self.device))

    @staticmethod
    def _check_cuda(dev: torch.device) -> None:
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"HeadClassifier: device={str(dev)!r} was asked for but torch sees no CUDA GPU; "
                             "use device='cpu' or device=None (the head's device)")

    @property
    def weight_names(self) -> tuple[str, ...]:
        return self.head.weight_names

    def _dev(self) -> torch.device:
        dev = torch.device(self.device) if self.device is not None else self.head.device
        self._check_cuda(dev)
        return dev

    def fit(self, X: MMFeatures, y=None) -> "HeadClassifier":
        """Store the support set.

        Parameters
        ----------
        X : MMFeatures of n_support items
            The support set.
        y : array-like of shape (n_support,), optional
            Support labels; default ``X.labels``. For class-text heads the labels must be integer
            class indices into ``X.class_text``.

        Returns
        -------
        self

        Raises
        ------
        FeatureError
            Modalities / dims not matching the head; a support item with no modality (named by
            row index); a class with no support item in any modality the head uses (named);
            class-text head without class text or with labels that do not index it.
        TypeError, ValueError
            Bad constructor arguments (see :meth:`check_params`).
        """
        self.check_params()
        support = align_features(self.head, X, "support")
        _check_finite(support, "support")
        y = support.labels if y is None else check_labels(y, len(support))
        if len(support) == 0:
            raise FeatureError("support is empty")
        check_items_have_modality(support, "support")
        self.classes_, enc = np.unique(y, return_inverse=True)
        enc = enc.reshape(-1)
        used = [support.modalities.index(m) for m in self.head.used_modalities]
        has_used = support.mask[:, used].any(1).cpu().numpy()
        for c in range(len(self.classes_)):
            if not has_used[enc == c].any():
                raise FeatureError(
                    f"class {self.classes_[c].item()!r} has no support item with any of the modalities {list(self.head.used_modalities)} "
                    f"that head {self.head.name!r} uses: it cannot be scored"
                )
        dev = self._dev()
        n = len(self.classes_)
        counts = np.bincount(enc, minlength=n)
        k = int(counts.max())
        idx = np.full((n, k), -1, dtype=np.int64)
        for c in range(n):
            members = np.flatnonzero(enc == c)
            idx[c, : members.size] = members
        it = torch.as_tensor(idx, device=support.mask.device)
        take = it.clamp_min(0)
        self._support = {m: support.features[m][take].unsqueeze(0).to(dev) for m in support.modalities}
        self._support_mask = (support.mask[take] & (it >= 0).unsqueeze(-1)).unsqueeze(0).to(dev)
        self._class_text = None
        if self.head.text_dim is not None:
            if not np.issubdtype(self.classes_.dtype, np.integer) or self.classes_.min() < 0 or self.classes_.max() >= support.class_text.shape[0]:
                raise FeatureError(
                    f"head {self.head.name!r} uses class text: labels must be integer indices into class_text "
                    f"(0..{support.class_text.shape[0] - 1}), got {self.classes_[:5].tolist()}"
                )
            self._class_text = support.class_text[torch.as_tensor(self.classes_, device=support.class_text.device)].unsqueeze(0).to(dev)
        self.n_features_in_ = dict(self.head.dims)
        self._state = None  # support_state of the head, computed at the first scoring
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("HeadClassifier is not fitted yet: call fit(support, support_labels) first")

    def _scores(self, query: MMFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        query = align_features(self.head, query, "query")
        if len(query) == 0:
            raise FeatureError("query has 0 items: give at least one query item to predict")
        _check_finite(query, "query")
        check_items_have_modality(query, "query")
        dev = self._dev()
        was = self.head.training
        if was:
            self.head.eval()
        logits, weights = [], []
        try:
            with torch.inference_mode():
                chunk = int(self.query_chunk)
                for s in range(0, len(query), chunk):
                    sl = slice(s, s + chunk)
                    qm = query.mask[sl].to(dev)
                    batch = MMBatch(
                        self._support, self._support_mask, {m: query.features[m][sl].to(dev).unsqueeze(0) for m in query.modalities},
                        qm.unsqueeze(0), self._class_text, torch.zeros((1, qm.shape[0]), dtype=torch.int64, device=dev), query.modalities,
                    )
                    self.head.check_batch(batch, check_items=False)
                    if self._state is None:
                        self._state = (self.head.support_state(batch),)
                    if self._state[0] is None:
                        lg, w = self.head._forward(batch)
                    else:
                        lg, w = self.head.query_forward(self._state[0], batch)
                    logits.append(lg[0].float().cpu())
                    weights.append(w[0].float().cpu())
        finally:
            if was:
                self.head.train(was)
        return torch.cat(logits), torch.cat(weights)

    def decision_function(self, X: MMFeatures) -> np.ndarray:
        """Class logits, scikit-learn's convention.

        Parameters
        ----------
        X : MMFeatures of n_query items

        Returns
        -------
        numpy.ndarray, float32: shape (n_query, n_classes), columns as ``classes_``; with exactly
        2 classes, shape (n_query,): the logit of ``classes_[1]`` minus that of ``classes_[0]``.
        """
        s = self._scores(X)[0]
        if s.shape[1] == 2:
            s = s[:, 1] - s[:, 0]
        return s.numpy()

    def predict_proba(self, X: MMFeatures) -> np.ndarray:
        """Class probabilities, shape (n_query, n_classes), float32, columns as ``classes_``.

        Parameters
        ----------
        X : MMFeatures of n_query items

        Raises
        ------
        FeatureError
            Modalities / dims not matching the head, a query of 0 items, or a query item with no modality (named).
        """
        return torch.softmax(self._scores(X)[0], dim=1).numpy()

    def predict(self, X: MMFeatures) -> np.ndarray:
        """Predicted labels, shape (n_query,), values from ``classes_`` (X: MMFeatures)."""
        pred = self._scores(X)[0].argmax(1).numpy()  # raises NotFittedError before fit
        return self.classes_[pred]

    def score(self, X: MMFeatures, y=None, sample_weight=None) -> float:
        """Mean accuracy on a labelled query set (scikit-learn's ``score``).

        Parameters
        ----------
        X : MMFeatures of n_query items
        y : array-like of shape (n_query,), optional
            Query labels (default ``X.labels``); every one must be a class of the support set.
        sample_weight : array-like of shape (n_query,), optional

        Returns
        -------
        float in [0, 1].

        Raises
        ------
        FeatureError
            ``y`` holds a class missing from the support set (named), or bad labels / features.
        NotFittedError
            Before ``fit``.
        """
        from sklearn.metrics import accuracy_score

        self._check_fitted()
        y = X.labels if y is None else check_labels(y, len(X), "query_labels")
        check_query_classes(y, self.classes_)
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def explain(self, query: MMFeatures) -> np.ndarray:
        """Weight the head gave each modality for each query.

        Returns
        -------
        numpy.ndarray of shape (n_query, n_w), float32
            Columns ``weight_names`` (modalities in the head's order, then ``"class_text"`` for
            class-text heads); rows sum to 1 over the modalities the query and the support set
            have, exactly 0 for the others.
        """
        return self._scores(query)[1].numpy()

    def predict_with_weights(self, query: MMFeatures) -> tuple[np.ndarray, np.ndarray]:
        """``(predict_proba(query), explain(query))`` in one pass."""
        lg, w = self._scores(query)
        return torch.softmax(lg, 1).numpy(), w.numpy()

    def __repr__(self) -> str:
        head = getattr(self.head, "name", type(self.head).__name__)
        return f"HeadClassifier(head={head!r}, device={self.device!r}, query_chunk={self.query_chunk!r})"


def evaluate_head(
    head: FusionHead,
    features: MMFeatures,
    episodes: Episodes,
    chunk_size: int = 64,
    device=None,
    return_weights: bool = False,
    return_predictions: bool = False,
):
    """Per-episode accuracy of a fusion head on a batch of episodes.

    Parameters
    ----------
    head : FusionHead
    features : MMFeatures
        The table the episode indices point into (extra modalities are dropped).
    episodes : Episodes
        E episodes of N-way K-shot Q-query (e.g. novel classes, from ``sample_episodes``).
    chunk_size : int, default 64
        Episodes per forward pass.
    device : str or torch.device, optional
        Default: the head's device.
    return_weights, return_predictions : bool
        Also return the query weights (E, N*Q, n_w) float32 / predicted episode-local classes
        (E, N*Q) int64.

    Returns
    -------
    acc : numpy.ndarray of shape (E,), float64
        Fraction of queries correct per episode; then the optional arrays, in the order above.

    Raises
    ------
    FeatureError
        Features not matching the head; an episode item with no modality.
    """
    features = align_features(head, features)
    dev = torch.device(device) if device is not None else head.device
    feats = features_to(features, dev)
    check_items_have_modality(feats, "features", np.concatenate([episodes.support.ravel(), episodes.query.ravel()]))
    was = head.training
    head.eval()
    accs, ws, ps = [], [], []
    try:
        with torch.inference_mode():
            for s in range(0, episodes.n_episodes, max(1, int(chunk_size))):
                batch = feats.batch(episodes[s : s + chunk_size], device=dev)
                logits, w = head(batch)
                pred = logits.argmax(-1)
                accs.append((pred == batch.query_labels).double().mean(1).cpu())
                if return_weights:
                    ws.append(w.float().cpu())
                if return_predictions:
                    ps.append(pred.cpu())
    finally:
        head.train(was)
    out = [torch.cat(accs).numpy()]
    if return_weights:
        out.append(torch.cat(ws).numpy())
    if return_predictions:
        out.append(torch.cat(ps).numpy())
    return out[0] if len(out) == 1 else tuple(out)
