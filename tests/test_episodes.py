import numpy as np
import pytest

from fewmm.episodes import kshot_splits, sample_episodes
from fewmm.errors import EpisodeError


def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_shapes_and_layout():
    y = labels_of([20] * 30)
    ep = sample_episodes(y, n_way=5, n_shot=2, n_query=3, n_episodes=50, seed=7)
    assert ep.classes.shape == (50, 5)
    assert ep.support.shape == (50, 5, 2)
    assert ep.query.shape == (50, 5, 3)
    # class-major: every support/query item of slot c belongs to classes[:, c]
    assert (y[ep.support] == ep.classes[:, :, None]).all()
    assert (y[ep.query] == ep.classes[:, :, None]).all()
    assert ep.support_labels().shape == (50, 10) and ep.query_labels()[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]


def test_without_replacement_within_episode():
    y = labels_of([6] * 12)
    ep = sample_episodes(y, 5, 3, 3, 200, seed=1)
    for e in range(200):
        assert len(set(ep.classes[e])) == 5
        items = np.concatenate([ep.support[e].ravel(), ep.query[e].ravel()])
        assert len(set(items.tolist())) == items.size == 30


def test_same_seed_same_episodes_and_seed_changes_them():
    y = labels_of([20] * 30)
    a = sample_episodes(y, 5, 1, 15, 100, seed=3)
    b = sample_episodes(y, 5, 1, 15, 100, seed=3)
    c = sample_episodes(y, 5, 1, 15, 100, seed=4)
    assert np.array_equal(a.support, b.support) and np.array_equal(a.query, b.query)
    assert not np.array_equal(a.support, c.support)


def test_uniform_over_classes_and_items():
    y = labels_of([10] * 10)
    ep = sample_episodes(y, 2, 1, 1, 20000, seed=0)
    freq = np.bincount(ep.classes.ravel(), minlength=10) / ep.classes.size
    assert np.allclose(freq, 0.1, atol=0.01)
    item_freq = np.bincount(ep.support.ravel(), minlength=100)
    # each item of a chosen class is the shot with prob 1/10: expected 20000*2/10/10 = 400
    assert abs(item_freq.mean() - 400) < 1e-9 and item_freq.min() > 300 and item_freq.max() < 500


def test_restricted_classes():
    y = labels_of([10] * 10)
    ep = sample_episodes(y, 3, 1, 2, 100, seed=0, classes=[7, 8, 9])
    assert set(np.unique(ep.classes)) == {7, 8, 9}


def test_class_too_small_is_named():
    y = labels_of([20, 20, 20, 20, 4, 20])
    with pytest.raises(EpisodeError, match=r"'rare' \(class 4\) has 4"):
        sample_episodes(y, 5, 1, 15, 10, class_names=["a", "b", "c", "d", "rare", "f"])


def test_allow_fewer_queries():
    y = labels_of([20, 20, 20, 20, 6, 20])
    ep = sample_episodes(y, 5, 1, 15, 10, allow_fewer_queries=True)
    assert ep.n_query == 5


@pytest.mark.parametrize("kw", [dict(n_way=0), dict(n_shot=0), dict(n_query=-1), dict(n_episodes=0), dict(n_way=7)])
def test_bad_counts(kw):
    y = labels_of([20] * 6)
    args = dict(n_way=5, n_shot=1, n_query=5, n_episodes=10) | kw
    with pytest.raises(EpisodeError):
        sample_episodes(y, **args)


def test_kshot_splits():
    y = labels_of([5, 7, 9])
    splits = kshot_splits(y, 2, seeds=(1, 2, 3))
    assert [s.seed for s in splits] == [1, 2, 3]
    for s in splits:
        assert np.bincount(y[s.support]).tolist() == [2, 2, 2]
        assert np.intersect1d(s.support, s.query).size == 0
        assert s.support.size + s.query.size == y.size
    assert not np.array_equal(splits[0].support, splits[1].support)
    assert np.array_equal(kshot_splits(y, 2, seeds=(1,))[0].support, splits[0].support)
    with pytest.raises(EpisodeError, match="class 0 has 5"):
        kshot_splits(y, 5)


def test_huge_episode_counts_are_refused_up_front_naming_episodes(monkeypatch):
    """--episodes 10**10 was a numpy memory error deep in sampling (adversarial review, fix2 M6)."""
    import fewmm.episodes as EP
    from fewmm.errors import EpisodeError

    labels = np.repeat(np.arange(10), 20)
    # by hand: 16 * E * (10 + 5 * 20) + 24 * E * 5 * 16 = E * 3680 bytes
    assert EP.sampling_bytes(1000, 10, 5, 20, 16) == 3_680_000
    monkeypatch.setattr(EP, "_physical_memory", lambda: 2 * 3_680_000)  # half of it: exactly 1000 episodes
    assert EP.sample_episodes(labels, 5, 1, 15, 1000, seed=0).n_episodes == 1000
    with pytest.raises(EpisodeError, match=r"1001 episodes \(--episodes / n_episodes\) need about 0\.0 GiB .* lower --episodes \(at most ~1000 here\)"):
        EP.sample_episodes(labels, 5, 1, 15, 1001, seed=0)
