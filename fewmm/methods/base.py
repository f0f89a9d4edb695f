"""The one contract every few-shot method follows: a scikit-learn classifier.

Every method is a genuine scikit-learn classifier (``ClassifierMixin`` + ``BaseEstimator``): the
constructor stores hyper-parameters only, ``get_params`` / ``set_params`` / ``sklearn.base.clone``
work, ``fit`` returns ``self``, ``predict_proba`` returns class probabilities in the order of
``classes_``, ``score`` is accuracy, and ``__sklearn_tags__`` says it is a classifier of dense 2-d
numeric features (no NaN, no sparse input)::

    m = fewmm.methods.create("protonet")
    m.fit(support_features, support_labels)        # X (n_support, d), y (n_support,)
    proba = m.predict_proba(query_features)        # (n_query, n_classes)

so it works with ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` (search hyper-parameters on
base classes only, e.g. with :class:`fewmm.model_selection.EpisodeSplit`), and passes
scikit-learn's ``check_estimator`` (``tests/test_sklearn.py``).

For evaluation over thousands of episodes, :meth:`FewShotMethod.episode_logits` scores a whole
batch of episodes at once on tensors of shape (episodes, items, dim); methods with a closed form
(ProtoNet, SimpleShot, kNN) override it with batched tensor code, the others fall back to a loop of
``_fit`` / ``_logits`` per episode. :meth:`FewShotMethod.transform_features` is applied once to
the whole feature table before episodes are gathered (e.g. L2 normalisation), not once per
episode. (It is not called ``transform``: scikit-learn takes an estimator with ``transform`` for a
transformer.)

Writing a new method
--------------------
Subclass :class:`FewShotMethod` and

1. write ``__init__`` with explicit keyword hyper-parameters (no ``*args`` / ``**kwargs``) that
   only stores each one under its own name (``self.C = C``): no validation, no conversion, no
   other attribute;
2. validate them in :meth:`~FewShotMethod.check_params` (raise ``ValueError`` naming the
   parameter); ``fit``, :func:`fewmm.methods.create` and :func:`fewmm.evaluate.evaluate_episodes`
   call it;
3. implement ``_fit(x, y, n_classes)`` (float32 tensor (n, d) already passed through
   ``transform_features``, int64 labels ``0..n_classes-1``; store what it learns in attributes
   ending with ``_``) and ``_logits(q)`` -> (n_query, n_classes) float32 tensor;
4. optionally override ``transform_features`` (row-wise), ``episode_logits`` (batched) and
   ``fit_base`` (base-class statistics);
5. register it in :mod:`fewmm.methods` -- ``tests/test_sklearn.py`` then runs scikit-learn's
   checks on it automatically. A check that truly cannot pass for a few-shot method goes, with
   its reason, into ``EXPECTED_FAILED_CHECKS`` there (the one such list; keep it short).

A subclass that still defines ``transform`` (the hook's former name) has it moved to
``transform_features`` at class creation, with a ``DeprecationWarning`` that points at the
``def transform`` line (module: the subclass's module, so ``warnings`` filters by module apply).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ..errors import FeatureError, MethodError
from ..util import check_label_types, check_labels, check_query_classes, l2_normalize  # noqa: F401  (re-exported: fewmm.methods.base.check_labels etc.)


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        import scipy.sparse

        if scipy.sparse.issparse(x):
            raise FeatureError(f"{name} is a scipy sparse matrix; few-shot methods need dense features: pass {name}.toarray()")
        try:
            a = np.asarray(x)
            if a.dtype.kind == "c":
                raise FeatureError(f"{name} has complex values (dtype {a.dtype}): Complex data not supported; pass real features")
            if a.dtype == object:  # numbers stored as objects (e.g. from a DataFrame)
                try:
                    a = a.astype(np.float64)
                except (TypeError, ValueError) as e:
                    raise TypeError(f"{name} must hold numbers only: {e}") from None
            if not a.flags.writeable or any(s < 0 for s in a.strides):
                a = a.copy()  # a read-only memmap, or a reversed view (x[::-1]): torch needs a writable, positive-stride buffer
            t = torch.as_tensor(a)
        except (FeatureError, TypeError):
            raise
        except Exception as e:  # ragged lists
            raise FeatureError(f"{name} must be a numeric array of shape (n, dim): {e}") from None
    if t.is_complex():
        raise FeatureError(f"{name} has complex values (dtype {t.dtype}): Complex data not supported; pass real features")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise FeatureError(f"{name} must be a real numeric array, got dtype {t.dtype}")
    return t.to(torch.float32)


def check_features(x, name: str = "features", dim: int | None = None, owner: str = "the method") -> torch.Tensor:
    """Validate a feature matrix -> float32 tensor of shape (n, d).

    Parameters
    ----------
    x : array-like, numpy.ndarray or torch.Tensor of shape (n, d), real numbers
    name : str
        What to call ``x`` in messages (``"support_features"``, ``"query_features"``).
    dim : int, optional
        Required ``d`` (the dimension the method was fitted on).
    owner : str
        The class name used in the dimension-mismatch message (scikit-learn's wording).

    Returns
    -------
    torch.Tensor of shape (n, d), float32, on the device of ``x`` (a CPU tensor otherwise).

    Raises
    ------
    FeatureError (a ValueError)
        Sparse or complex input, not 2-d, empty, wrong ``dim``, or NaN/inf values (the message
        gives the first bad rows).
    """
    t = _as_tensor(x, name)
    if t.ndim != 2:
        hint = ": Reshape your data with x.reshape(1, -1) if it is one item" if t.ndim == 1 else ""
        raise FeatureError(f"{name} must have shape (n, dim), got shape {tuple(t.shape)}{hint}")
    if t.shape[0] == 0:
        raise FeatureError(f"{name} is empty (0 rows)")
    if t.shape[1] == 0:
        raise FeatureError(f"{name} has 0 feature(s) (shape={tuple(t.shape)}) while a minimum of 1 is required.")
    if dim is not None and t.shape[1] != dim:
        raise FeatureError(
            f"{name} has dim {t.shape[1]}, but the method was fitted on dim {dim} "
            f"(X has {t.shape[1]} features, but {owner} is expecting {dim} features as input)"
        )
    bad = ~torch.isfinite(t).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise FeatureError(f"{name} contains NaN or inf values in {int(bad.sum())} rows (first rows: {rows})")
    return t


def method_label(method) -> str:
    """How messages name ``method``: its registry name and class (``'protonet' (ProtoNet)``), or
    the class alone when it has no registry name."""
    cls = type(method).__name__
    name = getattr(method, "name", "") or ""
    return f"{name!r} ({cls})" if name and name != cls else cls


def check_logits(logits, shape: tuple, method, where: str = "_logits") -> torch.Tensor:
    """Validate scores a method returned -> the same float tensor.

    Parameters
    ----------
    logits : object
        What ``method._logits`` (shape (n_query, n_classes)) or ``method.episode_logits``
        (shape (episodes, n_query, n_way)) returned.
    shape : tuple of int
        The shape it must have.
    method : FewShotMethod
        Named in the message.
    where : str
        The hook that returned ``logits`` (``"_logits"`` or ``"episode_logits"``).

    Returns
    -------
    torch.Tensor of shape ``shape``, floating point (unchanged).

    Raises
    ------
    MethodError (a ValueError)
        Not a torch.Tensor, not floating point, or of another shape. Finiteness is checked
        separately by :func:`check_finite_scores`.
    """
    names = "(n_query, n_classes)" if len(shape) == 2 else "(episodes, n_query, n_way)"
    want = f"a float torch.Tensor of shape {names} = {tuple(int(v) for v in shape)}"
    if not isinstance(logits, torch.Tensor):
        raise MethodError(f"method {method_label(method)}: {where} returned a {type(logits).__module__}.{type(logits).__name__}; "
                          f"expected {want} (convert with torch.as_tensor)")
    if tuple(logits.shape) != tuple(shape):
        raise MethodError(f"method {method_label(method)}: {where} returned shape {tuple(logits.shape)}; expected {want}")
    if not logits.is_floating_point():
        raise MethodError(f"method {method_label(method)}: {where} returned dtype {logits.dtype}; expected {want}")
    return logits


def check_finite_scores(scores: torch.Tensor, method, features: torch.Tensor | None = None) -> torch.Tensor:
    """Raise when ``scores`` hold NaN or inf (one ``isfinite().all()``); return ``scores``.

    A NaN logit would otherwise be scored silently: ``argmax`` of a row of NaN is column 0, i.e.
    chance accuracy written into the results as if it were measured.

    Parameters
    ----------
    scores : torch.Tensor, any shape, floating point
    method : FewShotMethod
        Named in the message.
    features : torch.Tensor, optional
        The (transformed) features that were scored; only read when raising, to report their
        largest magnitude (a hint at float32 overflow).

    Raises
    ------
    MethodError (a ValueError)
        Some score is NaN or inf. The message names the method, counts the bad scores and, when
        the features are large (max |x| > 1e6), suggests normalising them.
    """
    if bool(torch.isfinite(scores).all()):
        return scores
    n_bad = int((~torch.isfinite(scores)).sum())
    hint = ""
    if features is not None and features.numel():
        big = float(features.detach().abs().max())
        if not np.isfinite(big) or big > 1e6:
            hint = (f"; the largest |feature| is {big:.3g}: squared distances / dot products of features this large "
                    "overflow float32, so normalise the features first (e.g. standardise or L2-normalise them, or use "
                    "a cosine metric)")
    raise MethodError(f"method {method_label(method)} gave {n_bad} non-finite (NaN or inf) score(s) of {scores.numel()}: "
                      f"its predictions would be meaningless (argmax of NaN is class 0){hint}")


class FewShotMethod(ClassifierMixin, BaseEstimator):
    """Base class: a scikit-learn classifier with validation, label encoding and the
    batched-episode fallback.

    Subclasses store hyper-parameters in ``__init__``, validate them in :meth:`check_params`,
    and implement :meth:`_fit` (encoded labels ``0..C-1``) and :meth:`_logits` (see the module
    notes, "Writing a new method").

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray of shape (n_classes,)
        The distinct support labels, sorted; columns of ``predict_proba``.
    n_features_in_ : int
        Feature dimension ``d`` seen in ``fit``.
    """

    name: str = ""
    #: Hyper-parameter dicts that :func:`fewmm.testing.contract_cases` checks this method with;
    #: ``({},)``: the defaults only.
    contract_variants: tuple = ({},)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "transform" in cls.__dict__ and "transform_features" not in cls.__dict__:
            # The warning points at the old hook's ``def`` (not at a caller frame: class creation
            # goes through type.__new__, and wrappers would move a stacklevel); "<unknown>", line 0
            # for a hook without code (e.g. a functools.partial).
            hook = cls.__dict__["transform"]
            code = getattr(getattr(hook, "__func__", hook), "__code__", None)
            warnings.warn_explicit(
                f"{cls.__name__}.transform: the feature-transform hook of FewShotMethod is now called transform_features "
                "(scikit-learn takes an estimator with `transform` for a transformer); it was moved there",
                DeprecationWarning,
                code.co_filename if code is not None else "<unknown>",
                code.co_firstlineno if code is not None else 0,
                module=cls.__module__,
            )
            cls.transform_features = cls.__dict__["transform"]
            delattr(cls, "transform")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.transformer_tags = None  # transform_features is an evaluation hook, not a transformer
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        tags.input_tags.two_d_array = True  # (n_items, dim) float features (numpy, lists or torch)
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.string = False
        tags.input_tags.dict = False
        tags.input_tags.categorical = False
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        tags.non_deterministic = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    # -- the scikit-learn contract ---------------------------------------------------------
    def check_params(self) -> None:
        """Validate the hyper-parameters; raise ``ValueError`` naming the bad one.

        Called by :meth:`fit`, :func:`fewmm.methods.create` and
        :func:`fewmm.evaluate.evaluate_episodes` (never by ``__init__``: scikit-learn's
        ``clone`` / ``set_params`` need a constructor that only stores). Default: nothing.
        """

    def fit(self, X, y) -> "FewShotMethod":
        """Fit on a labelled support set.

        Parameters
        ----------
        X : array-like, numpy.ndarray or torch.Tensor of shape (n_support, dim)
            Support features (real numbers; the "support_features" of the messages).
        y : array-like of shape (n_support,)
            Support labels: class labels of any type (str, int, ...); at least one item per class.

        Returns
        -------
        self

        Raises
        ------
        FeatureError (a ValueError)
            Bad shapes, sparse / complex / NaN / inf features, label/feature count mismatch,
            ``y`` missing or continuous ("Unknown label type").
        ValueError
            A bad hyper-parameter (from :meth:`check_params`).
        """
        from sklearn.utils.validation import validate_data

        self.check_params()
        x = check_features(X, "support_features")
        y = check_labels(y, x.shape[0])
        validate_data(self, X, reset=True, skip_check_array=True)  # n_features_in_, feature_names_in_
        self.classes_, enc = np.unique(y, return_inverse=True)
        self.n_features_in_ = int(x.shape[1])
        xt = self.transform_features(x)
        self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=torch.int64), len(self.classes_))
        return self

    def _scores(self, X) -> torch.Tensor:
        """Validated logits, (n_query, n_classes) float32 tensor."""
        from sklearn.utils.validation import validate_data

        self._check_fitted()
        q = check_features(X, "query_features", dim=self.n_features_in_, owner=type(self).__name__)
        validate_data(self, X, reset=False, skip_check_array=True)  # feature names as in fit
        qt = self.transform_features(q)
        s = check_logits(self._logits(qt), (q.shape[0], len(self.classes_)), self)
        return check_finite_scores(s, self, qt)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_query, dim)
            Query features.

        Returns
        -------
        numpy.ndarray of shape (n_query, n_classes), float32, columns as ``classes_``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        FeatureError (a ValueError)
            Bad shape, other dimension than in ``fit``, NaN / inf.
        MethodError (a ValueError)
            ``_logits`` returned a non-tensor or another shape than (n_query, n_classes), or NaN /
            inf scores (e.g. float32 overflow on features ~1e18: the message says to normalise).
        """
        return torch.softmax(self._scores(X), dim=1).cpu().numpy()

    def decision_function(self, X) -> np.ndarray:
        """Unnormalised class scores (logits), scikit-learn's convention.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_query, dim)

        Returns
        -------
        numpy.ndarray, float32: shape (n_query, n_classes), columns as ``classes_``; with exactly
        2 classes, shape (n_query,): the logit of ``classes_[1]`` minus that of ``classes_[0]``
        (positive means ``classes_[1]``; ``predict_proba[:, 1]`` is its sigmoid).

        Raises
        ------
        As :meth:`predict_proba`.
        """
        s = self._scores(X)
        if s.shape[1] == 2:
            s = s[:, 1] - s[:, 0]
        return s.cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted labels (argmax of the logits).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_query, dim)

        Returns
        -------
        numpy.ndarray of shape (n_query,), values from ``classes_``.
        """
        scores = self._scores(X)
        return self.classes_[scores.argmax(dim=1).cpu().numpy()]

    # -- hooks -----------------------------------------------------------------------------
    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy on labelled queries (scikit-learn's ``score``).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_query, dim)
        y : array-like of shape (n_query,)
            Query labels; every one must be a class of the support set.
        sample_weight : array-like of shape (n_query,), optional

        Returns
        -------
        float in [0, 1].

        Raises
        ------
        FeatureError (a ValueError)
            ``y`` holds a class missing from the support set (named), or bad labels / features.
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        y = check_labels(y, None, "query_labels")  # any length here: scikit-learn compares it with X
        check_query_classes(y, self.classes_)
        return super().score(X, y, sample_weight=sample_weight)

    def fit_base(self, base_features) -> "FewShotMethod":
        """Optionally learn statistics from base-class features (e.g. SimpleShot's mean).
        Default: nothing. Returns self."""
        return self

    def transform_features(self, features: torch.Tensor) -> torch.Tensor:
        """Per-item feature transform applied before fitting/scoring; default identity.

        Parameters
        ----------
        features : torch.Tensor of shape (..., dim), float32

        Returns
        -------
        torch.Tensor of the same shape. Must act row by row (so it can be applied once to a whole
        table).
        """
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
            Support features, already passed through :meth:`transform_features`, class-major:
            episode-local class ``c`` is ``support[:, c]``.
        query : torch.Tensor of shape (E, M, d)
            Query features, already transformed.

        Returns
        -------
        torch.Tensor of shape (E, M, N): logits; argmax is the predicted episode-local class.

        The default loops over episodes with :meth:`_fit` / :meth:`_logits` (each output checked
        with :func:`check_logits`; :func:`fewmm.evaluate.evaluate_episodes` checks the returned
        batch's shape and finiteness once per chunk).

        Raises
        ------
        MethodError (a ValueError)
            ``_logits`` returned something other than a float tensor of shape (M, N).
        """
        e, n, k, d = support.shape
        y = torch.arange(n).repeat_interleave(k)
        out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)
        for i in range(e):
            self._fit(support[i].reshape(n * k, d), y.to(support.device), n)
            out[i] = check_logits(self._logits(query[i]), (query.shape[1], n), self)
        return out


def sq_euclidean_logits(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared euclidean distances, batched: (E, M, d), (E, N, d) -> (E, M, N).

    Uses ``-||q||^2 - ||p||^2 + 2 q.p`` (one batched matmul) instead of forming differences.
    """
    q2 = (query * query).sum(-1, keepdim=True)  # (E, M, 1)
    p2 = (protos * protos).sum(-1).unsqueeze(1)  # (E, 1, N)
    return torch.baddbmm(-(q2 + p2), query, protos.transpose(1, 2), alpha=2.0)
