"""Hyper-parameter and input validation of the scikit-learn style methods: exact messages and
the boundary values (found by mutation testing, benchmarks/mutation.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse
import torch

import fewmm.methods as M
from fewmm.errors import FeatureError
from fewmm.methods.base import check_features, check_labels

X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
Y = np.repeat([0, 1, 2], 4)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "2"])
def test_protonet_temperature(bad):
    with pytest.raises(ValueError, match=rf"^temperature must be a positive finite number, got {bad!r}$".replace("(", r"\(")):
        M.create("protonet-cosine", temperature=bad)


def test_valid_boundaries_are_accepted():
    M.create("protonet-cosine", temperature=0.5).fit(X, Y)
    M.create("protonet", temperature=np.float32(1e-3)).fit(X, Y)
    M.create("knn", k=np.int64(2)).fit(X, Y)
    p = M.create("linear-probe", C=0.5, tol=1e-9, max_iter=1).fit(X, Y)
    assert p.n_iter_ == 1
    assert M.create("linear-probe", max_iter=2, exact_span=False).fit(X, Y).n_iter_ <= 2


@pytest.mark.parametrize("bad", [0, True, 1.5, "2"])
def test_knn_k(bad):
    with pytest.raises(ValueError, match=rf"^k must be an int >= 1, got {bad!r}$"):
        M.create("knn", k=bad)


@pytest.mark.parametrize("key", ["C", "tol"])
@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), True, "x"])
def test_linear_probe_positive_numbers(key, bad):
    with pytest.raises(ValueError, match=rf"^{key} must be a positive finite number, got {bad!r}$"):
        M.create("linear-probe", **{key: bad})


@pytest.mark.parametrize("bad", [0, True, 1.5, "3"])
def test_linear_probe_max_iter(bad):
    with pytest.raises(ValueError, match=rf"^max_iter must be an int >= 1, got {bad!r}$"):
        M.create("linear-probe", max_iter=bad)


def test_linear_probe_solver_and_span_flag():
    with pytest.raises(ValueError, match=r"^solver must be a scikit-learn LogisticRegression solver name, got 3$"):
        M.create("linear-probe", solver=3)
    with pytest.raises(ValueError, match=r"^exact_span must be True or False, got 'yes'$"):
        M.create("linear-probe", exact_span="yes")


def test_linear_probe_iterations():
    assert M.create("linear-probe").fit(X[:4], Y[:4]).n_iter_ == 0  # one class: nothing to fit
    m = M.create("linear-probe").fit(X, Y)
    assert m.n_iter_ == int(np.max(m.clf_.n_iter_)) and m.n_iter_ >= 1


def test_a_metric_broken_after_fit_is_caught():
    m = M.create("protonet-cosine").fit(X, Y)
    m.metric = "manhattan"
    with pytest.raises(ValueError, match=r"^metric must be 'euclidean' or 'cosine', got 'manhattan'$"):
        m.decision_function(X)


def test_feature_input_messages():
    with pytest.raises(FeatureError, match=r"^support_features is a scipy sparse matrix; few-shot methods need dense features: "
                                           r"pass support_features\.toarray\(\)$"):
        M.create("protonet").fit(scipy.sparse.csr_matrix(X), Y)
    with pytest.raises(FeatureError, match=r"^support_features has complex values \(dtype torch\.complex64\): Complex data not supported"):
        M.create("protonet").fit(torch.ones((12, 3), dtype=torch.complex64), Y)
    with pytest.raises(TypeError, match=r"^support_features must hold numbers only: "):
        M.create("protonet").fit(np.array([["a", 1.0, 2.0]] * 12, dtype=object), Y)
    obj = X.astype(object)  # numbers stored as objects (a DataFrame's values): accepted
    assert np.allclose(M.create("protonet").fit(obj, Y).prototypes_.numpy(), M.create("protonet").fit(X, Y).prototypes_.numpy())
    ro = X.copy()
    ro.flags.writeable = False  # a read-only buffer (memmap): accepted, without torch's warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.create("protonet").fit(ro, Y)
    with pytest.raises(FeatureError, match=r"^features must have shape \(n, dim\), got shape \(3,\): Reshape your data with "
                                           r"x\.reshape\(1, -1\) if it is one item$"):
        check_features(X[0])
    with pytest.raises(FeatureError, match=r"^features must have shape \(n, dim\), got shape \(1, 12, 3\)$"):
        check_features(X[None])
    with pytest.raises(FeatureError, match=r"^features has 0 feature\(s\) \(shape=\(12, 0\)\) while a minimum of 1 is required\.$"):
        check_features(X[:, :0])
    assert check_features(X[:, :1]).shape == (12, 1)  # one feature is fine
    with pytest.raises(FeatureError, match=r"\(X has 2 features, but the method is expecting 3 features as input\)$"):
        check_features(X[:, :2], dim=3)
    with pytest.raises(FeatureError, match=r"\(X has 2 features, but KNN is expecting 3 features as input\)$"):
        M.create("knn").fit(X, Y).predict(X[:, :2])


def test_label_messages():
    with pytest.raises(FeatureError, match=r"^support_labels is None: fit requires y to be passed"):
        check_labels(None, 12)
    with pytest.warns(Warning, match="column-vector y"):
        assert check_labels(Y[:, None], 12).tolist() == Y.tolist()
    with pytest.raises(FeatureError, match=r"^support_labels must have shape \(n,\), got shape \(12, 1, 1\)$"):
        check_labels(Y[:, None, None], 12)
    with pytest.raises(FeatureError, match=r"^support_labels must be class labels: Unknown label type"):
        check_labels(np.linspace(0, 1, 12), 12)


def test_is_fitted_for_scikit_learn():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    m = M.create("simpleshot")
    with pytest.raises(NotFittedError):
        check_is_fitted(m)
    check_is_fitted(m.fit(X, Y))


def test_scikit_learn_tags():
    t = M.create("knn").__sklearn_tags__()
    assert t.estimator_type == "classifier" and t.transformer_tags is None
    assert t.target_tags.required is True and t.target_tags.multi_output is False
    assert t.input_tags.two_d_array is True and t.input_tags.string is False and t.input_tags.dict is False
    assert t.classifier_tags.multi_class is True and t.classifier_tags.multi_label is False
    assert t.non_deterministic is False


def test_old_transform_hook_is_moved_with_a_warning():
    with pytest.warns(DeprecationWarning) as rec:
        class Old(M.ProtoNet):
            def transform(self, features):
                return features * 2

    assert len(rec) == 1
    assert str(rec[0].message) == ("Old.transform: the feature-transform hook of FewShotMethod is now called transform_features "
                                   "(scikit-learn takes an estimator with `transform` for a transformer); it was moved there")
    assert "transform" not in Old.__dict__ and Old().transform_features(torch.ones(1, 2)).tolist() == [[2.0, 2.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class New(M.ProtoNet):  # both defined: left alone, no warning
            def transform(self, features):
                return features

            def transform_features(self, features):
                return features * 3

    assert "transform" in New.__dict__ and New().transform_features(torch.ones(1, 1)).item() == 3.0
