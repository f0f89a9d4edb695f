"""MAML (Finn, Abbeel & Levine, ICML 2017) for a whole backbone trained from scratch, e.g. Conv-4 on
Omniglot: a backbone plus a linear ``n_way`` classifier, adapted per task by ``inner_steps``
gradient steps on the support set, meta-trained on the query loss after adaptation.

* ``first_order=False``: second-order MAML (the outer gradient flows through the inner updates,
  ``create_graph=True``); ``first_order=True``: FOMAML (the inner gradients are constants).
* The MAML implementation is the kit's one, :class:`fewmm.meta.MAML` (functional path: the
  meta-batch's tasks run together through ``torch.func.vmap(functional_call)``), run by the
  engine's fit loop (:func:`fewmm.engine.fit`, trainer ``maml`` / ``fomaml``) on a
  :class:`fewmm.engine.TensorLearner` of the images; tasks come from the engine's task stream.
* Batch normalisation uses the statistics of the batch at hand, at meta-training and at test time
  (transductive, as Finn et al.'s implementation); running statistics are not used.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .episodic import image_table, to_input


class MAMLNet(nn.Module):
    """``backbone`` followed by a linear classifier of ``n_way`` outputs.

    Shapes: input (B, 1, H, W) -> logits (B, n_way).
    """

    def __init__(self, backbone: nn.Module, dim: int, n_way: int):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(dim, n_way)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False  # batch statistics always (see the module notes)
                m.running_mean = m.running_var = m.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


@dataclass
class MAMLConfig:
    """Hyper-parameters of :func:`train_maml`. The task shape and step sizes default to Finn et
    al.'s 5-way Omniglot settings: 5-way 1-shot tasks with as many query images per class as
    support images at meta-training, inner learning rate 0.4, 1 inner step at meta-training and 3
    at test, meta-batch 32 tasks, Adam 1e-3 (their 20-way setting: inner lr 0.1, 5 inner steps,
    meta-batch 16). Not theirs: ``first_order=True`` (FOMAML, cheaper on a CPU; they trained
    second-order) and ``meta_steps=1000`` (they trained 60,000).

    ``seed`` seeds the task stream (meta-step ``i``'s tasks depend on ``(seed, i)`` only, so a
    resumed run samples the same tasks) and the validation episodes (``val_episodes`` episodes of
    ``n_way``-way ``n_shot``-shot ``val_query``-query on the validation classes, every
    ``eval_every`` meta-steps). ``amp="bf16"``: bfloat16 autocast of the forward passes (GPU).
    """

    n_way: int = 5
    n_shot: int = 1
    n_query: int = 1
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_inner_steps: int = 3
    meta_batch: int = 32
    meta_steps: int = 1000
    lr: float = 1e-3
    first_order: bool = True
    eval_every: int = 100
    val_query: int = 15
    val_episodes: int = 100
    seed: int = 0
    device: str = "cpu"
    amp: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("n_way", "n_shot", "n_query", "inner_steps", "test_inner_steps", "meta_batch", "meta_steps", "eval_every",
                     "val_query", "val_episodes", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "seed" else 1):
                raise ValueError(f"MAMLConfig.{name} must be an integer >= {0 if name == 'seed' else 1}, got {v!r}")
        if self.n_way < 2:
            raise ValueError(f"MAMLConfig.n_way must be >= 2, got {self.n_way}")
        if not (math.isfinite(self.inner_lr) and self.inner_lr > 0 and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"MAMLConfig: inner_lr and lr must be finite and > 0, got {self.inner_lr}, {self.lr}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"MAMLConfig.amp must be None or 'bf16', got {self.amp!r}")


def _trainer(cfg_first_order: bool, inner_lr: float, inner_steps: int, eval_steps: int):
    from ..engine import MAMLTrainer

    return MAMLTrainer("maml", bool(cfg_first_order), inner_lr, inner_steps, eval_steps, name="fomaml" if cfg_first_order else "maml")


def evaluate_maml(net: MAMLNet, images: torch.Tensor, n_way: int, n_shot: int, n_query: int, n_episodes: int, inner_lr: float,
                  steps: int, seed: int = 0, amp: str | None = None, chunk: int = 8) -> np.ndarray:
    """Per-episode accuracy (float64, shape (n_episodes,)) after ``steps`` inner steps of size
    ``inner_lr`` on each episode's support set, from the meta-learned weights
    (:class:`fewmm.meta.MAML`, ``chunk`` episodes adapted together).

    Episodes come from :func:`fewmm.episodes.sample_episodes` on the labels of ``images``
    (C, K, H, W) with ``seed``: the same episodes as :func:`fewmm.backbones.episodic.evaluate_backbone`.
    The classifier must have ``n_way`` outputs (MAML's head is tied to the way).
    """
    from ..engine import TensorLearner
    from ..episodes import sample_episodes

    if net.classifier.out_features != n_way:
        raise ValueError(f"the MAML classifier has {net.classifier.out_features} outputs, the episodes are {n_way}-way")
    dev = next(net.parameters()).device
    c, k = images.shape[:2]
    labels = np.repeat(np.arange(c), k)
    learner = TensorLearner(net, images.reshape(c * k, *images.shape[-2:]), labels, transform=to_input, device=dev, eval_chunk=chunk)
    eps = sample_episodes(labels, n_way, n_shot, n_query, n_episodes, seed=seed)
    trainer = _trainer(True, inner_lr, steps, steps)
    with torch.random.fork_rng(devices=[]):
        trainer.prepare(learner, learner.batch(eps[:1]))
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        return trainer.evaluate(learner, eps)


def train_maml(net: MAMLNet, train_images: torch.Tensor, val_images: torch.Tensor, cfg: MAMLConfig, checkpoint_dir=None,
               resume: bool = False, log=None):
    """Meta-train ``net`` in place with MAML; keep the weights best on ``val_images`` (validation
    classes only): :func:`fewmm.engine.fit` with the ``maml`` / ``fomaml`` trainer.

    Parameters
    ----------
    net : MAMLNet
        Its initialisation is the caller's (seed torch before building it); moved to ``cfg.device``.
    train_images, val_images : torch.Tensor (C, K, H, W), uint8 (255 = stroke) or float
    cfg : MAMLConfig
    checkpoint_dir : path, optional
        The engine's ``last.*`` (every validation) and ``best.*`` (each new best).
    resume : bool
        Continue from ``checkpoint_dir/last.*``; the configuration must match except
        ``meta_steps`` / ``progress`` / ``device``. The task stream continues exactly.
    log : callable(str), optional
        Where validation lines go (default: standard error when ``cfg.progress``).

    Returns
    -------
    fewmm.engine.FitResult
        ``history`` in the engine's schema (``step`` = meta-steps done), ``best_val_acc``,
        ``best_step``, ``steps`` (meta-steps done), ``seconds`` (this call).

    Raises
    ------
    ValueError
        Tasks larger than the training split.
    CheckpointError
        Resuming from another configuration, an unreadable checkpoint, or one written before the engine.
    FloatingPointError
        A non-finite meta-loss (diverged).
    """
    from ..engine import FitConfig, TensorLearner, fit

    images, labels, base, val = image_table(train_images, val_images)
    c, k = train_images.shape[:2]
    if cfg.n_way > c or cfg.n_shot + cfg.n_query > k:
        raise ValueError(f"{cfg.n_way}-way {cfg.n_shot}-shot {cfg.n_query}-query tasks need {cfg.n_way} classes of "
                         f"{cfg.n_shot + cfg.n_query} items; the training images have {c} classes of {k}")
    fc = FitConfig(n_way=cfg.n_way, n_shot=cfg.n_shot, n_query=cfg.n_query, episodes_per_step=cfg.meta_batch, steps=cfg.meta_steps,
                   lr=cfg.lr, grad_clip=None, amp=cfg.amp, eval_every=cfg.eval_every, val_episodes=cfg.val_episodes,
                   val_way=cfg.n_way, val_shot=cfg.n_shot, val_query=cfg.val_query, seed=cfg.seed, device=cfg.device,
                   progress=cfg.progress)
    learner = TensorLearner(net, images, labels, transform=to_input, device=cfg.device, eval_chunk=8, name="MAMLNet")
    trainer = _trainer(cfg.first_order, cfg.inner_lr, cfg.inner_steps, cfg.test_inner_steps)
    say = log if log is not None else (lambda m: print(m, file=sys.stderr, flush=True)) if cfg.progress else None
    return fit(learner, trainer, base, val, fc, checkpoint_dir=checkpoint_dir, resume=resume, desc="meta-step", log=say)
