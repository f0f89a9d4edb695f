"""Task-batched functional building blocks for the MAML family (:mod:`fewmm.meta.maml`).

A *meta-batch* of T tasks is held as tensors with a leading task dimension: support features
``(T, n_support, d)``, query features ``(T, n_query, d)``, and per-task ("fast") parameters
``(T, *param.shape)``. Tasks never interact, so the gradient of the *sum* of the per-task losses
with respect to a per-task parameter tensor is, slice by slice, each task's own gradient: one
``torch.autograd.grad`` call adapts the whole meta-batch, and ``create_graph=True`` keeps the
second-order terms of MAML exactly.

Two ways to run a module with per-task parameters:

* :func:`batched_forward` runs ``nn.Linear`` and element-wise activations with ``torch.bmm`` /
  ``torch.baddbmm`` on ``(T, n, d)`` inputs (no ``vmap`` dispatch overhead);
* any other module runs through ``torch.func.vmap(torch.func.functional_call(...))`` over tasks.

:func:`split_gram` recognises heads where the Gram-product fast path of :mod:`fewmm.meta.maml`
applies (an ``nn.Linear`` whose input does not change during the inner loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

#: Parameter-free modules that act element-wise (or on the last dimension only), so they can be
#: applied to ``(T, n, h)`` tensors directly, without per-task dispatch.
ELEMENTWISE = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Tanhshrink,
    nn.Softsign,
    nn.Dropout,
)


def flatten_sequential(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Leaf modules of nested ``nn.Sequential`` containers, in call order, with their dotted name
    prefixes (``"0"``, ``"1.2"``, ...); ``[("", module)]`` for a lone ``nn.Linear``; ``None`` for
    anything else (whose call order cannot be known from its structure)."""
    if isinstance(module, nn.Linear):
        return [("", module)]
    if not isinstance(module, nn.Sequential):
        return None
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            sub = flatten_sequential(child)
            if sub is None:
                return None
            out.extend((f"{name}.{n}", m) for n, m in sub)
        else:
            out.append((name, child))
    return out


def is_simple(mods: list[tuple[str, nn.Module]]) -> bool:
    """True when every module is an ``nn.Linear`` or a parameter-free element-wise module."""
    return all(isinstance(m, nn.Linear) or (isinstance(m, ELEMENTWISE) and not any(True for _ in m.parameters())) for _, m in mods)


def _pname(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


class TaskBatchedModule:
    """Run a module (or a slice of a flattened ``nn.Sequential``) with per-task parameters.

    Parameters
    ----------
    module : nn.Module
        The module whose parameters are given per task. Its parameter names (``named_parameters``)
        key the ``params`` dict of :meth:`__call__`.
    mods : list of (name, module), optional
        Its flattened leaves (see :func:`flatten_sequential`), to run a slice of a Sequential.
    force_vmap : bool, default False
        Always use ``vmap(functional_call)``, even when the ``bmm`` fast path applies.
    """

    def __init__(self, module: nn.Module, mods: list[tuple[str, nn.Module]] | None = None, force_vmap: bool = False):
        self.module = module
        self.mods = mods if mods is not None else flatten_sequential(module)
        self.simple = (not force_vmap) and self.mods is not None and is_simple(self.mods)
        if not self.simple:
            if mods is not None:  # a slice: wrap it as its own Sequential for functional_call
                self.module = nn.Sequential(*[m for _, m in mods])
                self._names = {f"{i}.{leaf}": _pname(n, leaf) for i, (n, m) in enumerate(mods) for leaf, _ in m.named_parameters()}
            else:
                self._names = {n: n for n, _ in module.named_parameters()}

    def param_names(self) -> list[str]:
        """Names of the parameters (as keys of ``params``) this runner uses."""
        if self.mods is not None:
            return [_pname(n, leaf) for n, m in self.mods for leaf, _ in m.named_parameters()]
        return [n for n, _ in self.module.named_parameters()]

    def _one(self, p: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, p, (x,))

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Forward ``x`` of shape (T, n, d_in) with ``params[name]`` of shape (T, *shape) -> (T, n, d_out)."""
        if self.simple:
            for name, m in self.mods:
                if isinstance(m, nn.Linear):
                    w = params[_pname(name, "weight")]
                    b = params.get(_pname(name, "bias")) if m.bias is not None else None
                    if b is None:
                        x = torch.bmm(x, w.transpose(1, 2))
                    else:
                        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
                else:
                    x = m(x)
            return x
        p = {local: params[full] for local, full in self._names.items()}
        # built per call (cheap): a stored vmap closure would survive copy.deepcopy pointing at the original
        return vmap(self._one, in_dims=(0, 0), randomness="different")(p, x)


@dataclass
class GramSplit:
    """A head seen as ``rest(linear(prefix(x)))`` where ``prefix`` is not adapted in the inner
    loop, so the input of ``linear`` is the same at every inner step.

    Attributes
    ----------
    prefix : list of (name, module)
        Frozen-in-the-inner-loop modules before the Gram linear layer (empty for MAML, the body
        for ANIL). Their parameters still receive meta-gradients.
    linear_name : str
        Dotted prefix of the Gram linear layer ("" when the head is a lone ``nn.Linear``).
    linear : nn.Linear
    rest : list of (name, module)
        Modules after it, adapted with per-task parameters (empty for ANIL).
    """

    prefix: list
    linear_name: str
    linear: nn.Linear
    rest: list


def split_gram(head: nn.Module, variant: str) -> GramSplit | None:
    """Where the Gram fast path applies, split ``head`` for it; otherwise ``None``.

    * ``variant="maml"``: the head is an ``nn.Linear`` or a (nested) ``nn.Sequential`` whose first
      leaf is an ``nn.Linear``; its input, the frozen features, never changes in the inner loop.
    * ``variant="anil"``: the head is an ``nn.Linear`` or an ``nn.Sequential`` whose last leaf is
      an ``nn.Linear``; only that layer is adapted, so its input (the body's output) is fixed.
    * ``variant="metasgd"``: never (element-wise learned rates break the low-rank update).
    """
    mods = flatten_sequential(head)
    if not mods:
        return None
    if variant == "maml":
        name, first = mods[0]
        if not isinstance(first, nn.Linear):
            return None
        return GramSplit(prefix=[], linear_name=name, linear=first, rest=mods[1:])
    if variant == "anil":
        name, last = mods[-1]
        if not isinstance(last, nn.Linear):
            return None
        return GramSplit(prefix=mods[:-1], linear_name=name, linear=last, rest=[])
    return None


def anil_layer_names(head: nn.Module) -> list[str]:
    """Parameter names of the layer ANIL adapts: the last leaf module that has parameters
    (registration order; for an ``nn.Sequential`` that is the last layer called).

    Raises
    ------
    ValueError
        The head has no parameters.
    """
    last = None
    for mname, m in head.named_modules():
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if own:
            last = [_pname(mname, n) for n in own]
    if last is None:
        raise ValueError("head has no parameters to adapt")
    return last


# ----------------------------------------------------------------------------------------------
# low-rank adaptation of nn.Linear layers (the general path's default for heads built of Linear layers)
class LowRankState:
    """Per-task adapted ``nn.Linear`` layers of a meta-batch of T tasks, kept low-rank.

    One inner-loop step changes a linear layer's weight by ``-alpha * delta^T x`` (``x``: the
    layer's input rows of the task's support set, ``delta``: the loss gradient w.r.t. its output
    rows), a matrix of rank at most ``n_support`` per call of the layer. After any number of steps
    task t's weight is therefore ``W - U_t^T V_t`` with ``V_t`` the stacked inputs ``(r, d_in)``
    and ``U_t`` the stacked ``alpha * delta`` ``(r, d_out)`` (``r`` = support rows x steps x calls),
    and ``y = x W^T - (x V_t^T) U_t + b_t``: the per-task ``(T, d_out, d_in)`` weights are never
    formed (the Gram path of :mod:`fewmm.meta.maml` is the special case of a first layer whose
    input does not change).

    Attributes
    ----------
    t : int
        Number of tasks.
    weight : dict of str -> torch.Tensor (d_out, d_in)
        Shared initial weight of each adapted layer (the parameter, or a detached copy).
    bias : dict of str -> torch.Tensor (T, d_out) or None
    v, u : dict of str -> list of torch.Tensor (T, r_j, d_in) / (T, r_j, d_out)
        The low-rank factors, one pair per call of the layer and step (kept apart, not
        concatenated: a concatenation per step would keep every intermediate copy for backward).
    """

    def __init__(self, t: int):
        self.t = t
        self.weight: dict = {}
        self.bias: dict = {}
        self.v: dict = {}
        self.u: dict = {}

    def add(self, name: str, v: torch.Tensor, u: torch.Tensor) -> None:
        """Append factors ``v`` (T, r, d_in), ``u`` (T, r, d_out) to layer ``name``."""
        self.v.setdefault(name, []).append(v)
        self.u.setdefault(name, []).append(u)

    def dense_weight(self, name: str) -> torch.Tensor:
        """Task t's adapted weight ``W - U_t^T V_t`` as one (T, d_out, d_in) tensor."""
        w = self.weight[name].unsqueeze(0).expand(self.t, *self.weight[name].shape)
        for v, u in zip(self.v.get(name, []), self.u.get(name, [])):
            w = torch.baddbmm(w, u.transpose(1, 2), v, alpha=-1.0)
        return w


class LowRankLinears:
    """Run a head on a task batch ``(T, n, ...)`` with its adapted ``nn.Linear`` layers low-rank.

    While :meth:`patched` is active, the ``forward`` of every adapted ``nn.Linear`` of ``head`` is
    replaced (an instance attribute, removed on exit) by one that reads the layer's per-task state
    from a :class:`LowRankState` and optionally records ``(name, input (T, m, d_in), output
    (T, m, d_out))`` of each call, so that the inner loop can take gradients w.r.t. the outputs.
    The head itself is called once on the whole task batch: this is exact only when it treats the
    leading (task) dimension as a batch dimension, which :meth:`MAML <fewmm.meta.maml.MAML>` checks
    on the first call (see :meth:`batch_equivalent`). Not thread-safe for one head object.

    Parameters
    ----------
    head : nn.Module
    adapted : set of str
        Names (``named_parameters``) of the parameters adapted in the inner loop.
    """

    def __init__(self, head: nn.Module, adapted: set[str]):
        self.head = head
        self.linears = []
        for mname, m in head.named_modules():
            if isinstance(m, nn.Linear):
                names = {_pname(mname, "weight")} | ({_pname(mname, "bias")} if m.bias is not None else set())
                if names & adapted:
                    self.linears.append((mname, m))

    @staticmethod
    def applicable(head: nn.Module, adapted: set[str]) -> bool:
        """True when every adapted parameter is the weight or bias of an ``nn.Linear`` whose
        weight and bias are both adapted (or that has no bias)."""
        covered: set[str] = set()
        for mname, m in head.named_modules():
            if isinstance(m, nn.Linear):
                names = {_pname(mname, "weight")} | ({_pname(mname, "bias")} if m.bias is not None else set())
                if names & adapted and not names <= adapted:
                    return False
                covered |= names
        return bool(adapted) and adapted <= covered

    def _forward(self, name: str, state: LowRankState, record: list | None, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[0] != state.t:
            raise RuntimeError(f"low-rank MAML: layer {name!r} got input of shape {tuple(x.shape)}, expected a leading task dim {state.t}")
        lead = x.shape[:-1]
        x3 = x.reshape(state.t, -1, x.shape[-1])
        z = torch.matmul(x3, state.weight[name].t())
        for v, u in zip(state.v.get(name, []), state.u.get(name, [])):
            z = torch.baddbmm(z, torch.bmm(x3, v.transpose(1, 2)), u, alpha=-1.0)
        b = state.bias.get(name)
        if b is not None:
            z = z + b.unsqueeze(1)
        if record is not None:
            if not z.requires_grad:
                z.requires_grad_()
            record.append((name, x3, z))
        return z.view(*lead, z.shape[-1])

    def patched(self, state: LowRankState, record: list | None = None):
        """Context manager: inside it, calling ``head`` uses ``state`` (and appends to ``record``)."""
        from contextlib import contextmanager
        from functools import partial

        @contextmanager
        def ctx():
            for name, m in self.linears:
                object.__setattr__(m, "forward", partial(self._forward, name, state, record))
            try:
                yield
            finally:
                for _, m in self.linears:
                    m.__dict__.pop("forward", None)

        return ctx()

    def batch_equivalent(self, x: torch.Tensor) -> bool:
        """Whether running the head on ``x[:2]`` (T, n, d) at once equals running it task by task
        (same shapes, values within float rounding), no recorded layer output is modified in
        place, every adapted linear layer is called through its ``forward`` and no adapted
        parameter is read in any other way (a head that uses ``layer.weight`` directly, e.g. the
        Proto-MAML classifier of :mod:`fewmm.engine`, would otherwise silently keep the
        un-adapted weight); any exception counts as False."""
        k = min(2, x.shape[0])
        xb = x[:k].detach()
        # element-wise dropout is batch-equivalent by construction but draws different masks for the
        # batch and the per-task calls: check with it off; and draw nothing from the global RNG (a check
        # at the first call of a resumed run must not shift the random stream: exact resume)
        drops = [m for m in self.head.modules() if type(m) in (nn.Dropout, nn.AlphaDropout) and m.training]
        try:
            for m in drops:
                m.eval()
            with torch.random.fork_rng(devices=[]):
                return self._batch_equivalent(xb, k)
        finally:
            for m in drops:
                m.train()

    def _batch_equivalent(self, xb: torch.Tensor, k: int) -> bool:
        try:
            with torch.no_grad():
                yb = self.head(xb)
                ys = torch.stack([self.head(xb[i]) for i in range(k)])
            if yb.shape != ys.shape or not torch.allclose(yb, ys, rtol=1e-4, atol=1e-5):
                return False
            st = LowRankState(k)
            for name, m in self.linears:  # copies: the patched forward must not touch the parameters themselves
                st.weight[name] = m.weight.detach().clone()
                st.bias[name] = None if m.bias is None else m.bias.detach().clone().unsqueeze(0).expand(k, -1)
            rec: list = []
            with torch.enable_grad(), self.patched(st, rec):
                yp = self.head(xb)
            if not rec or {n for n, _, _ in rec} != {n for n, _ in self.linears}:
                return False  # an adapted layer is not called through its forward
            params = [p for _, m in self.linears for p in ((m.weight,) if m.bias is None else (m.weight, m.bias))]
            if yp.requires_grad and any(g is not None for g in torch.autograd.grad(yp.sum(), params, allow_unused=True)):
                return False  # an adapted parameter is read outside its layer's forward
            return all(z._version == 0 for _, _, z in rec) and torch.allclose(yp.detach(), yb, rtol=1e-4, atol=1e-5)
        except Exception:
            return False
