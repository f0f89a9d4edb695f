"""The deterministic task stream: ``(seed, step) -> tasks``, the one sampler of training,
validation and test episodes of the engine.

Every task batch is drawn with :func:`fewmm.episodes.sample_episodes` (the kit's one episode
sampler) on a pool of items: the items of the given classes, optionally restricted to a subset of
item indices (e.g. the training part of a held-out split of base-class items). Indices in the
returned :class:`~fewmm.episodes.Episodes` point into the full table; labels are never remapped.

Step ``t`` of a stream depends only on ``(seed, t)``: the shot count (drawn from ``n_shot`` when
it is a tuple) and the episode seed come from ``numpy.random.SeedSequence([seed, t, 0])``; so a
resumed run continues with exactly the tasks an uninterrupted run would have seen, and two
trainers given the same stream see the same tasks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..episodes import Episodes, sample_episodes
from ..errors import EpisodeError

__all__ = ["step_seed", "class_items", "TaskStream", "fixed_tasks", "holdout_split", "task_hash"]

#: Salt of the fixed validation tasks' seed (kept from ``fewmm.train`` so results are unchanged).
VALIDATION_SALT = 1_000_003


def step_seed(*parts: int) -> int:
    """A 32-bit seed from integers (``numpy.random.SeedSequence(parts)``), e.g. ``(seed, step, 0)``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def class_items(labels: np.ndarray, classes) -> np.ndarray:
    """Indices of the items whose label is in ``classes`` (sorted), int64."""
    labels = np.asarray(labels)
    return np.flatnonzero(np.isin(labels, np.asarray(list(classes), dtype=labels.dtype))).astype(np.int64)


def _shots(n_shot) -> tuple[int, ...]:
    shots = tuple(int(k) for k in n_shot) if isinstance(n_shot, (list, tuple)) else (int(n_shot),)
    if not shots or min(shots) < 1:
        raise ValueError(f"n_shot must be an int >= 1 or a non-empty tuple of them, got {n_shot!r}")
    return shots


def _pool(labels, classes, items) -> np.ndarray:
    absent = sorted(set(np.asarray(list(classes)).tolist()) - set(np.unique(labels).tolist()))
    if absent:  # a named class with no item would be dropped silently: ways drawn from fewer classes than asked
        raise EpisodeError(f"classes {absent[:10]} have no item in the labels ({len(absent)} of {len(list(classes))} classes named): "
                           "name only classes of this table")
    pool = class_items(labels, classes)
    if items is not None:
        pool = np.intersect1d(pool, np.asarray(items, dtype=np.int64))
    if pool.size == 0:
        raise EpisodeError(f"no items to sample tasks from (classes {list(classes)[:10]}...)")
    return pool


def _remap(ep: Episodes, items: np.ndarray) -> Episodes:
    return Episodes(ep.classes, items[ep.support], items[ep.query], ep.seed)


@dataclass
class TaskStream:
    """Training tasks of step ``t``, a function of ``(seed, t)`` only.

    Parameters
    ----------
    labels : numpy.ndarray of shape (n_items,), int
        Labels of the whole table.
    classes : array-like of int
        Classes tasks are drawn from (base classes).
    n_way, n_query : int
    n_shot : int or tuple of int
        A tuple draws K uniformly from it at each step.
    tasks_per_step : int
        Episodes of one step (meta-batch).
    seed : int
    items : array-like of int, optional
        Restrict the pool to these item indices (held-out split of base classes).

    Examples
    --------
    >>> stream = TaskStream(labels, base, n_way=5, n_shot=1, n_query=15, tasks_per_step=8, seed=0)
    >>> eps = stream(0)      # Episodes: support (8, 5, 1), query (8, 5, 15), indices into labels
    """

    labels: np.ndarray
    classes: object
    n_way: int
    n_shot: object
    n_query: int
    tasks_per_step: int = 1
    seed: int = 0
    items: object = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels)
        self.shots = _shots(self.n_shot)
        self.pool = _pool(self.labels, self.classes, self.items)

    def __call__(self, step: int) -> Episodes:
        """Episodes of shape (tasks_per_step, n_way, K) / (..., n_query); indices into ``labels``."""
        rng = np.random.default_rng(step_seed(self.seed, step, 0))
        k = int(self.shots[int(rng.integers(len(self.shots)))])
        ep = sample_episodes(self.labels[self.pool], self.n_way, k, self.n_query, self.tasks_per_step,
                             seed=int(rng.integers(2**31 - 1)), allow_fewer_queries=True)
        return _remap(ep, self.pool)


def fixed_tasks(labels, classes, n_way: int, n_shot: int, n_query: int, n_tasks: int, seed: int, items=None,
                salt: int = VALIDATION_SALT) -> Episodes:
    """A fixed set of tasks (validation) drawn once from ``(seed, salt)`` on ``classes``
    (optionally only on ``items``); indices into ``labels``."""
    labels = np.asarray(labels)
    pool = _pool(labels, classes, items)
    ep = sample_episodes(labels[pool], n_way, int(n_shot), n_query, n_tasks, seed=step_seed(seed, salt), allow_fewer_queries=True)
    return _remap(ep, pool)


def holdout_split(labels, classes, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the items of each class into a training part and a held-out part (validation on
    held-out items of base classes).

    Parameters
    ----------
    labels : numpy.ndarray of shape (n_items,)
    classes : array-like of int
    fraction : float in (0, 1)
        Share of each class's items held out (at least one item per class, at least one kept).
    seed : int

    Returns
    -------
    (train_items, heldout_items) : sorted int64 index arrays into ``labels``.

    Raises
    ------
    EpisodeError
        A class with fewer than 2 items, or ``fraction`` outside (0, 1).
    """
    if not 0.0 < float(fraction) < 1.0:
        raise EpisodeError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(step_seed(seed, 2_000_029))
    train, held = [], []
    for c in np.unique(np.asarray(list(classes))):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            raise EpisodeError(f"class {c} has {idx.size} item(s): a held-out split needs at least 2 per class")
        idx = rng.permutation(idx)
        h = min(idx.size - 1, max(1, int(round(fraction * idx.size))))
        held.append(idx[:h])
        train.append(idx[h:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(held)).astype(np.int64)


def task_hash(episodes) -> str:
    """sha256 (hex) of the classes, support and query indices of a sequence of Episodes."""
    h = hashlib.sha256()
    for ep in episodes if isinstance(episodes, (list, tuple)) else [episodes]:
        for a in (ep.classes, ep.support, ep.query):
            h.update(np.ascontiguousarray(np.asarray(a, dtype=np.int64)).tobytes())
    return h.hexdigest()
