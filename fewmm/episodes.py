"""Few-shot episodes, sampled from a seed alone.

Two protocols:

* :func:`sample_episodes` - the N-way K-shot Q-query episode protocol (Vinyals et al. 2016):
  each episode draws N classes without replacement, then K support and Q query items per class
  without replacement within the episode.
* :func:`kshot_splits` - the CLIP-style protocol (Radford et al. 2021; Zhou et al. 2022,
  CoOp): K labelled shots per class over the whole label set, seeds 1, 2, 3, every other item
  of those classes a query.

Episodes are index arrays into a feature table, so two methods compared in one run see exactly
the same support and query items (a paired comparison). Support and query indices are laid out
class-major, ``support[e, c, k]``, so the label of ``support[e, c, k]`` in episode-local terms is
``c``; the global class is ``classes[e, c]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import os

import numpy as np

from .errors import EpisodeError


@dataclass(frozen=True)
class Episodes:
    """A batch of N-way K-shot Q-query episodes.

    Attributes
    ----------
    classes : numpy.ndarray of shape (E, N), int64
        Global class index of each episode-local class.
    support : numpy.ndarray of shape (E, N, K), int64
        Item indices of the support set, class-major.
    query : numpy.ndarray of shape (E, N, Q), int64
        Item indices of the query set, class-major.
    seed : int
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    seed: int

    @property
    def n_episodes(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_way(self) -> int:
        return int(self.classes.shape[1])

    @property
    def n_shot(self) -> int:
        return int(self.support.shape[2])

    @property
    def n_query(self) -> int:
        return int(self.query.shape[2])

    def __len__(self) -> int:
        return self.n_episodes

    def __getitem__(self, sl: slice) -> "Episodes":
        if not isinstance(sl, slice):
            sl = slice(sl, sl + 1)
        return Episodes(self.classes[sl], self.support[sl], self.query[sl], self.seed)

    def support_labels(self) -> np.ndarray:
        """Episode-local labels of the support set, shape (E, N*K), int64, class-major."""
        e, n, k = self.support.shape
        return np.broadcast_to(np.repeat(np.arange(n), k), (e, n * k)).copy()

    def query_labels(self) -> np.ndarray:
        """Episode-local labels of the query set, shape (E, N*Q), int64, class-major."""
        e, n, q = self.query.shape
        return np.broadcast_to(np.repeat(np.arange(n), q), (e, n * q)).copy()


def _class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items grouped by class: (classes, offsets, order) where the items of classes[i] are
    order[offsets[i]:offsets[i+1]] (in increasing item index)."""
    order = np.argsort(labels, kind="stable")
    classes, counts = np.unique(labels[order], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return classes, offsets, order


def sampling_bytes(n_episodes: int, n_pool: int, n_way: int, max_count: int, need: int) -> int:
    """Peak bytes :func:`sample_episodes` allocates (an estimate, within ~2x): float64 keys and
    int64 argsorts of shape (E, classes) and (E, N, largest class), and the int64 indices
    (E, N, K+Q)."""
    e = int(n_episodes)
    return 16 * e * (int(n_pool) + int(n_way) * int(max_count)) + 24 * e * int(n_way) * int(need)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return None


def check_sampling_memory(n_episodes: int, n_pool: int, n_way: int, max_count: int, need: int) -> None:
    """Raise :class:`EpisodeError` naming ``--episodes`` when sampling would need more than half of
    this machine's physical memory (instead of a numpy memory error or the OOM killer later).

    Raises
    ------
    EpisodeError
        The estimate of :func:`sampling_bytes` exceeds half the physical memory.
    """
    phys = _physical_memory()
    need_b = sampling_bytes(n_episodes, n_pool, n_way, max_count, need)
    if phys is not None and need_b > phys // 2:
        fit = max(1, int(n_episodes * (phys // 2) / need_b))
        raise EpisodeError(f"{n_episodes} episodes (--episodes / n_episodes) need about {need_b / 2**30:.1f} GiB to sample "
                           f"({n_way}-way from {n_pool} classes of up to {max_count} items), more than half of this machine's "
                           f"{phys / 2**30:.1f} GiB: lower --episodes (at most ~{fit} here)")


def sample_episodes(
    labels,
    n_way: int,
    n_shot: int,
    n_query: int,
    n_episodes: int,
    seed: int = 0,
    classes=None,
    allow_fewer_queries: bool = False,
    class_names=None,
) -> Episodes:
    """Sample N-way K-shot Q-query episodes from a seed alone.

    Parameters
    ----------
    labels : array-like of shape (n_items,), int
        Class of every item of the feature table.
    n_way, n_shot, n_query : int
        N classes per episode, K support and Q query items per class.
    n_episodes : int
    seed : int
        Episodes depend on ``(labels, n_way, n_shot, n_query, n_episodes, seed, classes)`` only,
        never on the method that will use them.
    classes : array-like of int, optional
        Restrict sampling to these classes (e.g. novel classes). Default: every class present.
    allow_fewer_queries : bool, default False
        If a class has fewer than K+Q items, lower Q for the whole run to the largest value every
        class supports (query sets stay rectangular). Off by default: such a class is an error.
    class_names : sequence of str, optional
        Used in error messages.

    Returns
    -------
    Episodes

    Raises
    ------
    EpisodeError
        Bad way/shot/query counts, fewer than N eligible classes, or a class with fewer than K+Q
        items (the message names the class and its count).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise EpisodeError(f"labels must be a 1-d integer array, got shape {labels.shape} dtype {labels.dtype}")
    for arg, v, lo in (("n_way", n_way, 1), ("n_shot", n_shot, 1), ("n_query", n_query, 1), ("n_episodes", n_episodes, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise EpisodeError(f"{arg} must be an integer >= {lo}, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EpisodeError(f"seed must be an integer >= 0, got {seed!r}")
    all_classes, offsets, order = _class_index(labels)
    counts = np.diff(offsets)
    if classes is None:
        pool = all_classes
    else:
        pool = np.unique(np.asarray(classes, dtype=np.int64))
        missing = np.setdiff1d(pool, all_classes)
        if missing.size:
            raise EpisodeError(f"classes {missing.tolist()[:10]} have no items")
    pos = np.searchsorted(all_classes, pool)
    pool_counts = counts[pos]

    def cname(c):
        return f"{class_names[c]!r} (class {c})" if class_names is not None else f"class {c}"

    need = n_shot + n_query
    short = pool_counts < need
    if short.any():
        if not allow_fewer_queries:
            worst = np.flatnonzero(short)
            names = ", ".join(f"{cname(pool[i])} has {pool_counts[i]}" for i in worst[:5])
            more = f" and {worst.size - 5} more" if worst.size > 5 else ""
            raise EpisodeError(
                f"{n_shot}-shot {n_query}-query episodes need {need} items per class, but {names}{more}. "
                + (f"Lower --queries to {int(pool_counts.min()) - n_shot} (or pass allow_fewer_queries=True in Python)."
                   if int(pool_counts.min()) - n_shot >= 1 else "Lower --shots/--queries, or leave out the classes that are too small.")
            )
        n_query = int(pool_counts.min()) - n_shot
        need = n_shot + n_query
        if n_query < 1:
            i = int(np.argmin(pool_counts))
            raise EpisodeError(f"{cname(pool[i])} has {pool_counts[i]} items: not enough for {n_shot} shots and 1 query")
    if pool.size < n_way:
        raise EpisodeError(f"{n_way}-way episodes need {n_way} classes with >= {need} items, only {pool.size} have")

    max_count = int(pool_counts.max())
    check_sampling_memory(n_episodes, pool.size, n_way, max_count, need)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), n_way, n_shot, n_query]))
    # classes: argsort of uniform keys = a random permutation per episode, without replacement
    ep_cls_pos = np.argsort(rng.random((n_episodes, pool.size)), axis=1)[:, :n_way]
    ep_classes = pool[ep_cls_pos]
    # items: for each chosen class, a random subset of size K+Q among its items
    c_counts = pool_counts[ep_cls_pos]  # (E, N)
    c_offsets = offsets[pos][ep_cls_pos]
    keys = rng.random((n_episodes, n_way, max_count))
    keys[np.arange(max_count)[None, None, :] >= c_counts[..., None]] = 2.0  # padding sorts last
    pick = np.argsort(keys, axis=2)[..., :need]  # (E, N, K+Q) positions within class
    items = order[c_offsets[..., None] + pick]
    return Episodes(
        classes=ep_classes.astype(np.int64),
        support=items[..., :n_shot].astype(np.int64),
        query=items[..., n_shot:].astype(np.int64),
        seed=int(seed),
    )


@dataclass(frozen=True)
class KShotSplit:
    """One CLIP-style K-shot split over the whole label set.

    Attributes
    ----------
    support : numpy.ndarray of shape (C * K,), int64
        Item indices of the shots, class-major (classes in increasing order).
    query : numpy.ndarray of shape (n_items - C * K,), int64
        Every other item of those classes.
    seed : int
    """

    support: np.ndarray
    query: np.ndarray
    seed: int


def kshot_splits(labels, n_shot: int, seeds=(1, 2, 3), class_names=None) -> list[KShotSplit]:
    """CLIP-style few-shot splits: ``n_shot`` items per class over the whole label set, for each
    seed (default 1, 2, 3 as in CoOp, Zhou et al. 2022); the remaining items are the queries.

    Raises
    ------
    EpisodeError
        A class has fewer than ``n_shot + 1`` items (named in the message).
    """
    labels = np.asarray(labels)
    classes, offsets, order = _class_index(labels)
    counts = np.diff(offsets)
    if n_shot < 1:
        raise EpisodeError(f"n_shot must be >= 1, got {n_shot}")
    bad = np.flatnonzero(counts < n_shot + 1)
    if bad.size:
        c = classes[bad[0]]
        nm = f"{class_names[c]!r} (class {c})" if class_names is not None else f"class {c}"
        raise EpisodeError(f"{n_shot}-shot split needs {n_shot + 1} items per class, but {nm} has {counts[bad[0]]}")
    out = []
    for s in seeds:
        rng = np.random.default_rng(int(s))
        sup = []
        for i in range(classes.size):
            members = order[offsets[i] : offsets[i + 1]]
            sup.append(np.sort(rng.choice(members, size=n_shot, replace=False)))
        sup = np.concatenate(sup).astype(np.int64)
        query = np.setdiff1d(np.arange(labels.size), sup).astype(np.int64)
        query = query[np.isin(labels[query], classes)]
        out.append(KShotSplit(support=sup, query=query, seed=int(s)))
    return out


def infeasibility(labels, n_way: int, n_shot: int, n_query: int, classes=None, class_names=None) -> str | None:
    """Why N-way K-shot Q-query episodes cannot be drawn from ``labels``, or None when they can.

    Uses the same checks as :func:`sample_episodes` (it draws one episode), so the answer agrees
    with it exactly: too few classes for N ways, or a class with fewer than K+Q items. Labels
    are known before any encoder runs, so a harness can skip an infeasible cell without
    encoding anything.

    Parameters
    ----------
    labels : array-like of shape (n_items,), int
    n_way, n_shot, n_query : int
    classes, class_names : optional
        As in :func:`sample_episodes`.

    Returns
    -------
    str or None
        The reason (the message :func:`sample_episodes` would raise), or None.
    """
    try:
        sample_episodes(labels, n_way, n_shot, n_query, 1, seed=0, classes=classes, class_names=class_names)
    except EpisodeError as e:
        return str(e)
    return None


def check_episode_indices(episodes: Episodes, n_items: int) -> None:
    """Raise unless every support and query index of ``episodes`` is a row of a table of
    ``n_items`` items.

    Parameters
    ----------
    episodes : Episodes
    n_items : int
        Rows of the feature table (or input tensor) the indices point into.

    Raises
    ------
    EpisodeError
        ``"episode support indices span 0..110, but the feature table has 36 rows: sample the
        episodes from the labels of this very table"`` (e.g. episodes sampled from another
        table's labels).
    """
    for part in ("support", "query"):
        idx = getattr(episodes, part)
        if idx.size and (idx.min() < 0 or idx.max() >= n_items):
            raise EpisodeError(
                f"episode {part} indices span {int(idx.min())}..{int(idx.max())}, but the feature table has {n_items} rows: "
                "sample the episodes from the labels of this very table"
            )


def class_disjoint_split(classes, seed: int = 0, base_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of classes into disjoint base and novel sets.

    For data sets without a base split: meta-trained methods learn on the base classes, every
    method is then evaluated on episodes of the novel classes.

    Parameters
    ----------
    classes : array-like of int, shape (n_classes,)
        Class ids to split (duplicates are dropped).
    seed : int, default 0
        The split depends on ``(sorted unique classes, seed, base_fraction)`` only
        (``numpy.random.default_rng(seed).permutation``).
    base_fraction : float, default 0.5
        Fraction of the classes that become base classes, rounded to the nearest integer and kept
        within ``1 .. n_classes - 1``.

    Returns
    -------
    base, novel : numpy.ndarray of int64, sorted, disjoint, together all of ``classes``.

    Raises
    ------
    EpisodeError
        Fewer than 2 classes, or ``base_fraction`` outside (0, 1).
    """
    c = np.unique(np.asarray(classes, dtype=np.int64))
    if not 0.0 < float(base_fraction) < 1.0:
        raise EpisodeError(f"base_fraction must be in (0, 1), got {base_fraction!r}")
    if c.size < 2:
        raise EpisodeError(f"a class-disjoint base/novel split needs at least 2 classes, got {c.size}")
    n_base = min(max(int(round(base_fraction * c.size)), 1), c.size - 1)
    perm = np.random.default_rng(int(seed)).permutation(c)
    return np.sort(perm[:n_base]), np.sort(perm[n_base:])
