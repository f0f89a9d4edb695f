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

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .episodic import to_input


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
    """Finn et al.'s Omniglot settings where they apply: inner learning rate 0.4, 1 inner step at
    meta-training and 3 at test, meta-batch 32 tasks, Adam 1e-3."""

    n_way: int = 5
    n_shot: int = 1
    n_query: int = 15
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_inner_steps: int = 3
    meta_batch: int = 32
    meta_steps: int = 1000
    lr: float = 1e-3
    first_order: bool = True
    seed: int = 0
    progress: bool = True


def adapt(net: MAMLNet, params: dict, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, first_order: bool,
          create_graph: bool = True) -> dict:
    """``steps`` gradient steps on ``(x, y)`` from ``params`` -> adapted parameters (a dict)."""
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(net, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph and not first_order)
        params = {k: p - lr * (g.detach() if first_order else g) for (k, p), g in zip(params.items(), grads)}
    return params


def _task(images: torch.Tensor, rng: np.random.Generator, n_way: int, n_shot: int, n_query: int):
    c, k = images.shape[:2]
    classes = rng.choice(c, n_way, replace=False)
    items = np.stack([rng.permutation(k)[: n_shot + n_query] for _ in range(n_way)])
    x = to_input(images[torch.as_tensor(classes)[:, None], torch.as_tensor(items)]).view(n_way, n_shot + n_query, 1, *images.shape[-2:])
    y = torch.arange(n_way)
    xs, xq = x[:, :n_shot].reshape(-1, 1, *images.shape[-2:]), x[:, n_shot:].reshape(-1, 1, *images.shape[-2:])
    return xs, y.repeat_interleave(n_shot), xq, y.repeat_interleave(n_query)


def meta_step(net: MAMLNet, opt, images: torch.Tensor, cfg: MAMLConfig, rng: np.random.Generator) -> tuple[float, float]:
    """One outer step over ``cfg.meta_batch`` tasks -> (mean query loss, mean query accuracy)."""
    params = dict(net.named_parameters())
    opt.zero_grad(set_to_none=True)
    tot_loss, tot_acc = 0.0, 0.0
    for _ in range(cfg.meta_batch):
        xs, ys, xq, yq = _task(images, rng, cfg.n_way, cfg.n_shot, cfg.n_query)
        fast = adapt(net, params, xs, ys, cfg.inner_lr, cfg.inner_steps, cfg.first_order)
        logits = functional_call(net, fast, (xq,))
        loss = F.cross_entropy(logits, yq) / cfg.meta_batch
        loss.backward()
        tot_loss += loss.item()
        tot_acc += (logits.argmax(1) == yq).float().mean().item() / cfg.meta_batch
    opt.step()
    return tot_loss, tot_acc


def evaluate_maml(net: MAMLNet, images: torch.Tensor, n_way: int, n_shot: int, n_query: int, n_episodes: int, inner_lr: float,
                  steps: int, seed: int = 0) -> np.ndarray:
    """Per-episode accuracy after adapting ``net`` on each episode's support set.

    Episodes come from :func:`fewmm.episodes.sample_episodes` on the labels of ``images``
    (C, K, H, W) with ``seed``: the same episodes as :func:`fewmm.backbones.episodic.evaluate_backbone`.
    The classifier must have ``n_way`` outputs (MAML's head is tied to the way).
    """
    from ..episodes import sample_episodes

    if net.classifier.out_features != n_way:
        raise ValueError(f"the MAML classifier has {net.classifier.out_features} outputs, the episodes are {n_way}-way")
    c, k = images.shape[:2]
    flat = images.reshape(c * k, *images.shape[-2:])
    eps = sample_episodes(np.repeat(np.arange(c), k), n_way, n_shot, n_query, n_episodes, seed=seed)
    params = {n: p.detach() for n, p in net.named_parameters()}
    acc = np.empty(n_episodes)
    ys = torch.arange(n_way).repeat_interleave(n_shot)
    yq = torch.arange(n_way).repeat_interleave(n_query)
    for e in range(n_episodes):
        xs = to_input(flat[torch.as_tensor(eps.support[e].reshape(-1))])
        xq = to_input(flat[torch.as_tensor(eps.query[e].reshape(-1))])
        fast = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        fast = adapt(net, fast, xs, ys, inner_lr, steps, first_order=True, create_graph=False)
        with torch.no_grad():
            acc[e] = (functional_call(net, fast, (xq,)).argmax(1) == yq).float().mean().item()
    return acc


def train_maml(net: MAMLNet, train_images: torch.Tensor, val_images: torch.Tensor, cfg: MAMLConfig, eval_every: int = 100,
               val_episodes: int = 100, log=print) -> dict:
    """Meta-train ``net`` in place; keep the weights best on ``val_images`` (validation classes).

    Returns
    -------
    dict: ``history`` (meta-step, loss, train accuracy, validation accuracy, seconds), ``best_val_acc``,
    ``best_step``, ``seconds``, ``config``.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()
    history, best, best_step, best_state = [], -1.0, 0, None
    t0 = time.time()
    losses, accs = [], []
    for step in tqdm(range(1, cfg.meta_steps + 1), desc="meta-steps", disable=not cfg.progress):
        loss, acc = meta_step(net, opt, train_images, cfg, rng)
        if not np.isfinite(loss):
            raise FloatingPointError(f"meta-step {step}: the loss is {loss} (diverged); lower inner_lr or lr")
        losses.append(loss)
        accs.append(acc)
        if step % eval_every == 0 or step == cfg.meta_steps:
            v = float(evaluate_maml(net, val_images, cfg.n_way, cfg.n_shot, cfg.n_query, val_episodes, cfg.inner_lr,
                                    cfg.test_inner_steps, seed=cfg.seed).mean())
            history.append({"meta_step": step, "train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs)), "val_acc": v,
                            "seconds": round(time.time() - t0, 1)})
            losses, accs = [], []
            if v > best:
                best, best_step = v, step
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            log(f"[meta-step {step}] loss {history[-1]['train_loss']:.4f} acc {history[-1]['train_acc']:.3f}; "
                f"val {cfg.n_way}-way {cfg.n_shot}-shot {v:.4f}")
    if best_state is not None:
        net.load_state_dict(best_state)
    return {"history": history, "best_val_acc": best, "best_step": best_step, "seconds": round(time.time() - t0, 1), "config": asdict(cfg)}
