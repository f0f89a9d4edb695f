"""The common part of the meta-trained methods (``maml``, ``anil``, ``metasgd``, ``protonet-head``).

A meta-trained method learns a small head over frozen features on labelled BASE classes
(:meth:`MetaTrainedMethod.fit_base` with ``base_labels``: episodic training, seeded, on base
classes only), then adapts to each novel-class episode's support set (``fit``). The harness
(:func:`fewmm.bench.runner.run_suite`) meta-trains once per (data set, encoder, method) and
reuses the trained head for every (way, shot) cell of the block; every method of a row is scored
on the same novel-class episodes.

Without :meth:`fit_base` the method still works as a scikit-learn classifier: the head is then a
freshly initialised one (seeded by ``seed``, input width and output count taken from the data of
``fit``), so ``maml`` is fine-tuning from a random initialisation and ``protonet-head`` ProtoNet
on a random projection. The results say which it was (:attr:`MetaTrainedMethod.base_info_`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..errors import FeatureError
from .base import FewShotMethod, check_features, check_labels, l2_normalize


def check_positive_int(v, name: str, lo: int = 1) -> None:
    """Raise ValueError naming ``name`` unless ``v`` is an int (not a bool) >= ``lo``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def check_positive_float(v, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``v`` is a finite real number > 0 (not a bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def mlp(dim: int, hidden: int, out: int, seed: int) -> nn.Sequential:
    """The head of the meta-trained methods: ``Linear(dim, hidden) -> ReLU -> Linear(hidden, out)``
    (``hidden == 0``: one ``Linear(dim, out)``), initialised with PyTorch's defaults under
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the global generator is left as it was).

    Returns
    -------
    torch.nn.Sequential, float32 parameters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if hidden:
            return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
        return nn.Sequential(nn.Linear(dim, out))


class MetaTrainedMethod(FewShotMethod):
    """Base class of the methods that are meta-trained on base classes before adapting per episode.

    Subclasses implement :meth:`_build` (a fresh head for input width ``dim`` and ``n_out``
    outputs), :meth:`_meta_train` (train it on base-class features) and :meth:`_score`
    (adapt to a batch of class-major episodes and score their queries).

    Common hyper-parameters (stored as given; checked by :meth:`check_params`):

    hidden : int, default 256
        Width of the head's hidden layer (0: a linear head).
    n_way, n_shot, n_query : int, default 5, 1, 10
        Shape of the meta-training episodes (N-way K-shot Q-query) on base classes. The head of
        the MAML family has ``n_way`` outputs, so episodes of more than ``n_way`` classes cannot be
        scored (the harness sets ``n_way`` to the suite's largest way before :meth:`fit_base`).
    meta_batch : int, default 8
        Episodes per meta-update.
    steps : int, default 100
        Meta-updates (Adam).
    outer_lr : float, default 1e-3
        Adam step size of the outer loop.
    seed : int, default 0
        Seed of the head's initialisation and of the meta-training task stream.

    Attributes
    ----------
    base_model_ : torch.nn.Module
        The meta-trained model (after :meth:`fit_base`; kept by ``fit``, dropped by ``clone``).
    base_info_ : dict
        What :meth:`fit_base` did: base items and classes, steps, seconds, the last meta-updates'
        mean query loss and accuracy (``{"meta_trained": False}`` on a fitted method without it).
    model_ : torch.nn.Module
        The model ``fit`` adapts from: ``base_model_`` or a fresh seeded head.
    """

    #: the harness passes base labels to :meth:`fit_base` (and needs a base split) for these methods
    needs_base_labels = True

    def __init__(self, hidden=256, n_way=5, n_shot=1, n_query=10, meta_batch=8, steps=100, outer_lr=1e-3, seed=0):
        self.hidden = hidden
        self.n_way = n_way
        self.n_shot = n_shot
        self.n_query = n_query
        self.meta_batch = meta_batch
        self.steps = steps
        self.outer_lr = outer_lr
        self.seed = seed

    def check_params(self) -> None:
        """Raise ValueError naming a hyper-parameter of the wrong type or range."""
        check_positive_int(self.hidden, "hidden", lo=0)
        check_positive_int(self.n_way, "n_way", lo=2)
        for n in ("n_shot", "n_query", "meta_batch", "steps"):
            check_positive_int(getattr(self, n), n)
        check_positive_int(self.seed, "seed", lo=0)
        check_positive_float(self.outer_lr, "outer_lr")

    # -- hooks for subclasses -------------------------------------------------------------------
    def _build(self, dim: int, n_out: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _meta_train(self, model: nn.Module, features: torch.Tensor, labels: np.ndarray) -> list[dict]:  # pragma: no cover
        """Train ``model`` in place on base features (n, d) (transformed) with int labels (n,);
        return the engine's history (one dict per step with ``"loss"`` and ``"train_acc"``)."""
        raise NotImplementedError

    def _score(self, model: nn.Module, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _max_classes(self, model: nn.Module) -> int | None:
        """How many classes an episode may have with ``model`` (None: any)."""
        return None

    # -- base classes ----------------------------------------------------------------------------
    def fit_base(self, base_features, base_labels=None) -> "MetaTrainedMethod":
        """Meta-train the head on labelled base-class features.

        Parameters
        ----------
        base_features : array-like or torch.Tensor of shape (n_base, dim)
            Frozen features of the base items (L2-normalised here, as in :meth:`transform_features`).
        base_labels : array-like of shape (n_base,)
            Their classes (any label type); at least ``n_way`` classes with ``n_shot + n_query``
            items each.

        Returns
        -------
        self

        Raises
        ------
        FeatureError (a ValueError)
            ``base_labels`` missing, bad features or labels (see :func:`check_features`).
        fewmm.errors.EpisodeError
            Too few base classes or items per class for the meta-training episodes.
        """
        self.check_params()
        x = check_features(base_features, "base_features")
        if base_labels is None:
            raise FeatureError(f"{type(self).__name__}.fit_base needs base_labels (one class per base item): the head is "
                               "meta-trained on labelled episodes of the base classes")
        y = check_labels(base_labels, x.shape[0], "base_labels")
        _, enc = np.unique(y, return_inverse=True)
        x = self.transform_features(x)
        model = self._build(x.shape[1], self.n_way)
        t0 = time.time()
        hist = self._meta_train(model, x, enc.reshape(-1))
        last = hist[-max(1, len(hist) // 10):]
        self.base_model_ = model
        self.base_info_ = {
            "meta_trained": True, "n_base_items": int(x.shape[0]), "n_base_classes": int(len(np.unique(enc))),
            "episodes": f"{self.n_way}-way {self.n_shot}-shot {self.n_query}-query, {self.meta_batch} per step",
            "steps": len(hist), "seconds": round(time.time() - t0, 1),
            "final_loss": round(float(np.mean([h["loss"] for h in last])), 4),
            "final_accuracy": round(float(np.mean([h["train_acc"] for h in last])), 4),
        }
        return self

    # -- the FewShotMethod hooks ------------------------------------------------------------------
    def transform_features(self, features: torch.Tensor) -> torch.Tensor:
        """Rows scaled to unit L2 norm (an inner learning rate of 0.5 diverges on raw features)."""
        return l2_normalize(features)

    def _model_for(self, dim: int, n_classes: int, device) -> nn.Module:
        with torch.inference_mode(False):  # evaluate_episodes scores under inference mode; parameters must not be inference tensors
            return self._model_for_impl(dim, n_classes, device)

    def _model_for_impl(self, dim: int, n_classes: int, device) -> nn.Module:
        model = getattr(self, "base_model_", None)
        if model is None:
            self.base_info_ = {"meta_trained": False}
            model = self._build(dim, max(int(n_classes), 2))
        else:
            want = next((m.in_features for m in model.modules() if isinstance(m, nn.Linear)), None)
            if want is not None and want != dim:
                raise FeatureError(f"features have dim {dim}, but {type(self).__name__} was meta-trained on base features of dim {want}")
            cap = self._max_classes(model)
            if cap is not None and n_classes > cap:
                raise FeatureError(f"the support set has {n_classes} classes, but {type(self).__name__} was meta-trained "
                                   f"with {cap}-way episodes (its head has {cap} outputs): set n_way >= {n_classes} before fit_base")
        return model.to(device)

    def _fit(self, x, y, n_classes):
        self.model_ = self._model_for(x.shape[1], n_classes, x.device)
        self._support = (x, y, n_classes)

    def _logits(self, q):
        x, y, n = self._support
        counts = torch.bincount(y, minlength=n)
        if bool((counts == counts[0]).all()):  # class-major episode of equal shots: the batched path
            order = torch.argsort(y, stable=True)
            s = x[order].reshape(1, n, int(counts[0]), x.shape[1])
            with torch.no_grad():  # (the MAML family enables gradients for its inner loop itself)
                return self._score(self.model_, s, q.unsqueeze(0))[0].detach()
        return self._score_unbalanced(self.model_, x, y, n, q).detach()

    def _score_unbalanced(self, model, x, y, n, q) -> torch.Tensor:  # pragma: no cover - subclasses
        raise NotImplementedError

    def episode_logits(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Adapt to every episode of the batch and score its queries.

        Parameters
        ----------
        support : torch.Tensor of shape (E, N, K, d), transformed, class-major
        query : torch.Tensor of shape (E, M, d), transformed

        Returns
        -------
        torch.Tensor of shape (E, M, N), float32 logits.
        """
        model = self._model_for(support.shape[-1], support.shape[1], support.device)
        with torch.no_grad():  # (the MAML family enables gradients for its inner loop itself)
            return self._score(model, support, query).detach()
