"""Exact messages and boundaries of the output / label checks every method goes through
(fewmm.methods.base: check_logits, check_finite_scores, check_label_types) and the linear probe's
all-zero-support guard.

Found by mutation testing (``python benchmarks/mutation.py methods``): each test below kills
mutants that the rest of the suite let through; the mutant it kills is named beside it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import fewmm.methods as M
from fewmm.errors import FeatureError, MethodError
from fewmm.methods.base import check_finite_scores, check_label_types, check_logits

NAN = torch.tensor([[float("nan"), 0.0], [1.0, 2.0]])  # 1 non-finite score of 4
HEAD = "method 'protonet' (ProtoNet) gave 1 non-finite (NaN or inf) score(s) of 4: its predictions would be meaningless (argmax of NaN is class 0)"
HINT = ("; the largest |feature| is {big}: squared distances / dot products of features this large overflow float32, so normalise "
        "the features first (e.g. standardise or L2-normalise them, or use a cosine metric)")


def _raises_exactly(msg: str, fn, *args, **kw):
    with pytest.raises(MethodError) as e:
        fn(*args, **kw)
    assert str(e.value) == msg


def test_finite_scores_pass_through_unchanged():
    s = torch.tensor([[1.0, -2.0]])
    assert check_finite_scores(s, M.create("protonet")) is s


@pytest.mark.parametrize("features", [None, torch.zeros((0, 3)), torch.full((2, 3), 1e6)])
def test_non_finite_scores_without_a_hint(features):
    """No hint: no features (mutant `and` -> `or` calls None.numel()), an empty feature tensor (the
    `or` mutant takes .max() of nothing) and features whose largest |x| is exactly 1e6 (mutant
    `> 1e6` -> `>= 1e6`). The message ends right after the sentence (mutants hint = None / "XXXX")."""
    _raises_exactly(HEAD, check_finite_scores, NAN, M.create("protonet"), features)


@pytest.mark.parametrize("big, shown", [(1000000.5, "1e+06"), (-3e7, "3e+07"), (float("inf"), "inf")])
def test_non_finite_scores_with_the_overflow_hint(big, shown):
    """Hint from just above 1e6 (mutant `> 1000001.0`), for a negative feature (abs) and for an
    infinite one (mutant `not isfinite` -> `isfinite`); the whole hint, word for word (mutants of its
    text: "XX...XX", "l2-normalise", "A COSINE METRIC)")."""
    f = torch.zeros((2, 3), dtype=torch.float64)
    f[1, 2] = big
    _raises_exactly(HEAD + HINT.format(big=shown), check_finite_scores, NAN, M.create("protonet"), f)


def test_small_features_get_no_hint():
    """Finite, small features: no hint (mutant `not isfinite(big)` -> `isfinite(big)` would add it)."""
    _raises_exactly(HEAD, check_finite_scores, NAN, M.create("protonet"), torch.ones((2, 3)))


def test_integer_logits_are_refused_with_the_method_and_the_dtype():
    """mutants raise MethodError(None) / method_label(None) in the dtype branch of check_logits."""
    want = "a float torch.Tensor of shape (n_query, n_classes) = (2, 3)"
    _raises_exactly(f"method 'protonet' (ProtoNet): _logits returned dtype torch.int64; expected {want}",
                    check_logits, torch.zeros((2, 3), dtype=torch.int64), (2, 3), M.create("protonet"))
    x = torch.zeros((2, 3), dtype=torch.float16)
    assert check_logits(x, (2, 3), M.create("protonet")) is x  # any floating dtype passes unchanged


def test_label_type_mix_default_name_and_every_value_of_a_nested_list():
    """The default name is 'labels' (mutants "XXlabelsXX" / "LABELS"); every value of a nested list is
    looked at, not its rows (mutant reshape(-1) -> reshape(None) sees two 'ndarray' rows and no mix);
    a kind outside the named ones is reported by its type name (mutant type(v) -> type(None))."""
    with pytest.raises(FeatureError) as e:
        check_label_types([[1, "a"], [2, "b"]])
    assert str(e.value) == "labels: labels mix types ['int', 'str']; use one type (e.g. all str)"
    with pytest.raises(FeatureError) as e:
        check_label_types([b"x", 1.5], name="y")
    assert str(e.value) == "y: labels mix types ['bytes', 'float']; use one type (e.g. all str)"


def test_linear_probe_fits_orthonormal_support_rows():
    """One-hot support rows: after L2 normalisation the largest singular value is exactly 1.0, a
    perfectly fittable support (mutant `s[0] > 0` -> `s[0] > 1` calls it all zero and raises)."""
    x = np.eye(3, 6, dtype=np.float32)
    lp = M.create("linear-probe").fit(x, np.array([0, 1, 2]))
    assert lp.basis_.shape == (6, 3)
    np.testing.assert_array_equal(lp.predict(x), [0, 1, 2])
    with pytest.raises(FeatureError, match=re.escape("linear-probe: the 3 support features are all zero")):
        M.create("linear-probe").fit(np.zeros((3, 6), dtype=np.float32), np.array([0, 1, 2]))


@pytest.mark.parametrize("y", [np.array(1), torch.tensor(1), 1])
def test_score_refuses_scalar_labels_by_name(y):
    """A 0-d array or tensor of query labels used to raise a bare TypeError from len() (found from
    the survivors of score's `len(y) if hasattr(y, "__len__") else -1`); now the labels' own check
    names them."""
    m = M.create("protonet").fit(np.eye(2, 3, dtype=np.float32), [0, 1])
    with pytest.raises(FeatureError) as e:
        m.score(np.eye(1, 3, dtype=np.float32), y)
    assert str(e.value) == "query_labels must have shape (n,), got shape ()"


def test_score_names_the_query_labels_and_weights_the_queries():
    """The labels are called query_labels (mutants of the name passed to check_labels) and
    sample_weight reaches scikit-learn's accuracy (mutants that drop it): queries 0, 1, 0 predicted
    0, 1, 0 against labels 0, 1, 1 with weights 1, 1, 2 -> 2 / 4 (unweighted 2 / 3)."""
    m = M.create("protonet").fit(np.eye(2, 3, dtype=np.float32), [0, 1])
    q = np.eye(3, dtype=np.float32)[[0, 1, 0]]
    with pytest.raises(FeatureError) as e:
        m.score(q, [0.0, 1.0, np.nan])
    assert str(e.value) == "query_labels contains NaN"
    assert m.score(q, [0, 1, 1], sample_weight=[1, 1, 2]) == 0.5
    assert m.score(q, [0, 1, 1]) == pytest.approx(2 / 3, abs=0, rel=1e-15)


def test_writable_features_are_not_copied_even_with_a_zero_stride():
    """check_features copies only what torch cannot wrap (read-only arrays, negative strides): a
    writable float32 column made with np.newaxis (stride 0 along its size-1 axis) and a writable
    zero-stride broadcast are shared, not copied (mutants `s < 0` -> `s <= 0` / `s < 1`)."""
    from fewmm.methods.base import check_features

    col = np.arange(3, dtype=np.float32)[:, None]
    assert col.strides[1] == 0 and check_features(col).data_ptr() == col.ctypes.data
    row = np.arange(3, dtype=np.float32)
    rep = np.lib.stride_tricks.as_strided(row, shape=(2, 3), strides=(0, 4), writeable=True)
    t = check_features(rep)
    assert t.data_ptr() == row.ctypes.data and t.tolist() == [[0.0, 1.0, 2.0]] * 2
    rev = np.arange(6, dtype=np.float32).reshape(3, 2)[::-1]  # negative stride: copied, same values
    assert check_features(rev).tolist() == [[4.0, 5.0], [2.0, 3.0], [0.0, 1.0]]
    ro = np.ones((2, 2), dtype=np.float32)
    ro.flags.writeable = False
    assert check_features(ro).data_ptr() != ro.ctypes.data


# -- mahalanobis-text (fewmm/methods/mahalanobis_text.py): what tests/test_mahalanobis_text.py left to
# mutation testing's survivors: the whole messages, the singular-covariance floor, joint_dim=1, batched
# (3-d) features, the support-means text, the output dtype and the registry help.

MT_BASE = np.array([[0.6, 0.8], [0.6, -0.8], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)  # as test_mahalanobis_text.py
MT_LABELS = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("call,msg", [
    (lambda MT: MT().fit_base(MT_BASE),
     "mahalanobis-text: fit_base needs base_labels (the within-class covariance of the base classes is estimated with class labels)"),
    (lambda MT: MT().fit_base(np.array([[np.nan, 0.8], *MT_BASE[1:]], np.float32), MT_LABELS),
     "base_features contains NaN or inf values in 1 rows (first rows: [0])"),
    (lambda MT: MT().fit_base(MT_BASE, MT_LABELS[:3]), "base_labels has 3 labels for 4 feature rows"),
    (lambda MT: MT(joint_dim=2).fit_base(MT_BASE, MT_LABELS),
     "base_features have 2 columns but joint_dim=2: the item block (the first width - joint_dim columns) would be empty"),
    (lambda MT: MT(class_text="support-means", joint_dim=2).fit(MT_BASE, MT_LABELS),
     "features have 2 columns but joint_dim=2: the item block (the first width - joint_dim columns) would be empty"),
    (lambda MT: MT().fit_base(np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32), MT_LABELS),
     "mahalanobis-text: the base items have no within-class spread (every class's items are identical)"),
    (lambda MT: MT().fit_base(MT_BASE, MT_LABELS).fit(np.ones((2, 3), np.float32), [0, 1]),
     "mahalanobis-text: the item block has 3 columns, the base features had 2"),
    (lambda MT: MT(class_text={"a": np.ones(3), "b": np.ones(3)}, joint_dim=2).fit(np.ones((2, 4), np.float32), ["a", "b"]),
     "class_text['a'] has dim 3, but the item features have dim 2: text and items must live in one space (an aligned pair)"),
])
def test_mahalanobis_text_messages_are_whole(call, msg):
    """Mutants of the message texts, of the names passed to check_features / check_labels / the item
    block check, of the zero-spread test (`<= 0` -> `< 0`) and of text_prototypes' dim (None: unchecked)."""
    from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

    with pytest.raises(FeatureError) as e:
        call(MahalanobisTextPrior)
    assert str(e.value) == msg


def test_mahalanobis_text_singular_covariance_and_base_info():
    """shrinkage 0 on the base items of test_mahalanobis_text.py: C = diag(0, 0.32) is singular; its
    zero eigenvalue is floored at 1e-12 * 0.32 (mutant `/`: 1e-12 / 0.32), so S^(-1/2) =
    diag(1 / sqrt(3.2e-13), 1 / sqrt(0.32)) = diag(1767766.95, 1.76777). base_info_ counts items (4),
    not columns (mutant shape[1]: here 2)."""
    from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

    m = MahalanobisTextPrior(shrinkage=0.0).fit_base(MT_BASE, MT_LABELS)
    np.testing.assert_allclose(m.whitening_.numpy(), np.diag([1 / np.sqrt(3.2e-13), 1 / np.sqrt(0.32)]), rtol=1e-5)
    assert m.base_info_ == {"n_items": 4, "n_classes": 2, "item_dim": 2, "shrinkage": 0.0}


def test_mahalanobis_text_joint_block_of_one_column_and_batched_features():
    """joint_dim=1 keeps a one-column joint block (mutant `joint_dim == 1` drops it); an item block of
    one column is allowed; transform_features of a batch (E, M, width) is the row-wise one (mutants
    shape[+1] and cat(..., +1) read / join the wrong axis)."""
    from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

    m = MahalanobisTextPrior(class_text="support-means", joint_dim=1)
    x = torch.tensor([[3.0, 4.0, -2.0], [0.0, 2.0, 5.0]])
    want = torch.tensor([[0.6, 0.8, -1.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(m.transform_features(x), want)
    torch.testing.assert_close(m.transform_features(x.expand(3, 2, 3)), want.expand(3, 2, 3))
    m2 = MahalanobisTextPrior(class_text="support-means", joint_dim=2).fit_base(
        np.concatenate([MT_BASE, np.ones((4, 2), np.float32)], 1), MT_LABELS)
    xb = torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m2.transform_features(xb), torch.stack([m2.transform_features(r) for r in xb]))
    one = MahalanobisTextPrior(class_text="support-means", joint_dim=2).fit(np.eye(3, dtype=np.float32), [0, 1, 2])
    assert one.prototypes_.shape == (3, 1) and one.joint_prototypes_.shape == (3, 2)  # width 3 - joint_dim 2 = 1 item column


def test_mahalanobis_text_support_means_text_and_float32_output():
    """class_text="support-means": the text of a class is the L2-normalised sum (= direction of the
    mean) of its support's joint rows, stored in text_ (mutants of that branch: != for ==, text None);
    with w = 2 the joint prototype is (sum + 2 text) / (K + 2), and the probabilities are float32
    (mutant: float64 logits). Support joint rows: class a (1, 0), (0, 1) -> text (0.7071, 0.7071),
    prototype ((1, 1) + 2 (0.7071, 0.7071)) / 4 = (0.6036, 0.6036); class b (1, 0) -> text (1, 0),
    prototype ((1, 0) + 2 (1, 0)) / 3 = (1, 0). Item blocks are equal, so only the joint block (a = 1)
    decides: query joint (0, 1) -> squared distances 0.6036^2 + 0.3964^2 = 0.52148 (a), 2 (b)."""
    from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

    sup = np.array([[1, 0, 1, 0], [1, 0, 0, 1], [1, 0, 1, 0]], np.float32)
    m = MahalanobisTextPrior(class_text="support-means", joint_dim=2, joint_weight=1.0, text_weight=2.0).fit(sup, ["a", "a", "b"])
    r = np.sqrt(0.5)
    np.testing.assert_allclose(m.text_.numpy(), [[r, r], [1, 0]], rtol=1e-6)
    np.testing.assert_allclose(m.joint_prototypes_.numpy(), [[(1 + 2 * r) / 4] * 2, [1, 0]], rtol=1e-6)
    q = np.array([[1, 0, 0, 1]], np.float32)
    p = m.predict_proba(q)
    assert p.dtype == np.float32
    d_a = ((1 + 2 * r) / 4) ** 2 + (1 - (1 + 2 * r) / 4) ** 2
    np.testing.assert_allclose(p[0], np.exp([-d_a, -2.0]) / np.exp([-d_a, -2.0]).sum(), rtol=1e-5)
    with pytest.raises(FeatureError, match="class_text must be a mapping"):
        MahalanobisTextPrior(class_text="other", joint_dim=2).fit(sup, ["a", "a", "b"])


def test_mahalanobis_text_registry_help():
    """register_into gives the registry its help line (mutants of the text)."""
    from fewmm.methods.mahalanobis_text import register_into
    from fewmm.registry import Registry

    reg = Registry("method")
    register_into(reg)
    assert reg.help("mahalanobis-text") == ("Mahalanobis prototypes (base-class covariance) + class-text prior in a joint space; "
                                            "needs class_text, joint_dim and fit_base(base_features, base_labels)")


def test_mahalanobis_text_whitening_bit_for_bit():
    """S^(-1/2) of random base items equals a float64 numpy computation of the documented formula,
    rounded to float32, bit for bit (mutant: a float32 identity in S, which rounds the shrinkage term
    to float32 because a 0-d float64 tensor does not promote a float32 matrix: 15 of the 36 entries
    change here, measured)."""
    from fewmm.methods.base import l2_normalize
    from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, 6, generator=g), np.arange(40) % 4
    m = MahalanobisTextPrior(shrinkage=0.5).fit_base(x, y)
    u = l2_normalize(x).double().numpy()
    r = u - np.stack([u[y == c].mean(0) for c in range(4)])[y]
    c = r.T @ r / len(u)
    s = 0.5 * c + 0.5 * np.trace(c) / 6 * np.eye(6)
    ev, v = np.linalg.eigh(s)
    want = ((v / np.sqrt(ev)) @ v.T).astype(np.float32)
    assert np.array_equal(m.whitening_.numpy(), want)
    assert np.array_equal(m.base_mean_.numpy(), u.mean(0).astype(np.float32))
