"""One contract for every registered component, in the spirit of scikit-learn's
``check_estimator``: few-shot methods (:data:`fewmm.methods.METHODS`), fusion heads
(:data:`fewmm.heads.HEADS`) and engine learners (``fewmm.engine.LEARNERS``, when the engine is
installed).

>>> from fewmm.testing import check_method, check_head, contract_cases
>>> check_method("protonet")             # raises AssertionError naming the failed check
>>> check_head("gmu", hidden=16)
>>> [c.id for c in contract_cases()]     # every registered component (what tests/test_contract.py runs)

A new component is checked as soon as it is registered: ``tests/test_contract.py`` is
parametrised from the registries by :func:`contract_cases`; nothing lists components by hand.

What is checked (each a function named ``check_*`` below, runnable alone):

``shapes``
    ``fit`` returns self; ``predict_proba`` (n_query, n_classes) float32 rows summing to 1;
    ``decision_function`` (n_query, n_classes); ``predict`` (n_query,) labels of ``classes_``;
    on well-separated synthetic classes the predictions are right (accuracy floor). Heads: also
    ``head(batch)`` -> logits (E, M, N) float32 and weights (E, M, n_w), finite, weights >= 0.
``classes_order``
    ``classes_`` is the sorted distinct support labels whatever the support order; renaming the
    classes so that their sorted order reverses permutes the probability columns accordingly. A
    method class whose probabilities depend on which class is encoded as output ``j`` (the MAML
    family: output ``j`` starts from a meta-learned row) declares it with a class attribute
    ``class_order_dependent = "<reason>"``: the renamed fit is then checked by accuracy only, and a
    :class:`ContractWaiver` warning carries the reason and the measured difference.
``deterministic``
    Two fits from fresh instances, under different global torch / numpy random states, give
    identical probabilities (a component's randomness comes from its own seed).
``nan_features``, ``wrong_dimensions``
    NaN / inf support or query features and features of the wrong shape or dimension raise
    :class:`~fewmm.errors.FeatureError` naming the argument (``support_features`` /
    ``query_features``, or the modality).
``missing_class``
    ``score`` on queries of a class missing from the support set raises FeatureError naming the
    class (it would otherwise count them as silent errors); a method that uses class text raises
    FeatureError naming a support class that ``class_text`` lacks.
    Joint-block methods (``needs_joint_block``: ``mahalanobis-text``) are checked as the harnesses
    run them: the last half of the feature columns (or ``joint_dim`` of ``params``) is the joint
    block holding the class text, and ``fit_base`` is run on the check's items first.
``save_load``
    :func:`fewmm.persist.save` / :func:`~fewmm.persist.load` round trip with ``pickle`` and
    ``torch.load`` disabled: only ``state.json`` and ``state.safetensors`` are written, and the
    loaded component predicts exactly what the saved one did.

Learners (the engine's protocol: ``model``, ``labels``, ``batch``, ``logits``, ``targets``,
``inner_task``, ``adapted_parameters``, ``evaluate``, ``describe``) get the checks that apply to
them: ``protocol``, ``shapes``, ``bad_episodes`` (indices outside the items: EpisodeError),
``deterministic``, ``adapted_parameters`` and ``save_load``
(model weights as safetensors + ``describe()`` as JSON). A learner class registered in
``LEARNERS`` provides ``contract_example(seed)``, a small instance to check (the same data for
every ``seed``; ``seed`` sets the initial weights).

Every check raises ``AssertionError`` whose message starts ``"<kind> '<name>': check_<check>:"``.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import FeatureError

__all__ = [
    "ContractCase", "contract_cases", "run_check", "check_method", "check_head", "check_learner", "METHOD_CHECKS",
    "HEAD_CHECKS", "LEARNER_CHECKS", "disabled_pickle", "ContractWaiver",
]

# Labels whose first-appearance order differs from their sorted order.
_NAMES = np.array(["kiwi", "apple", "mango", "fig", "date", "lime"])


@dataclass(frozen=True)
class ContractCase:
    """One registered component to check: ``kind`` ("method", "head" or "learner"), its registry
    ``name`` and constructor keyword arguments ``params``."""

    kind: str
    name: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def id(self) -> str:
        extra = "-".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}:{self.name}" + (f"[{extra}]" if extra else "")

    @property
    def checks(self) -> list[str]:
        return list({"method": METHOD_CHECKS, "head": HEAD_CHECKS, "learner": LEARNER_CHECKS}[self.kind])


class _Fail(AssertionError):
    pass


class ContractWaiver(UserWarning):
    """Warned when a check is weakened by a component's documented declaration (e.g. a method's
    ``class_order_dependent`` reason); the message names the component, the check and the reason."""


def _expect(cond: bool, who: str, check: str, msg: str) -> None:
    if not cond:
        raise _Fail(f"{who}: check_{check}: {msg}")


@contextlib.contextmanager
def _raises(who: str, check: str, exc: type[Exception], *needles: str):
    """Expect ``exc`` whose message holds every needle (case-sensitive)."""
    try:
        yield
    except exc as e:
        text = str(e)
        missing = [n for n in needles if n not in text]
        _expect(not missing, who, check, f"{exc.__name__} raised, but its message does not name {missing}: {text!r}")
        return
    except Exception as e:  # the wrong error type: not one of ours, or a raw deep error
        raise _Fail(f"{who}: check_{check}: expected {exc.__name__} naming {list(needles)}, got {type(e).__name__}: {e}") from e
    raise _Fail(f"{who}: check_{check}: expected {exc.__name__} naming {list(needles)}, nothing was raised")


@contextlib.contextmanager
def disabled_pickle():
    """Within the block, ``pickle.load(s)``, ``torch.load`` and ``numpy.load(allow_pickle=True)``
    raise: what runs there provably does not unpickle."""
    saved = pickle.loads, pickle.load, torch.load, np.load

    def refuse(*a, **k):
        raise AssertionError("pickle / torch.load was used")

    def np_load(*a, **k):
        if k.get("allow_pickle"):
            raise AssertionError("numpy.load(allow_pickle=True) was used")
        return saved[3](*a, **k)

    pickle.loads, pickle.load, torch.load, np.load = refuse, refuse, refuse, np_load
    try:
        yield
    finally:
        pickle.loads, pickle.load, torch.load, np.load = saved


def _round_trip(obj, who: str):
    """``persist.save`` then ``persist.load`` in a temporary folder, pickle disabled."""
    from . import persist

    with tempfile.TemporaryDirectory() as d:
        persist.save(obj, d)
        files = sorted(p.name for p in Path(d).iterdir())
        _expect(files == [persist.STATE_JSON, persist.STATE_TENSORS], who, "save_load", f"wrote {files}")
        json.loads((Path(d) / persist.STATE_JSON).read_text())
        with disabled_pickle():
            return persist.load(d)


# ------------------------------------------------------------------------------------------------
# methods
# ------------------------------------------------------------------------------------------------
def _blobs(seed: int = 0, per_class: int = 10, dim: int = 16):
    g = torch.Generator().manual_seed(seed)
    n = len(_NAMES)
    centers = torch.randn(n, dim, generator=g) * 3
    y = np.repeat(np.arange(n), per_class)
    x = centers[torch.as_tensor(y)] + torch.randn(len(y), dim, generator=g)
    rng = np.random.default_rng(seed)
    sup = rng.permutation(np.concatenate([np.flatnonzero(y == c)[:4] for c in range(n)]))  # classes interleaved
    qry = np.setdiff1d(np.arange(len(y)), sup)
    return x, _NAMES[y], sup, qry


def _method_builder(name: str, params: dict) -> Callable:
    """``build(x, labels) -> unfitted method``; class-text methods get the class means of (x, labels)
    as class text (a space shared with the items by construction)."""
    from . import methods as M

    uses_text = bool(getattr(M.METHODS.get(name), "uses_class_text", False))
    joint_block = bool(getattr(M.METHODS.get(name), "needs_joint_block", False))

    def build(x, labels, drop: Any = None):
        if not uses_text:
            return M.create(name, **params)
        labels = np.asarray(labels)
        xt = torch.as_tensor(x)
        if joint_block:  # [item | joint] features: the last joint_dim columns are the joint space
            jd = int(params.get("joint_dim") or xt.shape[1] // 2)
            xt = xt[:, xt.shape[1] - jd:]
        text = {c.item(): xt[torch.as_tensor(labels == c)].mean(0) for c in np.unique(labels) if c != drop}
        if not joint_block:
            return M.create(name, class_text=text, **params)
        m = M.create(name, class_text=text, **{"joint_dim": jd, **params})
        return m.fit_base(x, labels)  # base statistics (of the blobs themselves: a contract check, not a result)

    build.uses_text = uses_text
    return build


def check_method_shapes(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs()
    m = build(x, y)
    _expect(m.fit(x[sup], y[sup]) is m, who, "shapes", "fit does not return self")
    p = m.predict_proba(x[qry])
    _expect(isinstance(p, np.ndarray) and p.shape == (len(qry), len(_NAMES)) and p.dtype == np.float32, who, "shapes",
            f"predict_proba gave {type(p).__name__} {getattr(p, 'shape', None)} {getattr(p, 'dtype', None)}, want "
            f"({len(qry)}, {len(_NAMES)}) float32")
    _expect(bool(np.all(p >= 0)) and np.allclose(p.sum(1), 1, atol=1e-5), who, "shapes", "probabilities are not rows summing to 1")
    d = m.decision_function(x[qry])
    _expect(np.shape(d) == (len(qry), len(_NAMES)), who, "shapes", f"decision_function shape {np.shape(d)}")
    pred = m.predict(x[qry])
    _expect(np.shape(pred) == (len(qry),) and set(pred.tolist()) <= set(m.classes_.tolist()), who, "shapes",
            f"predict gave shape {np.shape(pred)} or labels outside classes_")
    _expect(np.array_equal(pred, m.classes_[p.argmax(1)]), who, "shapes", "predict is not the argmax of predict_proba")
    # 6 classes 3 standard deviations apart, 4 shots: every registered method gets >= 35 of 36
    # queries right (measured: all 36 for each); a scrambled class order would score ~1/6.
    acc = float((pred == y[qry]).mean())
    _expect(acc >= 35 / 36, who, "shapes", f"accuracy {acc:.3f} on well-separated classes (want >= {35 / 36:.3f})")


def check_method_classes_order(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs(seed=1)
    m = build(x, y).fit(x[sup], y[sup])
    _expect(list(m.classes_) == sorted(set(y.tolist())), who, "classes_order", f"classes_ {list(m.classes_)} are not the sorted labels")
    p = m.predict_proba(x[qry])
    hit = float((m.classes_[p.argmax(1)] == y[qry]).mean())  # measured 1.0 for every registered method
    _expect(hit >= 35 / 36, who, "classes_order", f"column j of predict_proba is not class classes_[j]: the most probable "
            f"column names the true class for {hit:.3f} of the queries on well-separated classes (want >= {35 / 36:.3f})")
    # the support set reversed, given as a numpy view with a negative stride (x[::-1])
    p_rev = build(x, y).fit(x.numpy()[sup][::-1], y[sup][::-1]).predict_proba(x[qry])
    _expect(np.allclose(p, p_rev, atol=1e-4), who, "classes_order",
            f"reordering the support set changes the probabilities (max diff {np.abs(p - p_rev).max():.2e})")
    srt = sorted(set(y.tolist()))
    rename = {c: f"c{len(srt) - 1 - i}" for i, c in enumerate(srt)}  # sorted order reversed
    y2 = np.array([rename[v] for v in y.tolist()])
    m2 = build(x, y2).fit(x[sup], y2[sup])
    p2 = m2.predict_proba(x[qry])
    _expect(list(m2.classes_) == sorted(rename.values()), who, "classes_order", f"classes_ {list(m2.classes_)} not sorted")
    declared = getattr(type(m2), "class_order_dependent", None)
    if declared is None:
        _expect(np.allclose(p2[:, ::-1], p, atol=1e-4), who, "classes_order",
                f"renamed classes: columns do not follow classes_ (max diff {np.abs(p2[:, ::-1] - p).max():.2e})")
        return
    # a method that declares (with its reason) that its probabilities depend on which class is
    # encoded as column j: the columns must still follow classes_ (the right class wins), not match exactly
    _expect(isinstance(declared, str) and len(declared.strip()) >= 20, who, "classes_order",
            f"class_order_dependent must be a sentence giving the reason, got {declared!r}")
    hit2 = float((m2.classes_[p2.argmax(1)] == y2[qry]).mean())
    _expect(hit2 >= 35 / 36, who, "classes_order", f"renamed classes: the most probable column names the true class for "
            f"{hit2:.3f} of the queries (want >= {35 / 36:.3f})")
    warnings.warn(ContractWaiver(f"{who}: check_classes_order: renamed classes checked by accuracy only "
                                 f"(max diff {np.abs(p2[:, ::-1] - p).max():.2e} from the reversed columns), as "
                                 f"{type(m2).__name__}.class_order_dependent declares: {declared}"), stacklevel=2)


def check_method_deterministic(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs(seed=2)
    out = []
    for s in (1, 2):
        torch.manual_seed(s)
        np.random.seed(s)
        out.append(build(x, y).fit(x[sup], y[sup]).predict_proba(x[qry]))
    _expect(np.array_equal(out[0], out[1]), who, "deterministic",
            f"two fits under different global seeds differ (max diff {np.abs(out[0] - out[1]).max():.2e})")


def check_method_nan_features(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs()
    xs = x[sup].clone()
    xs[2, 3] = float("nan")
    with _raises(who, "nan_features", FeatureError, "support_features", "NaN"):
        build(x, y).fit(xs, y[sup])
    m = build(x, y).fit(x[sup], y[sup])
    xq = x[qry].clone()
    xq[0, 0] = float("inf")
    with _raises(who, "nan_features", FeatureError, "query_features", "NaN or inf"):
        m.predict_proba(xq)


def check_method_wrong_dimensions(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs()
    with _raises(who, "wrong_dimensions", FeatureError, "support_features"):
        build(x, y).fit(x[sup].reshape(len(sup), 4, 4), y[sup])
    with _raises(who, "wrong_dimensions", FeatureError, "support_labels", f"{len(sup) - 1} labels for {len(sup)}"):
        build(x, y).fit(x[sup], y[sup][:-1])
    m = build(x, y).fit(x[sup], y[sup])
    with _raises(who, "wrong_dimensions", FeatureError, "query_features", "dim 15", "16"):
        m.predict(x[qry][:, :15])


def check_method_missing_class(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs()
    keep = sup[y[sup] != "fig"]
    m = build(x, y).fit(x[keep], y[keep])
    _expect("fig" not in m.classes_.tolist(), who, "missing_class", "a class without support items is in classes_")
    with _raises(who, "missing_class", FeatureError, "'fig'", "missing from the support set"):
        m.score(x[qry], y[qry])
    acc = m.score(x[qry][y[qry] != "fig"], y[qry][y[qry] != "fig"])
    _expect(acc >= 29 / 30, who, "missing_class", f"score {acc:.3f} on the support classes (want >= {29 / 30:.3f})")
    if build.uses_text:
        with _raises(who, "missing_class", FeatureError, "class_text", "'fig'"):
            build(x, y, drop="fig").fit(x[sup], y[sup])


def check_method_save_load(name: str, params: dict | None = None) -> None:
    who, build = f"method {name!r}", _method_builder(name, params or {})
    x, y, sup, qry = _blobs()
    m = build(x, y).fit(x[sup], y[sup])
    p = m.predict_proba(x[qry])
    m2 = _round_trip(m, who)
    _expect(type(m2) is type(m), who, "save_load", f"loaded a {type(m2).__name__}")
    _expect(repr(m2.get_params()) == repr(m.get_params()), who, "save_load", "hyper-parameters changed")
    _expect(np.array_equal(m2.classes_, m.classes_), who, "save_load", "classes_ changed")
    _expect(np.array_equal(m2.predict_proba(x[qry]), p), who, "save_load", "predictions changed")


METHOD_CHECKS: dict[str, Callable] = {
    "shapes": check_method_shapes,
    "classes_order": check_method_classes_order,
    "deterministic": check_method_deterministic,
    "nan_features": check_method_nan_features,
    "wrong_dimensions": check_method_wrong_dimensions,
    "missing_class": check_method_missing_class,
    "save_load": check_method_save_load,
}


def check_method(name: str, **params) -> None:
    """Run every method check on the method registered as ``name`` built with ``params``.

    Raises
    ------
    AssertionError
        The first failed check, named (``"method 'x': check_shapes: ..."``).
    UnknownNameError
        ``name`` is not registered.
    """
    for check in METHOD_CHECKS.values():
        check(name, params)


# ------------------------------------------------------------------------------------------------
# heads
# ------------------------------------------------------------------------------------------------
def _mm(seed: int = 3):
    """8 classes x 8 items, image (32-d) + audio (24-d), 30% of the items miss one modality,
    8-d class text; support: the first 4 items of each class, query: the other 4."""
    from .heads.synthetic import make_synthetic

    f, _ = make_synthetic(n_classes=8, per_class=8, missing_fraction=0.3, text_dim=8, corrupt_modality=None, seed=seed)
    idx = np.arange(len(f))
    sup = idx[idx % 8 < 4]
    return f, _subset(f, sup), _subset(f, idx[idx % 8 >= 4])


def _subset(f, rows):
    from .multimodal import MMFeatures

    r = torch.as_tensor(np.asarray(rows))
    return MMFeatures({m: v[r] for m, v in f.features.items()}, f.mask[r], f.modalities, f.labels[np.asarray(rows)],
                      f.class_names, f.class_text, dict(f.info))


def _with_features(f, **changes):
    from .multimodal import MMFeatures

    kw = dict(features=f.features, mask=f.mask, modalities=f.modalities, labels=f.labels, class_names=f.class_names,
              class_text=f.class_text, info=dict(f.info))
    kw.update(changes)
    return MMFeatures(**kw)


def _head(name: str, f, params: dict, seed: int = 0):
    from . import heads as H

    h = H.create(name, f, seed=seed, **params)
    return h.eval()


def check_head_shapes(name: str, params: dict | None = None) -> None:
    from .episodes import sample_episodes
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    h = _head(name, f, params)
    batch = f.batch(sample_episodes(f.labels, 5, 2, 3, 4, seed=0))
    with torch.no_grad():
        logits, w = h(batch)
    _expect(tuple(logits.shape) == (4, 15, 5) and logits.dtype == torch.float32, who, "shapes",
            f"logits {tuple(logits.shape)} {logits.dtype}, want (4, 15, 5) float32")
    _expect(tuple(w.shape) == (4, 15, len(h.weight_names)), who, "shapes", f"weights {tuple(w.shape)}, want (4, 15, {len(h.weight_names)})")
    _expect(bool(torch.isfinite(logits).all() and torch.isfinite(w).all() and (w >= 0).all()), who, "shapes",
            "non-finite logits / weights or negative weights")
    clf = HeadClassifier(h)
    _expect(clf.fit(sup) is clf, who, "shapes", "HeadClassifier.fit does not return self")
    p = clf.predict_proba(qry)
    _expect(p.shape == (len(qry), 8) and p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-5), who, "shapes",
            f"predict_proba {p.shape} {p.dtype}")
    _expect(np.array_equal(clf.predict(qry), clf.classes_[p.argmax(1)]), who, "shapes", "predict is not the argmax of predict_proba")
    _expect(clf.explain(qry).shape == (len(qry), len(h.weight_names)), who, "shapes", "explain shape")


def check_head_classes_order(name: str, params: dict | None = None) -> None:
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    p = HeadClassifier(_head(name, f, params)).fit(sup).predict_proba(qry)
    rows = np.random.default_rng(0).permutation(len(sup))
    clf = HeadClassifier(_head(name, f, params)).fit(_subset(sup, rows))
    _expect(np.array_equal(clf.classes_, np.arange(8)), who, "classes_order", f"classes_ {clf.classes_.tolist()}")
    p_perm = clf.predict_proba(qry)
    _expect(np.allclose(p, p_perm, atol=1e-5), who, "classes_order",
            f"reordering the support set changes the probabilities (max diff {np.abs(p - p_perm).max():.2e})")
    # relabel class c as 7 - c (class text and names follow): columns must reverse
    ren = lambda g: _with_features(g, labels=7 - g.labels, class_names=g.class_names[::-1],  # noqa: E731
                                   class_text=None if g.class_text is None else g.class_text.flip(0))
    p2 = HeadClassifier(_head(name, ren(f), params)).fit(ren(sup)).predict_proba(ren(qry))
    _expect(np.allclose(p2[:, ::-1], p, atol=1e-5), who, "classes_order",
            f"renamed classes: columns do not follow classes_ (max diff {np.abs(p2[:, ::-1] - p).max():.2e})")


def check_head_deterministic(name: str, params: dict | None = None) -> None:
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    out, states = [], []
    for s in (1, 2):
        torch.manual_seed(s)
        before = torch.get_rng_state()
        h = _head(name, f, params, seed=7)
        _expect(torch.equal(before, torch.get_rng_state()), who, "deterministic", "create(seed=...) moved the global torch generator")
        states.append(h.state_dict())
        out.append(HeadClassifier(h).fit(sup).predict_proba(qry))
    _expect(all(torch.equal(a, b) for a, b in zip(states[0].values(), states[1].values())), who, "deterministic",
            "create(seed=7) gave different parameters under different global seeds")
    _expect(np.array_equal(out[0], out[1]), who, "deterministic", "predictions differ between two identical heads")


def check_head_nan_features(name: str, params: dict | None = None) -> None:
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    m = f.modalities[0] if not name.startswith("single:") else name.split(":", 1)[1]
    j = f.modalities.index(m)
    row = int(np.flatnonzero(sup.mask[:, j].numpy())[0])
    bad = _with_features(sup, features={k: v.clone() for k, v in sup.features.items()})
    bad.features[m][row, 0] = float("nan")  # after construction: MMFeatures itself refuses NaN when built
    with _raises(who, "nan_features", FeatureError, "support", "NaN"):
        HeadClassifier(_head(name, f, params)).fit(bad)
    clf = HeadClassifier(_head(name, f, params)).fit(sup)
    qrow = int(np.flatnonzero(qry.mask[:, j].numpy())[0])
    badq = _with_features(qry, features={k: v.clone() for k, v in qry.features.items()})
    badq.features[m][qrow, 1] = float("inf")
    with _raises(who, "nan_features", FeatureError, "query", "NaN"):
        clf.predict_proba(badq)


def check_head_wrong_dimensions(name: str, params: dict | None = None) -> None:
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    m = f.modalities[0] if not name.startswith("single:") else name.split(":", 1)[1]
    clf = HeadClassifier(_head(name, f, params)).fit(sup)
    wide = {k: (torch.cat([v, torch.zeros(len(v), 1)], 1) if k == m else v) for k, v in qry.features.items()}
    d = qry.features[m].shape[1]
    with _raises(who, "wrong_dimensions", FeatureError, repr(m), str(d), str(d + 1)):
        clf.predict_proba(_with_features(qry, features=wide))


def check_head_missing_class(name: str, params: dict | None = None) -> None:
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    keep = np.flatnonzero(sup.labels != 5)
    clf = HeadClassifier(_head(name, f, params)).fit(_subset(sup, keep))
    _expect(5 not in clf.classes_.tolist(), who, "missing_class", "a class without support items is in classes_")
    with _raises(who, "missing_class", FeatureError, "[5]", "missing from the support set"):
        clf.score(qry)
    # a class whose support items all lack the modalities the head reads cannot be scored
    h = _head(name, f, params)
    used = [f.modalities.index(u) for u in h.used_modalities]
    if len(used) < len(f.modalities):
        mask = sup.mask.clone()
        other = [j for j in range(len(f.modalities)) if j not in used]
        rows = torch.as_tensor(sup.labels == 2)
        mask[rows] = False
        mask[rows, other[0]] = True
        with _raises(who, "missing_class", FeatureError, "class 2", "no support item"):
            HeadClassifier(h).fit(_with_features(sup, mask=mask))


def check_head_save_load(name: str, params: dict | None = None) -> None:
    from .episodes import sample_episodes
    from .heads import HeadClassifier

    who, params = f"head {name!r}", params or {}
    f, sup, qry = _mm()
    h = _head(name, f, params)
    with torch.no_grad():  # perturb trained parameters away from their initial values
        for p_ in h.parameters():
            p_.add_(0.01 * torch.randn(p_.shape, generator=torch.Generator().manual_seed(5)))
    batch = f.batch(sample_episodes(f.labels, 5, 2, 3, 2, seed=1))
    h2 = _round_trip(h, who)
    with torch.no_grad():
        a, b = h(batch), h2(batch)
    _expect(type(h2) is type(h) and h2.config() == h.config(), who, "save_load", "the head's class or config changed")
    _expect(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), who, "save_load", "head outputs changed")
    clf = HeadClassifier(h).fit(sup)
    p = clf.predict_proba(qry)
    clf2 = _round_trip(clf, who)
    _expect(np.array_equal(clf2.classes_, clf.classes_) and np.array_equal(clf2.predict_proba(qry), p), who, "save_load",
            "the fitted classifier's predictions changed")


HEAD_CHECKS: dict[str, Callable] = {
    "shapes": check_head_shapes,
    "classes_order": check_head_classes_order,
    "deterministic": check_head_deterministic,
    "nan_features": check_head_nan_features,
    "wrong_dimensions": check_head_wrong_dimensions,
    "missing_class": check_head_missing_class,
    "save_load": check_head_save_load,
}


def check_head(name: str, **params) -> None:
    """Run every head check on the head registered as ``name`` (``"single:image"`` style names
    too) built with ``params``, on synthetic image + audio features with class text.

    Raises
    ------
    AssertionError
        The first failed check, named.
    """
    for check in HEAD_CHECKS.values():
        check(name, params)


# ------------------------------------------------------------------------------------------------
# learners (the engine's protocol)
# ------------------------------------------------------------------------------------------------
_LEARNER_METHODS = ("batch", "logits", "targets", "inner_task", "adapted_parameters", "evaluate", "describe")


def _learner(name: str, params: dict, seed: int = 0):
    from .engine import LEARNERS

    factory = LEARNERS.get(name)
    example = getattr(factory, "contract_example", None)
    if example is None:
        raise _Fail(f"learner {name!r}: check_protocol: {getattr(factory, '__name__', factory)!r} has no "
                    "contract_example(seed) classmethod giving a small instance to check")
    return example(seed=seed, **params)


def _episodes(learner, seed: int = 0, n_episodes: int = 3):
    from .episodes import sample_episodes

    return sample_episodes(np.asarray(learner.labels), 3, 1, 2, n_episodes, seed=seed)


def check_learner_protocol(learner, who: str = "learner") -> None:
    """The instance has every member of the protocol, and ``describe()`` is JSON."""
    missing = [m for m in ("model", "labels") + _LEARNER_METHODS if not hasattr(learner, m)]
    _expect(not missing, who, "protocol", f"missing {missing}")
    _expect(isinstance(learner.model, torch.nn.Module), who, "protocol", f"model is a {type(learner.model).__name__}, not an nn.Module")
    try:
        json.dumps(learner.describe())
    except TypeError as e:
        raise _Fail(f"{who}: check_protocol: describe() is not JSON-serialisable: {e}") from None


def check_learner_shapes(learner, who: str = "learner") -> None:
    ep = _episodes(learner)
    e, n, k, m = len(ep), 3, 1, 3 * 2
    batch = learner.batch(ep)
    with torch.no_grad():
        lg = learner.logits(batch)
    _expect(tuple(lg.shape) == (e, m, n) and lg.is_floating_point() and bool(torch.isfinite(lg).all()), who, "shapes",
            f"logits {tuple(lg.shape)} {lg.dtype}, want ({e}, {m}, {n}) finite float")
    t = learner.targets(batch)
    _expect(tuple(t.shape) == (e, m) and t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) < n, who, "shapes",
            f"targets {tuple(t.shape)} {t.dtype}, want ({e}, {m}) int64 in [0, {n})")
    mod, sx, sy, qx, qy = learner.inner_task(batch)
    with torch.no_grad():
        out = mod(sx)
    _expect(tuple(out.shape) == (e, n * k, n), who, "shapes", f"inner module on support rows gave {tuple(out.shape)}, want ({e}, {n * k}, {n})")
    _expect(tuple(sy.shape) == (e, n * k) and tuple(qy.shape) == (e, m), who, "shapes", "inner-task labels")
    acc = np.asarray(learner.evaluate(ep))
    _expect(acc.shape == (e,) and bool(np.all((acc >= 0) & (acc <= 1))), who, "shapes", f"evaluate gave {acc!r}")


def check_learner_deterministic(learner, who: str = "learner") -> None:
    ep = _episodes(learner, seed=4)
    learner.model.eval()
    with torch.no_grad():
        a = learner.logits(learner.batch(ep, step=3))
        torch.manual_seed(99)
        b = learner.logits(learner.batch(ep, step=3))
    _expect(torch.equal(a, b), who, "deterministic", "the same (episodes, step) gave different logits")


def check_learner_adapted_parameters(learner, who: str = "learner") -> None:
    batch = learner.batch(_episodes(learner))
    mod = learner.inner_task(batch)[0]
    names = {n for n, _ in mod.named_parameters()}
    cls, every = learner.adapted_parameters("classifier"), learner.adapted_parameters("all")
    _expect(bool(cls) and set(cls) <= set(every) <= names, who, "adapted_parameters",
            f"classifier {cls} must be a non-empty subset of all {every}, itself of the module's parameters")
    with _raises(who, "adapted_parameters", ValueError, "'nonsense'"):
        learner.adapted_parameters("nonsense")


def check_learner_save_load(learner, who: str = "learner", rebuild: Callable | None = None) -> None:
    from safetensors.torch import load_file, save_file

    ep = _episodes(learner, seed=2)
    learner.model.eval()
    with torch.no_grad():
        for p_ in learner.model.parameters():
            p_.add_(0.01)
        want = learner.logits(learner.batch(ep))
    with tempfile.TemporaryDirectory() as d:
        state = {k: v.detach().cpu().clone().contiguous() for k, v in learner.model.state_dict().items()}
        save_file(state, str(Path(d) / "model.safetensors"))
        (Path(d) / "learner.json").write_text(json.dumps(learner.describe()))
        other = rebuild() if rebuild is not None else learner
        with disabled_pickle():
            other.model.load_state_dict(load_file(str(Path(d) / "model.safetensors")))
            json.loads((Path(d) / "learner.json").read_text())
    other.model.eval()
    with torch.no_grad():
        got = other.logits(other.batch(ep))
    _expect(torch.equal(got, want), who, "save_load", "logits changed after a safetensors round trip of the weights")


def check_learner_bad_episodes(learner, who: str = "learner") -> None:
    """Episodes pointing outside the learner's items (sampled from another table) raise
    EpisodeError naming the range and the table size, not a deep IndexError."""
    from .episodes import Episodes
    from .errors import EpisodeError

    ep = _episodes(learner)
    n = len(learner.labels)
    bad = Episodes(ep.classes, ep.support + n, ep.query, ep.seed)
    with _raises(who, "bad_episodes", EpisodeError, "support indices", f"has {n} rows"):
        learner.logits(learner.batch(bad))


def check_learner_bad_inputs(learner, who: str = "learner") -> None:
    """Bad data is refused when the learner is built, with a FeatureError naming what is wrong:
    features with a NaN, features whose dimension does not fit the model (the learner class's
    ``contract_example(bad="nan" | "dim")``); and tasks over a class with no item in the table
    (a class missing from every support set) raise EpisodeError naming the class. (A class with
    no support item inside an episode cannot be expressed: ``Episodes.support`` has shape
    (E, N, K), K items for each of the N classes.)"""
    from .engine import fixed_tasks
    from .errors import EpisodeError, FeatureError

    make = getattr(type(learner), "contract_example", None)
    _expect(make is not None, who, "bad_inputs", "the learner class has no contract_example(seed, bad=...)")
    with _raises(who, "bad_inputs", FeatureError, "NaN"):
        make(seed=0, bad="nan")
    with _raises(who, "bad_inputs", FeatureError, "dim"):
        make(seed=0, bad="dim")
    classes = np.unique(np.asarray(learner.labels))
    absent = int(classes.max()) + 7
    with _raises(who, "bad_inputs", EpisodeError, f"[{absent}]", "no item"):
        fixed_tasks(np.asarray(learner.labels), [*classes[:2].tolist(), absent], 3, 1, 1, 2, seed=0)


LEARNER_CHECKS: dict[str, Callable] = {
    "protocol": check_learner_protocol,
    "bad_episodes": check_learner_bad_episodes,
    "bad_inputs": check_learner_bad_inputs,
    "shapes": check_learner_shapes,
    "deterministic": check_learner_deterministic,
    "adapted_parameters": check_learner_adapted_parameters,
    "save_load": check_learner_save_load,
}


def check_learner(learner, name: str | None = None, rebuild: Callable | None = None) -> None:
    """Run every learner check on the instance ``learner`` (engine protocol).

    Parameters
    ----------
    learner : object following ``fewmm.engine.Learner``
    name : str, optional
        How messages name it (default: its ``kind`` attribute or class name).
    rebuild : callable, optional
        ``rebuild() -> learner`` of the same configuration and fresh weights, used by the
        save/load check (default: load into ``learner`` itself).
    """
    who = f"learner {name or getattr(learner, 'kind', type(learner).__name__)!r}"
    for key, check in LEARNER_CHECKS.items():
        if key == "bad_inputs" and not hasattr(type(learner), "contract_example"):
            continue  # an unregistered learner class may not know how to build itself on bad data (registered ones must)
        if key == "save_load":
            check(learner, who, rebuild)
        else:
            check(learner, who)


# ------------------------------------------------------------------------------------------------
# the registries -> cases
# ------------------------------------------------------------------------------------------------
def contract_cases(kinds=("method", "head", "learner")) -> list[ContractCase]:
    """Every registered component, as cases for :func:`run_check`.

    Methods: one case per name of :data:`fewmm.methods.METHODS` and per entry of its
    ``contract_variants`` (lambdas, e.g. ``protonet``, have none: the defaults). Heads: one case per name of
    :data:`fewmm.heads.HEADS` and per entry of the head class's ``contract_variants`` (a tuple of
    hyper-parameter dicts; default ``({},)``), ``single`` expanded to ``single:image`` and
    ``single:audio``. Learners: one per name of ``fewmm.engine.LEARNERS`` when the engine is
    installed (none otherwise).
    """
    out: list[ContractCase] = []
    if "method" in kinds:
        from .methods import METHODS

        for n in METHODS.names():
            out += [ContractCase("method", n, dict(v)) for v in getattr(METHODS.get(n), "contract_variants", ({},))]
    if "head" in kinds:
        from .heads import HEADS

        for n in HEADS.names():
            names = ["single:image", "single:audio"] if n == "single" else [n]
            for variant in getattr(HEADS.get(n), "contract_variants", ({},)):
                out += [ContractCase("head", nn, dict(variant)) for nn in names]
    if "learner" in kinds:
        try:
            from .engine import LEARNERS
        except ImportError:
            LEARNERS = None
        if LEARNERS is not None:
            out += [ContractCase("learner", n) for n in LEARNERS.names()]
    return out


def run_check(case: ContractCase, check: str) -> None:
    """Run the check named ``check`` (a key of the kind's ``*_CHECKS``) on ``case``."""
    if case.kind == "method":
        METHOD_CHECKS[check](case.name, case.params)
    elif case.kind == "head":
        HEAD_CHECKS[check](case.name, case.params)
    elif case.kind == "learner":
        who = f"learner {case.name!r}"
        learner = _learner(case.name, case.params)
        if check == "save_load":
            LEARNER_CHECKS[check](learner, who, lambda: _learner(case.name, case.params, seed=1))
        else:
            LEARNER_CHECKS[check](learner, who)
    else:
        raise ValueError(f"unknown component kind {case.kind!r}; expected 'method', 'head' or 'learner'")
