"""Independent references for every statistic and scorer (issue 17, item 1).

Each kit function is compared with a reference that shares no code with it: scipy for the
intervals, hand-computed small cases, and small numpy implementations written from the papers
for the scorers (cosine ProtoNet, kNN, SimpleShot CL2N) and the fixed fusion heads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import fewmm.heads as H
import fewmm.methods as M
from fewmm.episodes import sample_episodes
from fewmm.evaluate import evaluate_episodes
from fewmm.metrics import mean_ci, paired_difference, per_episode_accuracy, wilson_interval
from fewmm.multimodal import MMFeatures

# -- statistics ------------------------------------------------------------------------------


def test_paired_difference_hand_computed():
    a = [1.0, 0.5, 0.8, 0.6]
    b = [0.8, 0.5, 0.4, 0.6]
    # d = a - b = [0.2, 0, 0.4, 0]: mean 0.15; deviations .05 -.15 .25 -.15, sum of squares 0.11
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(15.0)
    assert d.std == pytest.approx(100 * math.sqrt(0.11 / 3))
    assert d.ci95 == pytest.approx(100 * 1.959963984540054 * math.sqrt(0.11 / 3) / 2)
    assert d.ci95 == pytest.approx(18.7652, abs=1e-4)  # by hand: 1.96 * 0.191485 / 2
    assert d.n == 4
    rev = paired_difference(b, a)
    assert rev.mean == pytest.approx(-15.0) and rev.ci95 == pytest.approx(d.ci95)
    # identical methods: zero difference, zero width
    z = paired_difference(a, a)
    assert z.mean == 0.0 and z.ci95 == 0.0


def test_paired_difference_matches_scipy_on_correlated_episodes():
    """Episodes of varying difficulty, both methods on the same ones: the paired interval is the
    normal interval of the per-episode differences (scipy), ~10x narrower than the unpaired one.
    An implementation that un-pairs the episodes (sorts, shuffles, or pools them) fails here."""
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.3, 1.0, size=500)
    a = np.clip(difficulty + 0.02 + rng.normal(0, 0.02, 500), 0, 1)
    b = np.clip(difficulty + rng.normal(0, 0.02, 500), 0, 1)
    d = a - b
    lo, hi = stats.norm.interval(0.95, loc=d.mean(), scale=stats.sem(d))
    est = paired_difference(a, b)
    assert est.mean == pytest.approx(100 * d.mean(), rel=1e-12)
    assert est.ci95 == pytest.approx(100 * (hi - lo) / 2, rel=1e-9)
    assert est.std == pytest.approx(100 * np.std(d, ddof=1), rel=1e-12)
    assert est.n == 500
    # unpaired (Welch-style) half-width for comparison: far wider
    unpaired = 1.959963984540054 * math.sqrt(a.var(ddof=1) / 500 + b.var(ddof=1) / 500)
    assert est.ci95 < 0.2 * 100 * unpaired


def test_mean_ci_hand_computed_and_scipy():
    v = [0.2, 0.4, 0.6]  # mean 0.4, sample std 0.2
    e = mean_ci(v)
    assert e.mean == pytest.approx(40.0) and e.std == pytest.approx(20.0)
    assert e.ci95 == pytest.approx(100 * 1.959963984540054 * 0.2 / math.sqrt(3))
    lo, hi = stats.norm.interval(0.95, loc=0.4, scale=stats.sem(v))
    assert e.ci95 == pytest.approx(100 * (hi - lo) / 2, rel=1e-12)


def test_per_episode_accuracy_hand_computed():
    p = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [3, 2, 1, 0]])
    t = np.array([[0, 1, 2, 0], [1, 1, 1, 1], [0, 1, 2, 3]])
    assert per_episode_accuracy(p, t).tolist() == [0.75, 1.0, 0.0]
    with pytest.raises(ValueError, match="episodes, queries"):
        per_episode_accuracy(p[0], t[0])


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (5, 10), (10, 10), (17, 23), (950, 1000), (1, 1000), (512, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    acc, lo, hi = wilson_interval(k, n)
    assert acc == pytest.approx(100 * k / n, rel=1e-12)
    assert lo == pytest.approx(100 * ci.low, rel=1e-9, abs=1e-12)
    assert hi == pytest.approx(100 * ci.high, rel=1e-9, abs=1e-12)


def test_wilson_interval_hand_computed():
    z2 = 1.959963984540054**2
    # 0 of 10: [0, z^2 / (n + z^2)]; 10 of 10: [n / (n + z^2), 1]
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.0, 100 * z2 / (10 + z2)))
    assert wilson_interval(0, 10)[2] == pytest.approx(27.753, abs=1e-3)
    assert wilson_interval(10, 10) == pytest.approx((100.0, 100 * 10 / (10 + z2), 100.0))
    # 5 of 10: symmetric about 50, half-width z sqrt(1/40 + z^2/400) / (1 + z^2/10)
    acc, lo, hi = wilson_interval(5, 10)
    half = 1.959963984540054 * math.sqrt(0.025 + z2 / 400) / (1 + z2 / 10)
    assert (acc, lo, hi) == pytest.approx((50.0, 100 * (0.5 - half), 100 * (0.5 + half)))
    assert (lo, hi) == pytest.approx((23.659, 76.341), abs=1e-3)  # the textbook Wilson 5/10 interval
    for bad in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError, match="0 <= correct <= total"):
            wilson_interval(*bad)


# -- scorers: numpy references written from the papers --------------------------------------


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_protonet_cosine(sx, sy, qx, n, temperature=10.0):
    """Snell et al. 2017 with cosine similarity: prototypes are the class means of the
    L2-normalised shots; a query's logit is temperature x cos(query, prototype)."""
    sxn, qxn = _unit(sx), _unit(qx)
    protos = np.stack([sxn[sy == c].mean(0) for c in range(n)])
    return temperature * qxn @ _unit(protos).T


def ref_knn(sx, sy, qx, n, k):
    """k nearest support items by cosine similarity, majority vote; ties between classes broken
    by 1e-3 x the mean similarity of each class's neighbours (the kit's documented rule)."""
    sim = _unit(qx) @ _unit(sx).T
    out = np.zeros((qx.shape[0], n))
    for i in range(qx.shape[0]):
        nb = np.argsort(-sim[i], kind="stable")[: min(k, sx.shape[0])]
        for c in range(n):
            mine = nb[sy[nb] == c]
            if mine.size:
                out[i, c] = mine.size + 1e-3 * sim[i, mine].mean()
    return out


def ref_simpleshot(sx, sy, qx, n, mean):
    """Wang et al. 2019, CL2N: x -> (x - mean) / ||x - mean||, nearest class mean, logits are
    negative squared euclidean distances."""
    s, q = _unit(sx - mean), _unit(qx - mean)
    protos = np.stack([s[sy == c].mean(0) for c in range(n)])
    return -((q[:, None, :] - protos[None]) ** 2).sum(-1)


def varied_blobs(n_classes=10, per_class=15, dim=12, seed=0):
    """Gaussian classes with an offset common mean and row norms spread over ~2 orders of
    magnitude: normalising before or after averaging, or centring on the wrong mean, changes
    predictions here."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * 1.5 + 2.0
    y = np.repeat(np.arange(n_classes), per_class)
    x = centers[y] + rng.normal(size=(y.size, dim)) * 1.3
    x *= np.exp(rng.normal(0, 1.2, size=(y.size, 1)))
    return x, y


def _episode_reference(ref, x, ep, **kw):
    preds = []
    n = ep.n_way
    for e in range(len(ep)):
        sx, sy = x[ep.support[e].ravel()], ep.support_labels()[e]
        qx = x[ep.query[e].ravel()]
        preds.append(ref(sx, sy, qx, n, **kw).argmax(1))
    return np.stack(preds)


@pytest.fixture(scope="module")
def ref_data():
    x, y = varied_blobs()
    ep = sample_episodes(y, 5, 3, 5, 40, seed=11)
    return x, y, ep


def test_cosine_protonet_matches_reference(ref_data):
    x, y, ep = ref_data
    xt = torch.as_tensor(x, dtype=torch.float32)
    # one episode through fit / decision_function: the logits themselves
    e = 0
    sx, sy, qx = x[ep.support[e].ravel()], ep.support_labels()[e], x[ep.query[e].ravel()]
    m = M.create("protonet-cosine").fit(xt[ep.support[e].ravel()], sy)
    np.testing.assert_allclose(m.decision_function(xt[ep.query[e].ravel()]), ref_protonet_cosine(sx, sy, qx, 5), atol=1e-5)
    m2 = M.create("protonet-cosine", temperature=3.0).fit(xt[ep.support[e].ravel()], sy)
    np.testing.assert_allclose(m2.decision_function(xt[ep.query[e].ravel()]), ref_protonet_cosine(sx, sy, qx, 5, 3.0), atol=1e-5)
    # every episode through the batched path: the predictions
    acc, pred = evaluate_episodes(M.create("protonet-cosine"), xt, ep, return_predictions=True)
    ref = _episode_reference(ref_protonet_cosine, x, ep)
    assert np.array_equal(pred, ref)
    assert np.array_equal(acc, (ref == ep.query_labels()).mean(1))


def test_cosine_protonet_differs_from_unnormalised_prototypes(ref_data):
    """Guard on the data: the mean of raw shots (then normalised) predicts differently here, so
    the reference test above really tells the two prototype rules apart."""
    x, y, ep = ref_data

    def raw_mean(sx, sy, qx, n):
        protos = np.stack([sx[sy == c].mean(0) for c in range(n)])
        return _unit(qx) @ _unit(protos).T

    assert (_episode_reference(raw_mean, x, ep) != _episode_reference(ref_protonet_cosine, x, ep)).mean() > 0.01


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_matches_reference(ref_data, k):
    x, y, ep = ref_data
    xt = torch.as_tensor(x, dtype=torch.float32)
    e = 1
    sx, sy, qx = x[ep.support[e].ravel()], ep.support_labels()[e], x[ep.query[e].ravel()]
    m = M.create("knn", k=k).fit(xt[ep.support[e].ravel()], sy)
    np.testing.assert_allclose(m.decision_function(xt[ep.query[e].ravel()]), ref_knn(sx, sy, qx, 5, k), atol=1e-5)
    acc, pred = evaluate_episodes(M.create("knn", k=k), xt, ep, return_predictions=True)
    ref = _episode_reference(ref_knn, x, ep, k=k)
    assert np.array_equal(pred, ref)
    assert np.array_equal(acc, (ref == ep.query_labels()).mean(1))


def test_knn_hand_computed():
    # support: class 0 at angles 0 and 10 deg, class 1 at 90 deg; query at 60 deg
    ang = np.deg2rad([0.0, 10.0, 90.0])
    s = np.stack([np.cos(ang), np.sin(ang)], 1) * np.array([[1.0], [5.0], [0.2]])  # norms do not matter
    q = np.array([[np.cos(np.deg2rad(60)), np.sin(np.deg2rad(60))]])
    y = np.array([0, 0, 1])
    # two classes: decision_function is the score of class 1 minus that of class 0 (scikit-learn)
    # k=1: nearest is class 1 (30 deg away): 1 vote + 1e-3 cos 30; class 0 scores 0
    c1 = 1 + 1e-3 * math.cos(math.radians(30))
    got1 = M.create("knn", k=1).fit(s, y).decision_function(q)
    assert got1.shape == (1,) and got1[0] == pytest.approx(c1 - 0.0, abs=1e-6)
    # k=3: class 0 has 2 votes (50 and 60 deg away), class 1 one
    got3 = M.create("knn", k=3).fit(s, y).decision_function(q)[0]
    c0 = 2 + 1e-3 * (math.cos(math.radians(50)) + math.cos(math.radians(60))) / 2
    assert got3 == pytest.approx(c1 - c0, abs=1e-6)
    assert M.create("knn", k=3).fit(s, y).predict(q).tolist() == [0]
    # k larger than the support set is clipped to it
    assert M.create("knn", k=99).fit(s, y).decision_function(q)[0] == pytest.approx(got3, abs=1e-6)


def test_simpleshot_support_centring_matches_reference(ref_data):
    x, y, ep = ref_data
    xt = torch.as_tensor(x, dtype=torch.float32)
    e = 2
    sx, sy, qx = x[ep.support[e].ravel()], ep.support_labels()[e], x[ep.query[e].ravel()]
    m = M.create("simpleshot").fit(xt[ep.support[e].ravel()], sy)
    np.testing.assert_allclose(m.decision_function(xt[ep.query[e].ravel()]), ref_simpleshot(sx, sy, qx, 5, sx.mean(0)), atol=1e-5)
    acc, pred = evaluate_episodes(M.create("simpleshot"), xt, ep, return_predictions=True)
    preds = []
    for i in range(len(ep)):
        s = x[ep.support[i].ravel()]
        preds.append(ref_simpleshot(s, ep.support_labels()[i], x[ep.query[i].ravel()], 5, s.mean(0)).argmax(1))
    ref = np.stack(preds)
    assert np.array_equal(pred, ref)
    assert np.array_equal(acc, (ref == ep.query_labels()).mean(1))


def test_simpleshot_base_centring_matches_reference(ref_data):
    x, y, ep = ref_data
    base = np.random.default_rng(5).normal(size=(200, x.shape[1])) * 2 + 3.0
    xt = torch.as_tensor(x, dtype=torch.float32)
    m = M.create("simpleshot").fit_base(torch.as_tensor(base, dtype=torch.float32))
    e = 3
    sx, sy, qx = x[ep.support[e].ravel()], ep.support_labels()[e], x[ep.query[e].ravel()]
    m.fit(xt[ep.support[e].ravel()], sy)
    np.testing.assert_allclose(m.decision_function(xt[ep.query[e].ravel()]), ref_simpleshot(sx, sy, qx, 5, base.mean(0)), atol=1e-5)
    acc, pred = evaluate_episodes(m, xt, ep, return_predictions=True)
    ref = _episode_reference(ref_simpleshot, x, ep, mean=base.mean(0))
    assert np.array_equal(pred, ref)
    # the two centrings really differ on these episodes
    sup = np.stack([
        ref_simpleshot(x[ep.support[i].ravel()], ep.support_labels()[i], x[ep.query[i].ravel()], 5, x[ep.support[i].ravel()].mean(0)).argmax(1)
        for i in range(len(ep))
    ])
    assert (sup != ref).mean() > 0.01


def test_euclidean_protonet_matches_numpy_reference(ref_data):
    """Snell et al. 2017: mean of raw shots, negative squared euclidean distance (no normalising)."""
    x, y, ep = ref_data

    def ref(sx, sy, qx, n):
        protos = np.stack([sx[sy == c].mean(0) for c in range(n)])
        return -((qx[:, None, :] - protos[None]) ** 2).sum(-1)

    acc, pred = evaluate_episodes(M.create("protonet"), torch.as_tensor(x, dtype=torch.float32), ep, return_predictions=True)
    assert np.array_equal(pred, _episode_reference(ref, x, ep))


# -- fixed fusion heads against hand-computed probabilities ---------------------------------


def _mm(img, aud, mask, labels):
    return MMFeatures(
        {"image": torch.tensor(img, dtype=torch.float32), "audio": torch.tensor(aud, dtype=torch.float32)},
        torch.tensor(mask), ("image", "audio"), np.array(labels), ["c0", "c1"],
    )


# support: class 0 = e1 in both modalities, class 1 = e2 in both (scaled: heads normalise)
SUP = _mm([[3.0, 0.0], [0.0, 0.5]], [[2.0, 0.0], [0.0, 7.0]], [[True, True], [True, True]], [0, 1])
# query 0: image e1, audio (0.6, 0.8); query 1: image only; query 2: audio only
QRY = _mm([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]], [[0.6, 0.8], [0.0, 0.0], [1.2, 1.6]],
          [[True, True], [True, False], [False, True]], [0, 0, 1])

S = 1 / (1 + math.exp(-2))  # softmax([0, -2])[0] = 0.880797
A = 1 / (1 + math.exp(0.4))  # softmax([-0.8, -0.4])[0] = 0.401312
DIMS = {"image": 2, "audio": 2}


def _proba(name, **kw):
    head = H.create(name, DIMS, ("image", "audio"), **kw)
    clf = H.HeadClassifier(head).fit(SUP)
    return clf.predict_proba(QRY), clf.explain(QRY)


def test_avg_proto_hand_computed():
    # image: squared distances of unit vectors 0 and 2; audio (0.6, 0.8): 0.8 and 0.4; T = 1
    p, w = _proba("avg-proto", temperature=1.0)
    assert S == pytest.approx(0.880797, abs=1e-6) and A == pytest.approx(0.401312, abs=1e-6)
    np.testing.assert_allclose(p, [[(S + A) / 2, (2 - S - A) / 2], [S, 1 - S], [A, 1 - A]], atol=1e-6)
    np.testing.assert_allclose(w, [[0.5, 0.5], [1, 0], [0, 1]], atol=1e-7)
    # default T = 0.1: image softmax([0, -20]), audio softmax([-8, -4])
    p, _ = _proba("avg-proto")
    si, sa = 1 / (1 + math.exp(-20)), 1 / (1 + math.exp(4))
    np.testing.assert_allclose(p[0], [(si + sa) / 2, (2 - si - sa) / 2], atol=1e-6)
    assert p[0, 0] == pytest.approx(0.508993, abs=1e-6)


def test_concat_hand_computed():
    # x = [image / |image|, audio / |audio|], missing block = 0; T = 1
    # query 0: d0 = 0 + 0.8, d1 = 2 + 0.4; query 1 (no audio): d0 = 0 + 1, d1 = 2 + 1;
    # query 2 (no image): d0 = 1 + 0.8, d1 = 1 + 0.4
    p, w = _proba("concat", temperature=1.0)
    c0 = 1 / (1 + math.exp(-1.6))
    np.testing.assert_allclose(p, [[c0, 1 - c0], [S, 1 - S], [A, 1 - A]], atol=1e-6)
    assert c0 == pytest.approx(0.832018, abs=1e-6)
    np.testing.assert_allclose(w, [[0.5, 0.5], [1, 0], [0, 1]], atol=1e-7)
    p, _ = _proba("concat", temperature=0.5)  # logits scale with 1 / T
    c0 = 1 / (1 + math.exp(-3.2))
    np.testing.assert_allclose(p[0], [c0, 1 - c0], atol=1e-6)


def test_single_modality_hand_computed():
    p, w = _proba("single:image", temperature=1.0)
    np.testing.assert_allclose(p, [[S, 1 - S], [S, 1 - S], [0.5, 0.5]], atol=1e-6)  # query 2 abstains
    np.testing.assert_allclose(w, [[1, 0], [1, 0], [0, 0]], atol=0)
    p, w = _proba("single:audio", temperature=1.0)
    np.testing.assert_allclose(p, [[A, 1 - A], [0.5, 0.5], [A, 1 - A]], atol=1e-6)
    np.testing.assert_allclose(w, [[0, 1], [0, 0], [0, 1]], atol=0)
