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
import json
import time
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


@dataclass
class EpisodicResult:
    backbone: nn.Module
    history: list[dict]
    best_val_acc: float
    best_episode: int
    episodes: int
    seconds: float


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


def _save(path: Path, backbone: nn.Module, opt, meta: dict) -> None:
    from safetensors.torch import save_file

    from ..engine.checkpoint import optimizer_tensors

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    if opt is not None:
        ot, other = optimizer_tensors(opt)
        tensors.update({f"optim.{k}": v.detach().cpu().contiguous() for k, v in ot.items()})
        meta = {**meta, "optim": other}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path.with_suffix(".safetensors"))
    tj = path.with_suffix(".json.tmp")
    tj.write_text(json.dumps(meta, indent=2) + "\n")
    tj.replace(path.with_suffix(".json"))


def _load(path: Path) -> tuple[dict, dict, dict]:
    from safetensors.torch import load_file

    from ..errors import CheckpointError

    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    try:
        meta = json.loads(js.read_text())
        tensors = load_file(str(st))
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
    return meta, model, optim


def resume_checkpoint(ckpt: Path | None, fixed: dict, model: nn.Module, opt: torch.optim.Optimizer, required: tuple = ()) -> dict | None:
    """Load ``ckpt/last.*`` into ``model`` and ``opt`` -> its metadata, or None when there is no
    checkpoint. Raises CheckpointError when it was written with another fixed configuration, lacks
    one of ``required`` (or the common) metadata keys, or its tensors do not fit."""
    from ..engine.checkpoint import load_optimizer
    from ..errors import CheckpointError

    if not ckpt or not (ckpt / "last.json").exists():
        return None
    meta, weights, optim = _load(ckpt / "last")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{ckpt}/last.json: not a checkpoint (a JSON {type(meta).__name__}, expected an object)")
    if meta.get("config_fixed") != fixed:
        raise CheckpointError(f"{ckpt}/last: trained with another configuration ({meta.get('config_fixed')}); "
                              "use another --checkpoints folder or the same settings")
    missing = [k for k in ("optim", "history", "best_val_acc", *required) if k not in meta]
    if missing:
        raise CheckpointError(f"{ckpt}/last.json: incomplete checkpoint, missing {missing}")
    try:
        model.load_state_dict(weights)
        load_optimizer(opt, optim, meta["optim"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{ckpt}/last: the weights or optimiser state do not fit ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return meta


def load_backbone(path, backbone: nn.Module) -> nn.Module:
    """Load the weights of a checkpoint written by :func:`train_protonet` (``best`` or ``last``;
    path without suffix) into ``backbone``.

    Raises
    ------
    CheckpointError
        Unreadable files, or weights that do not fit ``backbone``.
    """
    from ..errors import CheckpointError

    _, model, _ = _load(Path(path))
    try:
        backbone.load_state_dict(model)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the backbone: {str(e).splitlines()[0]}") from None
    return backbone


def train_protonet(backbone: nn.Module, train_images: torch.Tensor, val_images: torch.Tensor, config: EpisodicConfig | None = None,
                   checkpoint_dir=None, resume: bool = False, log=None) -> EpisodicResult:
    """Train ``backbone`` with prototypical episodes on ``train_images``, keep the best on validation.

    Parameters
    ----------
    backbone : nn.Module
        Maps (B, 1, H, W) float images to (B, d) embeddings; trained in place. Its initialisation
        is the caller's (seed torch before building it).
    train_images, val_images : torch.Tensor of shape (C, K, H, W), uint8 (255 = stroke)
        Classes x items; disjoint classes.
    config : EpisodicConfig
    checkpoint_dir : path, optional
        ``last.{safetensors,json}`` at every validation, ``best.*`` at each new best.
    resume : bool
        Continue from ``checkpoint_dir/last.*`` (same config except ``episodes`` / ``progress``):
        the episode stream continues exactly.
    log : callable(str), optional
        Where validation lines go (default: the progress bar's ``write``).

    Returns
    -------
    EpisodicResult; ``backbone`` holds the best validation weights.

    Raises
    ------
    ValueError
        Episodes larger than the splits; bad images.
    CheckpointError
        Resuming from another configuration.
    """
    from ..progress import progress_bar

    cfg = config or EpisodicConfig()
    for name, imgs in (("train_images", train_images), ("val_images", val_images)):
        if not isinstance(imgs, torch.Tensor) or imgs.ndim != 4 or not (imgs.dtype == torch.uint8 or imgs.is_floating_point()):
            raise ValueError(f"{name} must be a uint8 or float tensor (classes, items, H, W), got "
                             f"{getattr(imgs, 'dtype', type(imgs).__name__)} {tuple(getattr(imgs, 'shape', ()))}")
    dev = torch.device(cfg.device)
    n_classes, per_class = train_images.shape[:2]
    torch.manual_seed(cfg.seed)
    backbone.to(dev).train()
    opt = torch.optim.Adam(backbone.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=cfg.lr_decay)
    history: list[dict] = []
    best, best_ep, start = -1.0, 0, 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    fixed = {k: v for k, v in cfg.to_dict().items() if k not in ("episodes", "progress", "device", "eval_every")}
    meta = resume_checkpoint(ckpt, fixed, backbone, opt, required=("episode", "best_episode", "torch_rng")) if resume else None
    if meta:
        sched.last_epoch = meta["episode"]
        for g in opt.param_groups:
            g["lr"] = cfg.lr * cfg.lr_decay ** (meta["episode"] // cfg.decay_every)
        history, best, best_ep, start = meta["history"], meta["best_val_acc"], meta["best_episode"], meta["episode"]
        torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    t_start = time.time()
    t0 = t_start - (history[-1]["seconds"] if history else 0.0)  # history seconds count from the first run's start
    bar = progress_bar(total=cfg.episodes, initial=min(start, cfg.episodes), desc="episodes", unit="ep", disable=not cfg.progress)
    say = log or bar.write
    losses, accs = [], []
    best_state = None
    for ep in range(start, cfg.episodes):
        classes, items = sample_training_episode(n_classes, per_class, cfg, ep)
        x = to_input(train_images[torch.as_tensor(classes)[:, None], torch.as_tensor(items)]).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            emb = backbone(x)
        loss, acc = protonet_loss(emb, cfg.n_way, cfg.n_shot, cfg.n_query)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"episode {ep}: the loss is {loss.item()} (diverged); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        accs.append(acc.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        done = ep + 1
        if done % cfg.eval_every == 0 or done == cfg.episodes:
            v = evaluate_backbone(backbone, val_images, cfg.val_way, cfg.val_shot, cfg.val_query, cfg.val_episodes, seed=cfg.seed,
                                  device=dev, amp=cfg.amp)
            val_acc = float(v.mean())
            rec = {"episode": done, "train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs)), "val_acc": val_acc,
                   "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
            history.append(rec)
            losses, accs = [], []
            improved = val_acc > best
            if improved:
                best, best_ep = val_acc, done
            say(f"[episode {done}] train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.3f}; val {cfg.val_way}-way "
                f"{cfg.val_shot}-shot acc {val_acc:.4f}{' (best)' if improved else ''}")
            if ckpt:
                meta = {"episode": done, "history": history, "best_val_acc": best, "best_episode": best_ep, "config": cfg.to_dict(),
                        "config_fixed": fixed, "backbone": getattr(backbone, "config", None),
                        "torch_rng": torch.get_rng_state().tolist()}
                _save(ckpt / "last", backbone, opt, meta)
                if improved:
                    _save(ckpt / "best", backbone, None, meta)
            elif improved:
                best_state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    bar.close()
    if ckpt and (ckpt / "best.json").exists():
        load_backbone(ckpt / "best", backbone)
    elif best_state is not None:
        backbone.load_state_dict(best_state)
    return EpisodicResult(backbone, history, best, best_ep, history[-1]["episode"] if history else start, time.time() - t_start)
