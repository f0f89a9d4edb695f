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


def test_old_transform_hook_warning_points_at_its_def():
    # warn_explicit at the hook's def line: independent of the call stack (mutation testing wraps calls).
    with pytest.warns(DeprecationWarning) as rec:
        class Old(M.ProtoNet):
            def transform(self, features):
                return features

    assert (rec[0].filename, rec[0].lineno) == (__file__, Old.transform_features.__code__.co_firstlineno)
    with pytest.warns(DeprecationWarning) as rec:
        class Static(M.ProtoNet):
            @staticmethod
            def transform(features):
                return features

    assert (rec[0].filename, rec[0].lineno) == (__file__, Static.transform_features.__code__.co_firstlineno)
    import functools

    with pytest.warns(DeprecationWarning) as rec:
        class Partial(M.ProtoNet):  # no code object: no location to point at
            transform = functools.partial(lambda self, features: features)

    assert (rec[0].filename, rec[0].lineno) == ("<unknown>", 0)
    with warnings.catch_warnings():  # a filter by the subclass's module applies to it
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", category=DeprecationWarning, module=__name__.replace(".", r"\."))
        with pytest.raises(DeprecationWarning, match=r"^Mod\.transform: "):
            class Mod(M.ProtoNet):
                def transform(self, features):
                    return features


def test_read_only_input_is_copied_writable_input_is_not():
    ro = X.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writable numpy buffer
        t = check_features(ro)
    assert not np.shares_memory(t.numpy(), ro) and torch.equal(t, torch.from_numpy(X))
    rw = X.copy()  # float32 and writable: the table is used in place, not copied
    assert np.shares_memory(check_features(rw).numpy(), rw)


def test_object_numbers_become_float32():
    t = check_features(X.astype(object))
    assert t.dtype == torch.float32 and torch.equal(t, torch.from_numpy(X))


@pytest.mark.parametrize("name", ["protonet", "knn", "linear-probe", "simpleshot"])
def test_tensors_that_require_grad(name):
    # _as_tensor detaches; scikit-learn's check_array would call .numpy() on it and fail, so the
    # feature-name bookkeeping must not run check_array (skip_check_array=True) in fit or predict.
    xg = torch.from_numpy(X).requires_grad_(True)
    m = M.create(name).fit(xg, Y)
    ref = M.create(name).fit(X, Y)
    assert np.array_equal(m.predict(xg), ref.predict(X)) and m.n_features_in_ == 3
    np.testing.assert_array_equal(m.predict_proba(xg), ref.predict_proba(X))
    np.testing.assert_array_equal(m.decision_function(xg), ref.decision_function(X))


def test_feature_names_of_a_dataframe():
    # scikit-learn's feature-name tracking (validate_data): names recorded in fit, checked in predict.
    import pandas as pd  # a dev dependency (scikit-learn's DataFrame checks use it too)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    m = M.create("protonet").fit(df, Y)
    assert m.feature_names_in_.tolist() == ["a", "b", "c"] and m.n_features_in_ == 3
    np.testing.assert_array_equal(m.predict_proba(df), M.create("protonet").fit(X, Y).predict_proba(X))
    with pytest.raises(ValueError, match=r"The feature names should match those that were passed during fit"):
        m.predict(pd.DataFrame(X, columns=["a", "c", "b"]))
    assert m.feature_names_in_.tolist() == ["a", "b", "c"]  # predict does not reset them
    with pytest.warns(UserWarning, match=r"^X does not have valid feature names, but ProtoNet was fitted with feature names$"):
        m.predict(X)
    m.fit(X, Y)  # refit without names: the old ones are dropped
    assert not hasattr(m, "feature_names_in_")
    with pytest.warns(UserWarning, match=r"^X has feature names, but ProtoNet was fitted without feature names$"):
        m.predict(df)


@pytest.mark.parametrize("name", ["zero-shot", "tip-adapter", "lp++"])
def test_class_text_methods_refuse_episode_local_labels(name):
    m = M.create(name, class_text="support-means")
    with pytest.raises(FeatureError) as e:
        m.episode_logits(torch.zeros(1, 2, 1, 3), torch.zeros(1, 2, 3))
    assert str(e.value) == (f"{type(m).__name__} uses class text and needs each episode's real class labels: "
                            "score it with fit(support_features, support_labels) / predict_proba(query_features) "
                            "per episode (fewmm.bench.transfer does), not with episode-local labels")


def test_text_prototypes_messages_and_shapes():
    from fewmm.methods.text import text_prototypes

    def msg(ct, classes=("a",), dim=2):
        with pytest.raises(FeatureError) as e:
            text_prototypes(ct, list(classes), dim=dim)
        return str(e.value)

    assert msg([[1.0, 0.0]]) == "class_text must be a mapping {class label: embedding}, got list"
    many = {i: [1.0, 0.0] for i in range(10)}
    assert msg(many, classes=[np.int64(42)]) == ("class_text has no entry for class 42 (a support label); it has 10 classes, "
                                                 "e.g. [0, 1, 2, 3, 4, 5, 6, 7]")
    assert msg({"a": np.ones((1, 1, 2))}) == "class_text['a'] must have shape (d,) or (n_templates, d), got (1, 1, 2)"
    assert msg({"a": np.ones((0, 2))}) == "class_text['a'] must have shape (d,) or (n_templates, d), got (0, 2)"
    assert msg({"a": [1.0, 0.0, 0.0]}) == ("class_text['a'] has dim 3, but the item features have dim 2: "
                                           "text and items must live in one space (an aligned pair)")
    assert msg({"a": [[1.0, 0.0], [0.0, 0.0]]}) == "class_text['a'] has a zero vector (cannot be normalised)"  # one template row
    assert msg({"a": [np.nan, 1.0]}) == "class_text['a'] contains NaN or inf"
    # a float64 tensor that requires grad: detached, float32, prompt-ensembled (rows normalised, averaged, normalised)
    t = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    p = text_prototypes({"a": t, "b": [0.0, -5.0]}, ["a", "b"], dim=2)
    ref = np.array([[0.6, 0.8 + 1.0], [0.0, -2.0]]) / np.array([[np.hypot(0.6, 1.8)], [2.0]])
    assert p.dtype == torch.float32 and not p.requires_grad
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-6)


def test_clip_adapter_bottleneck_width_is_at_least_one():
    x3 = X[:, :3]
    m = M.create("clip-adapter", class_text="support-means", reduction=4, epochs=1).fit(x3, Y)  # 3 // 4 = 0 -> width 1
    assert tuple(m.adapter_[0].weight.shape) == (1, 3) and tuple(m.adapter_[2].weight.shape) == (3, 1)
    m = M.create("clip-adapter", class_text="support-means", reduction=1, epochs=1).fit(x3, Y)
    assert tuple(m.adapter_[0].weight.shape) == (3, 3)


@pytest.mark.parametrize("kw, msg", [
    ({"reduction": 0}, "CLIPAdapter: reduction must be an integer >= 1, got 0"),
    ({"reduction": 2.0}, "CLIPAdapter: reduction must be an integer >= 1, got 2.0"),
    ({"epochs": -1}, "CLIPAdapter: epochs must be an integer >= 0, got -1"),
    ({"ratio": 1.5}, "CLIPAdapter: ratio must be a number in [0, 1], got 1.5"),
    ({"ratio": True}, "CLIPAdapter: ratio must be a number in [0, 1], got True"),
    ({"ratio": "x"}, "CLIPAdapter: ratio must be a number in [0, 1], got 'x'"),
    ({"lr": 0.0}, "CLIPAdapter: lr must be a finite number > 0, got 0.0"),
    ({"weight_decay": -1e-3}, "CLIPAdapter: weight_decay must be a finite number >= 0, got -0.001"),
])
def test_text_method_parameter_rules(kw, msg):
    with pytest.raises(ValueError) as e:
        M.create("clip-adapter", **kw)
    assert str(e.value) == msg


def test_text_method_parameter_rule_boundaries_and_finite():
    M.create("clip-adapter", ratio=1, reduction=1, epochs=0).check_params()  # [0, 1] is closed; 1 is an integer >= 1
    M.create("clip-adapter", ratio=0.0, reduction=np.int64(3)).check_params()
    M.create("cross-modal-lp", text_copies=1).check_params()
    with pytest.raises(ValueError) as e:
        M.create("cross-modal-lp", text_copies=0)
    assert str(e.value) == "CrossModalLinearProbe: text_copies must be an integer >= 1, got 0"
    M.create("lp++", alpha_init=-3.0).check_params()  # "finite": any sign
    with pytest.raises(ValueError) as e:
        M.create("lp++", alpha_init=float("inf"))
    assert str(e.value) == "LPPlusPlus: alpha_init must be a finite number, got inf"


@pytest.mark.parametrize("ct, got", [(3, "'int'"), ("means", "'means'")])
def test_class_text_kind_message(ct, got):
    with pytest.raises(FeatureError) as e:
        M.create("zero-shot", class_text=ct)
    assert str(e.value) == f"class_text must be a mapping {{class label: embedding}} or 'support-means', got {got}"


def test_text_methods_store_their_class_text_prototypes():
    from fewmm.methods.text import text_prototypes

    ct = {0: [1.0, 0.0, 0.0], 1: [0.0, 2.0, 0.0], 2: [0.0, 0.0, -1.0]}
    m = M.create("zero-shot", class_text=ct).fit(X, Y)
    assert torch.equal(m.text_, text_prototypes(ct, [0, 1, 2], dim=3))
    m = M.create("zero-shot", class_text="support-means").fit(X, Y)
    u = X / np.linalg.norm(X, axis=1, keepdims=True)
    means = np.stack([u[Y == c].sum(0) for c in range(3)])
    np.testing.assert_allclose(m.text_.numpy(), means / np.linalg.norm(means, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def _adamw_reference(p0, grad, steps, lr, wd, eps, cosine):
    """AdamW (Loshchilov & Hutter 2019; torch's defaults betas 0.9, 0.999) with an optional cosine
    schedule over `steps` (lr_t = lr (1 + cos(pi t / steps)) / 2), in float64 numpy."""
    p, m, v = np.array(p0, dtype=np.float64), 0.0, 0.0
    for t in range(1, steps + 1):
        a = lr * (1 + np.cos(np.pi * (t - 1) / steps)) / 2 if cosine else lr
        g = grad(p)
        p = p * (1 - a * wd)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - a * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + eps)
    return p


@pytest.mark.parametrize("cosine", [True, False])
def test_train_full_batch_is_adamw_with_a_cosine_schedule(cosine):
    from fewmm.methods.text import train_full_batch

    target = np.array([1.0, -2.0, 1e-6])  # tiny last gradient: eps matters there
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    kw = {} if cosine else {"cosine": False}
    losses = train_full_batch([w], lambda: ((w - torch.from_numpy(target)) ** 2).sum(), 4, 0.1, weight_decay=0.05, **kw)
    ref = _adamw_reference(np.zeros(3), lambda p: 2 * (p - target), 4, 0.1, 0.05, 1e-8, cosine)
    np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-10, atol=1e-14)
    assert len(losses) == 4 and losses[0] == pytest.approx(float((target ** 2).sum()))


def test_clip_adapter_training_uses_its_lr_weight_decay_and_logit_scale():
    from fewmm.methods.base import l2_normalize
    from fewmm.methods.text import train_full_batch

    m = M.create("clip-adapter", class_text="support-means", epochs=3, lr=0.05, weight_decay=0.3, logit_scale=7.0).fit(X, Y)
    ref = M.create("clip-adapter", class_text="support-means", seed=0)
    x = l2_normalize(torch.from_numpy(X))
    adapter = ref._build(3)
    y = torch.as_tensor(Y)
    text = m.text_

    def loss():
        f = 0.2 * adapter(x) + 0.8 * x
        return torch.nn.functional.cross_entropy(7.0 * l2_normalize(f) @ text.T, y)

    losses = train_full_batch(list(adapter.parameters()), loss, 3, 0.05, 0.3)
    assert m.losses_ == losses
    for a, b in zip(m.adapter_.parameters(), adapter.parameters()):
        assert torch.equal(a, b)
