import re

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


# -- exact messages and pinned draws (found by mutation testing: benchmarks/mutation.py) ---------


@pytest.mark.parametrize("arg", ["n_way", "n_shot", "n_query", "n_episodes"])
@pytest.mark.parametrize("bad", [0, 2.0, "3"])
def test_bad_count_messages_name_the_argument(arg, bad):
    y = labels_of([20] * 6)
    args = dict(n_way=5, n_shot=1, n_query=5, n_episodes=10) | {arg: bad}
    with pytest.raises(EpisodeError, match=rf"^{arg} must be an integer >= 1, got {bad!r}$"):
        sample_episodes(y, **args)


def test_one_episode_of_one_shot_one_query_is_allowed():
    ep = sample_episodes(labels_of([2, 2]), n_way=1, n_shot=1, n_query=1, n_episodes=1, seed=0)
    assert ep.support.shape == ep.query.shape == (1, 1, 1)


@pytest.mark.parametrize("seed", [-1, True, 1.5, "0", None])
def test_bad_seed_message(seed):
    with pytest.raises(EpisodeError, match=rf"^seed must be an integer >= 0, got {seed!r}$"):
        sample_episodes(labels_of([5] * 5), 2, 1, 1, 3, seed=seed)


@pytest.mark.parametrize("labels", [np.zeros((4, 5), dtype=np.int64), np.repeat([0.0, 1.0], 10), np.array(["a", "b"] * 5)])
def test_bad_labels_message(labels):
    with pytest.raises(EpisodeError, match="^" + re.escape(f"labels must be a 1-d integer array, got shape {labels.shape} dtype {labels.dtype}") + "$"):
        sample_episodes(labels, 2, 1, 1, 3)


def test_messages_for_missing_and_small_classes():
    y = labels_of([20] * 4 + [3] * 7)  # classes 4..10 have 3 items
    with pytest.raises(EpisodeError, match=r"^classes \[11, 12\] have no items$"):
        sample_episodes(y, 2, 1, 1, 3, classes=[0, 11, 12])
    many = list(range(20, 32))
    with pytest.raises(EpisodeError, match=r"^classes \[20, 21, 22, 23, 24, 25, 26, 27, 28, 29\] have no items$"):
        sample_episodes(y, 2, 1, 1, 3, classes=[0, *many])
    # seven short classes: five named, then "and 2 more"; lower the queries to 3 - 1 = 2
    with pytest.raises(EpisodeError, match=(
            r"^1-shot 5-query episodes need 6 items per class, but class 4 has 3, class 5 has 3, class 6 has 3, class 7 has 3, "
            r"class 8 has 3 and 2 more\. Lower --queries to 2 \(or pass allow_fewer_queries=True in Python\)\.$")):
        sample_episodes(y, 2, 1, 5, 3)
    # six short classes: five named, "and 1 more"
    with pytest.raises(EpisodeError, match=r"class 8 has 3 and 1 more\. Lower"):
        sample_episodes(y, 2, 1, 5, 3, classes=[0, 4, 5, 6, 7, 8, 9])
    # exactly five short classes: no "more"
    with pytest.raises(EpisodeError, match=r"class 8 has 3\. Lower --queries to 2 "):
        sample_episodes(y, 2, 1, 5, 3, classes=[0, 4, 5, 6, 7, 8])
    # one short class with names; queries cannot be lowered enough
    with pytest.raises(EpisodeError, match=(
            r"^3-shot 1-query episodes need 4 items per class, but 'e' \(class 4\) has 3\. "
            r"Lower --shots/--queries, or leave out the classes that are too small\.$")):
        sample_episodes(y, 2, 3, 1, 3, classes=[0, 4], class_names=list("abcdefghijk"))
    # Q can be lowered to exactly 1
    with pytest.raises(EpisodeError, match=r"Lower --queries to 1 \("):
        sample_episodes(y, 2, 2, 4, 3, classes=[0, 4])
    # allow_fewer_queries but not even one query: the smallest class is named
    with pytest.raises(EpisodeError, match=r"^'e' \(class 4\) has 3 items: not enough for 3 shots and 1 query$"):
        sample_episodes(y, 2, 3, 4, 3, classes=[0, 1, 4], allow_fewer_queries=True, class_names=list("abcdefghijk"))
    with pytest.raises(EpisodeError, match=r"^5-way episodes need 5 classes with >= 16 items, only 4 have$"):
        sample_episodes(y, 5, 1, 15, 3, classes=[0, 1, 2, 3])


def test_episodes_are_pinned_for_a_seed():
    """The exact draws for a fixed seed (measured): a change to the sampler that moves episodes
    (e.g. an unstable sort of the items of a class) changes every published number."""
    y = labels_of([7, 30, 12, 18])[np.random.default_rng(0).permutation(67)]
    ep = sample_episodes(y, 2, 2, 1, 3)  # default seed 0
    assert ep.seed == 0 and isinstance(ep.seed, int)
    assert ep.classes.tolist() == PINNED["classes"]
    assert ep.support.tolist() == PINNED["support"]
    assert ep.query.tolist() == PINNED["query"]
    assert ep.support_labels().tolist() == [[0, 0, 1, 1]] * 3 and ep.query_labels().tolist() == [[0, 1]] * 3


def test_slicing_episodes():
    y = labels_of([10] * 8)
    ep = sample_episodes(y, 3, 2, 2, 6, seed=4)
    one = ep[2]
    assert len(one) == 1 and one.seed == 4
    assert np.array_equal(one.classes, ep.classes[2:3]) and np.array_equal(one.support, ep.support[2:3])
    assert np.array_equal(one.query, ep.query[2:3])
    part = ep[1:4]
    assert len(part) == 3 and np.array_equal(part.query, ep.query[1:4]) and np.array_equal(part.classes, ep.classes[1:4])
    assert np.array_equal(part.support, ep.support[1:4]) and part.seed == 4
    assert (ep.n_episodes, ep.n_way, ep.n_shot, ep.n_query) == (6, 3, 2, 2)


def test_kshot_split_messages_and_pinned_draws():
    y = labels_of([5, 7, 9])
    with pytest.raises(EpisodeError, match=r"^n_shot must be >= 1, got 0$"):
        kshot_splits(y, 0)
    with pytest.raises(EpisodeError, match=r"^5-shot split needs 6 items per class, but 'a' \(class 0\) has 5$"):
        kshot_splits(y, 5, class_names=["a", "b", "c"])
    s = kshot_splits(y, 2, seeds=(1,))[0]
    assert s.support.tolist() == PINNED["kshot"]


# measured with the code of this commit (python: see test_episodes_are_pinned_for_a_seed)
PINNED = {
    "classes": [[1, 0], [1, 2], [3, 0]],
    "support": [[[66, 40], [25, 34]], [[63, 42], [5, 49]], [[27, 62], [33, 7]]],
    "query": [[[0], [33]], [[10], [53]], [[57], [34]]],
    "kshot": [1, 2, 5, 10, 18, 20],
}


def test_infeasibility_gives_the_sampler_message_or_none():
    from fewmm.episodes import infeasibility

    y = labels_of([20] * 4 + [3] * 2)
    assert infeasibility(y, 4, 5, 15, classes=[0, 1, 2, 3]) is None
    assert infeasibility(y, 2, 1, 2) is None  # every class has 3 >= 1 + 2 items
    with pytest.raises(EpisodeError) as e:
        sample_episodes(y, 2, 1, 5, 1, seed=0)
    assert infeasibility(y, 2, 1, 5) == str(e.value) == (
        "1-shot 5-query episodes need 6 items per class, but class 4 has 3, class 5 has 3. "
        "Lower --queries to 2 (or pass allow_fewer_queries=True in Python).")
    assert infeasibility(y, 5, 1, 5, classes=[0, 1, 2, 3]) == "5-way episodes need 5 classes with >= 6 items, only 4 have"
    assert infeasibility(y, 2, 1, 5, classes=[0, 5], class_names=list("abcdef")).startswith(
        "1-shot 5-query episodes need 6 items per class, but 'f' (class 5) has 3.")
    # one class of exactly K+Q items is feasible (one episode is drawn, any seed)
    assert infeasibility(labels_of([2, 2]), 2, 1, 1) is None


def test_physical_memory_is_page_size_times_physical_pages():
    """The refusal below compares with this value; checked against the sysconf numbers looked
    up by their numeric ids (os.sysconf_names), where the platform has them."""
    import os

    import fewmm.episodes as EP

    if not {"SC_PAGE_SIZE", "SC_PHYS_PAGES"} <= set(getattr(os, "sysconf_names", {})):
        assert EP._physical_memory() is None
        return
    want = os.sysconf(os.sysconf_names["SC_PAGE_SIZE"]) * os.sysconf(os.sysconf_names["SC_PHYS_PAGES"])
    assert want > 0 and EP._physical_memory() == want


def test_memory_refusal_message_gives_gib_and_the_episode_count_that_fits(monkeypatch):
    """By hand: 400_000 episodes of 5-way from 10 classes of up to 20 items, 16 items each need
    400_000 * 3680 = 1_472_000_000 B = 1.3709 GiB; half of 2 GiB = 2**30 B fits
    int(400_000 * 2**30 / 1_472_000_000) = int(291_777.67) = 291_777 episodes."""
    import fewmm.episodes as EP

    monkeypatch.setattr(EP, "_physical_memory", lambda: 2**31)
    msg = (r"^400000 episodes \(--episodes / n_episodes\) need about 1\.4 GiB to sample \(5-way from 10 classes of up "
           r"to 20 items\), more than half of this machine's 2\.0 GiB: lower --episodes \(at most ~291777 here\)$")
    with pytest.raises(EpisodeError, match=msg):
        EP.check_sampling_memory(400_000, 10, 5, 20, 16)
    # when not even one episode fits, the message still suggests at least 1 (int(...) would be 0)
    monkeypatch.setattr(EP, "_physical_memory", lambda: 2)
    with pytest.raises(EpisodeError, match=r"at most ~1 here\)$"):
        EP.check_sampling_memory(1, 10, 5, 20, 16)


# -- class_disjoint_split and check_episode_indices: exact values and messages (found by mutation
# testing: `python benchmarks/mutation.py episodes`; no test of this file reached them before).

def test_class_disjoint_split_exact_values_rounding_and_clamping():
    """Measured once (numpy default_rng(seed).permutation of the sorted unique classes): the defaults
    are seed 0 and base_fraction 0.5; duplicates are dropped and float ids taken as ints; the base
    size is round(base_fraction * C) (Python rounds 1.5 to 2) kept within 1 .. C - 1."""
    from fewmm.episodes import class_disjoint_split

    def split(*a, **k):
        b, n = class_disjoint_split(*a, **k)
        assert b.dtype == n.dtype == np.int64
        return b.tolist(), n.tolist()

    assert split(np.arange(10)) == split(np.arange(10), seed=0, base_fraction=0.5) == ([2, 3, 4, 6, 7], [0, 1, 5, 8, 9])
    assert split([5, 3, 3, 9, 1, 7, 0], seed=4, base_fraction=0.3) == ([1, 3], [0, 5, 7, 9])  # round(1.8) = 2 of 6
    assert split(np.arange(6), seed=1, base_fraction=0.25) == ([0, 4], [1, 2, 3, 5])  # round(1.5) = 2
    assert split(np.arange(4), seed=2, base_fraction=0.01) == ([3], [0, 1, 2])  # round(0.04) = 0 -> at least 1
    assert split(np.arange(4), seed=2, base_fraction=0.99) == ([0, 2, 3], [1])  # round(3.96) = 4 -> at most 3
    assert split([7, 2]) == ([2], [7])  # 2 classes: the smallest split
    assert split(np.array([3.0, 1.0, 2.0, 0.0])) == ([0, 2], [1, 3])


@pytest.mark.parametrize("classes,fraction,msg", [
    (np.arange(4), 0, "base_fraction must be in (0, 1), got 0"),
    (np.arange(4), 1.0, "base_fraction must be in (0, 1), got 1.0"),
    (np.arange(4), -0.5, "base_fraction must be in (0, 1), got -0.5"),
    ([3, 3], 0.5, "a class-disjoint base/novel split needs at least 2 classes, got 1"),
    ([], 0.5, "a class-disjoint base/novel split needs at least 2 classes, got 0"),
])
def test_class_disjoint_split_says_what_is_wrong(classes, fraction, msg):
    from fewmm.episodes import class_disjoint_split

    with pytest.raises(EpisodeError) as e:
        class_disjoint_split(classes, base_fraction=fraction)
    assert str(e.value) == msg


def test_check_episode_indices_names_the_part_and_the_span():
    """Indices must be rows 0 .. n_items - 1 of the table: the boundaries n_items = max + 1 (passes)
    and max (raises), a negative index, the support checked before the query, and empty index
    arrays pass (their min / max are never taken)."""
    import dataclasses

    from fewmm.episodes import check_episode_indices

    ep = sample_episodes(np.repeat(np.arange(3), 4), 2, 1, 2, 3, seed=0)  # support rows 1..6, query rows 0..7
    assert (int(ep.support.min()), int(ep.support.max()), int(ep.query.min()), int(ep.query.max())) == (1, 6, 0, 7)
    tail = ": sample the episodes from the labels of this very table"
    check_episode_indices(ep, 8)
    for n, msg in ((7, "episode query indices span 0..7, but the feature table has 7 rows"),
                   (6, "episode support indices span 1..6, but the feature table has 6 rows")):
        with pytest.raises(EpisodeError) as e:
            check_episode_indices(ep, n)
        assert str(e.value) == msg + tail
    neg = dataclasses.replace(ep, support=ep.support - 2)
    with pytest.raises(EpisodeError) as e:
        check_episode_indices(neg, 100)
    assert str(e.value) == "episode support indices span -1..4, but the feature table has 100 rows" + tail
    empty = dataclasses.replace(ep, support=ep.support[:, :, :0], query=ep.query[:, :, :0])
    check_episode_indices(empty, 1)
