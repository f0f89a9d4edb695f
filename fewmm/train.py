"""Episodic training of fusion heads on frozen features: a thin front end of :mod:`fewmm.engine`.

Each step samples N-way K-shot Q-query episodes from the BASE classes only; the trainer turns
them into a loss: ``"protonet"`` (default; Snell, Swersky & Zemel, NeurIPS 2017: cross-entropy of
the head's query logits against its prototypes) or the MAML family ``"maml"``, ``"fomaml"``,
``"anil"``, ``"metasgd"`` (Proto-MAML for fusion heads; see :mod:`fewmm.engine.trainers`). Every
``eval_every`` steps the head is evaluated on episodes of the VALIDATION classes (never the novel
ones); the best head on validation is kept (and, with ``patience``, training stops early)::

    from fewmm.train import TrainConfig, train_head
    head = fewmm.heads.create("gmu", features)
    result = train_head(head, features, base_classes, val_classes, TrainConfig(steps=2000),
                        checkpoint_dir="runs/gmu")          # head now holds the best weights
    acc = fewmm.heads.evaluate_head(head, features, novel_episodes)

Determinism, checkpoints and the result type are the engine's (:func:`fewmm.engine.fit`):
``last.*`` (exact resume) and ``best.*`` (load it with :func:`load_head`). Checkpoints written
before the engine: their ``best.*`` load with :func:`load_head`; resuming their ``last.*`` is
refused with a :class:`CheckpointError` saying what to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .engine.fit import RESUMABLE_CHANGES, FitConfig, FitResult, fit
from .engine.learner import HeadLearner
from .engine.tasks import TaskStream, class_items, fixed_tasks
from .engine.trainers import Trainer, create_trainer, episode_loss
from .episodes import Episodes
from .errors import CheckpointError
from .heads.base import FusionHead
from .heads.classifier import evaluate_head
from .heads.io import check_head_checkpoint, encoder_ids, head_meta, load_head, save_head
from .multimodal import MMFeatures

__all__ = [
    "TrainConfig", "TrainResult", "train_head", "training_episodes", "validation_episodes", "episode_loss", "save_head",
    "load_head", "check_head_checkpoint", "encoder_ids", "head_meta", "CheckpointError", "evaluate_head", "class_items",
    "RESUMABLE_CHANGES",
]


@dataclass
class TrainConfig(FitConfig):
    """Episodic training hyper-parameters of a fusion head: :class:`fewmm.engine.FitConfig`
    (task shape, optimiser, schedule, validation, patience, seed, device, amp, progress) plus
    the multimodal training augmentation.

    Attributes
    ----------
    modality_dropout : float in [0, 1]
        This fraction of support and query items (with >= 2 modalities) lose one random
        modality (mask set False), so heads learn to handle missing modalities.
    corrupt_fraction : float in [0, 1]
        With ``train_head(..., corrupted=...)``: for each item and modality, the probability of
        taking that modality's features from the corrupted table (gates learn to distrust it).
    """

    modality_dropout: float = 0.0
    corrupt_fraction: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("modality_dropout", "corrupt_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1], got {v!r}")


#: The result of :func:`train_head`: the engine's one result type (``result.head`` is the head).
TrainResult = FitResult


def training_episodes(labels, base_classes, config: FitConfig, step: int) -> Episodes:
    """The training episodes of ``step`` (a function of ``config.seed`` and ``step`` only):
    ``TaskStream(labels, base_classes, ...)(step)`` (see :class:`fewmm.engine.TaskStream`).

    Returns
    -------
    Episodes of shape (episodes_per_step, n_way, K) / (..., n_query), K drawn from ``config.shots``;
    indices into ``labels``.
    """
    return TaskStream(labels, base_classes, config.n_way, config.n_shot, config.n_query, config.episodes_per_step, config.seed)(step)


def validation_episodes(labels, val_classes, config: FitConfig) -> Episodes:
    """The fixed validation episodes (from ``config.seed``), on ``val_classes`` only."""
    return fixed_tasks(labels, val_classes, config.val_way or config.n_way, config.val_shot or min(config.shots),
                       config.val_query or config.n_query, config.val_episodes, config.seed)


def train_head(
    head: FusionHead,
    features: MMFeatures,
    base_classes,
    val_classes,
    config: FitConfig | None = None,
    *,
    trainer: str | Trainer = "protonet",
    trainer_kwargs: dict | None = None,
    corrupted: MMFeatures | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    restore_best: bool = True,
    desc: str | None = None,
    **overrides,
) -> FitResult:
    """Train ``head`` episodically on base classes, validating on validation classes.

    Parameters
    ----------
    head : FusionHead
        Modified in place (and returned in the result). A head without parameters (``avg-proto``,
        ``concat``, ``single:*``) is only validated.
    features : MMFeatures
        The whole feature table (all splits); only items of ``base_classes`` enter training
        episodes, only items of ``val_classes`` validation episodes. Never pass novel classes.
    base_classes, val_classes : array-like of int
        Disjoint sets of labels (``val_classes`` ignored with ``validation="holdout"``).
    config : TrainConfig, optional
        Default ``TrainConfig()``; ``**overrides`` replace its fields (``steps=500``, ...).
    trainer : str or Trainer, default "protonet"
        A name of :data:`fewmm.engine.TRAINERS` ("protonet", "maml", "fomaml", "anil",
        "metasgd") or a trainer object.
    trainer_kwargs : dict, optional
        Hyper-parameters of a named trainer (``{"inner_lr": 0.5, "inner_steps": 5}``).
    corrupted : MMFeatures, optional
        Corrupted features of the same items (same labels); each (item, modality) of a training
        episode takes its features from it with probability ``config.corrupt_fraction``.
    checkpoint_dir : str or Path, optional
        Where ``last.*`` (every validation) and ``best.*`` (each new best) are written.
    resume : bool, default False
        Continue from ``checkpoint_dir/last.*`` if it exists (same head, features, trainer and
        config, except ``steps``/``progress``/``device``): the run continues exactly.
    restore_best : bool, default True
        Load the best validation weights into ``head`` at the end.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    TrainResult (= :class:`fewmm.engine.FitResult`)

    Raises
    ------
    FeatureError
        Features not matching the head; a base/validation item with no modality (named); a bad
        ``corrupted`` table.
    EpisodeError
        Overlapping or empty class sets; fewer than ``n_way`` classes.
    CheckpointError
        Resuming from a checkpoint of another head / features / config, or from one written
        before the engine.
    """
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    md = getattr(cfg, "modality_dropout", 0.0)
    cf = getattr(cfg, "corrupt_fraction", 0.0)
    learner = HeadLearner(head, features, corrupted=corrupted, modality_dropout=md, corrupt_fraction=cf, seed=cfg.seed,
                          device=cfg.device)
    tr = create_trainer(trainer, **(trainer_kwargs or {})) if isinstance(trainer, str) else trainer
    return fit(learner, tr, base_classes, val_classes, cfg, checkpoint_dir=checkpoint_dir, resume=resume,
               restore_best=restore_best, desc=desc or f"train {head.name}", run_info={"corrupted": corrupted is not None})
