"""The common contract (fewmm.testing), run over every registered method, head and learner.

The cases come from the registries (:func:`fewmm.testing.contract_cases`): registering a
component adds it here, with no list to edit (test_a_newly_registered_head_is_checked shows it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fewmm.heads as H
import fewmm.methods as M
from fewmm import persist
from fewmm.episodes import Episodes, check_episode_indices, sample_episodes
from fewmm.errors import EpisodeError, FeatureError, PersistError
from fewmm.heads.concat import ConcatHead
from fewmm.methods.protonet import ProtoNet
from fewmm.testing import (ContractCase, check_head, check_learner, check_method, contract_cases, disabled_pickle,
                           run_check)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


CASES = [(case, check) for case in contract_cases() for check in case.checks]


@pytest.mark.parametrize("case,check", CASES, ids=[f"{c.id}-{k}" for c, k in CASES])
def test_contract(case, check):
    run_check(case, check)


def test_cases_cover_every_registered_name():
    ids = {c.id for c in contract_cases()}
    assert {f"method:{n}" for n in M.list_methods()} <= ids
    assert {f"head:{n}" for n in H.list_heads(("image", "audio"))} <= ids
    assert "head:gmu[hidden=16-gate_hidden=0-freeze_proj=False]" in ids  # a head's contract_variants
    assert len([c for c in contract_cases() if c.kind == "head"]) == 12
    assert {c.kind for c in contract_cases(kinds=("method",))} == {"method"}
    from fewmm.engine import LEARNERS

    assert {f"learner:{n}" for n in LEARNERS.names()} == {c.id for c in contract_cases(kinds=("learner",))} == \
        {"learner:head", "learner:tensor"}


# -- a new component is picked up, and a faulty one is caught ------------------------------------
class _MeanConcatHead(ConcatHead):
    """ProtoNet on concatenated modalities (a new head for this test)."""

    name = "test-concat"


class _TransposedHead(ConcatHead):
    """Returns (E, N, M) logits instead of (E, M, N): a contract violation."""

    name = "test-transposed"

    def _forward(self, batch):
        logits, w = super()._forward(batch)
        return logits.transpose(1, 2), w


def test_a_newly_registered_head_is_checked():
    assert "test-concat" not in H.HEADS
    H.register("test-concat", "test head")(_MeanConcatHead)
    try:
        cases = [c for c in contract_cases() if c.name == "test-concat"]
        assert cases == [ContractCase("head", "test-concat")]
        for check in cases[0].checks:
            run_check(cases[0], check)
    finally:
        H.HEADS.unregister("test-concat")
    assert not [c for c in contract_cases() if c.name == "test-concat"]


def test_a_faulty_head_fails_the_named_check():
    H.register("test-transposed", "bad head")(_TransposedHead)
    try:
        (case,) = [c for c in contract_cases() if c.name == "test-transposed"]
        with pytest.raises(AssertionError, match=r"head 'test-transposed': check_shapes: logits \(4, 5, 15\)"):
            run_check(case, "shapes")
    finally:
        H.HEADS.unregister("test-transposed")


class _ReversedProtoNet(ProtoNet):
    """Scores the classes in reverse order of classes_: a silent wrong answer."""

    def _logits(self, q):
        return super()._logits(q).flip(-1)


class _GlobalRandomProtoNet(ProtoNet):
    """Adds noise from the global generator: not deterministic under its own seed."""

    def _logits(self, q):
        return super()._logits(q) + torch.rand(q.shape[0], len(self.classes_))


@pytest.mark.parametrize("cls,check,msg", [
    (_ReversedProtoNet, "shapes", r"check_shapes: accuracy 0\.\d+ on well-separated classes"),
    (_ReversedProtoNet, "classes_order", r"check_classes_order: column j of predict_proba is not class classes_\[j\]"),
    (_GlobalRandomProtoNet, "deterministic", "check_deterministic: two fits under different global seeds differ"),
])
def test_a_faulty_method_fails_the_named_check(cls, check, msg):
    M.register("test-faulty")(cls)
    try:
        (case,) = [c for c in contract_cases(kinds=("method",)) if c.name == "test-faulty"]
        with pytest.raises(AssertionError, match=msg):
            run_check(case, check)
        run_check(case, "nan_features")  # the base class's input checks still hold
    finally:
        M.METHODS.unregister("test-faulty")


def test_check_method_and_check_head_run_every_check():
    check_method("protonet")
    check_head("single:audio")
    with pytest.raises(AssertionError, match="check_"):
        M.register("test-faulty")(_ReversedProtoNet)
        try:
            check_method("test-faulty")
        finally:
            M.METHODS.unregister("test-faulty")


# -- learners: the engine's protocol, on a tiny learner --------------------------------------------
class _TinyLearner:
    """A linear embedding + ProtoNet on 6-d vectors, following the engine's learner protocol."""

    kind = "tiny"

    def __init__(self, seed=0, scope_check=True):
        g = torch.Generator().manual_seed(0)  # the data; ``seed`` sets the initial weights
        self.x = torch.randn(6, 6, generator=g).repeat_interleave(6, 0) * 3 + torch.randn(36, 6, generator=g)
        self.labels = np.repeat(np.arange(6), 6)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = torch.nn.Linear(6, 4)
        self.scope_check = scope_check

    def batch(self, episodes, step=None):
        check_episode_indices(episodes, len(self.labels))
        return episodes

    def _protos(self, ep):
        s = self.model(self.x[torch.as_tensor(ep.support)])  # (E, N, K, h)
        return s.mean(2)

    def logits(self, ep):
        q = self.model(self.x[torch.as_tensor(ep.query.reshape(len(ep), -1))])  # (E, M, h)
        return -torch.cdist(q, self._protos(ep)) ** 2

    def targets(self, ep):
        return torch.as_tensor(ep.query_labels(), dtype=torch.int64)

    def inner_task(self, ep):
        e, n, k = ep.support.shape
        head = torch.nn.Sequential(self.model, torch.nn.Linear(4, n))
        sx = self.x[torch.as_tensor(ep.support)].reshape(e, n * k, -1)
        qx = self.x[torch.as_tensor(ep.query.reshape(e, -1))]
        return head, sx, torch.arange(n).repeat_interleave(k).expand(e, n * k), qx, self.targets(ep)

    def adapted_parameters(self, scope):
        if scope == "classifier":
            return ["1.weight", "1.bias"]
        if scope == "all" or not self.scope_check:
            return ["0.weight", "0.bias", "1.weight", "1.bias"]
        raise ValueError(f"scope must be 'all' or 'classifier', got {scope!r}")

    def evaluate(self, ep):
        with torch.no_grad():
            return (self.logits(ep).argmax(-1) == self.targets(ep)).float().mean(1).numpy()

    def describe(self):
        return {"kind": self.kind, "dim": 6}


def test_check_learner_on_a_protocol_learner():
    check_learner(_TinyLearner(), rebuild=lambda: _TinyLearner(seed=1))


def test_check_learner_catches_an_unchecked_scope():
    with pytest.raises(AssertionError, match="learner 'tiny': check_adapted_parameters: expected ValueError naming .*nonsense.*, nothing was raised"):
        check_learner(_TinyLearner(scope_check=False))


# -- fixes the contract found, with real values ----------------------------------------------------
def test_reversed_numpy_view_is_accepted_and_fits_the_same():
    """Found by check_classes_order: a negative-stride numpy view (x[::-1]) was refused."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    y = np.arange(12) % 3
    m = M.create("protonet").fit(x[::-1], y[::-1])
    ref = np.stack([x[y == c].mean(0) for c in range(3)])
    assert np.allclose(m.prototypes_.numpy(), ref, atol=1e-6)
    same = M.create("protonet").fit(x[::-1].copy(), y[::-1].copy())  # the same rows, a contiguous copy
    assert np.array_equal(m.predict_proba(x[::-1]), same.predict_proba(x[::-1].copy()))


def test_score_refuses_query_classes_missing_from_the_support_set():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]], dtype=np.float32)
    m = M.create("protonet").fit(x, ["a", "a", "b", "b"])
    # queries: (0, .4) -> a, (5, 5.6) -> b, (4, 4) -> b though labelled a: 2 of 3 right
    q = np.array([[0.0, 0.4], [5.0, 5.6], [4.0, 4.0]], dtype=np.float32)
    assert m.score(q, ["a", "b", "a"]) == pytest.approx(2 / 3)
    with pytest.raises(FeatureError, match=r"query_labels: classes \['c'\] are missing from the support set \(support classes: \['a', 'b'\]\)"):
        m.score(q, ["a", "b", "c"])


@pytest.mark.parametrize("kind", ["head", "tensor"])
def test_learner_batches_name_episodes_outside_their_items(kind):
    """Found by check_bad_episodes: episodes sampled from another table reached torch indexing
    (IndexError deep in the batch gathering)."""
    from fewmm.engine import LEARNERS

    learner = LEARNERS.get(kind).contract_example(seed=0)  # 36 items
    ep = sample_episodes(learner.labels, 3, 1, 2, 2, seed=0)
    assert learner.batch(ep) is not None
    bad = Episodes(ep.classes, ep.support, ep.query + 36, ep.seed)
    lo, hi = int(ep.query.min()) + 36, int(ep.query.max()) + 36
    with pytest.raises(EpisodeError, match=rf"episode query indices span {lo}\.\.{hi}, but the feature table has 36 rows"):
        learner.batch(bad)


# -- persistence -----------------------------------------------------------------------------------
def test_persist_files_are_json_and_safetensors_and_tampering_is_refused(tmp_path):
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    m = M.create("protonet").fit(x, ["up", "right", "up", "right"])
    persist.save(m, tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "state.json").read_text())
    assert doc["format"] == "fewmm-state" and doc["object"]["estimator"] == "fewmm.methods.protonet:ProtoNet"
    assert doc["object"]["params"] == {"dict": [[{"py": "metric"}, {"py": "euclidean"}], [{"py": "temperature"}, {"py": 10.0}]]}
    with disabled_pickle():
        m2 = persist.load(tmp_path / "m")
    assert m2.classes_.tolist() == ["right", "up"]
    assert torch.equal(m2.prototypes_, torch.tensor([[2.0, 0.0], [0.0, 1.5]]))
    st = tmp_path / "m" / "state.safetensors"
    st.write_bytes(st.read_bytes()[:-1] + b"\0")
    with pytest.raises(PersistError, match="sha256 .* does not match .* save again"):
        persist.load(tmp_path / "m")
    doc["format_version"] = 99
    (tmp_path / "m" / "state.json").write_text(json.dumps(doc))
    with pytest.raises(PersistError, match="format version 99 is newer"):
        persist.load(tmp_path / "m")
    with pytest.raises(PersistError, match="no state.json"):
        persist.load(tmp_path / "nothing")


def test_persist_names_what_it_cannot_save(tmp_path):
    m = M.create("protonet").fit(torch.eye(2), [0, 1])
    m.extra_ = {"f": lambda v: v}
    with pytest.raises(PersistError, match=r"ProtoNet.extra_\['f'\]: a builtins.function cannot be saved without pickle"):
        persist.save(m, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_class_order_declaration_is_honoured_only_with_a_reason(monkeypatch):
    """The MAML family declares (class_order_dependent) that renaming classes changes its
    probabilities: the renamed-classes part is then checked by accuracy, with a ContractWaiver
    naming the reason; without the declaration the exact check fails; a declaration without a
    reason fails."""
    from fewmm.methods.maml import MAMLMethod
    from fewmm.testing import ContractWaiver, check_method_classes_order

    with pytest.warns(ContractWaiver, match=r"method 'maml': check_classes_order: .*max diff 2\.71e-02.*meta-learned row"):
        check_method_classes_order("maml")
    monkeypatch.setattr(MAMLMethod, "class_order_dependent", None)
    with pytest.raises(AssertionError, match=r"renamed classes: columns do not follow classes_ \(max diff 2\.71e-02\)"):
        check_method_classes_order("maml")
    monkeypatch.setattr(MAMLMethod, "class_order_dependent", "yes")
    with pytest.raises(AssertionError, match="class_order_dependent must be a sentence giving the reason"):
        check_method_classes_order("maml")
