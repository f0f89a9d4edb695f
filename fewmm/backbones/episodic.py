"""Episodic training of a backbone from scratch with the Prototypical Networks loss, and its
evaluation with fewmm's batched episode evaluation.

Snell, Swersky & Zemel (NeurIPS 2017), Prototypical Networks for Few-shot Learning: each training
episode samples ``n_way`` classes, ``n_shot`` support and ``n_query`` query images per class; the
class prototypes are the mean support embeddings; the loss is the cross-entropy of
``-||f(x_q) - p_c||^2`` over the classes. Adam, learning rate halved every ``decay_every``
episodes (Snell et al.: 1e-3, halved every 2,000 episodes; 60-way training episodes for Omniglot).

Validation (for the best checkpoint; never the test classes) and testing embed every image of the
split once (eval mode: batch-norm running statistics, no gradients) and score the episodes with
:func:`fewmm.evaluate.evaluate_episodes` (ProtoNet, euclidean), so the test episodes are exactly
those any other method sees for the same labels and seed.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class EpisodicConfig:
    """Hyper-parameters of :func:`train_protonet` (defaults: Snell et al.'s Omniglot setting,
    except the number of episodes).

    Attributes
    ----------
    n_way, n_shot, n_query : int
        Training episodes (60-way 5-shot 5-query).
    episodes : int
        Training episodes in all.
    lr : float
        Adam learning rate (1e-3), multiplied by ``lr_decay`` (0.5) every ``decay_every`` (2000)
        episodes.
    eval_every : int
        Validate every this many episodes (and at the end).
    val_way, val_shot, val_query, val_episodes : int
        Validation episodes on the validation classes (5-way 1-shot 15-query, 300 episodes).
    seed : int
        Seeds the episode stream (episode ``i`` depends on ``(seed, i)`` only, so a resumed run
        samples the same episodes) and the validation episodes.
    device : str
    amp : {None, "bf16"}
        Mixed precision (``torch.autocast`` with bfloat16) for the forward pass, e.g. on a GPU.
    progress : bool
    """

    n_way: int = 60
    n_shot: int = 5
    n_query: int = 5
    episodes: int = 2000
    lr: float = 1e-3
    lr_decay: float = 0.5
    decay_every: int = 2000
    eval_every: int = 200
    val_way: int = 5
    val_shot: int = 1
    val_query: int = 15
    val_episodes: int = 300
    seed: int = 0
    device: str = "cpu"
    amp: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("n_way", "n_shot", "n_query", "episodes", "decay_every", "eval_every", "val_way", "val_shot", "val_query", "val_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EpisodicConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.n_way < 2 or self.val_way < 2:
            raise ValueError("n_way and val_way must be >= 2")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1:
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) inputs -> float32 (n, 1, H, W): uint8 images (255 = stroke) scaled to [0, 1];
    float inputs (e.g. standardised log-mel spectrograms) as they are."""
    x = images.reshape(-1, 1, *images.shape[-2:])
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def sample_training_episode(n_classes: int, per_class: int, cfg: EpisodicConfig, episode: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (n_way,) and per-class item indices (n_way, n_shot + n_query) of training episode
    ``episode``: a function of ``(cfg.seed, episode)`` only."""
    rng = np.random.default_rng([cfg.seed, episode, 7919])
    if cfg.n_way > n_classes or cfg.n_shot + cfg.n_query > per_class:
        raise ValueError(f"{cfg.n_way}-way {cfg.n_shot}+{cfg.n_query} episodes need {cfg.n_way} classes of "
                         f"{cfg.n_shot + cfg.n_query} items; the training split has {n_classes} classes of {per_class}")
    return draw_episode(rng, n_classes, per_class, cfg.n_way, cfg.n_shot + cfg.n_query)


def draw_episode(rng: np.random.Generator, n_classes: int, per_class: int, n_way: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_way`` distinct classes (n_way,) and ``n_items`` distinct items of each (n_way, n_items),
    drawn from ``rng`` (the training episodes of ProtoNet and the tasks of MAML)."""
    classes = rng.choice(n_classes, n_way, replace=False)
    items = np.stack([rng.permutation(per_class)[:n_items] for _ in range(n_way)])
    return classes, items


def protonet_loss(emb: torch.Tensor, n_way: int, n_shot: int, n_query: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypical loss of one episode.

    Parameters
    ----------
    emb : (n_way * (n_shot + n_query), d), class-major, each class's shots first

    Returns
    -------
    (loss, accuracy) : 0-d tensors (accuracy of the training queries).
    """
    e = emb.float().view(n_way, n_shot + n_query, -1)
    protos = e[:, :n_shot].mean(1)
    q = e[:, n_shot:].reshape(n_way * n_query, -1)
    logits = -torch.cdist(q, protos).pow(2)
    target = torch.arange(n_way, device=emb.device).repeat_interleave(n_query)
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


@torch.no_grad()
def embed_images(backbone: nn.Module, images: torch.Tensor, device="cpu", batch_size: int = 1024, amp: str | None = None) -> torch.Tensor:
    """Embeddings of uint8 images (n, H, W) (or (C, K, H, W)) in eval mode -> (n, d) float32 CPU."""
    was = backbone.training
    backbone.eval()
    flat = images.reshape(-1, *images.shape[-2:])
    out = []
    dev = torch.device(device)
    try:
        for s in range(0, flat.shape[0], batch_size):
            x = to_input(flat[s : s + batch_size]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                out.append(backbone(x).float().cpu())
    finally:
        backbone.train(was)
    return torch.cat(out)


def evaluate_backbone(backbone: nn.Module, images: torch.Tensor, n_way: int, n_shot: int, n_query: int, n_episodes: int,
                      seed: int = 0, device="cpu", amp: str | None = None, features: torch.Tensor | None = None):
    """Per-episode ProtoNet accuracy of ``backbone`` on classes ``images`` (C, K, H, W) uint8.

    Episodes come from :func:`fewmm.episodes.sample_episodes` on the labels ``repeat(arange(C), K)``
    with ``seed``: any features of the same images in the same order see the same episodes.

    Returns
    -------
    numpy.ndarray of shape (n_episodes,), float64 (fractions).
    """
    from ..episodes import sample_episodes
    from ..evaluate import evaluate_episodes
    from ..methods.protonet import ProtoNet

    c, k = images.shape[:2]
    labels = np.repeat(np.arange(c), k)
    feats = embed_images(backbone, images, device, amp=amp) if features is None else features
    eps = sample_episodes(labels, n_way, n_shot, n_query, n_episodes, seed=seed)
    return evaluate_episodes(ProtoNet(), feats, eps)


def _load(path: Path) -> dict:
    """The model state of a checkpoint ``path`` (stem): the engine's ``best`` (no prefix) or
    ``last`` (``model.*``), or a pre-engine backbone checkpoint (``model.*``)."""
    from ..engine.checkpoint import read_checkpoint
    from ..errors import CheckpointError

    try:
        tensors, _ = read_checkpoint(path)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({e})") from None
    if any(k.startswith("model.") for k in tensors):
        return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


def load_backbone(path, backbone: nn.Module) -> nn.Module:
    """Load the weights of a checkpoint written by :func:`train_protonet` (``best`` or ``last``;
    path without suffix) into ``backbone``.

    Raises
    ------
    CheckpointError
        Unreadable files, or weights that do not fit ``backbone``.
    """
    from ..errors import CheckpointError

    model = _load(Path(path))
    try:
        backbone.load_state_dict(model)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the backbone: {str(e).splitlines()[0]}") from None
    return backbone


def image_table(train_images: torch.Tensor, val_images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, range, range]:
    """One item table of the training and validation images: ``(images (n, H, W), labels (n,),
    training classes, validation classes)``; training classes first, class-major."""
    for name, imgs in (("train_images", train_images), ("val_images", val_images)):
        if not isinstance(imgs, torch.Tensor) or imgs.ndim != 4 or not (imgs.dtype == torch.uint8 or imgs.is_floating_point()):
            raise ValueError(f"{name} must be a uint8 or float tensor (classes, items, H, W), got "
                             f"{getattr(imgs, 'dtype', type(imgs).__name__)} {tuple(getattr(imgs, 'shape', ()))}")
    if train_images.shape[2:] != val_images.shape[2:]:
        raise ValueError(f"train_images items are {tuple(train_images.shape[2:])}, val_images items {tuple(val_images.shape[2:])}")
    ct, kt = train_images.shape[:2]
    cv, kv = val_images.shape[:2]
    val = val_images.to(train_images.dtype)
    images = torch.cat([train_images.reshape(ct * kt, *train_images.shape[2:]), val.reshape(cv * kv, *val.shape[2:])])
    labels = np.concatenate([np.repeat(np.arange(ct), kt), ct + np.repeat(np.arange(cv), kv)])
    return images, labels, range(ct), range(ct, ct + cv)


def train_protonet(backbone: nn.Module, train_images: torch.Tensor, val_images: torch.Tensor, config: EpisodicConfig | None = None,
                   checkpoint_dir=None, resume: bool = False, log=None):
    """Train ``backbone`` with prototypical episodes on ``train_images``, keep the best on validation:
    :func:`fewmm.engine.fit` with a :class:`~fewmm.engine.TensorLearner` and the ``protonet`` trainer.

    Parameters
    ----------
    backbone : nn.Module
        Maps (B, 1, H, W) float images to (B, d) embeddings; trained in place. Its initialisation
        is the caller's (seed torch before building it).
    train_images, val_images : torch.Tensor of shape (C, K, H, W), uint8 (255 = stroke) or float
        Classes x items; disjoint classes.
    config : EpisodicConfig
        Training episodes of episode ``i`` come from the engine's task stream (``(seed, i)``);
        validation episodes from the validation classes; Adam with the step decay of ``lr``.
    checkpoint_dir : path, optional
        The engine's ``last.*`` (every validation) and ``best.*`` (each new best).
    resume : bool
        Continue from ``checkpoint_dir/last.*`` (same config except ``episodes`` / ``progress`` /
        ``device``): the episode stream continues exactly.
    log : callable(str), optional
        Where validation lines go (default: standard error when ``config.progress``).

    Returns
    -------
    fewmm.engine.FitResult
        ``model`` (= ``backbone``, holding the best validation weights), ``history`` (the
        engine's schema: step = training episodes done), ``best_val_acc``, ``best_step``,
        ``steps``, ``seconds``.

    Raises
    ------
    ValueError
        Episodes larger than the splits; bad images.
    CheckpointError
        Resuming from another configuration, or from a checkpoint written before the engine.
    """
    from ..engine import FitConfig, TensorLearner, create_trainer, fit

    cfg = config or EpisodicConfig()
    images, labels, base, val = image_table(train_images, val_images)
    n_classes, per_class = train_images.shape[:2]
    if cfg.n_way > n_classes or cfg.n_shot + cfg.n_query > per_class:
        raise ValueError(f"{cfg.n_way}-way {cfg.n_shot}+{cfg.n_query} episodes need {cfg.n_way} classes of "
                         f"{cfg.n_shot + cfg.n_query} items; the training split has {n_classes} classes of {per_class}")
    fc = FitConfig(n_way=cfg.n_way, n_shot=cfg.n_shot, n_query=cfg.n_query, episodes_per_step=1, steps=cfg.episodes, lr=cfg.lr,
                   lr_schedule="step", lr_decay=cfg.lr_decay, decay_every=cfg.decay_every, grad_clip=None, amp=cfg.amp,
                   eval_every=cfg.eval_every, val_episodes=cfg.val_episodes, val_way=cfg.val_way, val_shot=cfg.val_shot,
                   val_query=cfg.val_query, seed=cfg.seed, device=cfg.device, progress=cfg.progress)
    torch.manual_seed(cfg.seed)
    learner = TensorLearner(backbone, images, labels, transform=to_input, device=cfg.device, embed_batch=1024,
                            name=type(backbone).__name__)
    say = log if log is not None else (lambda m: print(m, file=sys.stderr, flush=True)) if cfg.progress else None
    return fit(learner, create_trainer("protonet"), base, val, fc, checkpoint_dir=checkpoint_dir, resume=resume, desc="episode", log=say)
