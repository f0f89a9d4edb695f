"""The MAML family on frozen features, batched over a meta-batch of tasks.

* MAML, second order (Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
  Deep Networks", ICML 2017);
* first-order MAML (same paper, section 5.2; ``first_order=True``);
* ANIL, adapting only the last layer in the inner loop (Raghu, Raghu, Bengio & Vinyals, "Rapid
  Learning or Feature Reuse?", ICLR 2020; ``variant="anil"``);
* Meta-SGD, learned per-parameter inner learning rates (Li, Zhou, Chen & Li, "Meta-SGD: Learning
  to Learn Quickly for Few-Shot Learning", arXiv:1707.09835, 2017; ``variant="metasgd"``).

Inner loop (adaptation) on task ``t``: ``theta_t <- theta_t - alpha * grad L_support_t(theta_t)``,
``inner_steps`` times from ``theta_t = theta``; outer loop (meta-update): the optimiser steps
``theta`` along ``grad_theta mean_t L_query_t(theta_t)``. Losses are cross-entropy, mean over
the items of a task; the meta-loss is the mean over tasks.

Two exact implementations (same adapted predictions, losses and meta-gradients up to rounding);
the one that ran is recorded in ``MAML.path_``:

``"gram"``
    For heads whose adapted linear layer sees an input that does not change in the inner loop: the
    first ``nn.Linear`` of an ``nn.Sequential`` head over frozen features (MAML, first-order MAML)
    or the last ``nn.Linear`` over the body's features (ANIL). The inner-loop gradient of that
    layer is ``delta^T X_support`` (``delta``: gradient of the loss w.r.t. the layer's output), so
    after any number of steps its weight is ``W - A^T X_support`` with ``A`` of shape
    ``(T, n_support, h)`` the learning-rate-weighted sum of the ``delta``; outputs are then
    ``X W^T - (X X_support^T) A + b``. Only Gram products with the support set are formed,
    never a per-task copy of ``W`` (``T * h * d`` numbers, the cost that makes task-batched MAML
    slow on CPU). Layers after it (small) are adapted with per-task parameters.
``"functional"``
    Any ``nn.Module`` head (fusion heads, backbones). Recorded in ``MAML.functional_impl_``:

    * ``"lowrank"`` (MAML and ANIL, when every adapted parameter belongs to an ``nn.Linear`` and
      the head, called once on the whole ``(T, n, d)`` task batch, gives what it gives task by
      task, checked on the first call): each adapted linear layer of task t is kept as
      ``W - U_t^T V_t`` (``V_t``: the layer's inputs on the support set at each step, ``U_t``:
      ``alpha`` times the loss gradient w.r.t. its outputs; see
      :class:`fewmm.meta.functional.LowRankState`), so no per-task ``(T, h, d)`` weight copy is
      ever formed: memory as learn2learn's per-task loop, without its per-task Python overhead;
    * otherwise (Meta-SGD, other parameter types, heads that mix tasks or edit a layer's output
      in place, ``force_vmap=True``): dense per-task parameters of shape ``(T, *shape)``, forward
      with ``torch.bmm`` for ``nn.Sequential`` of ``nn.Linear`` and element-wise activations
      (``"bmm"``), else ``torch.func.vmap(torch.func.functional_call)`` over tasks (``"vmap"``).

    Gradients of the summed task losses with ``torch.autograd.grad`` (``create_graph=True`` for
    second order).

Features are L2-normalised before the inner loop by default (``feature_norm="l2"``): an inner
learning rate of 0.5 on raw EfficientNet features (norms 10-58) diverges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FeatureError
from ..methods.base import FewShotMethod, l2_normalize
from .functional import LowRankLinears, LowRankState, TaskBatchedModule, anil_layer_names, flatten_sequential, split_gram

VARIANTS = ("maml", "anil", "metasgd")
PATHS = ("auto", "gram", "functional")


@dataclass
class _Fast:
    """Result of the inner loop (internal). ``path == "gram"``: the Gram state; otherwise
    ``params`` holds every head parameter with a leading task dimension."""

    path: str
    params: dict = field(default_factory=dict)
    hs: torch.Tensor | None = None  # (T, S, din) support input of the Gram layer (detached when first order)
    a: torch.Tensor | None = None  # (T, S, h) accumulated alpha * delta, None before the first step
    bias: torch.Tensor | None = None  # (T, h)
    weight: torch.Tensor | None = None  # (h, din) the Gram layer's initial weight (or a detached copy)
    prefix_params: dict | None = None  # for eval: detached prefix parameters
    lowrank: LowRankState | None = None  # functional path, low-rank linear layers (params unused then)


def _leaf(p: torch.Tensor, track: bool) -> torch.Tensor:
    """``p`` itself when the meta-gradient must flow into it, else a detached leaf requiring grad."""
    if track and p.requires_grad:
        return p
    return p.detach().requires_grad_()


def _expand(p: torch.Tensor, t: int) -> torch.Tensor:
    return p.unsqueeze(0).expand(t, *p.shape)


class MAML(nn.Module):
    """Model-Agnostic Meta-Learning over a meta-batch of tasks, for any ``nn.Module`` head.

    Parameters
    ----------
    head : nn.Module
        Maps features ``(n, d)`` to logits ``(n, n_way)``. Its parameters are the meta-learned
        initialisation (``maml.head``); optimise ``maml.parameters()`` in the outer loop (they also
        hold Meta-SGD's learning rates).
    inner_lr : float, default 0.5
        Inner-loop (adaptation) step size alpha; Meta-SGD's initial per-parameter rate.
    inner_steps : int, default 5
        Gradient steps on the support set per task.
    first_order : bool, default False
        First-order approximation: inner-loop gradients are treated as constants, so the
        meta-gradient skips second derivatives (Finn et al. 2017, section 5.2).
    variant : {"maml", "anil", "metasgd"}, default "maml"
        "maml": adapt every parameter. "anil": adapt only the last layer (the last module owning
        parameters), the body still receives meta-gradients (Raghu et al. 2020). "metasgd": adapt
        every parameter with learned element-wise rates ``maml.lrs`` (Li et al. 2017).
    path : {"auto", "gram", "functional"}, default "auto"
        "auto" takes the Gram fast path where it applies (see the module docstring), the
        functional path otherwise; "gram" raises ``ValueError`` where it does not apply.
    feature_norm : {"l2", None}, default "l2"
        Scale every feature row to unit L2 norm before the inner loop.
    force_vmap : bool, default False
        On the functional path, always run the head through
        ``torch.func.vmap(torch.func.functional_call)`` over tasks with dense per-task parameters,
        even where the low-rank or ``torch.bmm`` implementations apply. Same results (up to
        rounding); for benchmarking and as a reference.
    adapted : iterable of str, optional
        Names (``head.named_parameters()``) of the parameters the inner loop adapts, as declared
        by the model (e.g. :mod:`fewmm.engine` learners: the classifier only for ANIL). Default:
        every parameter ("maml", "metasgd") or the last layer ("anil"). Given, the functional
        path runs (``path="gram"`` raises ``ValueError``).

    Attributes
    ----------
    path_ : str
        "gram" or "functional": the path the last call ran.
    functional_impl_ : str or None
        How the last functional-path call ran: "lowrank" (adapted ``nn.Linear`` layers kept as
        ``W - U^T V``, the head called once on the task batch), "bmm" or "vmap" (per-task dense
        parameters); None before the first call or on the Gram path.
    lrs : nn.ParameterList
        Meta-SGD only: one learning-rate tensor per head parameter (same shape), initialised to
        ``inner_lr``, in ``head.parameters()`` order.

    Raises
    ------
    ValueError
        Unknown ``variant`` / ``path`` / ``feature_norm``, ``inner_steps < 1``, or ``path="gram"``
        for a head or variant it does not apply to.

    Examples
    --------
    ::

        head = nn.Sequential(nn.Linear(1280, 256), nn.ReLU(), nn.Linear(256, 5))
        maml = MAML(head, inner_lr=0.5, inner_steps=5)            # maml.path_ == "gram"
        opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
        loss, acc = maml.meta_loss(sx, sy, qx, qy)   # (T, S, d), (T, S), (T, Q, d), (T, Q)
        opt.zero_grad(); loss.backward(); opt.step()
        params = maml.adapt(sx, sy)                  # {name: (T, *shape)}
        logits = maml.predict_logits(params, qx)     # (T, Q, 5)
    """

    def __init__(
        self,
        head: nn.Module,
        inner_lr: float = 0.5,
        inner_steps: int = 5,
        first_order: bool = False,
        variant: str = "maml",
        path: str = "auto",
        feature_norm: str | None = "l2",
        force_vmap: bool = False,
        adapted=None,
    ):
        super().__init__()
        if not isinstance(head, nn.Module):
            raise ValueError(f"head must be a torch.nn.Module, got {type(head).__name__}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if feature_norm not in ("l2", None, "none"):
            raise ValueError(f"feature_norm must be 'l2' or None, got {feature_norm!r}")
        if not isinstance(inner_steps, (int, np.integer)) or inner_steps < 1:
            raise ValueError(f"inner_steps must be an integer >= 1, got {inner_steps!r}")
        if not np.isfinite(float(inner_lr)):
            raise ValueError(f"inner_lr must be finite, got {inner_lr!r}")
        self.head = head
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.first_order = bool(first_order)
        self.variant = variant
        self.path = path
        self.feature_norm = None if feature_norm == "none" else feature_norm
        #: the ``adapted`` names as given (sorted), None for the variant's default (kept for fewmm.persist)
        self.adapted = None if adapted is None else sorted(set(adapted))
        self._names = [n for n, _ in head.named_parameters()]
        if not self._names:
            raise ValueError("head has no parameters to meta-learn")
        if variant == "metasgd":
            self.lrs = nn.ParameterList([nn.Parameter(torch.full_like(p.detach(), self.inner_lr)) for p in head.parameters()])
        if adapted is not None:  # the model declares which parameters the inner loop adapts
            adapted = set(adapted)
            unknown = sorted(adapted - set(self._names))
            if unknown or not adapted:
                raise ValueError(f"adapted names {unknown or '(none)'} are not parameters of the head {self._names[:8]}")
            self._adapted = adapted
        else:
            self._adapted = set(anil_layer_names(head)) if variant == "anil" else set(self._names)
        self._split = split_gram(head, variant) if adapted is None else None
        if path == "gram" and self._split is None:
            why = "an explicit `adapted` list" if adapted is not None else (
                "Meta-SGD's element-wise learning rates break the low-rank update"
                if variant == "metasgd"
                else "the head is not an nn.Linear or an nn.Sequential whose "
                + ("first" if variant == "maml" else "last")
                + " layer is nn.Linear"
            )
            raise ValueError(f"path='gram' does not apply to variant={variant!r} with this head: {why}; use path='auto'")
        self.path_ = "gram" if (self._split is not None and path != "functional") else "functional"
        self.force_vmap = bool(force_vmap)
        self._runner = TaskBatchedModule(head, force_vmap=self.force_vmap)
        if self._split is not None:
            s = self._split
            self._rest = TaskBatchedModule(head, mods=s.rest) if s.rest else None
            self._rest_names = self._rest.param_names() if s.rest else []
            self._lin_w = f"{s.linear_name}.weight" if s.linear_name else "weight"
            self._lin_b = (f"{s.linear_name}.bias" if s.linear_name else "bias") if s.linear.bias is not None else None
        # general path: adapted nn.Linear layers kept low-rank (LowRankLinears) when every adapted
        # parameter belongs to one and the head is batch-equivalent (checked on the first call)
        self._lowrank = (
            LowRankLinears(head, self._adapted)
            if variant != "metasgd" and not self.force_vmap and LowRankLinears.applicable(head, self._adapted)
            else None
        )
        self._lowrank_ok: bool | None = None  # None: not checked yet
        self.functional_impl_: str | None = None
        mods = flatten_sequential(head)
        self._n_way = mods[-1][1].out_features if mods and isinstance(mods[-1][1], nn.Linear) else None
        self._in_dim = mods[0][1].in_features if mods and isinstance(mods[0][1], nn.Linear) else None

    # ------------------------------------------------------------------------------------------
    # public API
    def config(self) -> dict:
        """The constructor arguments other than ``head`` (JSON values): ``MAML(head, **maml.config())``
        rebuilds this inner loop around a head (used by :mod:`fewmm.persist`)."""
        return {"inner_lr": self.inner_lr, "inner_steps": self.inner_steps, "first_order": self.first_order,
                "variant": self.variant, "path": self.path, "feature_norm": self.feature_norm,
                "force_vmap": self.force_vmap, "adapted": self.adapted}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The head at the meta-learned initialisation (features normalised as configured)."""
        return self.head(self._norm(x))

    def meta_loss(self, support_x, support_y, query_x, query_y) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapt on each task's support set, then score its query set.

        Parameters
        ----------
        support_x : torch.Tensor of shape (T, n_support, d), float
            Support features of T tasks (a 2-d array is one task).
        support_y : torch.Tensor of shape (T, n_support), int
            Episode-local labels in ``0 .. n_way - 1``.
        query_x : torch.Tensor of shape (T, n_query, d), float
        query_y : torch.Tensor of shape (T, n_query), int

        Returns
        -------
        loss : torch.Tensor, scalar
            Mean over tasks of the query cross-entropy after adaptation; ``loss.backward()``
            gives the meta-gradient (second order unless ``first_order``).
        accuracy : torch.Tensor, scalar, detached
            Fraction of all query items classified correctly after adaptation.

        Raises
        ------
        FeatureError
            Wrong dimensions, support/query feature dims that differ (or differ from the head's
            input), NaN/inf features, non-integer labels, labels outside ``0 .. n_way - 1``, or
            label/feature count mismatch. The message names the argument.
        """
        sx, sy = self._check_task_batch(support_x, support_y, "support")
        qx, qy = self._check_task_batch(query_x, query_y, "query", t=sx.shape[0], dim=sx.shape[2])
        self._check_label_range(sy, "support_y", sx)
        self._check_label_range(qy, "query_y", sx)
        track = torch.is_grad_enabled()
        fast = self._inner(sx, sy, track=track)
        logits = self._query_logits(fast, qx)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), qy.reshape(-1))
        acc = (logits.detach().argmax(-1) == qy).to(logits.dtype).mean()
        return (loss if track else loss.detach()), acc

    def adapt(self, support_x, support_y, differentiable: bool | None = None) -> dict[str, torch.Tensor]:
        """Run the inner loop and return the adapted parameters.

        Parameters
        ----------
        support_x : torch.Tensor of shape (T, n_support, d)
        support_y : torch.Tensor of shape (T, n_support), int in ``0 .. n_way - 1``
        differentiable : bool, optional
            Keep the adapted parameters differentiable w.r.t. the initialisation (and Meta-SGD's
            rates); default: ``torch.is_grad_enabled()``. The inner loop itself always runs (also
            under ``torch.no_grad()``).

        Returns
        -------
        dict of str -> torch.Tensor of shape (T, *param.shape)
            Every parameter of the head by its ``named_parameters`` name, per task (parameters
            the variant does not adapt are broadcast views). On the Gram path the adapted weight
            of the Gram layer is materialised here (``T * h * d`` numbers); training through
            :meth:`meta_loss` never does that.

        Raises
        ------
        FeatureError
            As :meth:`meta_loss`.
        """
        sx, sy = self._check_task_batch(support_x, support_y, "support")
        self._check_label_range(sy, "support_y", sx)
        track = torch.is_grad_enabled() if differentiable is None else bool(differentiable)
        fast = self._inner(sx, sy, track=track)
        params = self._materialize(fast, sx.shape[0])
        return params if track else {k: v.detach() for k, v in params.items()}

    def predict_logits(self, params: dict[str, torch.Tensor], query_x) -> torch.Tensor:
        """Logits of the head with per-task parameters.

        Parameters
        ----------
        params : dict of str -> torch.Tensor of shape (T, *param.shape)
            As returned by :meth:`adapt`.
        query_x : torch.Tensor of shape (T, n_query, d)

        Returns
        -------
        torch.Tensor of shape (T, n_query, n_way)

        Raises
        ------
        FeatureError
            Bad ``query_x`` (see :meth:`meta_loss`) or a task count different from ``params``'.
        ValueError
            ``params`` lacks a parameter of the head.
        """
        missing = [n for n in self._names if n not in params]
        if missing:
            raise ValueError(f"params lacks head parameters {missing[:5]}")
        t = next(iter(params.values())).shape[0]
        qx = self._check_x(query_x, "query_x", t=t)
        return self._runner(params, qx)

    # ------------------------------------------------------------------------------------------
    # validation
    def _dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.head.parameters()).device

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(x) if self.feature_norm == "l2" else x

    def _check_x(self, x, name: str, t: int | None = None, dim: int | None = None, normalize: bool = True) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            xt = x
        else:
            try:
                xt = torch.as_tensor(np.asarray(x))
            except Exception as e:
                raise FeatureError(f"{name} must be a numeric array of shape (T, n, d): {e}") from None
        if xt.is_complex() or not (xt.is_floating_point() or xt.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise FeatureError(f"{name} must be a real numeric array, got dtype {xt.dtype}")
        if xt.ndim == 2:
            xt = xt.unsqueeze(0)
        if xt.ndim != 3:
            raise FeatureError(f"{name} must have shape (T, n, d) (tasks, items, dim), got shape {tuple(xt.shape)}")
        if xt.shape[1] == 0 or xt.shape[2] == 0:
            raise FeatureError(f"{name} is empty: shape {tuple(xt.shape)}")
        if t is not None and xt.shape[0] != t:
            raise FeatureError(f"{name} has {xt.shape[0]} tasks, expected {t} (as the support set)")
        if dim is not None and xt.shape[2] != dim:
            raise FeatureError(f"{name} has feature dim {xt.shape[2]}, but support_x has dim {dim}")
        if self._in_dim is not None and xt.shape[2] != self._in_dim:
            raise FeatureError(f"{name} has feature dim {xt.shape[2]}, but the head's first layer expects {self._in_dim}")
        xt = xt.to(device=self._device(), dtype=self._dtype())
        if xt.is_inference() and not torch.is_inference_mode_enabled():
            xt = xt.clone()  # inference tensors cannot enter autograd
        # one reduction first (cheap); the full per-row check only when something is off
        if not bool(torch.isfinite(xt.sum())) and bool((bad := ~torch.isfinite(xt).all(dim=2)).any()):
            first = torch.nonzero(bad)[0].tolist()
            raise FeatureError(f"{name} contains NaN or inf values in {int(bad.sum())} rows (first: task {first[0]}, item {first[1]})")
        return self._norm(xt) if normalize else xt

    def _check_y(self, y, name: str, shape: tuple[int, int]) -> torch.Tensor:
        yt = y.detach() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        if yt.is_floating_point() or yt.is_complex() or yt.dtype == torch.bool:
            raise FeatureError(f"{name} must hold integer class indices, got dtype {yt.dtype}")
        if yt.ndim == 1:
            yt = yt.unsqueeze(0)
        if tuple(yt.shape) != tuple(shape):
            raise FeatureError(f"{name} has shape {tuple(yt.shape)}, expected {tuple(shape)} (one label per feature row)")
        return yt.to(device=self._device(), dtype=torch.int64)

    def _check_task_batch(self, x, y, which: str, t: int | None = None, dim: int | None = None):
        xt = self._check_x(x, f"{which}_x", t=t, dim=dim)
        return xt, self._check_y(y, f"{which}_y", xt.shape[:2])

    def n_way(self, example_x: torch.Tensor | None = None) -> int:
        """Number of logits the head outputs (from its last ``nn.Linear``, else by one forward)."""
        if self._n_way is None:
            if example_x is None:
                raise ValueError("n_way is unknown until the head has seen one input")
            with torch.no_grad():
                self._n_way = int(self.head(example_x.reshape(-1, example_x.shape[-1])[:1]).shape[-1])
        return self._n_way

    def _check_label_range(self, y: torch.Tensor, name: str, example_x: torch.Tensor) -> None:
        n = self.n_way(example_x)
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n:
            raise FeatureError(f"{name} has labels in {lo}..{hi}, but the head has {n} outputs: labels must be in 0..{n - 1}")

    # ------------------------------------------------------------------------------------------
    # inner loop
    def _resolve_path(self) -> str:
        return "gram" if (self._split is not None and self.path != "functional") else "functional"

    def _inner(self, sx: torch.Tensor, sy: torch.Tensor, track: bool) -> _Fast:
        """Adapt on a (validated, normalised) meta-batch; ``track``: keep the result
        differentiable w.r.t. the initial parameters."""
        self.path_ = self._resolve_path()
        with torch.inference_mode(False), torch.enable_grad():
            if sx.is_inference():
                sx, sy = sx.clone(), sy.clone()
            if self.path_ == "gram":
                self.functional_impl_ = None
                return self._inner_gram(sx, sy, track)
            if self._use_lowrank(sx):
                self.functional_impl_ = "lowrank"
                return self._inner_lowrank(sx, sy, track)
            self.functional_impl_ = "bmm" if self._runner.simple else "vmap"
            return self._inner_functional(sx, sy, track)

    def _use_lowrank(self, sx: torch.Tensor) -> bool:
        if self._lowrank is None:
            return False
        if self._lowrank_ok is None:
            ok = self._lowrank.batch_equivalent(sx)
            if sx.shape[0] >= 2 or not ok:  # one task cannot show tasks mixing: check again on a batch
                self._lowrank_ok = ok
            return ok
        return self._lowrank_ok

    def _inner_lowrank(self, sx, sy, track) -> _Fast:
        """Functional path with the adapted linear layers low-rank (see LowRankState): same
        adapted functions, losses and meta-gradients as the dense per-task parameters."""
        t = sx.shape[0]
        create_graph = track and not self.first_order
        st = LowRankState(t)
        for name, m in self._lowrank.linears:
            st.weight[name] = m.weight if track else m.weight.detach()
            st.bias[name] = None if m.bias is None else _expand(m.bias if track else m.bias.detach(), t)
        alpha = self.inner_lr
        for _ in range(self.inner_steps):
            rec: list = []
            with self._lowrank.patched(st, rec):
                out = self.head(sx)
            loss = self._support_loss(out, sy)
            grads = torch.autograd.grad(loss, [z for _, _, z in rec], create_graph=create_graph, allow_unused=True)
            dbias: dict = {}
            for (name, x3, _), dz in zip(rec, grads):
                if dz is None:
                    continue
                st.add(name, x3 if create_graph else x3.detach(), alpha * dz)
                if st.bias[name] is not None:
                    dbias[name] = dz.sum(1) if name not in dbias else dbias[name] + dz.sum(1)
            for name, db in dbias.items():
                st.bias[name] = st.bias[name] - alpha * db
        return _Fast(path="functional", lowrank=st)

    def _lr(self, i: int) -> float | torch.Tensor:
        return self.lrs[i] if self.variant == "metasgd" else self.inner_lr

    def _support_loss(self, out: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
        # sum over tasks of the per-task mean: its gradient w.r.t. task t's parameters is task t's own
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), sy.reshape(-1), reduction="sum") / sy.shape[1]

    def _inner_functional(self, sx, sy, track) -> _Fast:
        t = sx.shape[0]
        create_graph = track and not self.first_order
        base = dict(self.head.named_parameters())
        lrs = {}
        fast = {}
        for i, n in enumerate(self._names):
            p = base[n]
            if n in self._adapted:
                fast[n] = _expand(_leaf(p, track), t)
                lr = self._lr(i)
                lrs[n] = lr if (track or not isinstance(lr, torch.Tensor)) else lr.detach()
            else:
                fast[n] = _expand(p if track else p.detach(), t)
        adapted = [n for n in self._names if n in self._adapted]
        for _ in range(self.inner_steps):
            loss = self._support_loss(self._runner(fast, sx), sy)
            grads = torch.autograd.grad(loss, [fast[n] for n in adapted], create_graph=create_graph)
            for n, g in zip(adapted, grads):
                fast[n] = fast[n] - lrs[n] * g
        return _Fast(path="functional", params=fast)

    def _prefix_forward(self, x: torch.Tensor, params: dict | None) -> torch.Tensor:
        """ANIL body (shared parameters) on (T, n, d) -> (T, n, h)."""
        s = self._split
        if not s.prefix:
            return x
        t, n, d = x.shape
        h = x.reshape(t * n, d)
        if params is None:
            for _, m in s.prefix:
                h = m(h)
        else:
            from torch.func import functional_call

            for name, m in s.prefix:
                own = {leaf: params[f"{name}.{leaf}" if name else leaf] for leaf, _ in m.named_parameters()}
                h = functional_call(m, own, (h,)) if own else m(h)
        return h.reshape(t, n, h.shape[-1])

    def _inner_gram(self, sx, sy, track) -> _Fast:
        s = self._split
        t = sx.shape[0]
        create_graph = track and not self.first_order
        prefix_params = None
        if s.prefix and not track:
            prefix_params = {n: p.detach() for n, p in self.head.named_parameters()}
        hs = self._prefix_forward(sx, prefix_params)
        w = s.linear.weight if track else s.linear.weight.detach()
        ps = F.linear(hs, w)  # (T, S, h): one matmul with the shared weight
        hs_c = hs.detach() if (self.first_order or not track) else hs
        gss = torch.bmm(hs_c, hs_c.transpose(1, 2))  # (T, S, S)
        base = dict(self.head.named_parameters())
        bias = _expand(_leaf(s.linear.bias, track), t) if s.linear.bias is not None else None
        rest = {n: _expand(_leaf(base[n], track), t) for n in self._rest_names}
        alpha = self.inner_lr
        a = None
        for _ in range(self.inner_steps):
            z = ps if a is None else ps - torch.bmm(gss, a)
            if bias is not None:
                z = z + bias.unsqueeze(1)
            if not z.requires_grad:
                z.requires_grad_()
            out = self._rest(rest, z) if self._rest is not None else z
            loss = self._support_loss(out, sy)
            inputs = [z] + [rest[n] for n in self._rest_names]
            grads = torch.autograd.grad(loss, inputs, create_graph=create_graph)
            dz = grads[0]  # (T, S, h): gradient of each task's loss w.r.t. the layer's output
            a = alpha * dz if a is None else a + alpha * dz
            if bias is not None:
                bias = bias - alpha * dz.sum(1)
            for n, g in zip(self._rest_names, grads[1:]):
                rest[n] = rest[n] - alpha * g
        return _Fast(path="gram", params=rest, hs=hs_c, a=a, bias=bias, weight=w, prefix_params=prefix_params)

    def _query_logits(self, fast: _Fast, qx: torch.Tensor) -> torch.Tensor:
        """(T, Q, d) validated queries -> (T, Q, n_way) logits of the adapted heads."""
        if fast.path == "functional":
            if fast.lowrank is not None:
                with self._lowrank.patched(fast.lowrank):
                    return self.head(qx)
            return self._runner(fast.params, qx)
        hq = self._prefix_forward(qx, fast.prefix_params)
        z = torch.baddbmm(F.linear(hq, fast.weight), torch.bmm(hq, fast.hs.transpose(1, 2)), fast.a, alpha=-1.0)
        if fast.bias is not None:
            z = z + fast.bias.unsqueeze(1)
        return self._rest(fast.params, z) if self._rest is not None else z

    def _materialize(self, fast: _Fast, t: int) -> dict[str, torch.Tensor]:
        if fast.path == "functional":
            if fast.lowrank is not None:
                st = fast.lowrank
                out = {n: _expand(p, t) for n, p in self.head.named_parameters()}
                for name, m in self._lowrank.linears:
                    pre = f"{name}." if name else ""
                    out[pre + "weight"] = st.dense_weight(name)
                    if m.bias is not None:
                        out[pre + "bias"] = st.bias[name]
                return out
            return dict(fast.params)
        out = {}
        for n, p in self.head.named_parameters():
            out[n] = _expand(p, t)
        out[self._lin_w] = fast.weight.unsqueeze(0) - torch.bmm(fast.a.transpose(1, 2), fast.hs)
        if self._lin_b is not None:
            out[self._lin_b] = fast.bias
        out.update(fast.params)
        return out


class MAMLClassifier(FewShotMethod):
    """A meta-learned head under the common few-shot contract: ``fit`` runs the inner loop on the
    support set from the meta-learned initialisation, ``predict_proba`` scores queries with the
    adapted head (Finn et al. 2017; Raghu et al. 2020 and Li et al. 2017 with those variants).

    Parameters
    ----------
    maml : MAML
        The meta-learner (its head, inner-loop settings, variant, path and feature
        normalisation are used as they are; ``transform_features`` applies its ``feature_norm``).
    task_chunk : int, optional
        Episodes adapted together in :meth:`episode_logits` (bounds memory). Default: 1024 on the
        Gram path, 64 on the functional path (which holds per-task copies of every weight).

    Notes
    -----
    With ``C`` support classes the logits are the first ``C`` outputs of the head; ``C`` larger
    than the head's output count raises ``FeatureError``.
    """

    name = "maml"

    def __init__(self, maml: MAML, task_chunk: int | None = None):
        self.maml = maml
        self.task_chunk = task_chunk

    def check_params(self) -> None:
        """Raise ValueError unless ``maml`` is a :class:`MAML` and ``task_chunk`` None or an int >= 1."""
        if not isinstance(self.maml, MAML):
            raise ValueError(f"maml must be a fewmm.meta.MAML, got {type(self.maml).__name__}")
        tc = self.task_chunk
        if tc is not None and (isinstance(tc, bool) or not isinstance(tc, (int, np.integer)) or tc < 1):
            raise ValueError(f"task_chunk must be None or an int >= 1, got {tc!r}")

    def transform_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.maml._norm(features)

    def __repr__(self) -> str:  # one line (the head's module tree is long)
        m = self.maml
        if not isinstance(m, MAML):
            return f"MAMLClassifier(maml={m!r}, task_chunk={self.task_chunk!r})"
        return (f"MAMLClassifier(maml=MAML(variant={m.variant!r}, inner_lr={m.inner_lr}, inner_steps={m.inner_steps}, "
                f"first_order={m.first_order}), task_chunk={self.task_chunk!r})")

    def _chunk(self) -> int:
        if self.task_chunk is not None:
            return max(1, int(self.task_chunk))
        return 1024 if self.maml._resolve_path() == "gram" else 64

    def _episodes(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Adapt (T, S, d) with labels (T, S), score (T, M, d); features already transformed."""
        m = self.maml
        sx = m._check_x(sx, "support_features", normalize=False)
        qx = m._check_x(qx, "query_features", t=sx.shape[0], dim=sx.shape[2], normalize=False)
        n_out = m.n_way(sx)
        if n_classes > n_out:
            raise FeatureError(f"support set has {n_classes} classes, but the meta-learned head has only {n_out} outputs")
        sy = sy.to(device=sx.device, dtype=torch.int64)
        out = []
        c = self._chunk()
        with torch.inference_mode(False):
            sx, qx, sy = sx.clone(), qx.clone(), sy.clone()
            for s in range(0, sx.shape[0], c):
                fast = m._inner(sx[s : s + c], sy[s : s + c], track=False)
                with torch.no_grad():
                    out.append(m._query_logits(fast, qx[s : s + c])[..., :n_classes].detach())
        return torch.cat(out).to(torch.float32)

    def _fit(self, x, y, n_classes):
        in_dim = self.maml._in_dim
        if in_dim is not None and x.shape[-1] != in_dim:
            raise FeatureError(f"support_features has feature dim {x.shape[-1]}, but the head's first layer expects {in_dim}")
        n_out = self.maml.n_way(x)
        if n_classes > n_out:
            raise FeatureError(f"support_labels has {n_classes} classes, but the meta-learned head has only {n_out} outputs")
        self._support = (x.unsqueeze(0), y.unsqueeze(0), n_classes)

    def _logits(self, q):
        sx, sy, n = self._support
        return self._episodes(sx, sy, q.unsqueeze(0), n)[0]

    def episode_logits(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Adapt on every episode of the batch at once (the episodes are the task batch).

        Parameters
        ----------
        support : torch.Tensor of shape (E, N, K, d), transformed, class-major
        query : torch.Tensor of shape (E, M, d), transformed

        Returns
        -------
        torch.Tensor of shape (E, M, N), float32 logits.
        """
        e, n, k, d = support.shape
        y = torch.arange(n, device=support.device).repeat_interleave(k).expand(e, n * k)
        return self._episodes(support.reshape(e, n * k, d), y, query, n)
