"""The one fit loop: every model (fusion head, backbone, ``fewmm.meta`` head) with every trainer.

The loop owns the optimiser (Adam or AdamW), the learning-rate schedule, gradient clipping, mixed
precision (bfloat16 autocast), validation (on validation classes, or on held-out items of the
base classes), best-so-far, patience, checkpoints with exact resume, the progress bar, one
history schema and one result type::

    from fewmm.engine import FitConfig, HeadLearner, create_trainer, fit
    result = fit(HeadLearner(head, features), create_trainer("maml"), base_classes, val_classes,
                 FitConfig(steps=500), checkpoint_dir="runs/gmu-maml")
    result.best_val_acc, result.history      # [{"step", "loss", "train_acc", "val_acc", "lr", "seconds"}, ...]

Determinism: the tasks of step ``t`` (:class:`~fewmm.engine.tasks.TaskStream`), the training
augmentation and the dropout of step ``t`` depend only on ``(config.seed, t)``; the learning rate
of step ``t`` only on ``t``. A run resumed from ``last.*`` therefore continues exactly as an
uninterrupted run (bit-identical parameters on CPU).

Checkpoints (``checkpoint_dir``, see :mod:`fewmm.engine.checkpoint`): ``last.*`` at every
validation, ``best.*`` at each new best.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import EpisodeError
from .checkpoint import (
    FORMAT, CheckpointError, load_optimizer, optimizer_tensors, read_checkpoint, rng_state, save_checkpoint,
    set_rng_state, state_tensors,
)
from .tasks import TaskStream, class_items, fixed_tasks, holdout_split, step_seed

__all__ = ["FitConfig", "FitResult", "fit", "check_classes", "RESUMABLE_CHANGES", "HISTORY_KEYS"]

#: Config fields that may differ when resuming (they do not change the training trajectory).
RESUMABLE_CHANGES = ("steps", "progress", "device")
#: Keys of every history entry (one per validation).
HISTORY_KEYS = ("step", "loss", "train_acc", "val_acc", "lr", "seconds")
#: keys of a ``last.json`` (resume) checkpoint description
LAST_KEYS = ("format", "step", "best_val_acc", "best_step", "evals_since_best", "stopped_early", "rng", "model", "run", "optim",
             "history")
SCHEDULES = ("constant", "step", "cosine")
VALIDATIONS = ("classes", "holdout", "none")
OPTIMIZERS = ("adam", "adamw")


@dataclass
class FitConfig:
    """Hyper-parameters of :func:`fit`.

    Attributes
    ----------
    n_way, n_query : int
        N classes and Q queries per class of each training task.
    n_shot : int or tuple of int
        K shots; a tuple draws K uniformly from it at each step.
    episodes_per_step : int
        Tasks averaged in one optimiser step (meta-batch).
    steps : int
        Total optimisation steps (a resumed run continues up to this number).
    lr, weight_decay : float
        Adam.
    optimizer : {"adam", "adamw"}
        ``torch.optim.Adam`` (weight decay as an L2 term of the gradient) or ``torch.optim.AdamW``
        (decoupled weight decay, Loshchilov & Hutter 2019; e.g. :func:`fewmm.aligned.train_bridge`).
    scale_lr_mult : float
        Learning-rate multiplier of a fusion head's temperature / scale scalars (see
        :meth:`fewmm.heads.base.FusionHead.param_groups`).
    lr_schedule : {"constant", "step", "cosine"}
        "step": ``lr * lr_decay ** (step // decay_every)`` (Snell et al.'s halving); "cosine":
        cosine annealing to 0 over ``steps``.
    lr_decay : float in (0, 1]
    decay_every : int
    grad_clip : float or None
        Max global gradient norm.
    amp : {None, "bf16"}
        bfloat16 autocast of the forward passes (CPU or GPU); losses are computed in float32.
    eval_every : int
        Validate (and checkpoint) every this many steps, and at the last step.
    validation : {"classes", "holdout", "none"}
        "classes": validation tasks on the validation classes; "holdout": on held-out items of
        the base classes (``holdout_fraction`` of each class's items never enters training);
        "none": no validation (``val_acc`` is NaN in the history; the last weights are kept).
    holdout_fraction : float in (0, 1)
    val_episodes : int
        Validation tasks (sampled once from the seed).
    val_way, val_shot, val_query : int or None
        Validation task shape; default ``n_way``, the smallest ``n_shot``, ``n_query``.
    patience : int or None
        Stop after this many validations without improvement (None: never stop early).
    seed : int
    device : str
    progress : bool
    """

    n_way: int = 5
    n_shot: int | tuple = 1
    n_query: int = 15
    episodes_per_step: int = 8
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scale_lr_mult: float = 10.0
    lr_schedule: str = "constant"
    lr_decay: float = 0.5
    decay_every: int = 2000
    grad_clip: float | None = 10.0
    amp: str | None = None
    eval_every: int = 100
    validation: str = "classes"
    holdout_fraction: float = 0.2
    val_episodes: int = 300
    val_way: int | None = None
    val_shot: int | None = None
    val_query: int | None = None
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.n_shot, (list, tuple)):
            self.n_shot = tuple(int(k) for k in self.n_shot)
            if not self.n_shot or min(self.n_shot) < 1:
                raise ValueError(f"n_shot must be >= 1, got {self.n_shot}")
        elif isinstance(self.n_shot, bool) or not isinstance(self.n_shot, (int, np.integer)) or self.n_shot < 1:
            raise ValueError(f"{type(self).__name__}.n_shot must be an integer >= 1 or a tuple of them, got {self.n_shot!r}")
        for name in ("n_way", "n_query", "episodes_per_step", "steps", "eval_every", "val_episodes", "decay_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "steps" else 1):
                raise ValueError(f"{type(self).__name__}.{name} must be a positive integer, got {v!r}")
        for name in ("val_way", "val_shot", "val_query", "patience"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{type(self).__name__}.{name} must be None or an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{type(self).__name__}.lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"{type(self).__name__}.lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"{type(self).__name__}.lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{type(self).__name__}.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"{type(self).__name__}.amp must be None or 'bf16', got {self.amp!r}")
        if self.validation not in VALIDATIONS:
            raise ValueError(f"{type(self).__name__}.validation must be one of {VALIDATIONS}, got {self.validation!r}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"{type(self).__name__}.holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")

    @property
    def shots(self) -> tuple[int, ...]:
        return self.n_shot if isinstance(self.n_shot, tuple) else (int(self.n_shot),)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the learning rate at (0-based) step ``step``."""
        if self.lr_schedule == "step":
            return float(self.lr_decay ** (step // self.decay_every))
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / max(1, self.steps)))
        return 1.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_shot"] = list(self.n_shot) if isinstance(self.n_shot, tuple) else self.n_shot
        return d


@dataclass
class FitResult:
    """What :func:`fit` returns (the one result type of the engine).

    Attributes
    ----------
    model : torch.nn.Module
        The trained model, holding the best weights on validation (``restore_best=True``).
        ``head`` is the same object (for fusion heads).
    best_val_acc : float
        Mean validation accuracy (fraction) of the best model; NaN if never validated.
    best_step : int
    steps : int
        Steps done in total (including before a resume).
    stopped_early : bool
    history : list of dict
        One entry per validation, keys :data:`HISTORY_KEYS`: ``step``, ``loss`` and ``train_acc``
        (means over the steps since the previous validation), ``val_acc``, ``lr`` (of the last
        step), ``seconds`` (since the start of training, resumed runs included).
    final_state : dict of str to torch.Tensor
        The model's state at the last step (before restoring the best).
    train_items : numpy.ndarray of int64
        Sorted indices of every item used in a training task in this call.
    val_items : numpy.ndarray of int64
        Sorted indices of the validation tasks' items.
    trainer : dict
        The trainer's configuration.
    config : dict
        The fit configuration.
    seconds : float
        Wall time of this call.
    """

    model: torch.nn.Module
    best_val_acc: float
    best_step: int
    steps: int
    stopped_early: bool
    history: list = field(default_factory=list)
    final_state: dict = field(default_factory=dict)
    train_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    trainer: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def head(self) -> torch.nn.Module:
        return self.model


def check_classes(labels: np.ndarray, base_classes, val_classes) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique base and validation classes; raise EpisodeError when empty, overlapping or
    without items."""
    base = np.unique(np.asarray(list(base_classes), dtype=np.int64))
    val = np.unique(np.asarray(list(val_classes), dtype=np.int64))
    if base.size == 0 or val.size == 0:
        raise EpisodeError("base_classes and val_classes must both be non-empty")
    both = np.intersect1d(base, val)
    if both.size:
        raise EpisodeError(f"classes {both[:10].tolist()} are both base and validation classes")
    present = np.unique(labels)
    for name, cl in (("base", base), ("validation", val)):
        miss = np.setdiff1d(cl, present)
        if miss.size:
            raise EpisodeError(f"{name} classes {miss[:10].tolist()} have no items")
    return base, val


def _param_groups(model, cfg: FitConfig) -> list[dict]:
    if hasattr(model, "param_groups"):
        return model.param_groups(cfg.lr, cfg.scale_lr_mult)
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": params, "lr": cfg.lr}] if params else []


def fit(learner, trainer, base_classes, val_classes=None, config: FitConfig | None = None, *, checkpoint_dir=None,
        resume: bool = False, restore_best: bool = True, desc: str | None = None, run_info: dict | None = None,
        callback=None, log=None, parallel=None, **overrides) -> FitResult:
    """Train ``learner.model`` with ``trainer`` on tasks of the base classes; validate; keep the best.

    Parameters
    ----------
    learner : Learner
        See :mod:`fewmm.engine.learner` (e.g. :class:`~fewmm.engine.learner.HeadLearner`).
    trainer : Trainer
        See :mod:`fewmm.engine.trainers` (``create_trainer("protonet" | "maml" | ...)``).
    base_classes : array-like of int
        Classes of the training tasks. Never pass novel classes.
    val_classes : array-like of int, optional
        Validation classes, disjoint from ``base_classes`` (``validation="classes"``; ignored
        with ``validation="holdout"``).
    config : FitConfig, optional
        ``**overrides`` replace its fields.
    checkpoint_dir : str or Path, optional
        Where ``last.*`` (every validation) and ``best.*`` (each new best) are written.
    resume : bool
        Continue from ``checkpoint_dir/last.*`` if it exists (same model, trainer, classes and
        config except ``steps``/``progress``/``device``).
    restore_best : bool
        Load the best validation weights into the model at the end.
    desc : str, optional
        Progress bar label.
    run_info : dict, optional
        JSON-able facts stored in the checkpoints and checked on resume (e.g. whether a corrupted
        table was used).
    callback : callable, optional
        Called as ``callback(step, loss, accuracy)`` after every optimiser step (``step``: steps
        done, 1-based; training loss and query accuracy of that step's tasks).
    log : callable, optional
        Called with one line (str) after every validation: step, training loss and accuracy,
        validation accuracy, "(best)" for a new best.
    parallel : fewmm.distributed.TaskParallel, optional
        Data parallelism over the ranks of a ``torch.distributed`` job (``torchrun``): each
        step's tasks are split across the ranks, the gradients (and the reported loss and
        accuracy) averaged over all tasks by an all-reduce, so every rank takes the same step;
        only rank 0 writes checkpoints (``checkpoint_dir`` must be shared to resume on other
        ranks; a run may resume with another number of ranks: the tasks of a step do not depend
        on it). Every rank validates on all validation tasks.

    Returns
    -------
    FitResult

    Raises
    ------
    EpisodeError
        Overlapping or empty class sets; too few classes for the task shape.
    FeatureError
        Items without data (from the learner).
    CheckpointError
        Resuming from a checkpoint of another model / trainer / configuration, or from a
        checkpoint written before the engine.
    FloatingPointError
        A non-finite training loss.
    """
    from ..progress import progress_bar

    cfg = dataclasses.replace(config or FitConfig(), **overrides)
    if parallel is not None:
        parallel.local_slice(cfg.episodes_per_step)  # fail now when there are fewer tasks than ranks
    labels = np.asarray(learner.labels)
    train_items = held = None
    if cfg.validation == "classes":
        if val_classes is None:
            raise EpisodeError("validation='classes' needs val_classes (or use validation='holdout' or 'none')")
        base, val = check_classes(labels, base_classes, val_classes)
    elif cfg.validation == "none":
        base = np.unique(np.asarray(list(base_classes), dtype=np.int64))
        if base.size == 0:
            raise EpisodeError("base_classes must be non-empty")
        val = np.zeros(0, np.int64)
    else:
        base = np.unique(np.asarray(list(base_classes), dtype=np.int64))
        if base.size == 0:
            raise EpisodeError("base_classes must be non-empty")
        train_items, held = holdout_split(labels, base, cfg.holdout_fraction, cfg.seed)
        val = base
    pool = class_items(labels, base) if train_items is None else train_items
    val_pool = class_items(labels, val) if held is None else held
    if hasattr(learner, "check_items"):
        learner.check_items(np.concatenate([pool, val_pool]))
    try:
        stream = TaskStream(labels, base, cfg.n_way, cfg.n_shot, cfg.n_query, cfg.episodes_per_step, cfg.seed, items=train_items)
    except EpisodeError as e:
        raise EpisodeError(f"training tasks on the base classes: {e} (FitConfig n_way / n_shot / n_query)") from None
    val_eps, val_seen = None, np.zeros(0, np.int64)
    if cfg.validation != "none":
        try:
            val_eps = fixed_tasks(labels, val, cfg.val_way or cfg.n_way, cfg.val_shot or min(cfg.shots), cfg.val_query or cfg.n_query,
                                  cfg.val_episodes, cfg.seed, items=held)
        except EpisodeError as e:
            raise EpisodeError(f"validation tasks on the {len(val)} validation classes ({cfg.validation}): {e}; set "
                               "FitConfig(val_way=..., val_shot=..., val_query=...) to fit them, or validation='none'") from None
        val_seen = np.unique(np.concatenate([val_eps.support.ravel(), val_eps.query.ravel()]))
    model = learner.model
    dev = torch.device(cfg.device)
    meta = learner.describe()
    run = {"config": cfg.to_dict(), "trainer": trainer.config(), "base_classes": base.tolist(),
           "val_classes": val.tolist() if held is None else None, **(run_info or {})}
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    t_call = time.perf_counter()

    def validate() -> float:
        if val_eps is None:
            return float("nan")
        return float(np.mean(trainer.evaluate(learner, val_eps)))

    def save_best(step: int, acc: float) -> None:
        if ckpt is not None and (parallel is None or parallel.writer):
            save_checkpoint(ckpt / "best", state_tensors(model), {"format": FORMAT, **meta, "step": step, "val_acc": acc,
                                                                 "trainer": trainer.config()})

    if not any(p.requires_grad for p in model.parameters()):
        acc = validate()
        hist = [{"step": 0, "loss": float("nan"), "train_acc": float("nan"), "val_acc": acc, "lr": 0.0, "seconds": 0.0}]
        save_best(0, acc)
        return FitResult(model, acc, 0, 0, False, hist, state_tensors(model), np.zeros(0, np.int64), val_seen,
                         trainer.config(), cfg.to_dict(), time.perf_counter() - t_call)

    with torch.random.fork_rng(devices=[]):  # building the trainer (e.g. a first class embedding) leaves no trace
        trainer.prepare(learner, learner.batch(stream(0)))
    groups = _param_groups(model, cfg)
    extra = trainer.parameters()
    if extra:
        groups.append({"params": extra, "lr": cfg.lr})
    opt = (torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam)(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    params = [p for g in opt.param_groups for p in g["params"]]
    step, best_acc, best_step, since_best, stopped, history, t_before = 0, -math.inf, -1, 0, False, [], 0.0
    best_state = None
    if resume and ckpt is not None and (ckpt / "last.json").exists():
        tensors, saved = read_checkpoint(ckpt / "last")
        where = f"checkpoint {ckpt / 'last.json'}"
        if saved.get("format") != FORMAT:
            raise CheckpointError(
                f"{where} was written by fewmm before the engine (format {saved.get('format')!r}, expected {FORMAT!r}) and "
                f"cannot be resumed: start a new run in another directory (or delete {ckpt}/last.*); its best weights still "
                "load (fewmm.train.load_head for a head, fewmm.backbones.episodic.load_backbone for a backbone)")
        missing = [k for k in LAST_KEYS if k not in saved]
        if missing:
            raise CheckpointError(f"{where} is incomplete: missing {missing} (truncated or edited?); start a new run in another "
                                  f"directory (or delete {ckpt}/last.*)")
        if hasattr(learner, "check_checkpoint"):
            learner.check_checkpoint(saved.get("model", {}), where)
        elif saved.get("model") != meta:
            raise CheckpointError(f"{where} holds another model: {saved.get('model')} (now {meta})")
        old, new = dict(saved["run"]["config"]), run["config"]
        defaults = FitConfig().to_dict()  # a field added since the checkpoint was written: its default then
        diff = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k, defaults.get(k)) != new[k]]
        if diff:
            raise CheckpointError(f"{where} was trained with another config: " + ", ".join(f"{k}={old.get(k)!r} (now {new[k]!r})" for k in diff))
        what = {"base_classes": "base classes", "val_classes": "validation classes", "corrupted": "corrupted-table setting"}
        for k in run:
            if k != "config" and saved["run"].get(k) != run[k]:
                raise CheckpointError(f"{where} was trained with other {what.get(k, k.replace('_', ' '))}: {saved['run'].get(k)} (now {run[k]})")
        try:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            trainer.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("trainer.")})
            load_optimizer(opt, tensors, saved["optim"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{where}: the saved weights or optimiser state do not fit this model ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:300]})") from None
        set_rng_state(saved.get("rng", {}))
        step, best_acc, best_step = int(saved["step"]), float(saved["best_val_acc"]), int(saved["best_step"])
        since_best, stopped, history = int(saved["evals_since_best"]), bool(saved["stopped_early"]), list(saved["history"])
        t_before = float(history[-1]["seconds"]) if history else 0.0
        if (ckpt / "best.safetensors").exists():
            best_state = read_checkpoint(ckpt / "best")[0]
    else:
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)

    def save_last() -> None:
        if ckpt is None or not (parallel is None or parallel.writer):
            return
        tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
        tensors.update({f"trainer.{k}": v for k, v in trainer.state_dict().items()})
        otensors, other = optimizer_tensors(opt)
        tensors.update(otensors)
        doc = {"format": FORMAT, "step": step, "best_val_acc": best_acc, "best_step": best_step, "evals_since_best": since_best,
               "stopped_early": stopped, "rng": rng_state(), "model": meta, "run": run, "optim": other, "history": history}
        save_checkpoint(ckpt / "last", tensors, doc)

    seen = np.zeros(len(labels), dtype=bool)
    cuda_devs = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    name = getattr(learner, "name", type(model).__name__)
    bar = progress_bar(total=cfg.steps, initial=min(step, cfg.steps), disable=not cfg.progress or not (parallel is None or parallel.writer),
                       desc=desc or f"train {name} ({trainer.name})", dynamic_ncols=True)
    run_loss, run_acc, n_run, t0 = 0.0, 0.0, 0, time.perf_counter()
    lr_now = cfg.lr
    model.train()
    while step < cfg.steps and not stopped:
        eps = stream(step)
        seen[eps.support.ravel()] = True
        seen[eps.query.ravel()] = True
        n_total = eps.n_episodes
        if parallel is not None:
            eps = parallel.split(eps)
        factor = cfg.lr_factor(step)
        for g, lr0 in zip(opt.param_groups, base_lrs):
            g["lr"] = lr0 * factor
        lr_now = cfg.lr * factor
        with torch.random.fork_rng(devices=cuda_devs):
            # ranks > 0 of a parallel run draw their own dropout (rank 0 draws what one process draws)
            torch.manual_seed(step_seed(cfg.seed, step, 1) if parallel is None or parallel.rank == 0
                              else step_seed(cfg.seed, step, 1, parallel.rank))
            batch = learner.batch(eps, step=step)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                loss, acc = trainer.loss(learner, batch)
            loss = loss.float()
            if parallel is not None:  # the mean over all the step's tasks, the same on every rank
                n_local = eps.n_episodes
                lval, aval = parallel.mean([loss.detach(), acc], n_local, n_total)
                loss_report, acc = torch.tensor(lval), torch.tensor(aval)
            else:
                loss_report = loss
            if not torch.isfinite(loss_report):
                raise FloatingPointError(f"step {step + 1}: the training loss is {float(loss_report)} (diverged); lower lr (or inner_lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if parallel is not None:
                parallel.all_reduce_gradients(params, n_local, n_total)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        step += 1
        run_loss, run_acc, n_run = run_loss + float(loss_report.detach()), run_acc + float(acc), n_run + 1
        if callback is not None:
            callback(step, float(loss_report.detach()), float(acc))
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vacc = validate()
            model.train()
            history.append({"step": step, "loss": run_loss / n_run, "train_acc": run_acc / n_run, "val_acc": vacc, "lr": lr_now,
                            "seconds": t_before + time.perf_counter() - t0})
            bar.set_postfix(loss=f"{run_loss / n_run:.3f}", val_acc=f"{vacc:.3f}", best=f"{max(best_acc, vacc):.3f}")
            run_loss, run_acc, n_run = 0.0, 0.0, 0
            if log is not None and (parallel is None or parallel.writer):
                h = history[-1]
                log(f"[{desc or 'step'} {step}] train loss {h['loss']:.4f} acc {h['train_acc']:.3f}; val acc {vacc:.4f}"
                    + (" (best)" if val_eps is not None and vacc > best_acc else ""))
            if val_eps is not None and vacc > best_acc:
                best_acc, best_step, since_best = vacc, step, 0
                best_state = state_tensors(model)
                save_best(step, vacc)
            elif val_eps is not None:
                since_best += 1
                if cfg.patience is not None and since_best >= cfg.patience:
                    stopped = True
            save_last()
        else:
            bar.set_postfix(loss=f"{float(loss_report.detach()):.3f}")
    bar.close()
    final = state_tensors(model)
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, float(best_acc) if best_acc > -math.inf else float("nan"), best_step, step, stopped, history, final,
                     np.flatnonzero(seen).astype(np.int64), val_seen, trainer.config(), cfg.to_dict(), time.perf_counter() - t_call)
