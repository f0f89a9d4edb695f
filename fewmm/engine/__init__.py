"""The episodic engine: one task stream, one learner protocol, trainers orthogonal to models,
one fit loop, one checkpoint layout.

* :mod:`.tasks` — :class:`TaskStream` ``(seed, step) -> tasks`` on
  :func:`fewmm.episodes.sample_episodes`; :func:`fixed_tasks` (validation); :func:`holdout_split`.
* :mod:`.learner` — the :class:`Learner` protocol (per-episode logits of a batch of tasks; which
  parameters adapt in an inner loop) and :class:`HeadLearner` (fusion heads on frozen features;
  Proto-MAML inner-loop module).
* :mod:`.trainers` — ``protonet``, ``maml``, ``fomaml``, ``anil``, ``metasgd`` (:data:`TRAINERS`);
  the MAML family runs :class:`fewmm.meta.MAML`.
* :mod:`.fit` — :func:`fit`, :class:`FitConfig`, :class:`FitResult` (history schema
  :data:`HISTORY_KEYS`).
* :mod:`.checkpoint` — safetensors + JSON, atomic writes, optimiser and RNG state.

Train a fusion head with MAML on frozen features and read the result::

    import fewmm.heads as H
    from fewmm.engine import FitConfig, HeadLearner, create_trainer, fit

    head = H.create("gmu", features, seed=0)                     # features: MMFeatures
    learner = HeadLearner(head, features, modality_dropout=0.2)
    trainer = create_trainer("maml", inner_lr=0.5, inner_steps=5)   # or "protonet", "fomaml", "anil", "metasgd"
    result = fit(learner, trainer, base_classes, val_classes,
                 FitConfig(n_way=5, n_shot=1, n_query=15, steps=300, eval_every=50),
                 checkpoint_dir="runs/gmu-maml")                 # resume=True continues exactly
    result.best_val_acc, result.best_step
    result.history          # [{"step", "loss", "train_acc", "val_acc", "lr", "seconds"}, ...]

    acc = trainer.evaluate(learner, novel_episodes)   # (E,) per-episode accuracy, adapting on each support set

(``fewmm.train.train_head(head, features, base, val, config, trainer="maml")`` is the same call
in one line.) Validation on held-out items of the base classes instead of validation classes:
``FitConfig(validation="holdout", holdout_fraction=0.2)`` and ``val_classes=None``.
"""

from .checkpoint import FORMAT, atomic_write, read_checkpoint, save_checkpoint
from .fit import HISTORY_KEYS, FitConfig, FitResult, check_classes, fit
from .learner import LEARNERS, HeadLearner, ItemReshape, Learner, ProtoMAMLHead, TensorLearner
from .tasks import TaskStream, class_items, fixed_tasks, holdout_split, step_seed, task_hash
from .trainers import TRAINERS, MAMLTrainer, ProtoNetTrainer, Trainer, create_trainer, episode_loss, list_trainers
from ..errors import CheckpointError

__all__ = [
    "TaskStream", "fixed_tasks", "holdout_split", "class_items", "step_seed", "task_hash",
    "Learner", "HeadLearner", "TensorLearner", "ItemReshape", "ProtoMAMLHead", "LEARNERS",
    "Trainer", "ProtoNetTrainer", "MAMLTrainer", "TRAINERS", "create_trainer", "list_trainers", "episode_loss",
    "fit", "FitConfig", "FitResult", "HISTORY_KEYS", "check_classes",
    "FORMAT", "CheckpointError", "atomic_write", "save_checkpoint", "read_checkpoint",
]
