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
        EpisodeError (a ValueError)
            Fewer than ``n_way`` classes with ``n_shot + n_query`` items, bad counts.
        """
        if y is None:
            raise ValueError("EpisodeSplit.split needs y (the class of every item) to sample episodes")
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must have shape (n_items,), got shape {y.shape}")
        n = len(X) if not hasattr(X, "shape") else X.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels for {n} items")
        _, codes = np.unique(y, return_inverse=True)
        eps = sample_episodes(codes.reshape(-1).astype(np.int64), self.n_way, self.n_shot, self.n_query, self.n_episodes, self.seed)
        for e in range(eps.n_episodes):
            yield eps.support[e].reshape(-1), eps.query[e].reshape(-1)

    def __repr__(self) -> str:
        return (f"EpisodeSplit(n_way={self.n_way}, n_shot={self.n_shot}, n_query={self.n_query}, "
                f"n_episodes={self.n_episodes}, seed={self.seed})")


__all__ = ["EpisodeSplit"]
