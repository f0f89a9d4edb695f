"""mahalanobis-text (fewmm/methods/mahalanobis_text.py): hand-computed whitening and logits, the
selection script's formula, errors, scikit-learn checks, and its path through fewmm.bench.transfer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator

import fewmm.bench.transfer as TR
from fewmm.episodes import sample_episodes
from fewmm.errors import FeatureError, FewmmError
from fewmm.methods.mahalanobis_text import MahalanobisTextPrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

# Base items (item block, already unit rows): class 0 = (0.6, 0.8), (0.6, -0.8); class 1 = (1, 0) twice.
# Class means (0.6, 0) and (1, 0); residuals (0, +-0.8) and 0, so the pooled within-class covariance
# is C = diag(0, 2 * 0.64 / 4) = diag(0, 0.32); tr(C)/d = 0.16. With shrinkage 0.5:
# S = 0.5 C + 0.5 * 0.16 I = diag(0.08, 0.24), S^(-1/2) = diag(1/sqrt(0.08), 1/sqrt(0.24)), and
# the base mean of the unit rows is (0.8, 0).
BASE_ITEMS = np.array([[0.6, 0.8], [0.6, -0.8], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
BASE_LABELS = np.array([0, 0, 1, 1])


def _with_joint(item, joint=None):
    joint = np.zeros((len(item), 2), np.float32) if joint is None else np.asarray(joint, np.float32)
    return np.concatenate([np.asarray(item, np.float32), joint], 1)


def test_fit_base_whitening_is_the_hand_computed_one():
    m = MahalanobisTextPrior(class_text="support-means", joint_dim=2, shrinkage=0.5)
    m.fit_base(_with_joint(BASE_ITEMS), BASE_LABELS)
    np.testing.assert_allclose(m.whitening_.numpy(), np.diag([1 / np.sqrt(0.08), 1 / np.sqrt(0.24)]), rtol=1e-6)
    np.testing.assert_allclose(m.base_mean_.numpy(), [0.8, 0.0], atol=1e-7)
    assert m.base_info_ == {"n_items": 4, "n_classes": 2, "item_dim": 2, "shrinkage": 0.5}
    # shrinkage 1: S = tr(C)/d I = 0.16 I
    m1 = MahalanobisTextPrior(shrinkage=1.0).fit_base(BASE_ITEMS, BASE_LABELS)
    np.testing.assert_allclose(m1.whitening_.numpy(), np.eye(2) / 0.4, rtol=1e-6)


def test_logits_are_the_hand_computed_ones():
    # support: "a" item (0, 1) joint (1, 0); "b" item (1, 0) joint (0, 1). Texts: a -> (0, 1), b -> (0, 1).
    # Item block after (u - (0.8, 0)) S^(-1/2), unit rows: a -> (-0.810885, 0.585206), b -> (1, 0);
    # query item (0.6, 0.8) -> (-0.397360, 0.917663): squared distances 0.281531 (a), 2.794719 (b).
    # Joint block, text as w = 1 shot: prototypes a ((1,0) + (0,1)) / 2 = (0.5, 0.5), b (0, 1);
    # query joint (0.6, 0.8): squared distances 0.1 (a), 0.4 (b). joint_weight 0.5:
    # logits a = -(0.281531 + 0.05) = -0.331531, b = -(2.794719 + 0.2) = -2.994719.
    text = {"a": np.array([0.0, 1.0]), "b": np.array([0.0, 1.0])}
    m = MahalanobisTextPrior(class_text=text, joint_dim=2, shrinkage=0.5, joint_weight=0.5, text_weight=1.0)
    m.fit_base(_with_joint(BASE_ITEMS), BASE_LABELS)
    m.fit(_with_joint([[0, 1], [1, 0]], [[1, 0], [0, 1]]), ["a", "b"])
    q = _with_joint([[0.6, 0.8]], [[0.6, 0.8]])
    logits = np.array([-0.331531, -2.994719])
    np.testing.assert_allclose(m.decision_function(q), [logits[1] - logits[0]], atol=4e-6)  # 2 classes: b minus a
    np.testing.assert_allclose(m.predict_proba(q)[0], np.exp(logits) / np.exp(logits).sum(), atol=1e-6)
    # joint_weight 0: the item block alone
    m0 = MahalanobisTextPrior(class_text=text, joint_dim=2, shrinkage=0.5, joint_weight=0.0)
    m0.fit_base(_with_joint(BASE_ITEMS), BASE_LABELS).fit(_with_joint([[0, 1], [1, 0]], [[1, 0], [0, 1]]), ["a", "b"])
    np.testing.assert_allclose(m0.decision_function(q), [-2.794719 + 0.281531], atol=4e-6)


def test_the_text_prior_can_change_the_decision():
    # Item blocks identical for both classes, so only the joint block decides. Joint support:
    # a (0.6, 0.8), b (0.8, 0.6); query (0.65, 0.76) (norm 1.00005) is nearer a: squared distances
    # 0.0041 (a) and 0.0481 (b). Texts a (1, 0), b (0, 1) as w = 2 shots: prototypes
    # a ((0.6, 0.8) + 2 (1, 0)) / 3 = (0.867, 0.267), b (0.267, 0.867): distances 0.290 (a), 0.158 (b).
    text = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    sup = _with_joint([[1, 0], [1, 0]], [[0.6, 0.8], [0.8, 0.6]])
    q = _with_joint([[1, 0]], [[0.65, 0.76]])
    no_text = MahalanobisTextPrior(class_text=text, joint_dim=2, joint_weight=1.0, text_weight=0.0).fit(sup, ["a", "b"])
    with_text = MahalanobisTextPrior(class_text=text, joint_dim=2, joint_weight=1.0, text_weight=2.0).fit(sup, ["a", "b"])
    np.testing.assert_allclose(no_text.decision_function(q), [-(0.0481 - 0.0041)], atol=2e-4)  # logit b - logit a
    np.testing.assert_allclose(with_text.decision_function(q), [0.290 - 0.158], atol=2e-3)
    assert no_text.predict(q)[0] == "a" and with_text.predict(q)[0] == "b"


def _selection_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer_goal_selection.py"
    spec = importlib.util.spec_from_file_location("transfer_goal_selection", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_method_predicts_as_the_selection_script_formula():
    """The registered method is the configuration the selection script chose (same formula)."""
    sel = _selection_module()
    g = torch.Generator().manual_seed(0)
    n_cls, per = 8, 6
    y = np.repeat(np.arange(n_cls), per)
    centres = torch.randn(n_cls, 12, generator=g)
    x = (centres[torch.as_tensor(y)] + 0.8 * torch.randn(len(y), 12, generator=g)).abs()
    zc = torch.randn(n_cls, 5, generator=g)
    z = torch.nn.functional.normalize(zc[torch.as_tensor(y)] + 0.7 * torch.randn(len(y), 5, generator=g), dim=1)
    t = torch.nn.functional.normalize(zc + 0.5 * torch.randn(n_cls, 5, generator=g), dim=1)
    base_np = np.flatnonzero(y < 4)
    base = torch.as_tensor(base_np)
    ep = sample_episodes(y, n_way=3, n_shot=2, n_query=3, n_episodes=20, seed=0, classes=np.arange(4, 8))
    wx, _ = sel.whiten(x, base, y[base_np], 0.5)
    ref = sel.proto_sqdist(wx, ep) + 0.5 * sel.proto_sqdist(z, ep, t, 2.0)
    want_acc = sel.episode_acc(ref, ep)
    make, feats = TR.joint_block_factory("mahalanobis-text", x, z, y, base_np, {c: t[c] for c in range(n_cls)})
    acc, pred = TR.evaluate_method_episodes(make, feats, y, ep, return_predictions=True)
    np.testing.assert_array_equal(acc, want_acc)
    want_pred = np.asarray(ep.classes)[np.arange(len(ep))[:, None], ref.argmin(-1).numpy()]
    np.testing.assert_array_equal(pred, want_pred)


def test_joint_block_factory_reads_base_items_only():
    g = torch.Generator().manual_seed(1)
    x, z = torch.rand(30, 6, generator=g), torch.rand(30, 3, generator=g)
    y = np.repeat(np.arange(6), 5)
    base = np.flatnonzero(y < 3)
    poisoned = y.copy()
    poisoned[y >= 3] = 0  # labels of non-base items are never read
    ct = {c: torch.ones(3) for c in range(6)}
    m1 = TR.joint_block_factory("mahalanobis-text", x, z, y, base, ct)[0]()
    m2 = TR.joint_block_factory("mahalanobis-text", x, z, poisoned, base, ct)[0]()
    ref = MahalanobisTextPrior(class_text=ct, joint_dim=3).fit_base(torch.cat([x, z], 1)[torch.as_tensor(base)], y[base])
    for m in (m1, m2):
        torch.testing.assert_close(m.whitening_, ref.whitening_, rtol=0, atol=0)
        torch.testing.assert_close(m.base_mean_, ref.base_mean_, rtol=0, atol=0)
    assert TR.joint_block_factory("mahalanobis-text", x, z, y, base, ct)[1].shape == (30, 9)


def test_bad_input_is_named():
    with pytest.raises(FeatureError, match="base_labels"):
        MahalanobisTextPrior().fit_base(BASE_ITEMS)
    with pytest.raises(FeatureError, match="at least 2"):
        MahalanobisTextPrior().fit_base(BASE_ITEMS, [0, 0, 0, 0])
    with pytest.raises(FeatureError, match="joint_dim=2"):
        MahalanobisTextPrior(class_text="support-means", joint_dim=2).fit(BASE_ITEMS, BASE_LABELS)
    with pytest.raises(ValueError, match="shrinkage"):
        MahalanobisTextPrior(shrinkage=1.5).fit(BASE_ITEMS, BASE_LABELS)
    with pytest.raises(ValueError, match="joint_dim"):
        MahalanobisTextPrior(joint_dim=-1).fit(BASE_ITEMS, BASE_LABELS)
    with pytest.raises(FeatureError, match="no entry for class 'b'"):
        MahalanobisTextPrior(class_text={"a": np.ones(2)}, joint_dim=2).fit(_with_joint(BASE_ITEMS[:2]), ["a", "b"])
    m = MahalanobisTextPrior().fit_base(BASE_ITEMS, BASE_LABELS)
    with pytest.raises(FeatureError, match="base features had 2"):
        m.fit(np.ones((2, 3), np.float32), [0, 1])
    with pytest.raises(FewmmError, match="mahalanobis-txt"):
        TR.check_method_name("mahalanobis-txt")
    TR.check_method_name("mahalanobis-text")  # known to the harness


def test_sklearn_checks_pass():
    check_estimator(MahalanobisTextPrior(class_text="support-means"))


def test_defaults_are_the_configuration_chosen_on_validation_classes():
    """The committed selection chose by its rule (highest validation accuracy, first of equal ones),
    the script's CHOSEN_AT_COMMIT names it, and the method's defaults are its parameters."""
    import json

    sel = _selection_module()
    doc = json.loads((Path(__file__).resolve().parents[1] / "results" / "transfer-goal-selection.json").read_text())
    top = max(r["val_accuracy"] for r in doc["rows"])
    first = next(r for r in doc["rows"] if r["val_accuracy"] == top)
    assert doc["chosen"] == first and first["name"] == sel.CHOSEN_AT_COMMIT
    assert doc["n_candidates"] == len(doc["rows"]) == 55
    m = MahalanobisTextPrior()
    assert (m.shrinkage, m.joint_weight, m.text_weight) == (first["params"]["shrinkage"], first["params"]["a"],
                                                            first["params"]["w"]) == (0.5, 0.5, 2.0)
    # only the chosen configuration (and, after it, the ablations) was scored on novel classes
    assert {r["method"] for r in doc["novel"]} == {sel.CHOSEN_AT_COMMIT}


def test_register_into_adds_the_method_once():
    from fewmm.registry import Registry
    from fewmm.methods.mahalanobis_text import register_into

    reg = Registry("method")
    register_into(reg)
    register_into(reg)  # idempotent
    assert reg.names() == ["mahalanobis-text"] and reg.get("mahalanobis-text") is MahalanobisTextPrior
