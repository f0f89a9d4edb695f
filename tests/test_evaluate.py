"""fewmm.evaluate against a numpy reference: chunking, the euclidean ProtoNet fast path (1 shot
and k shots), the compiled path's chunk padding (run eagerly here: ``torch.compile`` replaced by
the identity, so it takes milliseconds), chunk sizes, input checks. Fast: the mutation tests
(benchmarks/mutation.py) run this file once per mutant of fewmm/evaluate.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fewmm.evaluate as EV
import fewmm.methods as M
from fewmm.episodes import sample_episodes
from fewmm.errors import EpisodeError, FeatureError
from fewmm.evaluate import evaluate_episodes, resolve_chunk_size

# any warning is an error here: e.g. an out= buffer of the wrong size that torch resizes
pytestmark = pytest.mark.filterwarnings("error")


def table(n_classes=12, per_class=10, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * 0.5
    y = np.repeat(np.arange(n_classes), per_class)
    x = (centers[y] + rng.normal(size=(y.size, dim))).astype(np.float32)
    return x, y


def ref_protonet_predictions(x, ep):
    """Snell et al. 2017 in float64 numpy: class means of the shots, nearest by squared distance."""
    x = x.astype(np.float64)
    protos = x[ep.support].mean(axis=2)  # (E, N, d)
    q = x[ep.query.reshape(len(ep), -1)]  # (E, N*Q, d)
    d2 = ((q[:, :, None, :] - protos[:, None, :, :]) ** 2).sum(-1)
    return d2.argmin(-1)


@pytest.mark.parametrize("shots", [1, 4])
@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 1000])
def test_euclidean_protonet_equals_reference_for_any_chunk(shots, chunk):
    x, y = table()
    ep = sample_episodes(y, 5, shots, 3, 23, seed=shots)
    acc, pred = evaluate_episodes(M.create("protonet"), torch.as_tensor(x), ep, chunk_size=chunk, return_predictions=True)
    ref = ref_protonet_predictions(x, ep)
    assert pred.dtype == np.int64 and pred.shape == (23, 15) and acc.dtype == np.float64 and acc.shape == (23,)
    assert np.array_equal(pred, ref)
    assert np.array_equal(acc, (ref == ep.query_labels()).mean(1))
    assert 0 < acc.mean() < 1  # right and wrong predictions both occur: the comparison means something
    # without return_predictions: the same accuracies only
    again = evaluate_episodes(M.create("protonet"), x, ep, chunk_size=chunk)
    assert isinstance(again, np.ndarray) and np.array_equal(again, acc)


@pytest.mark.parametrize("shots", [1, 4])
def test_protonet_blocks_span_chunks_and_a_partial_last_block(monkeypatch, shots):
    """The fast path's norms, logits, finiteness check and arg-max run per block of chunks:
    blocks of 9 episodes (chunks of 3, block size 10 rounded down to whole chunks) over 47
    episodes, the last block partial, give the reference's predictions."""
    monkeypatch.setattr(EV, "PROTONET_BLOCK_EPISODES", 10)
    x, y = table(seed=11)
    ep = sample_episodes(y, 5, shots, 3, 47, seed=shots)
    seen = []
    real = EV.check_finite_scores
    monkeypatch.setattr(EV, "check_finite_scores", lambda s, m, f=None: seen.append(s.shape[0]) or real(s, m, f))
    acc, pred = evaluate_episodes(M.create("protonet"), x, ep, chunk_size=3, return_predictions=True)
    assert seen == [9, 9, 9, 9, 9, 2]
    ref = ref_protonet_predictions(x, ep)
    assert np.array_equal(pred, ref) and 0 < acc.mean() < 1
    assert np.array_equal(acc, evaluate_episodes(M.create("protonet"), x, ep, chunk_size=47))


def test_numpy_and_float64_input_and_explicit_device():
    x, y = table(seed=1)
    ep = sample_episodes(y, 4, 2, 2, 10, seed=0)
    a = evaluate_episodes(M.create("protonet"), torch.as_tensor(x), ep)
    assert np.array_equal(evaluate_episodes(M.create("protonet"), x, ep), a)
    assert np.array_equal(evaluate_episodes(M.create("protonet"), x.astype(np.float64), ep), a)
    assert np.array_equal(evaluate_episodes(M.create("protonet"), torch.as_tensor(x), ep, device="cpu"), a)


def test_overridden_scoring_is_not_replaced_by_the_fast_path():
    """A ProtoNet subclass with its own episode_logits is scored by that method, not the
    euclidean fast path."""

    class Farthest(M.ProtoNet):
        def episode_logits(self, support, query):
            return -super().episode_logits(support, query)

    x, y = table(seed=2)
    ep = sample_episodes(y, 5, 2, 3, 12, seed=0)
    _, pred = evaluate_episodes(Farthest(), x, ep, return_predictions=True)
    x64 = x.astype(np.float64)
    protos = x64[ep.support].mean(axis=2)
    q = x64[ep.query.reshape(len(ep), -1)]
    assert np.array_equal(pred, ((q[:, :, None] - protos[:, None]) ** 2).sum(-1).argmax(-1))
    assert not EV._euclidean_protonet(Farthest()) and EV._euclidean_protonet(M.create("protonet"))
    assert not EV._euclidean_protonet(M.create("protonet-cosine")) and not EV._euclidean_protonet(M.create("simpleshot"))


def test_row_sq_norms_equal_the_plain_reduction_across_blocks():
    x = torch.as_tensor(table(n_classes=7, per_class=9, dim=33)[0])
    for block in (1, 200, 33 * 4 * 5, 2**20):  # one row per block, partial blocks, one block
        got = EV._row_sq_norms(x, block_bytes=block)
        assert torch.equal(got, (x * x).sum(-1))


def test_resolve_chunk_size():
    y = np.repeat(np.arange(10), 20)
    ep = sample_episodes(y, 5, 1, 15, 5000, seed=0)  # 80 rows per episode
    # CPU default: 2 MiB of gathered float32 rows; 80 rows x 1280 dims x 4 bytes = 409,600 bytes
    assert resolve_chunk_size(None, ep, 1280) == 2 * 2**20 // 409_600 == 5
    assert resolve_chunk_size(None, ep, 1280, itemsize=8) == 2
    assert resolve_chunk_size(None, ep, 16) == 2 * 2**20 // (80 * 16 * 4) == 409
    assert resolve_chunk_size(None, ep, 4) == 1000  # 1638 fit: capped at DEFAULT_CHUNK_EPISODES
    assert resolve_chunk_size(None, ep[0:300], 16) == 300  # capped at the number of episodes
    assert resolve_chunk_size(None, ep, 10**9) == 1  # at least one episode
    assert resolve_chunk_size(None, ep, 1280, device="cuda") == 1000
    assert resolve_chunk_size(None, ep[0:7], 1280, device="cuda") == 7
    assert resolve_chunk_size(64, ep, 1280) == 64 and resolve_chunk_size(0, ep, 1280) == 1
    assert resolve_chunk_size(10**6, ep, 1280) == 5000
    assert resolve_chunk_size(5, ep[0:1], 1280) == 1 and resolve_chunk_size(None, ep[0:1], 1280) == 1


class Recording(M.ProtoNet):
    """Cosine ProtoNet that records the episode count of every scored chunk."""

    def __init__(self):
        super().__init__(metric="cosine")
        self.chunks = []

    def episode_logits(self, support, query):
        self.chunks.append(support.shape[0])
        return super().episode_logits(support, query)


def test_chunks_are_the_resolved_size():
    x, y = table(dim=2048, seed=8)
    ep = sample_episodes(y, 5, 2, 3, 100, seed=0)  # 25 rows x 2048 dims x 4 bytes: 10 episodes per 2 MiB
    m = Recording()
    ref = evaluate_episodes(m, x, ep)
    assert m.chunks == [10] * 10 and resolve_chunk_size(None, ep, 2048) == 10
    m = Recording()
    assert np.array_equal(evaluate_episodes(m, x, ep, chunk_size=30), ref)
    assert m.chunks == [30, 30, 30, 10]


def test_euclidean_fast_path_is_taken_on_cpu(monkeypatch):
    """Plain euclidean ProtoNet is scored by the fast path (gathered norms), not by
    ProtoNet.episode_logits; both give the same predictions."""
    x, y = table(seed=9)
    ep = sample_episodes(y, 5, 2, 3, 12, seed=0)

    class Generic(M.ProtoNet):  # same scoring, but overridden: the generic chunk loop
        def episode_logits(self, support, query):
            return super().episode_logits(support, query)

    acc_slow, slow = evaluate_episodes(Generic(), x, ep, return_predictions=True)
    calls = []
    real = M.ProtoNet.episode_logits
    monkeypatch.setattr(M.ProtoNet, "episode_logits", lambda self, s, q: calls.append(1) or real(self, s, q))
    acc_fast, fast = evaluate_episodes(M.create("protonet"), x, ep, return_predictions=True)
    assert calls == [] and np.array_equal(fast, slow) and np.array_equal(acc_fast, acc_slow)
    _, cos = evaluate_episodes(M.create("protonet-cosine"), x, ep, return_predictions=True)
    assert calls == [1]


def test_bad_features_and_indices_are_named():
    x, y = table(seed=3)
    ep = sample_episodes(y, 5, 1, 2, 4, seed=0)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(FeatureError, match=r"NaN or inf values in 1 rows \(first rows: \[7\]\)"):
        evaluate_episodes(M.create("protonet"), torch.as_tensor(bad), ep)
    bad[7, 3] = np.inf
    with pytest.raises(FeatureError, match=r"\[7\]"):
        evaluate_episodes(M.create("protonet"), torch.as_tensor(bad), ep)
    with pytest.raises(FeatureError):
        evaluate_episodes(M.create("protonet"), torch.as_tensor(x)[None], ep)
    neg = sample_episodes(y, 5, 1, 2, 4, seed=0)
    object.__setattr__(neg, "support", neg.support - 1000)
    with pytest.raises(EpisodeError, match=r"^episode support indices span -\d+\.\.-?\d+, but the feature table has 120 rows"):
        evaluate_episodes(M.create("protonet"), x, neg)
    small = torch.as_tensor(x[:50])
    with pytest.raises(EpisodeError, match=r"^episode (support|query) indices span \d+\.\.\d+, but the feature table has 50 rows: "
                                           r"sample the episodes from the labels of this very table$"):
        evaluate_episodes(M.create("protonet"), small, ep)
    # the fast check passes a clean float32 table through unchanged (no copy)
    t = torch.as_tensor(x)
    assert EV._checked_features(t).data_ptr() == t.data_ptr()


@pytest.fixture
def eager_compile(monkeypatch):
    """compile=True with torch.compile replaced by a spy that returns the eager function: the
    compiled path's chunking and padding run in milliseconds instead of a ~20 s compile. Records
    the compile calls and the episode count of every call of the "compiled" function."""
    log = {"compiles": [], "chunks": []}

    def fake_compile(fn, **kw):
        log["compiles"].append(kw)

        def run(feats, row_sq, si, qi, n, k):
            log["chunks"].append((si.shape[0], qi.shape[0]))
            return fn(feats, row_sq, si, qi, n, k)

        return run

    monkeypatch.setattr(EV, "_COMPILED", {})
    monkeypatch.setattr(EV.torch, "compile", fake_compile)
    return log


@pytest.mark.parametrize("shots", [1, 2, 3])
def test_compiled_path_chunks_and_padding(eager_compile, shots):
    x, y = table(seed=4)
    c = EV.COMPILED_CHUNK_EPISODES
    e = 2 * c + 30  # two full chunks and one padded
    ep = sample_episodes(y, 5, shots, 4, e, seed=6)
    default = evaluate_episodes(M.create("protonet"), x, ep)  # compile is off by default
    assert eager_compile["compiles"] == [] and eager_compile["chunks"] == []
    acc, pred = evaluate_episodes(M.create("protonet"), x, ep, return_predictions=True, compile=True)
    assert np.array_equal(acc, default)
    ref = ref_protonet_predictions(x, ep)
    assert pred.shape == (e, 20) and acc.shape == (e,)
    assert np.array_equal(pred, ref)
    assert np.array_equal(acc, (ref == ep.query_labels()).mean(1))
    # one compile (static shapes), cached; three calls, each with exactly one chunk of episodes
    assert eager_compile["compiles"] == [{"dynamic": False}]
    assert eager_compile["chunks"] == [(c, c)] * 3
    assert np.array_equal(evaluate_episodes(M.create("protonet"), x, ep, compile=True), acc)
    assert len(eager_compile["compiles"]) == 1 and len(eager_compile["chunks"]) == 6
    # ignored for other methods: the default path, no compile
    cos = evaluate_episodes(M.create("protonet-cosine"), x, ep, compile=True)
    assert np.array_equal(cos, evaluate_episodes(M.create("protonet-cosine"), x, ep))
    assert len(eager_compile["chunks"]) == 6


def test_row_sq_norms_keep_dtype_and_write_in_place():
    import warnings

    x64 = torch.as_tensor(table(n_classes=5, per_class=7, dim=40, seed=5)[0]).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no resized out= buffers
        for block in (1, 40 * 8 * 3, 2**20):
            got = EV._row_sq_norms(x64, block_bytes=block)
            assert got.dtype == torch.float64 and torch.equal(got, (x64 * x64).sum(-1))
            got32 = EV._row_sq_norms(x64.float(), block_bytes=block)
            assert torch.equal(got32, (x64.float() ** 2).sum(-1))


def test_fast_feature_check_is_taken_only_for_clean_float32_tables(monkeypatch):
    calls = []
    real = EV.check_features
    monkeypatch.setattr(EV, "check_features", lambda f, name: calls.append(name) or real(f, name))
    x = torch.as_tensor(table(seed=6)[0])
    assert EV._checked_features(x).data_ptr() == x.data_ptr() and calls == []
    out = EV._checked_features(x.double())
    assert out.dtype == torch.float32 and calls == ["features"]
    with pytest.raises(FeatureError, match=r"^features "):
        EV._checked_features(x[None])
    with pytest.raises(FeatureError, match=r"^features "):
        EV._checked_features(x[:0])


def test_an_index_one_past_the_table_is_caught():
    x, y = table(seed=7)
    ep = sample_episodes(y, 5, 1, 2, 6, seed=0)
    top = int(max(ep.support.max(), ep.query.max()))
    with pytest.raises(EpisodeError, match=rf"\.\.{top}, but the feature table has {top} rows"):
        evaluate_episodes(M.create("protonet"), x[:top], ep)
    evaluate_episodes(M.create("protonet"), x[: top + 1], ep)  # the largest index is the last row: fine


# -- the output checks of evaluate_episodes name the method, the hook and the features -------------
# (found by mutation testing: benchmarks/mutation.py, survivors of check_logits / check_finite_scores)


class _Transposed(M.ProtoNet):
    """episode_logits returns (E, N, N*Q) instead of (E, N*Q, N)."""

    def episode_logits(self, support, query):
        return super().episode_logits(support, query).transpose(1, 2)


class _NaNScores(M.ProtoNet):
    def episode_logits(self, support, query):
        return torch.full((query.shape[0], query.shape[1], support.shape[1]), float("nan"))


def test_wrong_episode_logits_shape_names_the_method_and_the_hook():
    x, y = table(seed=3)
    ep = sample_episodes(y, 5, 1, 3, 4, seed=0)  # E=4, N*Q=15, N=5
    with pytest.raises(Exception, match=r"^method 'protonet' \(_Transposed\): episode_logits returned shape \(4, 5, 15\); "
                                        r"expected a float torch.Tensor of shape \(episodes, n_query, n_way\) = \(4, 15, 5\)$"):
        evaluate_episodes(_Transposed(), x, ep)


def test_non_finite_episode_scores_name_the_method_and_the_largest_feature():
    x, y = table(seed=3)
    x = x.copy()
    x[0, 0] = 2.5e7  # the largest |feature|, reported as a float32 overflow hint
    ep = sample_episodes(y, 5, 1, 3, 4, seed=0)
    with pytest.raises(Exception, match=r"^method 'protonet' \(_NaNScores\) gave 300 non-finite \(NaN or inf\) score\(s\) of 300: "
                                        r".*; the largest \|feature\| is 2\.5e\+07: squared distances"):
        evaluate_episodes(_NaNScores(), x, ep)  # 4 episodes x 15 queries x 5 classes = 300


def test_overflowing_scores_on_the_fast_path_name_protonet_and_the_largest_feature():
    """Euclidean ProtoNet's fast path (blocks of chunks) checks its logits as well: features of
    ~1e20 overflow float32 squared distances to inf; the message names the method and the largest
    feature, as on the generic path."""
    x, y = table(seed=4)
    x = (x * np.float32(1e20)).astype(np.float32)
    ep = sample_episodes(y, 5, 1, 3, 4, seed=0)
    with pytest.raises(Exception, match=r"^method 'protonet' \(ProtoNet\) gave \d+ non-finite \(NaN or inf\) score\(s\) of 300: "
                                        r".*; the largest \|feature\| is [0-9.]+e\+20: squared distances"):
        evaluate_episodes(M.create("protonet"), x, ep)
