"""Trainers: how a batch of tasks becomes a loss, orthogonal to the model (the learner).

* ``protonet``: the model's own episode logits, cross-entropy of the queries (Snell, Swersky &
  Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017).
* ``maml``: second-order MAML (Finn, Abbeel & Levine, ICML 2017) on the learner's inner-loop
  module, every parameter the model declares under scope ``"all"`` adapted;
* ``fomaml``: first-order MAML (same paper, section 5.2);
* ``anil``: only the parameters the model declares under scope ``"classifier"`` adapt (Raghu,
  Raghu, Bengio & Vinyals, ICLR 2020);
* ``metasgd``: learned per-parameter inner learning rates (Li, Zhou, Chen & Li, 2017).

The MAML family runs :class:`fewmm.meta.MAML` (the kit's one MAML implementation, checked
against learn2learn) on ``learner.inner_task(batch)``; for fusion heads that is Proto-MAML (see
:class:`fewmm.engine.learner.HeadLearner`). Validation of the MAML family adapts on each
validation episode's support set (``eval_inner_steps``) and scores its queries.

>>> trainer = create_trainer("anil", inner_lr=0.5, inner_steps=5)
>>> loss, acc = trainer.loss(learner, batch)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..heads.base import UNAVAILABLE_LOGIT
from ..registry import Registry

__all__ = ["Trainer", "ProtoNetTrainer", "MAMLTrainer", "TRAINERS", "create_trainer", "list_trainers", "episode_loss"]


def episode_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of query logits, ignoring queries whose true class cannot be scored.

    Parameters
    ----------
    logits : torch.Tensor of shape (E, M, N)
    labels : torch.Tensor of shape (E, M), int64

    Returns
    -------
    (loss, accuracy) : 0-d tensors (accuracy over all queries, detached)
    """
    lg = logits.reshape(-1, logits.shape[-1]).float()
    y = labels.reshape(-1)
    ok = lg.gather(1, y[:, None])[:, 0] > UNAVAILABLE_LOGIT / 2
    loss = F.cross_entropy(lg[ok], y[ok]) if ok.any() else lg.sum() * 0.0
    acc = (lg.argmax(1) == y).float().mean().detach()
    return loss, acc


class Trainer:
    """Base class: turns a task batch into a loss; may own parameters of its own (Meta-SGD's
    rates), optimised with the model's."""

    name = ""

    def prepare(self, learner, batch) -> None:
        """Build what depends on the learner (called once, before the optimiser exists)."""

    def parameters(self) -> list[torch.nn.Parameter]:
        """Meta-parameters the trainer owns (optimised in the outer loop, saved as ``trainer.*``)."""
        return []

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"p{i}": p.detach().cpu().clone().contiguous() for i, p in enumerate(self.parameters())}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.parameters()):
                p.copy_(state[f"p{i}"])

    def loss(self, learner, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) of a training batch (0-d tensors, accuracy detached)."""
        raise NotImplementedError

    def evaluate(self, learner, episodes, chunk_size: int = 64) -> np.ndarray:
        """Per-episode accuracy (E,) float64 of the learner trained by this trainer."""
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.name}


class ProtoNetTrainer(Trainer):
    """Episode cross-entropy of the model's own logits (no inner loop)."""

    name = "protonet"

    def loss(self, learner, batch):
        return episode_loss(learner.logits(batch), learner.targets(batch))

    def evaluate(self, learner, episodes, chunk_size: int = 64):
        return learner.evaluate(episodes)


class MAMLTrainer(Trainer):
    """The MAML family through :class:`fewmm.meta.MAML`.

    Parameters
    ----------
    variant : {"maml", "anil", "metasgd"}
    first_order : bool
    inner_lr : float, default 0.5
        Inner-loop step size (Meta-SGD: the initial rates).
    inner_steps : int, default 5
        Inner steps at training.
    eval_inner_steps : int or None
        Inner steps at validation / test (default ``inner_steps``).
    scope : {"all", "classifier"}
        Which declared parameters adapt (ANIL: "classifier").
    """

    def __init__(self, variant: str = "maml", first_order: bool = False, inner_lr: float = 0.5, inner_steps: int = 5,
                 eval_inner_steps: int | None = None, scope: str | None = None, name: str | None = None):
        if not (np.isfinite(inner_lr) and inner_lr > 0):
            raise ValueError(f"inner_lr must be finite and > 0, got {inner_lr!r}")
        for k, v in (("inner_steps", inner_steps), ("eval_inner_steps", eval_inner_steps)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        self.variant, self.first_order = variant, bool(first_order)
        self.inner_lr, self.inner_steps = float(inner_lr), int(inner_steps)
        self.eval_inner_steps = int(eval_inner_steps or inner_steps)
        self.scope = scope or ("classifier" if variant == "anil" else "all")
        self.name = name or variant
        self.maml = None

    @classmethod
    def wrap(cls, maml, eval_inner_steps: int | None = None) -> "MAMLTrainer":
        """A trainer running an existing :class:`fewmm.meta.MAML` (its head, variant, path,
        feature normalisation and inner-loop settings as they are); the learner's inner module
        must be ``maml.head``."""
        tr = cls(maml.variant, maml.first_order, maml.inner_lr, maml.inner_steps, eval_inner_steps,
                 name="fomaml" if (maml.variant == "maml" and maml.first_order) else maml.variant)
        tr.maml = maml
        return tr

    def prepare(self, learner, batch) -> None:
        from ..meta import MAML

        if self.maml is not None:
            if not getattr(self, "_way_fixed", False):
                module, sx = learner.inner_task(batch)[:2]
                if module is not self.maml.head:
                    raise ValueError("the learner's inner-loop module is not the head of this trainer's MAML")
                with torch.no_grad():
                    self.maml.n_way(sx.detach())
                self._way_fixed = True
            return
        module, sx = learner.inner_task(batch)[:2]
        self.maml = MAML(module, inner_lr=self.inner_lr, inner_steps=self.inner_steps, first_order=self.first_order,
                         variant=self.variant, feature_norm=None, adapted=learner.adapted_parameters(self.scope))
        with torch.no_grad():  # fix the way now: MAML learns it from one forward, which may draw dropout noise
            self.maml.n_way(sx.detach())
        self._way_fixed = True

    def maml_for(self, learner, module):
        """The :class:`fewmm.meta.MAML` that adapts ``module``: this trainer's (meta-trained) one
        when ``module`` is its head, else one built for ``module`` with the same settings.

        A learner gives another inner-loop module for a task of another way than the training
        way (:meth:`HeadLearner.inner_module`: the same head, a classifier of that way starting
        from the support prototypes with a zero offset), e.g. a validation split with fewer
        classes. Meta-SGD's learned rates are shared where the shapes agree; the classifier's
        per-class rates (class positions are arbitrary: episode labels are drawn at random) are
        averaged over the training classes and used for every class of the new way.

        Raises
        ------
        ValueError
            ``module``'s parameter names differ from this trainer's head (not the same model).
        """
        from ..meta import MAML

        if module is self.maml.head:
            return self.maml
        cache = self.__dict__.setdefault("_other_way", {})
        m = cache.get(id(module))
        if m is None or m.head is not module:
            names = [n for n, _ in module.named_parameters()]
            ours = [n for n, _ in self.maml.head.named_parameters()]
            if names != ours:
                raise ValueError("the learner's inner-loop module for this task is not built on the head of this trainer's MAML "
                                 f"(parameters {names[:4]}... vs {ours[:4]}...)")
            m = MAML(module, inner_lr=self.maml.inner_lr, inner_steps=self.maml.inner_steps, first_order=self.maml.first_order,
                     variant=self.maml.variant, path=self.maml.path, feature_norm=self.maml.feature_norm,
                     adapted=learner.adapted_parameters(self.scope))
            cache[id(module)] = m
        if self.variant == "metasgd":  # the current learned rates (they change as training goes on)
            with torch.no_grad():
                for new, old in zip(m.lrs, self.maml.lrs):
                    new.copy_(old if new.shape == old.shape else old.mean(0, keepdim=True).expand_as(new))
        return m

    def parameters(self):
        return list(self.maml.lrs) if (self.maml is not None and self.variant == "metasgd") else []

    def loss(self, learner, batch):
        from ..errors import EpisodeError

        self.prepare(learner, batch)
        module, sx, sy, qx, qy = learner.inner_task(batch)
        if module is not self.maml.head:
            raise EpisodeError(f"meta-training tasks must keep one way: this trainer's MAML was built for the first training "
                               f"batch's way, got a batch of another way ({getattr(module, 'n_way', '?')}-way); tasks of "
                               "another way can be evaluated (see MAMLTrainer.maml_for), not trained on")
        self.maml.inner_steps = self.inner_steps
        return self.maml.meta_loss(sx, sy, qx, qy)

    def evaluate(self, learner, episodes, chunk_size: int = 64):
        model = learner.model
        was = model.training
        model.eval()
        accs = []
        chunk_size = int(getattr(learner, "eval_chunk", chunk_size))
        try:
            for s in range(0, episodes.n_episodes, chunk_size):
                batch = learner.batch(episodes[s : s + chunk_size])
                self.prepare(learner, batch)  # builds the MAML of a trainer that has not trained yet
                with torch.no_grad():
                    module, sx, sy, qx, qy = learner.inner_task(batch)
                maml = self.maml_for(learner, module)  # another way than the training way: see maml_for
                maml.inner_steps = self.eval_inner_steps
                try:
                    params = maml.adapt(sx, sy, differentiable=False)
                    with torch.no_grad():
                        logits = maml.predict_logits(params, qx)
                finally:
                    maml.inner_steps = self.inner_steps
                accs.append((logits.argmax(-1) == qy).double().mean(1).cpu().numpy())
        finally:
            if self.maml is not None:
                self.maml.inner_steps = self.inner_steps
            model.train(was)
        return np.concatenate(accs)

    def config(self) -> dict:
        return {"name": self.name, "variant": self.variant, "first_order": self.first_order, "inner_lr": self.inner_lr,
                "inner_steps": self.inner_steps, "eval_inner_steps": self.eval_inner_steps, "scope": self.scope}


#: Trainers by name: ``TRAINERS.get(name)(**hyper_parameters)``.
TRAINERS: Registry[Trainer] = Registry("trainer")
TRAINERS.register("protonet", "prototypical episodes (Snell et al. 2017)")(ProtoNetTrainer)
TRAINERS.register("maml", "second-order MAML (Finn et al. 2017); Proto-MAML for metric heads")(
    lambda **kw: MAMLTrainer("maml", False, name="maml", **kw))
TRAINERS.register("fomaml", "first-order MAML (Finn et al. 2017, section 5.2)")(
    lambda **kw: MAMLTrainer("maml", True, name="fomaml", **kw))
TRAINERS.register("anil", "MAML adapting only the classifier the model declares (Raghu et al. 2020)")(
    lambda **kw: MAMLTrainer("anil", kw.pop("first_order", False), name="anil", **kw))
TRAINERS.register("metasgd", "learned per-parameter inner learning rates (Li et al. 2017)")(
    lambda **kw: MAMLTrainer("metasgd", kw.pop("first_order", False), name="metasgd", **kw))


def create_trainer(name: str, **kwargs) -> Trainer:
    """Build the trainer registered as ``name`` (see :data:`TRAINERS`).

    Raises
    ------
    UnknownNameError
        Unknown name (the message lists the known ones).
    TypeError
        A hyper-parameter the trainer does not take (``protonet`` takes none).
    """
    return TRAINERS.get(name)(**kwargs)


def list_trainers() -> list[str]:
    """Registered trainer names."""
    return TRAINERS.names()
