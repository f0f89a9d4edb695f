"""MAML (Finn, Abbeel & Levine, ICML 2017) for a whole backbone trained from scratch, e.g. Conv-4 on
Omniglot: a backbone plus a linear ``n_way`` classifier, adapted per task by ``inner_steps``
gradient steps on the support set, meta-trained on the query loss after adaptation.

* ``first_order=False``: second-order MAML (the outer gradient flows through the inner updates,
  ``create_graph=True``); ``first_order=True``: FOMAML (the inner gradients are constants).
* Parameters are updated functionally (``torch.func.functional_call``), one task after another
  within a meta-batch (the inner loop of a convolutional backbone is compute-bound; see
  :mod:`fewmm.meta` for the batched, Gram-structured version on frozen features).
* Batch normalisation uses the statistics of the batch at hand, at meta-training and at test time
  (transductive, as Finn et al.'s implementation); running statistics are not used.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .episodic import draw_episode, to_input


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


def adapt(net: MAMLNet, params: dict, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, first_order: bool,
          create_graph: bool = True, amp: str | None = None) -> dict:
    """``steps`` gradient steps of size ``lr`` on the cross-entropy of ``(x, y)`` from ``params``
    (name -> tensor) -> adapted parameters (a new dict; ``params`` is not modified).

    ``first_order=True`` treats the inner gradients as constants (FOMAML); otherwise, with
    ``create_graph=True``, the outer gradient flows through them (second-order MAML).
    """
    for _ in range(steps):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = functional_call(net, params, (x,))
        loss = F.cross_entropy(logits.float(), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph and not first_order)
        params = {k: p - lr * (g.detach() if first_order else g) for (k, p), g in zip(params.items(), grads)}
    return params


def sample_tasks(images: torch.Tensor, cfg: MAMLConfig, step: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The ``cfg.meta_batch`` tasks of meta-step ``step`` (0-based): each ``(xs, ys, xq, yq)`` with
    ``xs`` (n_way * n_shot, 1, H, W) float32, ``ys`` (n_way * n_shot,) int64 (class-major), and the
    same for ``n_query`` queries per class. Depends on ``(cfg.seed, step)`` only."""
    rng = np.random.default_rng([cfg.seed, step])
    c, k = images.shape[:2]
    if cfg.n_way > c or cfg.n_shot + cfg.n_query > k:
        raise ValueError(f"{cfg.n_way}-way {cfg.n_shot}-shot {cfg.n_query}-query tasks need {cfg.n_way} classes of "
                         f"{cfg.n_shot + cfg.n_query} items; the training images have {c} classes of {k}")
    y = torch.arange(cfg.n_way)
    out = []
    for _ in range(cfg.meta_batch):
        classes, items = draw_episode(rng, c, k, cfg.n_way, cfg.n_shot + cfg.n_query)
        x = to_input(images[torch.as_tensor(classes)[:, None], torch.as_tensor(items)]).view(cfg.n_way, cfg.n_shot + cfg.n_query, 1,
                                                                                              *images.shape[-2:])
        out.append((x[:, : cfg.n_shot].reshape(-1, 1, *images.shape[-2:]), y.repeat_interleave(cfg.n_shot),
                    x[:, cfg.n_shot:].reshape(-1, 1, *images.shape[-2:]), y.repeat_interleave(cfg.n_query)))
    return out


def meta_step(net: MAMLNet, opt: torch.optim.Optimizer, tasks: list, cfg: MAMLConfig) -> tuple[float, float]:
    """One outer step over ``tasks`` (from :func:`sample_tasks`): each task adapts a copy of the
    parameters on its support set, its query loss after adaptation (divided by the number of tasks)
    is back-propagated, and ``opt`` steps once -> (mean query loss, mean query accuracy)."""
    dev = next(net.parameters()).device
    params = dict(net.named_parameters())
    opt.zero_grad(set_to_none=True)
    tot_loss, tot_acc = 0.0, 0.0
    for xs, ys, xq, yq in tasks:
        xs, ys, xq, yq = xs.to(dev), ys.to(dev), xq.to(dev), yq.to(dev)
        fast = adapt(net, params, xs, ys, cfg.inner_lr, cfg.inner_steps, cfg.first_order, amp=cfg.amp)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            logits = functional_call(net, fast, (xq,)).float()
        loss = F.cross_entropy(logits, yq) / len(tasks)
        loss.backward()
        tot_loss += loss.item()
        tot_acc += (logits.argmax(1) == yq).float().mean().item() / len(tasks)
    opt.step()
    return tot_loss, tot_acc


def evaluate_maml(net: MAMLNet, images: torch.Tensor, n_way: int, n_shot: int, n_query: int, n_episodes: int, inner_lr: float,
                  steps: int, seed: int = 0, amp: str | None = None) -> np.ndarray:
    """Per-episode accuracy (float64, shape (n_episodes,)) after ``steps`` inner steps of size
    ``inner_lr`` on each episode's support set, from the meta-learned weights.

    Episodes come from :func:`fewmm.episodes.sample_episodes` on the labels of ``images``
    (C, K, H, W) with ``seed``: the same episodes as :func:`fewmm.backbones.episodic.evaluate_backbone`.
    The classifier must have ``n_way`` outputs (MAML's head is tied to the way).
    """
    from ..episodes import sample_episodes

    if net.classifier.out_features != n_way:
        raise ValueError(f"the MAML classifier has {net.classifier.out_features} outputs, the episodes are {n_way}-way")
    dev = next(net.parameters()).device
    c, k = images.shape[:2]
    flat = images.reshape(c * k, *images.shape[-2:])
    eps = sample_episodes(np.repeat(np.arange(c), k), n_way, n_shot, n_query, n_episodes, seed=seed)
    params = {n: p.detach() for n, p in net.named_parameters()}
    acc = np.empty(n_episodes)
    ys = torch.arange(n_way, device=dev).repeat_interleave(n_shot)
    yq = torch.arange(n_way, device=dev).repeat_interleave(n_query)
    for e in range(n_episodes):
        xs = to_input(flat[torch.as_tensor(eps.support[e].reshape(-1))]).to(dev)
        xq = to_input(flat[torch.as_tensor(eps.query[e].reshape(-1))]).to(dev)
        fast = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        fast = adapt(net, fast, xs, ys, inner_lr, steps, first_order=True, create_graph=False, amp=amp)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            acc[e] = (functional_call(net, fast, (xq,)).argmax(1) == yq).float().mean().item()
    return acc


def train_maml(net: MAMLNet, train_images: torch.Tensor, val_images: torch.Tensor, cfg: MAMLConfig, checkpoint_dir=None,
               resume: bool = False, log=None) -> dict:
    """Meta-train ``net`` in place with MAML; keep the weights best on ``val_images`` (validation
    classes only).

    Parameters
    ----------
    net : MAMLNet
        Its initialisation is the caller's (seed torch before building it); moved to ``cfg.device``.
    train_images, val_images : torch.Tensor (C, K, H, W), uint8 (255 = stroke) or float
    cfg : MAMLConfig
    checkpoint_dir : path, optional
        ``last.{safetensors,json}`` (weights, Adam state, history) at every validation and
        ``best.*`` at each new best.
    resume : bool
        Continue from ``checkpoint_dir/last.*``; the configuration must match except
        ``meta_steps`` / ``progress`` / ``device``. The task stream continues exactly.
    log : callable(str), optional
        Where validation lines go (default: the progress bar's ``write``).

    Returns
    -------
    dict: ``history`` (meta_step, train_loss, train_acc, val_acc, seconds since the start of the
    training, resumed runs included), ``best_val_acc``, ``best_step``, ``meta_steps`` (done),
    ``seconds`` (this call), ``config``. A run resumed from a checkpoint written off the
    ``eval_every`` grid (the end of a shorter run) keeps that extra validation point in its history.

    Raises
    ------
    ValueError
        Tasks larger than the training split.
    CheckpointError
        Resuming from another configuration, or an unreadable checkpoint.
    FloatingPointError
        A non-finite meta-loss (diverged).
    """
    from ..progress import progress_bar

    from .episodic import _save, load_backbone, resume_checkpoint

    dev = torch.device(cfg.device)
    net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    fixed = {k: v for k, v in asdict(cfg).items() if k not in ("meta_steps", "progress", "device")}
    history, best, best_step, start = [], -1.0, 0, 0
    meta = resume_checkpoint(ckpt, fixed, net, opt, required=("meta_step", "best_step")) if resume else None
    if meta:
        history, best, best_step, start = meta["history"], meta["best_val_acc"], meta["best_step"], meta["meta_step"]
    t_start = time.time()
    t0 = t_start - (history[-1]["seconds"] if history else 0.0)  # history seconds count from the first run's start
    bar = progress_bar(total=cfg.meta_steps, initial=min(start, cfg.meta_steps), desc="meta-steps", disable=not cfg.progress)
    say = log or bar.write
    losses, accs, best_state = [], [], None
    for step in range(start, cfg.meta_steps):
        loss, acc = meta_step(net, opt, sample_tasks(train_images, cfg, step), cfg)
        if not np.isfinite(loss):
            raise FloatingPointError(f"meta-step {step + 1}: the loss is {loss} (diverged); lower inner_lr or lr")
        losses.append(loss)
        accs.append(acc)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.meta_steps:
            v = float(evaluate_maml(net, val_images, cfg.n_way, cfg.n_shot, cfg.val_query, cfg.val_episodes, cfg.inner_lr,
                                    cfg.test_inner_steps, seed=cfg.seed, amp=cfg.amp).mean())
            history.append({"meta_step": done, "train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs)), "val_acc": v,
                            "seconds": round(time.time() - t0, 1)})
            losses, accs = [], []
            improved = v > best
            if improved:
                best, best_step = v, done
            say(f"[meta-step {done}] loss {history[-1]['train_loss']:.4f} acc {history[-1]['train_acc']:.3f}; "
                f"val {cfg.n_way}-way {cfg.n_shot}-shot {v:.4f}{' (best)' if improved else ''}")
            if ckpt:
                meta = {"meta_step": done, "history": history, "best_val_acc": best, "best_step": best_step, "config": asdict(cfg),
                        "config_fixed": fixed}
                _save(ckpt / "last", net, opt, meta)
                if improved:
                    _save(ckpt / "best", net, None, meta)
            elif improved:
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    bar.close()
    if ckpt and (ckpt / "best.json").exists():
        load_backbone(ckpt / "best", net)
    elif best_state is not None:
        net.load_state_dict(best_state)
    return {"history": history, "best_val_acc": best, "best_step": best_step, "meta_steps": max(start, cfg.meta_steps),
            "seconds": round(time.time() - t_start, 1), "config": asdict(cfg)}
