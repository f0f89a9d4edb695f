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
