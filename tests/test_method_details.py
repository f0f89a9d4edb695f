"""Details of the methods that the contract tests do not pin (found by mutation testing,
benchmarks/mutation.py): unequal shots per class in fit/predict against a numpy reference, the
linear probe's one-class and binary cases and the parameters it hands to scikit-learn, the
generic per-episode loop, exact error messages, hyper-parameter defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import fewmm.methods as M
from fewmm.episodes import sample_episodes
from fewmm.errors import FeatureError
from fewmm.evaluate import evaluate_episodes
from fewmm.methods.base import FewShotMethod, check_features, check_labels


def data(n_classes=4, dim=12, seed=0, counts=(1, 2, 5, 3)):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), counts)
    x = (centers[y] + 0.8 * rng.normal(size=(y.size, dim))) * np.exp(rng.normal(0, 0.5, (y.size, 1)))
    q = centers[rng.integers(0, n_classes, 30)] + 0.8 * rng.normal(size=(30, dim))
    return x.astype(np.float32), y, q.astype(np.float32)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _means(x, y, n):
    return np.stack([x[y == c].mean(0) for c in range(n)])


@pytest.mark.parametrize("name", ["protonet", "protonet-cosine", "simpleshot"])
def test_unequal_shots_per_class_against_numpy(name):
    """One class with a single shot, others with 2-5: every prototype is its class mean."""
    x, y, q = data()
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if name == "protonet":
        ref = -((q64[:, None] - _means(x64, y, 4)[None]) ** 2).sum(-1)
    elif name == "protonet-cosine":
        ref = 10.0 * _unit(q64) @ _unit(_means(_unit(x64), y, 4)).T
    else:
        mu = x64.mean(0)
        ref = -((_unit(q64 - mu)[:, None] - _means(_unit(x64 - mu), y, 4)[None]) ** 2).sum(-1)
    got = M.create(name).fit(x, y).decision_function(q)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_linear_probe_one_class_and_binary():
    x, y, q = data(n_classes=3, counts=(4, 4, 4))
    one = M.create("linear-probe").fit(x[:4], np.full(4, 7))
    assert one.n_classes_ == 1 and one.clf_ is None
    assert one.predict(q).tolist() == [7] * 30
    p = one.predict_proba(q)
    assert p.shape == (30, 1) and p.dtype == np.float32 and (p == 1).all()
    from sklearn.linear_model import LogisticRegression

    xn = _unit(x[:8].astype(np.float64))
    qn = _unit(q.astype(np.float64))
    ref = LogisticRegression(C=10.0, max_iter=20000, tol=1e-10).fit(xn, y[:8]).predict_proba(qn)
    two = M.create("linear-probe").fit(x[:8], y[:8])
    assert two.n_classes_ == 2
    p2 = two.predict_proba(q)
    assert p2.shape == (30, 2)
    np.testing.assert_allclose(p2, ref, atol=1e-5)
    # two classes: one logit per query, that of classes_[1] (scikit-learn's convention)
    ref_z = LogisticRegression(C=10.0, max_iter=20000, tol=1e-10).fit(xn, y[:8]).decision_function(qn)
    np.testing.assert_allclose(two.decision_function(q), ref_z, atol=1e-4)


def test_linear_probe_hands_its_parameters_to_sklearn_and_uses_the_span_only_when_d_exceeds_n():
    x, y, q = data(n_classes=3, counts=(4, 4, 4), dim=12)
    m = M.create("linear-probe", C=3.0, tol=1e-6).fit(x, y)  # n = 12 = d: no span basis
    assert m.basis_ is None
    sk = m.clf_.get_params()
    assert (sk["C"], sk["max_iter"], sk["tol"], sk["solver"]) == (3.0, 1000, 1e-6, "newton-cholesky")
    assert m.get_params() == {"C": 3.0, "max_iter": 1000, "tol": 1e-6, "solver": "newton-cholesky", "exact_span": True}
    assert M.create("linear-probe").get_params()["max_iter"] == 1000
    m = M.create("linear-probe").fit(x[:11], y[:11])  # n = 11 < d = 12
    assert m.basis_.shape == (12, 11)
    assert M.create("linear-probe", exact_span=False).fit(x[:11], y[:11]).basis_ is None


def test_defaults():
    assert M.create("knn").get_params() == {"k": 1}
    assert M.create("protonet").get_params() == {"metric": "euclidean", "temperature": 10.0}
    assert M.create("protonet-cosine").get_params() == {"metric": "cosine", "temperature": 10.0}
    assert M.create("simpleshot").get_params() == {}


def test_error_messages():
    x, y, q = data()
    with pytest.raises(ValueError, match=r"^k must be an int >= 1, got 0$"):
        M.create("knn", k=0)
    with pytest.raises(ValueError, match=r"^metric must be 'euclidean' or 'cosine', got 'manhattan'$"):
        M.ProtoNet(metric="manhattan").fit(x, y)
    with pytest.raises(NotFittedError, match=r"^SimpleShot is not fitted yet: call fit\(support_features, support_labels\) first$"):
        M.create("simpleshot").predict(q)
    with pytest.raises(FeatureError, match=r"^support_features must be a numeric array of shape \(n, dim\): "):
        M.create("protonet").fit([[1.0, 2.0], [3.0]], [0, 1])
    with pytest.raises(FeatureError, match=r"^support_features has complex values \(dtype complex64\): Complex data not supported"):
        M.create("protonet").fit(np.ones((4, 3), dtype=np.complex64), [0, 0, 1, 1])
    with pytest.raises(FeatureError, match=r"^support_features must be a real numeric array, got dtype torch.bool$"):
        M.create("protonet").fit(np.ones((4, 3), dtype=bool), [0, 0, 1, 1])
    ints = M.create("protonet").fit(np.arange(12, dtype=np.int64).reshape(4, 3), [0, 0, 1, 1])  # integer features are fine
    assert ints.prototypes_.dtype == torch.float32
    bad = x.copy()
    bad[[0, 2, 3, 5, 6, 8, 9]] = np.inf
    with pytest.raises(FeatureError, match=r"^support_features contains NaN or inf values in 7 rows \(first rows: \[0, 2, 3, 5, 6\]\)$"):
        M.create("protonet").fit(bad, y)
    with pytest.raises(FeatureError, match=r"^features contains NaN or inf values in 7 rows"):
        check_features(bad)
    with pytest.raises(FeatureError, match=r"^features must have shape \(n, dim\)"):
        check_features(x[0])
    with pytest.raises(FeatureError, match=r"^base_features contains NaN"):
        M.create("simpleshot").fit_base(bad)
    with pytest.raises(FeatureError, match=r"^support_labels must have shape \(n,\), got shape \(11, 2\)$"):
        M.create("protonet").fit(x, np.stack([y, y], 1))
    with pytest.raises(FeatureError, match=r"^support_labels contains NaN$"):
        M.create("protonet").fit(x, np.where(y == 1, np.nan, y.astype(float)))
    # float labels without NaN, and labels as a tensor that requires grad, are fine
    assert M.create("protonet").fit(x, y.astype(float)).classes_.tolist() == [0.0, 1.0, 2.0, 3.0]
    yt = torch.as_tensor(y, dtype=torch.float32).requires_grad_(True)
    assert check_labels(yt, len(y)).tolist() == y.astype(np.float32).tolist()


def test_simpleshot_base_dim_check_and_row_wise_transform():
    x, y, q = data()
    m = M.create("simpleshot").fit_base(x)
    with pytest.raises(FeatureError, match=r"^features have dim 8, base features had dim 12$"):
        m.transform_features(torch.as_tensor(q[:, :8]))
    # the transform acts row by row, also on a batch of shape (E, M, d)
    t = torch.as_tensor(q)
    assert torch.allclose(m.transform_features(t.reshape(3, 10, 12)).reshape(30, 12), m.transform_features(t))
    with pytest.raises(FeatureError, match=r"^features have dim 8, base features had dim 12$"):
        m.transform_features(t[:, :8].reshape(3, 10, 8))


class NearestMeanLoop(FewShotMethod):
    """A minimal method without its own episode_logits: scored by the generic per-episode loop."""

    def _fit(self, x, y, n_classes):
        self.means_ = torch.stack([x[y == c].mean(0) for c in range(n_classes)])

    def _logits(self, q):
        return -torch.cdist(q, self.means_)


def test_generic_episode_loop_equals_fit_predict():
    x, y, _ = data(n_classes=8, counts=(6,) * 8, dim=10, seed=3)
    ep = sample_episodes(y, 4, 2, 3, 9, seed=1)
    acc = evaluate_episodes(NearestMeanLoop(), x, ep, chunk_size=4)
    loop = [(NearestMeanLoop().fit(x[ep.support[e].ravel()], ep.support_labels()[e]).predict(x[ep.query[e].ravel()])
             == ep.query_labels()[e]).mean() for e in range(len(ep))]
    assert np.array_equal(acc, loop)
