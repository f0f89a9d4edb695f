"""Few-shot episodes as a scikit-learn cross-validation splitter, for hyper-parameter search on
base classes.

``GridSearchCV`` / ``cross_val_score`` accept any object with ``split`` and ``get_n_splits``;
:class:`EpisodeSplit` yields one (support, query) pair of index arrays per N-way K-shot
Q-query episode, sampled with :func:`fewmm.episodes.sample_episodes` from the seed alone. A
method is then fitted on K shots per class and scored on the queries, which is what a few-shot
hyper-parameter has to be good at (a plain ``StratifiedKFold`` would fit on many shots)::

    from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(fewmm.methods.create("linear-probe"), {"C": [0.1, 1.0, 10.0]},
                          cv=EpisodeSplit(n_way=5, n_shot=1, n_query=15, n_episodes=100, seed=0),
                          refit=False)
    search.fit(base_features, base_labels)       # base classes only, never the novel ones
    search.best_params_

Search only ever sees the data passed to ``fit``: give it base-class (meta-train / validation)
items, and keep the novel (test) classes for the final evaluation, so the reported novel-class
accuracy is not tuned on the classes it is measured on (see ARCHITECTURE.md, "Results you can
trust").
"""

from __future__ import annotations

import numpy as np

from .episodes import sample_episodes
from .errors import EpisodeError


class _LabelName:
    """How an episode error names a class: ``label 'cat'`` (its label, not its internal code)."""

    def __init__(self, value):
        self.value = value.item() if isinstance(value, np.generic) else value

    def __repr__(self) -> str:
        return f"label {self.value!r}"


class EpisodeSplit:
    """N-way K-shot Q-query episodes as (support indices, query indices) splits.

    Parameters
    ----------
    n_way, n_shot, n_query : int, default 5, 1, 15
        Classes per episode, support and query items per class.
    n_episodes : int, default 100
        Number of splits.
    seed : int, default 0
        Episodes depend on ``(y, n_way, n_shot, n_query, n_episodes, seed)`` only.

    Notes
    -----
    Labels of any type are encoded to ``0..C-1`` in sorted order before sampling (as
    ``numpy.unique`` does), so string and integer labels give the same episodes.
    """

    def __init__(self, n_way: int = 5, n_shot: int = 1, n_query: int = 15, n_episodes: int = 100, seed: int = 0):
        self.n_way = n_way
        self.n_shot = n_shot
        self.n_query = n_query
        self.n_episodes = n_episodes
        self.seed = seed

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of episodes (``n_episodes``)."""
        return int(self.n_episodes)

    def split(self, X, y, groups=None):
        """Yield one ``(support, query)`` pair per episode.

        Parameters
        ----------
        X : array-like of shape (n_items, ...) or a list of items
            Only its length is used.
        y : array-like of shape (n_items,)
            Class labels (any type).
        groups : ignored

        Yields
        ------
        support : numpy.ndarray of shape (n_way * n_shot,), int64
            Row indices of the episode's support set (class-major).
        query : numpy.ndarray of shape (n_way * n_query,), int64

        Raises
        ------
        ValueError
            ``y`` missing, not 1-d, or of another length than ``X``.
        FeatureError (a ValueError)
            ``y`` mixes types (ints and strs) or holds NaN / None.
        EpisodeError (a ValueError)
            ``n_way`` < 2 (a 1-way episode is always right), fewer than ``n_way`` classes with
            ``n_shot + n_query`` items (the message names the short class by its label), bad counts.
        """
        import re

        from .errors import FeatureError
        from .methods.base import check_label_types

        if y is None:
            raise ValueError("EpisodeSplit.split needs y (the class of every item) to sample episodes")
        if isinstance(self.n_way, (int, np.integer)) and not isinstance(self.n_way, bool) and self.n_way < 2:
            raise EpisodeError(f"EpisodeSplit: n_way must be >= 2 (a 1-way episode scores 100% whatever the method), got {self.n_way}")
        y_obj = np.asarray(y, dtype=object).reshape(-1) if not isinstance(y, np.ndarray) or y.dtype == object else None
        if (y_obj is not None and any(v is None or (isinstance(v, (float, np.floating)) and v != v) for v in y_obj)) or (
                isinstance(y, np.ndarray) and y.dtype.kind == "f" and np.isnan(y).any()):
            raise FeatureError("y contains NaN / None labels: give every item a class")
        check_label_types(y, "y")
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must have shape (n_items,), got shape {y.shape}")
        n = len(X) if not hasattr(X, "shape") else X.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels for {n} items")
        uniq, codes = np.unique(y, return_inverse=True)
        try:
            eps = sample_episodes(codes.reshape(-1).astype(np.int64), self.n_way, self.n_shot, self.n_query, self.n_episodes,
                                  self.seed, class_names=[_LabelName(v) for v in uniq])
        except EpisodeError as e:  # name classes by label only, not by their internal code
            raise EpisodeError(re.sub(r" \(class \d+\)", "", str(e))) from None
        for e in range(eps.n_episodes):
            yield eps.support[e].reshape(-1), eps.query[e].reshape(-1)

    def __repr__(self) -> str:
        return (f"EpisodeSplit(n_way={self.n_way}, n_shot={self.n_shot}, n_query={self.n_query}, "
                f"n_episodes={self.n_episodes}, seed={self.seed})")


__all__ = ["EpisodeSplit"]
