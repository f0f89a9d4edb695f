"""Transfer from a joint item-text space: the class-text methods (hand-computed formulas), aligned
pairs (joint CLIP/CLAP towers, a bridge learned on base classes), end to end through tiny random
CLIP (transformers and open_clip) and CLAP models loaded by the real loading code, and the
harness's guarantees (no query label before scoring, CoOp splits)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fewmm.encoders as E  # noqa: E402
import fewmm.methods as M  # noqa: E402
from fewmm.aligned import AlignmentError, BridgeConfig, joint_pair, train_bridge  # noqa: E402
from fewmm.bench import transfer as TR  # noqa: E402
from fewmm.episodes import sample_episodes  # noqa: E402
from fewmm.errors import FeatureError  # noqa: E402
from fewmm.methods.text import text_prototypes  # noqa: E402

# tiny random CLIP / CLAP models saved to a temporary folder (shared with the encoder tests)
from test_encoders import tiny_clap_dir, tiny_clip_dir, tiny_openclip  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


TEXT = ["zero-shot", "tip-adapter", "tip-adapter-f", "clip-adapter", "cross-modal-lp", "lp++", "zs-lp"]


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# two classes in 2-d: text a = e1, text b = e2; one shot each on the axes
CT = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
XS = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
YS = np.array(["a", "b"])
Q = np.array([[0.6, 0.8], [0.8, 0.6]], dtype=np.float32)


def test_text_methods_are_registered_and_listed():
    assert M.text_methods() == sorted(TEXT)
    assert set(TEXT) <= set(M.list_methods())
    for n in TEXT:
        assert M.create(n).__class__.__doc__  # constructible without text (fails at fit, clearly)


# ----------------------------------------------------------------------- formulas, by hand
def logits(m, q) -> np.ndarray:
    """A fitted method's logits up to a per-row constant (first column = 0), from predict_proba."""
    lp = np.log(m.predict_proba(q).astype(np.float64))
    return lp - lp[:, :1]


def rel(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z - z[:, :1]


def test_text_prototypes_prompt_ensembling():
    # two templates (1, 0) and (0, 2): normalised (1, 0), (0, 1); mean (.5, .5); normalised (1, 1)/sqrt 2
    t = text_prototypes({"a": [[1.0, 0.0], [0.0, 2.0]], "b": [3.0, 4.0]}, ["b", "a"])
    np.testing.assert_allclose(t.numpy(), [[0.6, 0.8], [1 / math.sqrt(2), 1 / math.sqrt(2)]], atol=1e-6)


def test_zero_shot_logits():
    m = M.create("zero-shot", class_text=CT).fit(XS * 5, YS)  # support features are ignored
    np.testing.assert_allclose(logits(m, Q), rel(100 * Q), atol=1e-3)
    assert list(m.predict(Q)) == ["b", "a"]


def test_tip_adapter_logits_by_hand():
    alpha, beta = 2.0, 5.5
    m = M.create("tip-adapter", class_text=CT, alpha=alpha, beta=beta, logit_scale=1.0).fit(XS, YS)
    # cache keys = the unit support items e1 (a), e2 (b); query (.6, .8): cos .6 with a, .8 with b
    want = [[0.6 + alpha * math.exp(-beta * 0.4), 0.8 + alpha * math.exp(-beta * 0.2)],
            [0.8 + alpha * math.exp(-beta * 0.2), 0.6 + alpha * math.exp(-beta * 0.4)]]
    np.testing.assert_allclose(logits(m, Q), rel(want), atol=1e-5)


def test_tip_adapter_cache_overrides_text_when_weighted():
    # text says a for the query (1, 0.1), but the only support item close to it is labelled b
    ct = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    x = np.array([[1.0, 0.12], [0.0, -1.0]], dtype=np.float32)
    y = np.array(["b", "a"])
    q = np.array([[1.0, 0.1]], dtype=np.float32)
    assert M.create("tip-adapter", class_text=ct).fit(x, y).predict(q)[0] == "a"  # 100 * cos dominates
    assert M.create("tip-adapter", class_text=ct, alpha=200.0).fit(x, y).predict(q)[0] == "b"


def test_tip_adapter_f_zero_epochs_is_tip_adapter_and_first_step_is_adam():
    kw = dict(class_text=CT, alpha=1.0, beta=5.5, logit_scale=1.0)
    tf = M.create("tip-adapter-f", epochs=0, **kw).fit(XS, YS)
    t = M.create("tip-adapter", **kw).fit(XS, YS)
    np.testing.assert_array_equal(tf.predict_proba(Q), t.predict_proba(Q))
    # one step: AdamW's first update is -lr * g / (|g| + eps) (m = (1-b1) g, v = (1-b2) g^2, bias-corrected)
    lr = 0.01
    one = M.create("tip-adapter-f", epochs=1, lr=lr, **kw).fit(XS, YS)
    keys = torch.tensor(XS, dtype=torch.float32, requires_grad=True)
    x = torch.tensor(XS)
    values = torch.eye(2)
    logits = x @ torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T + torch.exp(-5.5 * (1 - x @ keys.T)) @ values
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    g = keys.grad
    want = XS - lr * (g / (g.abs() + 1e-4)).numpy()
    np.testing.assert_allclose(one.keys_.numpy(), want, atol=1e-6)


def test_clip_adapter_residual_formula_and_ratio_zero_is_zero_shot():
    rng = np.random.default_rng(0)
    ct8 = {c: rng.normal(size=8) for c in range(2)}
    x8 = rng.normal(size=(4, 8)).astype(np.float32)
    m = M.create("clip-adapter", class_text=ct8, epochs=3, logit_scale=1.0).fit(x8, [0, 1, 0, 1])
    f = torch.tensor(unit(rng.normal(size=(3, 8))), dtype=torch.float32)
    w1, w2 = m.adapter_[0].weight, m.adapter_[2].weight
    want = 0.2 * torch.relu(torch.relu(f @ w1.T) @ w2.T) + 0.8 * f
    torch.testing.assert_close(m.adapt(f), want)
    assert len(m.losses_) == 3 and m.losses_[-1] < m.losses_[0]
    z = M.create("clip-adapter", class_text=CT, ratio=0.0).fit(XS, YS)
    np.testing.assert_allclose(z.predict_proba(Q), M.create("zero-shot", class_text=CT).fit(XS, YS).predict_proba(Q), atol=1e-6)


def test_cross_modal_lp_is_logistic_regression_on_items_plus_texts():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    ct = {c: rng.normal(size=5) for c in range(3)}
    q = rng.normal(size=(4, 5)).astype(np.float32)
    m = M.create("cross-modal-lp", class_text=ct).fit(x, y)
    ref = LogisticRegression(C=10.0, tol=1e-10, max_iter=10000).fit(
        np.concatenate([unit(x), unit(np.stack([ct[c] for c in range(3)]))]), np.array([0, 0, 1, 1, 2, 2, 0, 1, 2]))
    np.testing.assert_allclose(m.predict_proba(q), ref.predict_proba(unit(q)), atol=2e-4)


def test_cross_modal_lp_text_sample_decides_a_tie():
    # one shot per class, the query halfway between them; the texts lean the query to b
    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    ct = {"a": [0.0, 0.0, 1.0], "b": [0.6, 0.8, 0.0]}
    q = np.array([[1.0, 1.0, 0.0]], dtype=np.float32)
    assert M.create("cross-modal-lp", class_text=ct).fit(x, ["a", "b"]).predict(q)[0] == "b"


def test_lp_plus_plus_initial_logits_by_hand():
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    y = np.array(["a", "a", "b"])
    m = M.create("lp++", class_text=CT, epochs=0, logit_scale=1.0, alpha_init=0.5).fit(x, y)
    wa, wb = np.array([0.8, 0.4]), np.array([0.0, 1.0])  # class means of the unit items
    want = [[q @ wa + 0.5 * q[0], q @ wb + 0.5 * q[1]] for q in Q.astype(np.float64)]
    np.testing.assert_allclose(logits(m, Q), rel(want), atol=1e-5)
    trained = M.create("lp++", class_text=CT).fit(x, y)
    assert trained.losses_[-1] < trained.losses_[0] and trained.alpha_.shape == (2,)


def test_zs_lp_starts_at_zero_shot_and_learns_the_support():
    z = M.create("zs-lp", class_text=CT, epochs=0).fit(XS, YS)
    np.testing.assert_allclose(z.predict_proba(Q), M.create("zero-shot", class_text=CT).fit(XS, YS).predict_proba(Q), atol=1e-6)
    # support labels contradict the text: training must move the weights towards the support
    y_flip = np.array(["b", "a"])
    m = M.create("zs-lp", class_text=CT, epochs=100, lr=0.05).fit(XS, y_flip)
    assert list(m.predict(XS)) == ["b", "a"], m.losses_[-5:]
    assert list(M.create("zs-lp", class_text=CT, epochs=0).fit(XS, y_flip).predict(XS)) == ["a", "b"]


@pytest.mark.parametrize("name", TEXT)
def test_class_text_errors_are_clear(name):
    with pytest.raises(FeatureError, match="class_text is required"):
        M.create(name).fit(XS, YS)
    with pytest.raises(FeatureError, match="no entry for class 'b'"):
        M.create(name, class_text={"a": [1.0, 0.0]}).fit(XS, YS)
    with pytest.raises(FeatureError, match="has dim 3, but the item features have dim 2"):
        M.create(name, class_text={"a": [1.0, 0, 0], "b": [0, 1.0, 0]}).fit(XS, YS)
    with pytest.raises(FeatureError, match="NaN"):
        M.create(name, class_text={"a": [np.nan, 0], "b": [0, 1.0]}).fit(XS, YS)
    with pytest.raises(FeatureError, match="real class labels"):
        M.create(name, class_text=CT).episode_logits(torch.zeros(1, 2, 1, 2), torch.zeros(1, 3, 2))


@pytest.mark.parametrize("name", TEXT)
def test_text_methods_are_deterministic_with_extra_classes_in_the_mapping(name):
    rng = np.random.default_rng(1)
    ct = {c: rng.normal(size=8) for c in range(10)}  # the whole task's text; episodes use 3 classes
    x = rng.normal(size=(6, 8)).astype(np.float32)
    y = np.array([7, 7, 2, 2, 5, 5])
    q = rng.normal(size=(5, 8)).astype(np.float32)
    a = M.create(name, class_text=ct).fit(x, y).predict_proba(q)
    b = M.create(name, class_text=ct).fit(x, y).predict_proba(q)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 3) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert list(M.create(name, class_text=ct).fit(x, y).classes_) == [2, 5, 7]


# ------------------------------------------------------------------------------ bridge
def _synthetic_aligned(n_classes=24, per_class=20, d_text=6, d_item=12, seed=0):
    """Items are a fixed linear image of their class text plus noise: a linear bridge can learn
    the map from base classes (more of them than text dimensions, so the base texts span the
    text space) and then recognise novel classes from their text alone."""
    rng = np.random.default_rng(seed)
    text = unit(rng.normal(size=(n_classes, d_text)))
    a = rng.normal(size=(d_text, d_item))
    y = np.repeat(np.arange(n_classes), per_class)
    x = text[y] @ a + 0.3 * rng.normal(size=(y.size, d_item))
    return x.astype(np.float32), y, text.astype(np.float32)


def test_bridge_learned_on_base_classes_recognises_novel_classes_zero_shot():
    x, y, text = _synthetic_aligned()
    base, novel = np.arange(20), np.arange(20, 24)
    pair = train_bridge(x, y, text, base, BridgeConfig(hidden=0, steps=300))
    assert pair.kind == "bridge" and pair.dim == 6 and pair.info["base_classes"] == base.tolist()
    z, t = pair.items(x), pair.texts(text)
    items = np.flatnonzero(np.isin(y, novel))
    pred = novel[(z[items] @ t[novel].T).argmax(1).numpy()]
    acc = float(np.mean(pred == y[items]))
    # measured 1.0 (seed 0); chance is 0.25: the map learned on 20 classes carries to 4 unseen ones
    assert acc >= 0.95, acc
    # the same through the zero-shot method with the pair's class-text mapping
    zs = M.create("zero-shot", class_text=pair.class_text(text))
    assert np.mean(zs.fit(z[items[::20]], y[items[::20]]).predict(z[items]) == y[items]) == acc


@pytest.mark.parametrize("hidden", [0, 32])
def test_bridge_is_deterministic_and_never_reads_novel_items(hidden):
    x, y, text = _synthetic_aligned()
    base = np.arange(8)
    a = train_bridge(x, y, text, base, BridgeConfig(steps=50, seed=3, hidden=hidden))
    x2 = x.copy()
    x2[y >= 8] = 1e3 * np.random.default_rng(5).normal(size=x2[y >= 8].shape)  # other classes' items changed
    text2 = text.copy()
    text2[8:] = 0.5  # other classes' texts changed
    b = train_bridge(x2, y, text2, base, BridgeConfig(steps=50, seed=3, hidden=hidden))
    for p, q in zip(a.item_map.parameters(), b.item_map.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    c = train_bridge(x, y, text, base, BridgeConfig(steps=50, seed=4, hidden=hidden))
    assert not torch.equal(a.items(x), c.items(x))


@pytest.mark.parametrize("hidden", [0, 16])
def test_bridge_trains_through_the_engine_exactly_as_a_hand_written_episodic_adamw_loop(hidden):
    """train_bridge goes through fewmm.engine.fit: the same weights as a loop written here from
    the definition (the engine's task stream of seed 3: every base class, round(batch_size /
    n_base) items of each; all items scored against the class texts of the task's classes /
    temperature; cross-entropy; torch AdamW), and the caller's global RNG states are untouched."""
    from fewmm.engine import TaskStream
    from fewmm.util import l2_normalize

    x, y, text = _synthetic_aligned()
    base = np.arange(3, 11)  # 8 base classes, 20 items each; other classes present and ignored
    cfg = BridgeConfig(hidden=hidden, steps=6, batch_size=40, seed=3, lr=1e-2, temperature=0.1, weight_decay=0.1)
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    pair = train_bridge(x, y, text, base, cfg)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert pair.info["engine"]["fit_config"]["optimizer"] == "adamw" and pair.info["engine"]["steps"] == 6
    # the reference
    keep = np.isin(y, base)
    xb = l2_normalize(torch.as_tensor(x[keep]))
    t = l2_normalize(torch.as_tensor(text))
    torch.manual_seed(3)
    g = torch.nn.Linear(12, 6) if hidden == 0 else torch.nn.Sequential(torch.nn.Linear(12, hidden), torch.nn.ReLU(),
                                                                         torch.nn.Linear(hidden, 6))
    opt = torch.optim.AdamW(g.parameters(), lr=1e-2, weight_decay=cfg.weight_decay)
    stream = TaskStream(y[keep], base, n_way=8, n_shot=1, n_query=4, tasks_per_step=1, seed=3)  # 40 / 8 = 5 items per class
    for step in range(6):
        ep = stream(step)
        assert sorted(ep.classes[0].tolist()) == base.tolist()  # every base class in every task
        idx = np.concatenate([ep.support[0], ep.query[0]], axis=1)  # (8 classes, 5 items)
        logits = l2_normalize(g(xb[torch.as_tensor(idx.reshape(-1))])) @ t[torch.as_tensor(ep.classes[0])].T / 0.1
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(8).repeat_interleave(5))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, q in zip(pair.item_map.parameters(), g.parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=0)
    with pytest.raises(AlignmentError, match=r"base classes \[2\] have a single item"):
        train_bridge(x[(y != 2) | (np.arange(y.size) % 20 == 0)], y[(y != 2) | (np.arange(y.size) % 20 == 0)], text, [1, 2])


def test_bridge_errors():
    x, y, text = _synthetic_aligned()
    with pytest.raises(AlignmentError, match="at least 2 base classes"):
        train_bridge(x, y, text, [3])
    with pytest.raises(AlignmentError, match="labels for"):
        train_bridge(x, y[:-1], text, [0, 1])
    with pytest.raises(AlignmentError, match="without items"):
        train_bridge(x[y != 1], y[y != 1], text, [0, 1])
    with pytest.raises(AlignmentError, match="must lie in"):
        train_bridge(x, y, text, [0, 40])
    with pytest.raises(AlignmentError, match="steps"):
        BridgeConfig(steps=0)
    pair = train_bridge(x, y, text, [0, 1], BridgeConfig(steps=2))
    with pytest.raises(AlignmentError, match="item features has dim 5, expected 12"):
        pair.items(np.zeros((2, 5)))


# ------------------------------------------------- end to end through tiny CLIP and CLAP models
@pytest.fixture(scope="module")
def images():
    rs = np.random.RandomState(3)
    return [rs.randint(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(9)]


@pytest.fixture(scope="module")
def clips():
    from fewmm.data.table import AudioClip

    rs = np.random.RandomState(4)
    t = np.arange(16000) / 16000
    return [AudioClip((0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rs.randn(t.size)).astype(np.float32), 16000)
            for i in range(9)]


CLASS_NAMES = ["a photo of a cat", "a photo of a dog", "a photo of a car"]


def _pair_features(kind, request, images, clips):
    if kind == "hf-clip":
        d = str(request.getfixturevalue("tiny_clip_dir"))
        item, text = E.create("hf-clip-image", model=d), E.create("hf-clip-text", model=d)
        payloads = images
    elif kind == "openclip":
        pytest.importorskip("open_clip")
        name, path = request.getfixturevalue("tiny_openclip")
        item = E.create("openclip-image", model_name=name, pretrained=str(path))
        text = E.create("openclip-text", model_name=name, pretrained=str(path))
        payloads = images
    else:
        d = str(request.getfixturevalue("tiny_clap_dir"))
        item, text = E.create("hf-clap-audio", model=d), E.create("hf-clap-text", model=d)
        payloads = clips
    pair = joint_pair(item, text)
    return pair, item, text, pair.items(item.embed(payloads)), pair.class_text(text.embed(CLASS_NAMES))


@pytest.mark.parametrize("kind", ["hf-clip", "openclip", "hf-clap"])
def test_every_text_method_end_to_end_on_a_tiny_joint_model(kind, request, images, clips):
    pair, item, text, z, ct = _pair_features(kind, request, images, clips)
    assert pair.kind == "joint" and pair.dim == item.dim == text.dim == 16
    y = np.repeat([0, 1, 2], 3)
    sup, qry = np.array([0, 3, 6]), np.setdiff1d(np.arange(9), [0, 3, 6])
    tz = torch.stack([ct[c] for c in range(3)])
    zs_ref = (z[qry] @ tz.T).argmax(1).numpy()  # cosine argmax, computed here
    for name in TEXT:
        m = M.create(name, class_text=ct).fit(z[sup], y[sup])
        p = m.predict_proba(z[qry])
        assert p.shape == (6, 3) and np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-5), name
        if name == "zero-shot":
            np.testing.assert_array_equal(m.predict(z[qry]), zs_ref)
    t0 = M.create("tip-adapter", class_text=ct, alpha=0.0).fit(z[sup], y[sup])
    np.testing.assert_array_equal(t0.predict(z[qry]), zs_ref)


def test_hf_clip_zero_shot_matches_transformers_directly(request, tiny_clip_dir, images):
    """Independent reference: CLIPModel + its processor and tokenizer called here, not through fewmm."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    pair, item, text, z, ct = _pair_features("hf-clip", request, images, None)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    proc = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    tok = AutoTokenizer.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        px = torch.cat([proc(images=__import__("PIL.Image").Image.fromarray(im), return_tensors="pt")["pixel_values"]
                        for im in images])
        img = model.get_image_features(pixel_values=px).pooler_output
        txt = torch.cat([model.get_text_features(**tok([t], return_tensors="pt")).pooler_output for t in CLASS_NAMES])
    ref = (torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(txt, dim=1).T).argmax(1).numpy()
    y = np.repeat([0, 1, 2], 3)
    m = M.create("zero-shot", class_text=ct).fit(z[[0, 3, 6]], y[[0, 3, 6]])
    np.testing.assert_array_equal(m.predict(z), ref)


def test_joint_pair_refuses_towers_of_different_models(request, tiny_clip_dir, tiny_clap_dir):
    d = str(tiny_clip_dir)
    img = E.create("hf-clip-image", model=d)
    with pytest.raises(AlignmentError, match="not the two towers of one joint model"):
        joint_pair(img, E.create("hf-clap-text", model=str(tiny_clap_dir)))
    with pytest.raises(AlignmentError, match="not the two towers"):
        joint_pair(img, E.create("minilm-l6"))
    with pytest.raises(AlignmentError, match="expected a image encoder and a text encoder"):
        joint_pair(E.create("hf-clip-text", model=d), img)


# ------------------------------------------------------------------- the harness's guarantees
def _toy_task_features(seed=0):
    x, y, text = _synthetic_aligned(n_classes=6, per_class=10, d_text=8, d_item=8, seed=seed)
    return torch.tensor(unit(x), dtype=torch.float32), y, {c: torch.tensor(text[c]) for c in range(6)}


class LabelSpy:
    """Labels that log every read (which items) into a shared event log."""

    def __init__(self, labels, log):
        self.labels, self.log = np.asarray(labels), log

    def __getitem__(self, idx):
        self.log.append(("labels", set(np.asarray(idx).reshape(-1).tolist())))
        return self.labels[idx]


class Recorder:
    """A method proxy logging fit / predict calls into the same log."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def fit(self, x, y):
        self.log.append(("fit", None))
        self.inner.fit(x, y)
        return self

    def predict(self, q):
        out = self.inner.predict(q)
        self.log.append(("predicted", None))
        return out


def _query_label_read_before_prediction(log, episodes) -> bool:
    """True if some episode's query labels were read between its fit and its predictions."""
    e, state = 0, None
    for kind, items in log:
        if kind == "fit":
            state = "fitted"
        elif kind == "predicted":
            state = "scored"
        elif kind == "labels" and state != "scored":
            if items & set(episodes.query[e].reshape(-1).tolist()):
                return True
        if kind == "labels" and state == "scored":
            e += 1
            state = None
    return False


@pytest.mark.parametrize("name", ["protonet"] + TEXT)
def test_no_method_sees_query_labels_before_scoring(name):
    feats, y, ct = _toy_task_features()
    ep = sample_episodes(y, 3, 1, 4, 5, seed=0)
    log = []
    spy = LabelSpy(y, log)
    make = TR.method_factory(name, ct, **({"epochs": 10} if name in ("tip-adapter-f", "clip-adapter", "lp++", "zs-lp") else {}))
    acc = TR.evaluate_method_episodes(lambda: Recorder(make(), log), feats, spy, ep)
    assert acc.shape == (5,)
    assert not _query_label_read_before_prediction(log, ep)
    # poisoned query labels (every query item relabelled) change the score, never the predictions
    poisoned = y.copy()
    q_only = np.setdiff1d(ep.query, ep.support)  # items that are queries and never support items
    assert q_only.size >= 30
    poisoned[q_only] = (poisoned[q_only] + 1) % 6
    _, p_clean = TR.evaluate_method_episodes(make, feats, y, ep, return_predictions=True)
    _, p_poison = TR.evaluate_method_episodes(make, feats, poisoned, ep, return_predictions=True)
    np.testing.assert_array_equal(p_clean, p_poison)


def test_a_method_that_peeks_at_query_labels_is_caught():
    feats, y, ct = _toy_task_features()
    ep = sample_episodes(y, 3, 1, 4, 3, seed=0)
    log = []
    spy = LabelSpy(y, log)

    class Peeker(M.ProtoNet):
        """Reads the labels of the items it is asked to predict (through a leaked table)."""

        def predict(self, q):
            rows = [int(np.flatnonzero((feats == torch.as_tensor(r)).all(1))[0]) for r in q]
            spy[np.asarray(rows)]  # the peek
            return super().predict(q)

    TR.evaluate_method_episodes(lambda: Recorder(Peeker(), log), feats, spy, ep)
    assert _query_label_read_before_prediction(log, ep)


def test_coop_split_shots_and_episode():
    y = np.repeat(np.arange(4), 8)
    pool, test = TR.coop_test_split(y, [1, 3], 3)
    assert np.intersect1d(pool, test).size == 0 and test.size == 6 and pool.size == 10
    assert set(y[test]) == {1, 3} and np.array_equal(test, TR.coop_test_split(y, [3, 1], 3)[1])
    shots = {s: TR.coop_shots(y, pool, [1, 3], 2, s) for s in (1, 2, 3)}
    for s, v in shots.items():
        assert v.size == 4 and np.isin(v, pool).all() and np.bincount(y[v], minlength=4).tolist() == [0, 2, 0, 2]
    assert not all(np.array_equal(shots[1], shots[s]) for s in (2, 3))  # the seeds draw different shots
    np.testing.assert_array_equal(shots[2], TR.coop_shots(y, pool, [1, 3], 2, 2))
    ep = TR.coop_episode(y, [1, 3], shots[1], test)
    assert ep.classes.tolist() == [[1, 3]] and ep.support.shape == (1, 2, 2) and ep.query.shape == (1, 2, 3)
    assert (y[ep.query[0, 1]] == 3).all() and (y[ep.support[0, 0]] == 1).all()
    with pytest.raises(Exception, match="6-shot needs 6 items of class 1"):
        TR.coop_shots(y, pool, [1, 3], 6, 1)
    with pytest.raises(Exception, match="class 1 has 8 items"):
        TR.coop_test_split(y, [1], 8)


# ------------------------------------------------------------------- the CLI on real data
@pytest.mark.needs_data
def test_transfer_cli_on_esc50_text(data_root, tmp_path, capsys):
    """A short real run: bridge on the 30 base classes, zero-shot, 5 episodes and the CoOp
    protocol, the README table from its JSON."""
    import json

    rc = TR.main(["--task", "esc50-text", "--data-root", str(data_root), "--episodes", "5", "--shots", "1",
                  "--methods", "protonet,zero-shot,tip-adapter,cross-modal-lp", "--am3-steps", "5", "--tune",
                  "--tune-episodes", "5", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "transfer-esc50-text.json").read_text())
    assert doc["finished"] and doc["pairs"]["default/audio"]["base_classes"] == doc["folds"]["default"]["base_classes"]
    assert doc["pairs"]["default/audio"]["training"]["n_items"] == 254  # the base-class items only
    zs = doc["zero_shot"]["default/audio"]["novel"]
    assert zs["classes"] == 10 and zs["items"] == 80 and 0 <= zs["accuracy"] <= 100
    split = doc["coop_splits"]["default/audio/1-shot"]
    test = set(split["test_items"])
    assert len(test) == 30 and all(not (set(v) & test) and len(v) == 10 for v in split["shots_by_seed"].values())
    methods = {(r["protocol"], r["method"]) for r in doc["results"]}
    assert {("episodes", m) for m in ("protonet", "zero-shot", "tip-adapter", "tip-adapter[val]", "cross-modal-lp",
                                      "protonet[bridge]", "am3")} <= methods
    coop = [r for r in doc["results"] if r["protocol"] == "coop"]
    assert coop and all(r["seeds"] == [1, 2, 3] and len(r["per_seed"]) == 3 for r in coop)
    ref = [r for r in doc["results"] if r["protocol"] == "episodes" and r["method"] == "protonet"][0]
    assert "paired_delta" not in ref and all("paired_delta" in r for r in doc["results"]
                                             if r["protocol"] == "episodes" and r["method"] != "protonet")
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:transfer-esc50-text -->\nold\n<!-- /results:transfer-esc50-text -->\ny\n")
    assert TR.main(["--report", str(tmp_path / "transfer-esc50-text.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "\nold\n" not in text and "| default / audio | tip-adapter[val] |" in text and text.endswith("y\n")


def test_transfer_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        TR.main(["--episodes", "5"])  # no task
    assert "--task is required" in capsys.readouterr().err
    bad = tmp_path / "s.toml"
    bad.write_text('task = "esc50-text"\nepisodez = 3\n')
    assert TR.main(["--config", str(bad)]) == 2
    assert "unknown keys ['episodez']" in capsys.readouterr().err
    assert TR.main(["--report", str(tmp_path / "none.json"), "--readme", str(tmp_path / "R.md")]) == 2


def test_support_means_ablation_replaces_text_by_class_means():
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    y = np.array(["a", "a", "b"])
    m = M.create("zero-shot", class_text="support-means").fit(x, y)
    mean_a = unit([0.9, 0.3])
    np.testing.assert_allclose(m.weights_.numpy(), [mean_a, [0.0, 1.0]], atol=1e-6)
    with pytest.raises(FeatureError, match="or 'support-means', got 'means'"):
        M.create("tip-adapter", class_text="means").fit(x, y)


@pytest.mark.parametrize("name, kw, msg", [
    ("tip-adapter", {"alpha": -1.0}, "alpha must be a finite number >= 0, got -1.0"),
    ("tip-adapter-f", {"epochs": 2.5}, "epochs must be an integer >= 0, got 2.5"),
    ("clip-adapter", {"ratio": 1.5}, "ratio must be a number in \\[0, 1\\], got 1.5"),
    ("cross-modal-lp", {"C": 0}, "C must be a finite number > 0, got 0"),
    ("lp++", {"lr": float("nan")}, "lr must be a finite number > 0"),
    ("zs-lp", {"logit_scale": -5}, "logit_scale must be a finite number > 0"),
    ("zero-shot", {"class_text": [1.0, 2.0]}, "class_text must be a mapping"),
])
def test_bad_hyper_parameters_are_named(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        M.create(name, **{"class_text": CT, **kw}).fit(XS, YS)


# -- argument checks before any task is built (adversarial review, fix2: M2, M10) ----------------------


@pytest.mark.parametrize("args, msg", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "protonet,protonet"], "--methods lists protonet more than once"),
    (["--shots", "1,1"], "--shots lists 1 more than once"),
])
def test_transfer_checks_method_names_and_duplicates_before_building_the_task(args, msg, capsys, monkeypatch):
    def boom(*a, **k):  # the task must not be built
        raise AssertionError("run() reached")

    monkeypatch.setattr(TR, "run", boom)
    try:
        rc = TR.main(["--task", "digits-av", *args])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_class_text_given_an_array_or_raw_strings_names_class_text():
    x = torch.randn(4, 3)
    y = [0, 0, 1, 1]
    with pytest.raises(FeatureError, match="class_text must be a mapping .*got .ndarray.: a bare array has no class labels"):
        M.create("zero-shot", class_text=np.zeros((2, 3))).fit(x, y)
    with pytest.raises(FeatureError, match=r"^class_text\[0\] is text \('a dog'\); class_text takes text EMBEDDINGS \(arrays of "
                                           r"shape \(d,\) or \(n_templates, d\)\): embed the class texts with the text encoder "
                                           r"of the aligned pair first \(e\.g\. fewmm\.tasks\.embed_class_text\)$"):
        M.create("zero-shot", class_text={0: "a dog", 1: "a cat"}).fit(x, y)
    with pytest.raises(FeatureError, match=r"class_text\[0\] is text"):
        M.create("tip-adapter", class_text={0: ["a dog", "dog"], 1: ["a cat"]}).fit(x, y)
    with pytest.raises(FeatureError, match=r"class_text\[0\] must be a numeric array"):
        M.create("zero-shot", class_text={0: {"a": 1}, 1: [1.0, 0, 0]}).fit(x, y)
