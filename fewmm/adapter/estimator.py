"""The :class:`Adapter` estimator: encoders + a fusion head or few-shot method, fit / predict /
explain (saving and loading: :mod:`fewmm.adapter.persistence`)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ..data.table import MODALITIES
from ..errors import DataError, FeatureError
from ..util import check_query_classes
from .format import DEFAULT_ENCODERS, encoder_spec
from .items import as_items
from .persistence import AdapterPersistence

_METHOD_HEADS = ("protonet", "protonet-cosine", "linear-probe", "knn", "simpleshot")

try:  # huggingface_hub's conventions: save_pretrained / from_pretrained / push_to_hub
    from huggingface_hub import ModelHubMixin as _HubMixin
except Exception:  # pragma: no cover - huggingface_hub comes with transformers
    _HubMixin = object


def _with_params(build, name: str, params: dict, factory):
    """``build()``, with bad hyper-parameters reported by name (and the known ones listed)."""
    import inspect

    from ..errors import UnknownNameError

    try:
        return build()
    except UnknownNameError:
        raise
    except (TypeError, ValueError) as e:
        try:
            sig = inspect.signature(factory).parameters.values()
            known = [] if any(p.kind == p.VAR_KEYWORD for p in sig) else \
                [p.name for p in sig if p.name not in ("self", "dims", "modalities", "text_dim")]
        except (TypeError, ValueError):
            known = []
        bad = [k for k in params if known and k not in known]
        if bad:
            raise ValueError(f"unknown parameter(s) {bad} for {name!r} (known: {', '.join(known)})") from None
        raise ValueError(f"bad parameters {params} for {name!r}: {e}") from None


class Adapter(AdapterPersistence, ClassifierMixin, BaseEstimator, _HubMixin):
    """A few-shot classifier on frozen encoders: fit on a few labelled items, save, load, predict.

    Parameters
    ----------
    encoders : dict of modality -> encoder name (or ``{"name": ..., **options}``), optional
        e.g. ``{"image": "efficientnet-lite2", "text": "minilm-l6"}`` (see
        :func:`fewmm.encoders.list_encoders`). Default: :data:`DEFAULT_ENCODERS` for the
        modalities the training items have.
    head : str or FusionHead, default "avg-proto"
        A fixed fusion head, a few-shot method (one-modality adapters), or a trained head (see the
        module notes).
    head_params : dict, optional
        Hyper-parameters of the head / method (e.g. ``{"C": 1.0}`` for ``linear-probe``).
    device : str, default "cpu"
        Where encoders and head run (``"cuda"`` when present).
    batch_size : int, default 32
        Encoder batch size.

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray of shape (n_classes,)
        Sorted distinct training labels (str or int); columns of ``predict_proba``.
    modalities_ : tuple of str
        Modalities of the adapter, in the order of the encoders.
    encoders_ : dict of modality -> fewmm.encoders.Encoder
    weight_names_ : tuple of str
        Columns of :meth:`explain`.
    n_support_ : int
        Number of training items.
    """

    def __init__(self, encoders: dict | None = None, head="avg-proto", head_params: dict | None = None,
                 device: str = "cpu", batch_size: int = 32):
        self.encoders = encoders
        self.head = head
        self.head_params = head_params
        self.device = device
        self.batch_size = batch_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.target_tags.required = False  # a manifest brings its own labels
        # X is a sequence of items (file paths, inline text, dicts of modalities, images, audio
        # tuples) or a manifest path; not a numeric 2-d array. ``transform`` gives MMFeatures,
        # not an array: the adapter is not a scikit-learn transformer (transformer_tags None).
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.input_tags.dict = True
        tags.input_tags.allow_nan = False
        tags.transformer_tags = None
        tags.classifier_tags.multi_label = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    # -- building ------------------------------------------------------------------------------
    def _make_encoders(self, modalities) -> dict:
        import fewmm.encoders as E

        specs = dict(self.encoders) if self.encoders else {m: DEFAULT_ENCODERS[m] for m in MODALITIES if m in modalities}
        bad = [m for m in specs if m not in MODALITIES]
        if bad:
            raise ValueError(f"encoders: unknown modality {bad}; expected keys among {list(MODALITIES)}")
        out = {}
        for m in MODALITIES:
            if m not in specs:
                continue
            name, kw = encoder_spec(specs[m])
            try:
                enc = E.create(name, device=self.device, **kw)
            except TypeError as e:
                raise ValueError(f"encoder {name!r} for {m}: bad options {kw}: {e}") from None
            if enc.modality != m:
                raise ValueError(f"encoders[{m!r}] = {name!r} is an encoder of {enc.modality!r}, not {m!r}")
            out[m] = enc
        return out

    def _embed(self, items: list[dict], names: list[str]):
        """Items -> MMFeatures (labels zero) with the fitted encoders. Raises DataError listing every
        unreadable item, or naming items with no modality the adapter has."""
        from ..multimodal import MMFeatures

        mods = self.modalities_
        n = len(items)
        none = [names[i] for i, it in enumerate(items) if not any(m in it for m in mods)]
        if none:
            have = sorted({m for it in items for m in it} - set(mods))
            raise DataError(
                f"{len(none)} item(s) have none of the adapter's modalities {list(mods)}"
                + (f" (they have {have})" if have else "") + ": " + ", ".join(none[:10])
            )
        feats, mask, problems = {}, torch.zeros((n, len(mods)), dtype=torch.bool), []
        for j, m in enumerate(mods):
            enc = self.encoders_[m]
            rows = [i for i, it in enumerate(items) if m in it]
            f = torch.zeros((n, enc.dim), dtype=torch.float32)
            if rows:
                payloads = [items[i][m] for i in rows]
                try:
                    f[rows] = enc.embed(payloads, batch_size=self.batch_size)
                except DataError:
                    for i, p in zip(rows, payloads):  # find every bad item, not only the first
                        try:
                            enc._prepare(p)
                        except Exception as e:
                            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                            for prefix in (f"{p}: ", f"{enc.name}: "):
                                msg = msg[len(prefix):] if msg.startswith(prefix) else msg
                            problems.append(f"{names[i]} ({m}): {msg}")
                    if not problems:
                        raise
                    continue
                mask[rows, j] = True
            feats[m] = f
        if problems:
            raise DataError(f"{len(problems)} unreadable item{'s' if len(problems) > 1 else ''}:\n"
                            + "\n".join(f"  - {p}" for p in problems))
        return MMFeatures(feats, mask, mods, np.zeros(n, dtype=np.int64), [], info={"adapter": id(self)})

    def _build_head(self, dims: dict, modalities: tuple):
        import fewmm.heads as H
        import fewmm.methods as M
        from ..heads.base import FusionHead

        params = dict(self.head_params or {})
        if isinstance(self.head, FusionHead):
            head = self.head
            if head.text_dim is not None:
                raise ValueError(f"head {head.name!r} uses class text, which adapters do not support")
            for m in head.modalities:
                if m not in dims or dims[m] != head.dims[m]:
                    raise FeatureError(f"head {head.name!r} was built for {m!r} features of dim {head.dims[m]}, "
                                       f"the adapter's encoders give {dims.get(m)}")
            return "head", head
        if not isinstance(self.head, str):
            raise TypeError(f"head must be a name or a fewmm.heads.FusionHead, got {type(self.head).__name__}")
        if self.head in M.joint_block_methods():  # would run as plain prototypes (no joint block, no base statistics)
            raise ValueError(f"method {self.head!r} scores [raw item | joint item-text] features with base-class "
                             "statistics and class text, which adapters do not provide; run it with "
                             "python -m fewmm.bench (a suite with class text) or fewmm.bench.transfer.joint_block_factory")
        if self.head in _METHOD_HEADS or self.head in M.list_methods():
            if len(modalities) != 1:
                raise ValueError(f"method {self.head!r} works on one modality; this adapter has {list(modalities)}: "
                                 "use a fusion head (avg-proto, concat) or one encoder")
            return "method", _with_params(lambda: M.create(self.head, **params), self.head, params, M.METHODS.get(self.head))
        head = _with_params(lambda: H.create(self.head, dims, modalities, seed=0, **params), self.head, params,
                            H.HEADS.get(self.head.split(":")[0]))
        if head.trainable:
            raise ValueError(
                f"head {self.head!r} has parameters to meta-train on base classes; train it with "
                "fewmm.train.train_head and pass the trained head (head=<FusionHead>), or use a fixed head "
                "(avg-proto, concat, single:<modality>) or a method (protonet, linear-probe, ...)"
            )
        if head.text_dim is not None:
            raise ValueError(f"head {self.head!r} uses class text, which adapters do not support")
        return "head", head

    def _fit_features(self, support, y_enc: np.ndarray) -> None:
        from ..heads.classifier import HeadClassifier

        kind, head = self._build_head(support.dims, support.modalities)
        self._kind = kind
        self._support = support
        self._y = y_enc
        if kind == "method":
            m = support.modalities[0]
            self._clf = head.fit(support.features[m], y_enc)
            self.weight_names_ = (m,)
        else:
            head = head.to("cpu").eval()
            self._clf = HeadClassifier(head).fit(support, y_enc)
            self.weight_names_ = tuple(head.weight_names)
        self.head_ = head
        self._fast = None  # the traced single-query scorer, built at the first single-item prediction

    # -- sklearn-style API ---------------------------------------------------------------------
    def fit(self, items, labels=None) -> "Adapter":
        """Embed the labelled items and fit the head on them.

        Parameters
        ----------
        items : items or a manifest (see the module notes)
        labels : array-like of shape (n,), str or int, optional
            Default: the manifest's ``label`` column.

        Returns
        -------
        self

        Raises
        ------
        DataError
            Bad or unreadable items (all listed), missing / malformed labels, fewer than 2 classes.
        UnknownNameError
            Unknown encoder or head name.
        """
        self._check_params()
        its, names, y = as_items(items, labels, require_labels=True)
        if y is None:
            raise DataError("fit needs labels: pass labels=[...] (one per item) or a manifest with a 'label' column")
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise DataError(f"fit needs at least 2 classes, got {classes.tolist()}")
        present = {m for it in its for m in it}
        self.encoders_ = self._make_encoders(present)
        unused = [m for m in self.encoders_ if m not in present]
        if unused:
            raise DataError(f"encoders name {unused}, but no training item has {' or '.join(unused)}: the adapter could not "
                            "score items that have only that; drop those encoders or add such training items")
        self.modalities_ = tuple(self.encoders_)
        support = self._embed(its, names)
        self.classes_ = classes
        self.n_support_ = len(its)
        self._warn_uncovered(support, y_enc.reshape(-1), classes)
        self._fit_features(support, y_enc.reshape(-1).astype(np.int64))
        return self

    def _warn_uncovered(self, support, y_enc, classes) -> None:
        """Warn when some class has no training item with some modality: an item that has only
        that modality can then never be predicted as that class, however sure the head looks."""
        if len(self.modalities_) < 2:
            return
        import warnings

        mask = np.asarray(support.mask, dtype=bool)
        for j, m in enumerate(self.modalities_):
            seen = np.unique(y_enc[mask[:, j]])
            missing = [str(c) for i, c in enumerate(classes) if i not in set(seen.tolist())]
            if missing:
                warnings.warn(f"class(es) {missing} have no training item with {m}: an item that has only {m} can never be "
                              f"predicted as them (its probabilities over the other classes still sum to 1); add {m} items "
                              "of those classes, or score such items with their other modalities too", UserWarning, stacklevel=3)

    def _check_params(self) -> None:
        """Validate the constructor arguments (at fit / load, as scikit-learn does)."""
        if self.encoders is not None and not isinstance(self.encoders, dict):
            raise ValueError(f"encoders must be a dict modality -> encoder name, e.g. {{'image': 'efficientnet-lite2'}}, got {self.encoders!r}")
        if self.encoders is not None and not self.encoders:
            raise ValueError("encoders is an empty dict: name at least one modality -> encoder, e.g. {'audio': 'logmel-stats'}, "
                             "or leave it None for the defaults")
        if self.head_params is not None and not isinstance(self.head_params, dict):
            raise ValueError(f"head_params must be a dict of hyper-parameters, got {self.head_params!r}")
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise ValueError(f"batch_size must be a positive int, got {bs!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {self.device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {e}") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this Adapter is not fitted yet: call fit(items, labels) or Adapter.load(path)")

    def transform(self, items):
        """Encoder features of ``items``: a :class:`~fewmm.multimodal.MMFeatures` (``features[m]``
        (n, d_m) float32, zero rows where an item lacks m; ``mask`` (n, n_mod) bool)."""
        self._check_fitted()
        from ..multimodal import MMFeatures

        if isinstance(items, MMFeatures):
            return items
        its, names, _ = as_items(items)
        return self._embed(its, names)

    def _single_query_scorer(self):
        """A ``torch.jit.trace`` of the head's scoring of ONE query against the fitted support set
        (support state and parameters frozen in), or None when it cannot be built.

        At batch size 1 the eager head spends most of its time in Python dispatch (about 100 small
        ops, slower still when the encoder just evicted the caches); the trace runs the same ops
        from C++ and halves the head time (``benchmarks/adapter_latency.py``). It is checked
        against the eager head for every pattern of present modalities before use; any
        difference beyond 1e-6 (or a tracing error) keeps the eager path.
        """
        if getattr(self, "_fast", None) is not None or self._kind != "head":
            return self._fast or None
        import copy
        import itertools
        import warnings

        from ..multimodal import MMBatch, MMFeatures

        self._fast = False
        clf = self._clf
        head = copy.deepcopy(clf.head).requires_grad_(False).eval()
        mods = self.modalities_
        sup, smask, ct = clf._support, clf._support_mask, clf._class_text

        def batch(qf, qm):
            return MMBatch(sup, smask, {m: x.unsqueeze(0) for m, x in zip(mods, qf)}, qm.unsqueeze(0), ct,
                           torch.zeros((1, qm.shape[0]), dtype=torch.int64), mods)

        try:
            with torch.inference_mode():
                g = torch.Generator().manual_seed(0)
                qf = [torch.randn((1, sup[m].shape[-1]), generator=g) for m in mods]
                state = head.support_state(batch(qf, torch.ones((1, len(mods)), dtype=torch.bool)))

            def score(*args):
                b = batch(args[:-1], args[-1])
                lg, w = head._forward(b) if state is None else head.query_forward(state, b)
                return torch.softmax(lg[0].float(), dim=-1), w[0].float()

            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(score, tuple(qf) + (torch.ones((1, len(mods)), dtype=torch.bool),), check_trace=False)
            for pattern in itertools.product((False, True), repeat=len(mods)):
                if not any(pattern):
                    continue
                qm = torch.tensor([pattern])
                x = [f * float(p) for f, p in zip(qf, pattern)]
                want = clf.predict_with_weights(MMFeatures(dict(zip(mods, x)), qm, mods, np.zeros(1, np.int64), []))
                with torch.no_grad():
                    got = traced(*x, qm)
                if not (np.allclose(got[0].numpy(), want[0], rtol=0, atol=1e-6) and np.allclose(got[1].numpy(), want[1], rtol=0, atol=1e-6)):
                    return None
        except Exception:
            return None
        self._fast = traced
        return traced

    def _scores(self, items) -> tuple[np.ndarray, np.ndarray]:
        feats = self.transform(items)
        if len(feats) == 1 and self._kind == "head" and feats.info.get("adapter") == id(self):
            fast = self._single_query_scorer()
            if fast is not None:
                with torch.no_grad():
                    p, w = fast(*(feats.features[m] for m in self.modalities_), feats.mask)
                return p.numpy(), w.numpy()
        if self._kind == "method":
            m = self.modalities_[0]
            proba = self._clf.predict_proba(feats.features[m])
            return np.asarray(proba, dtype=np.float32), np.ones((len(feats), 1), dtype=np.float32)
        return self._clf.predict_with_weights(feats)

    def predict_proba(self, items) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), float32, columns as ``classes_``. ``items``
        may also be the :class:`~fewmm.multimodal.MMFeatures` returned by :meth:`transform`."""
        return self._scores(items)[0]

    def predict(self, items) -> np.ndarray:
        """Predicted labels, shape (n,), values from ``classes_``."""
        self._check_fitted()
        return self.classes_[self.predict_proba(items).argmax(1)]

    def explain(self, items) -> np.ndarray:
        """Weight given to each modality for each item: shape (n, len(weight_names_)), float32;
        rows sum to 1 over the modalities the item has, 0 for the others."""
        return self._scores(items)[1]

    def predict_with_weights(self, items) -> tuple[np.ndarray, np.ndarray]:
        """``(predict_proba(items), explain(items))`` from one pass."""
        return self._scores(items)

    def score(self, items, labels=None, sample_weight=None) -> float:
        """Accuracy on labelled items (scikit-learn's ``score``).

        Parameters
        ----------
        items : items or a manifest
        labels : array-like of shape (n,), optional
            Default: the manifest's labels.
        sample_weight : array-like of shape (n,), optional
            Weights of the items in the mean (default all 1).

        Returns
        -------
        float in [0, 1]: the (weighted) fraction of items predicted correctly.

        Raises
        ------
        DataError
            No labels, or labels that are not classes of the adapter.
        """
        self._check_fitted()
        its, names, y = as_items(items, labels, require_labels=True)
        if y is None:
            raise DataError("score needs labels")
        check_query_classes(y, self.classes_, "score labels", DataError)
        correct = self.predict(self._embed(its, names)) == y
        if sample_weight is None:
            return float(correct.mean())
        return float(np.average(correct, weights=np.asarray(sample_weight, dtype=np.float64)))

    def __repr__(self) -> str:
        head = self.head if isinstance(self.head, str) else f"<{type(self.head).__name__} {getattr(self.head, 'name', '')}>"
        fitted = f", classes={len(self.classes_)}, modalities={list(self.modalities_)}" if hasattr(self, "classes_") else ""
        return f"Adapter(encoders={self.encoders!r}, head={head!r}{fitted})"

    # -- save / load ---------------------------------------------------------------------------
