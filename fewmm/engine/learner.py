"""The learner protocol: what a model gives the engine, and the fusion-head learner.

A learner wraps one trainable model and the data it reads. The fit loop and the trainers only
talk to it through this protocol (:class:`Learner`):

``model``
    The :class:`torch.nn.Module` trained in the outer loop, saved in checkpoints.
``labels``
    Labels (n_items,) of the table episode indices point into.
``batch(episodes, step=None)``
    Gather a batch of tasks (training augmentation when ``step`` is given, a function of the
    step alone).
``logits(batch)`` / ``targets(batch)``
    Per-episode query logits (E, M, N) with no adaptation (the ProtoNet trainer's loss), and the
    episode-local query labels (E, M).
``inner_task(batch)``
    The batch seen by the MAML family: ``(module, support_x, support_y, query_x, query_y)``,
    ``module`` an ``nn.Module`` mapping rows (T, n, D) -> logits (T, n, N) whose parameters the
    inner loop adapts (see :func:`fewmm.meta.MAML`), ``support_x`` (T, S, D) ...
``adapted_parameters(scope)``
    Names of the ``module`` parameters the inner loop adapts: ``scope="all"`` (MAML, Meta-SGD)
    or ``"classifier"`` (ANIL, Raghu et al. 2020). The model declares them; no trainer or loop
    special-cases a model.
``evaluate(episodes)``
    Per-episode accuracy with no adaptation (validation of the ProtoNet trainer).
``describe()``
    JSON description stored beside the best weights.

:class:`HeadLearner` implements it for fusion heads on frozen features. Its inner-loop module is
Proto-MAML (Triantafillou et al., "Meta-Dataset", ICLR 2020, section 3): a linear classifier on
the head's item embedding whose initial weights are computed per task from the support
prototypes ``p_c`` (``W_c = 2 s p_c``, ``b_c = -s ||p_c||^2``: the head's own logits
``-s ||e - p_c||^2`` up to a per-query constant), with gradients flowing into the prototypes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..episodes import Episodes
from ..heads.base import FusionHead
from ..heads.classifier import align_features, check_items_have_modality, evaluate_head, features_to
from ..multimodal import MMBatch, MMFeatures
from .tasks import step_seed

__all__ = ["Learner", "HeadLearner", "TensorLearner", "ItemReshape", "ProtoMAMLHead", "augment_batch", "drop_modalities", "LEARNERS"]


@runtime_checkable
class Learner(Protocol):
    """What the engine needs from a model (see the module docstring)."""

    model: nn.Module
    labels: np.ndarray

    def batch(self, episodes: Episodes, step: int | None = None): ...

    def logits(self, batch) -> torch.Tensor: ...

    def targets(self, batch) -> torch.Tensor: ...

    def inner_task(self, batch) -> tuple: ...

    def adapted_parameters(self, scope: str) -> list[str]: ...

    def evaluate(self, episodes: Episodes) -> np.ndarray: ...

    def describe(self) -> dict: ...


# ------------------------------------------------------------------------------------------------
# training augmentation of multimodal batches, from (seed, step) alone
# ------------------------------------------------------------------------------------------------
def drop_modalities(mask: torch.Tensor, frac: float, gen: torch.Generator) -> torch.Tensor:
    """Each item with >= 2 modalities loses one random present modality with probability ``frac``.

    Parameters
    ----------
    mask : torch.Tensor of shape (..., n_mod), bool
    frac : float in [0, 1]
    gen : torch.Generator (CPU)

    Returns
    -------
    torch.Tensor, same shape and device as ``mask``.
    """
    shape = mask.shape
    m = mask.reshape(-1, shape[-1]).cpu()
    hit = (torch.rand(m.shape[0], generator=gen) < frac) & (m.sum(1) >= 2)
    keys = torch.rand(m.shape, generator=gen).masked_fill(~m, -1.0)
    which = keys.argmax(1)
    out = m.clone()
    rows = torch.nonzero(hit).flatten()
    out[rows, which[rows]] = False
    return out.reshape(shape).to(mask.device)


def augment_batch(batch: MMBatch, cbatch: MMBatch | None, seed: int, step: int, modality_dropout: float = 0.0,
                  corrupt_fraction: float = 0.0) -> MMBatch:
    """Training augmentation of step ``step`` (a function of ``(seed, step)`` only).

    Each (item, modality) takes its features from ``cbatch`` (the corrupted table) with
    probability ``corrupt_fraction``; then each item with >= 2 modalities loses one with
    probability ``modality_dropout`` (mask set False, features zeroed).
    """
    gen = torch.Generator().manual_seed(step_seed(seed, step, 2))
    sup, qry = dict(batch.support), dict(batch.query)
    sm, qm = batch.support_mask, batch.query_mask
    if cbatch is not None and corrupt_fraction > 0:
        for j, m in enumerate(batch.modalities):
            if m not in cbatch.support:
                continue
            for feats, cfeats, mask, cmask in ((sup, cbatch.support, sm, cbatch.support_mask), (qry, cbatch.query, qm, cbatch.query_mask)):
                cj = cbatch.modalities.index(m)
                take = (torch.rand(mask.shape[:-1], generator=gen) < corrupt_fraction).to(mask.device)
                take = take & mask[..., j] & cmask[..., cj]
                feats[m] = torch.where(take.unsqueeze(-1), cfeats[m], feats[m])
    if modality_dropout > 0:
        sm = drop_modalities(sm, modality_dropout, gen)
        qm = drop_modalities(qm, modality_dropout, gen)
        sup = {m: sup[m] * sm[..., j : j + 1].to(sup[m].dtype) for j, m in enumerate(batch.modalities)}
        qry = {m: qry[m] * qm[..., j : j + 1].to(qry[m].dtype) for j, m in enumerate(batch.modalities)}
    return MMBatch(sup, sm, qry, qm, batch.class_text, batch.query_labels, batch.modalities)


# ------------------------------------------------------------------------------------------------
# Proto-MAML module over packed rows
# ------------------------------------------------------------------------------------------------
class ProtoMAMLHead(nn.Module):
    """A fusion head's item embedding plus a per-task linear classifier initialised from the
    support prototypes (Proto-MAML, Triantafillou et al. 2020), as one ``nn.Module`` over rows.

    Each input row packs one item and its task's classifier initialisation::

        [x_m for m in modalities] (sum d_m) | mask (n_mod, 0/1) | W0 (n_way * h) | b0 (n_way)

    ``forward(rows)`` -> logits ``(W0 + dW) e + b0 + db`` of shape (..., n_way), ``e`` the head's
    :meth:`~fewmm.heads.base.FusionHead.item_embedding`. ``dW`` (n_way, h) and ``db`` (n_way,)
    (``classifier.weight`` / ``classifier.bias``) are zero: they are what the inner loop adapts
    on top of the prototype initialisation, so adapting them is adapting ``W`` and ``b`` from
    ``W0``, ``b0``. They are never meta-learned (the initialisation is the prototypes).

    Parameters
    ----------
    head : FusionHead
        Registered first (its parameters are ``model.*``).
    n_way : int
    width : int
        Dimension h of the item embedding.
    """

    def __init__(self, head: FusionHead, n_way: int, width: int):
        super().__init__()
        self.model = head
        self.classifier = nn.Linear(width, n_way)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
        self.n_way, self.width = int(n_way), int(width)
        self.sizes = [head.dims[m] for m in head.modalities] + [head.n_mod, self.n_way * self.width, self.n_way]

    @property
    def row_dim(self) -> int:
        return int(sum(self.sizes))

    def pack(self, x: dict, mask: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
        """Rows (E, n, D) from items ``x[m]`` (E, n, d_m), ``mask`` (E, n, n_mod) and the task's
        ``w0`` (E, N, h), ``b0`` (E, N)."""
        e, n = mask.shape[:2]
        parts = [x[m] for m in self.model.modalities] + [mask.to(w0.dtype)]
        parts += [w0.reshape(e, 1, -1).expand(e, n, -1), b0.reshape(e, 1, -1).expand(e, n, -1)]
        return torch.cat(parts, -1)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        parts = torch.split(rows, self.sizes, dim=-1)
        mods = self.model.modalities
        x = {m: parts[j] for j, m in enumerate(mods)}
        mask = parts[len(mods)] > 0.5
        w0 = parts[len(mods) + 1].reshape(*rows.shape[:-1], self.n_way, self.width)
        b0 = parts[len(mods) + 2]
        e = self.model.item_embedding(x, mask)
        w = w0 + self.classifier.weight
        return torch.einsum("...ch,...h->...c", w, e) + b0 + self.classifier.bias


# ------------------------------------------------------------------------------------------------
# the fusion-head learner
# ------------------------------------------------------------------------------------------------
class HeadLearner:
    """A fusion head on frozen multimodal features, as an engine :class:`Learner`.

    Parameters
    ----------
    head : FusionHead
        Trained in place.
    features : MMFeatures
        The whole feature table (all splits); the stream decides which items enter episodes.
    corrupted : MMFeatures, optional
        Corrupted features of the same items (see :func:`augment_batch`).
    modality_dropout, corrupt_fraction : float in [0, 1]
        Training augmentation.
    seed : int
        Seed of the augmentation stream.
    device : str or torch.device

    Raises
    ------
    FeatureError
        Features not matching the head; a bad ``corrupted`` table.
    """

    kind = "head"

    def __init__(self, head: FusionHead, features: MMFeatures, corrupted: MMFeatures | None = None, modality_dropout: float = 0.0,
                 corrupt_fraction: float = 0.0, seed: int = 0, device="cpu"):
        from ..errors import FeatureError

        if not isinstance(head, FusionHead):
            raise FeatureError(f"head must be a fewmm FusionHead, got {type(head).__name__}")
        self.model = head
        self.features = align_features(head, features)
        self.labels = self.features.labels
        self.device = torch.device(device)
        head.to(self.device)
        self.feats = features_to(self.features, self.device)
        self.cfeats = None
        if corrupted is not None:
            check_corrupted(self.features, corrupted)
            if corrupt_fraction > 0:
                self.cfeats = features_to(corrupted, self.device)
        self.modality_dropout, self.corrupt_fraction, self.seed = float(modality_dropout), float(corrupt_fraction), int(seed)
        self._inner = None

    @property
    def name(self) -> str:
        return self.model.name

    @classmethod
    def contract_example(cls, seed: int = 0, bad: str | None = None) -> "HeadLearner":
        """A small instance for the contract tests (:func:`fewmm.testing.contract_cases`): a GMU
        head (hidden 16, initial weights from ``seed``) on synthetic image + audio features, 6
        classes x 6 items, 30% of them missing one modality (the same data for every seed).
        ``bad="nan"``: one feature NaN; ``bad="dim"``: features one wider than the head (both must
        raise FeatureError)."""
        from ..heads import create
        from ..heads.synthetic import make_synthetic

        f, _ = make_synthetic(n_classes=6, per_class=6, missing_fraction=0.3, corrupt_modality=None, seed=0)
        head = create("gmu", f, seed=seed, hidden=16)
        if bad == "nan":  # MMFeatures itself refuses it, naming the modality
            import dataclasses

            m = f.modalities[0]
            x = f.features[m].clone()
            x[4, 2] = float("nan")
            f = dataclasses.replace(f, features={**f.features, m: x})
        elif bad == "dim":
            f, _ = make_synthetic(n_classes=6, per_class=6, dims=tuple((m, int(f.features[m].shape[1]) + 1) for m in f.modalities),
                                  missing_fraction=0.3, corrupt_modality=None, seed=0)
        return cls(head, f)

    def check_items(self, items: np.ndarray) -> None:
        """Raise FeatureError naming an item of ``items`` that has no modality."""
        check_items_have_modality(self.features, "features", np.asarray(items))

    def batch(self, episodes: Episodes, step: int | None = None) -> MMBatch:
        b = self.feats.batch(episodes, device=self.device)
        if step is not None and (self.modality_dropout > 0 or self.cfeats is not None):
            cb = self.cfeats.batch(episodes, device=self.device) if self.cfeats is not None else None
            b = augment_batch(b, cb, self.seed, step, self.modality_dropout, self.corrupt_fraction)
        return b

    def logits(self, batch: MMBatch) -> torch.Tensor:
        return self.model(batch)[0]

    def targets(self, batch: MMBatch) -> torch.Tensor:
        return batch.query_labels

    def evaluate(self, episodes: Episodes) -> np.ndarray:
        return evaluate_head(self.model, self.feats, episodes, device=self.device)

    def describe(self) -> dict:
        """The head's description (name, hyper-parameters, modalities, dims, encoder ids)."""
        from ..heads.io import head_meta

        return head_meta(self.model, self.features)

    def check_checkpoint(self, meta: dict, where: str) -> None:
        """Raise CheckpointError unless a checkpoint's model description fits this head and features."""
        from ..heads.io import check_head_checkpoint

        check_head_checkpoint(meta, self.model, self.features, where)

    # -- MAML family --------------------------------------------------------------------------
    def inner_module(self, batch: MMBatch) -> ProtoMAMLHead:
        """The Proto-MAML module for the batch's way (built at the first call of each way, from
        the way and the head's embedding width).

        The module of the first way seen is the one the MAML-family trainers meta-train. A task
        of another way (e.g. a validation or test split with fewer classes than the training way)
        gets its own module on the same head: its classifier also starts from the support
        prototypes, with a zero offset. That is exactly the start the meta-trained module has,
        since the offset ``dW``, ``db`` is never meta-learned (it is zero before every inner loop),
        so same-way tasks compute the same as before and other-way tasks are adapted from the
        same meta-learned head."""
        n_way = int(batch.support_mask.shape[1])
        if self._inner is None:
            with torch.no_grad():
                width = self.model.class_embedding(batch).shape[-1]
            self._inner = ProtoMAMLHead(self.model, n_way, width).to(self.device)
            self._inners = {n_way: self._inner}
            # the head parameters its item embedding reads (e.g. not the logit scale, which only
            # enters the classifier initialisation): the inner loop can adapt only those
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            with torch.enable_grad():
                emb = self.model.item_embedding(batch.support, batch.support_mask)
                grads = torch.autograd.grad(emb.sum(), [p for _, p in named], allow_unused=True)
            self._embedding_params = [n for (n, _), g in zip(named, grads) if g is not None]
        elif n_way not in self._inners:
            # nn.Linear's default initialisation (overwritten by zeros) draws from the global RNG:
            # fork it, so that evaluating another way leaves the training's random stream as it was
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                self._inners[n_way] = ProtoMAMLHead(self.model, n_way, self._inner.width).to(self.device)
        return self._inners[n_way]

    def inner_task(self, batch: MMBatch):
        """``(module, support_x (E, N*K, D), support_y (E, N*K), query_x (E, M, D), query_y (E, M))``.

        The classifier initialisation ``W0 = 2 s P``, ``b0 = -s ||P||^2`` (P: the head's class
        embeddings of the support set, with the current, meta-level parameters) is differentiable:
        the meta-gradient reaches the head through it."""
        mod = self.inner_module(batch)
        head = self.model
        e, n, k = batch.support_mask.shape[:3]
        p = head.class_embedding(batch)  # (E, N, h)
        s = head.metric_scale()
        w0, b0 = 2.0 * s * p, -s * (p * p).sum(-1)
        sup = {m: v.reshape(e, n * k, -1) for m, v in batch.support.items()}
        sx = mod.pack(sup, batch.support_mask.reshape(e, n * k, -1), w0, b0)
        qx = mod.pack(batch.query, batch.query_mask, w0, b0)
        sy = torch.arange(n, device=sx.device).repeat_interleave(k).expand(e, n * k)
        return mod, sx, sy, qx, batch.query_labels

    def adapted_parameters(self, scope: str) -> list[str]:
        """Inner-loop parameters of :meth:`inner_module`: ``"classifier"`` -> the classifier only
        (ANIL); ``"all"`` -> it and every trainable head parameter its item embedding reads
        (frozen ones, and the logit scale that only enters the prototype initialisation, stay)."""
        if self._inner is None:
            raise RuntimeError("call inner_task(batch) first")
        cls = ["classifier.weight", "classifier.bias"]
        if scope == "classifier":
            return cls
        if scope != "all":
            raise ValueError(f"scope must be 'all' or 'classifier', got {scope!r}")
        return [f"model.{n}" for n in self._embedding_params] + cls


class ItemReshape(nn.Module):
    """Run ``model`` on rows ``(..., prod(item_shape))`` reshaped to ``(n, *item_shape)``: lets
    :class:`fewmm.meta.MAML` (task-batched rows ``(T, n, D)``) adapt a network on images."""

    def __init__(self, model: nn.Module, item_shape):
        super().__init__()
        self.model = model
        self.item_shape = tuple(int(s) for s in item_shape)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        lead = rows.shape[:-1]
        out = self.model(rows.reshape(-1, *self.item_shape))
        return out.reshape(*lead, out.shape[-1])


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float()


class TensorLearner:
    """A network on one input tensor per item, as an engine :class:`Learner`: frozen feature
    vectors (``fewmm.meta``) or images (Conv-4 backbones trained from scratch).

    Parameters
    ----------
    model : nn.Module
        Maps a batch of transformed items (B, ...) to outputs (B, h): embeddings for the
        ProtoNet trainer, or ``n_way`` logits for the MAML family (its last layer with
        parameters is the classifier ANIL adapts).
    inputs : torch.Tensor of shape (n_items, ...)
        Features (n, d) or images (n, H, W) (uint8 or float), on the CPU or the device.
    labels : array-like of shape (n_items,), int
    transform : callable, optional
        Applied to gathered items before the model (e.g. :func:`fewmm.backbones.episodic.to_input`
        for uint8 images); default ``x.float()``.
    device : str or torch.device
    embed_batch : int
        Items per forward pass when embedding for validation.
    name : str, optional
        Label (progress bar).
    eval_chunk : int
        Episodes adapted together when the MAML family validates (bounds memory: images need
        far fewer than feature vectors).
    inner_module : nn.Module, optional
        The module the MAML family adapts (default: ``model`` for (n, d) inputs, else
        :class:`ItemReshape` around it).
    """

    kind = "tensor"

    def __init__(self, model: nn.Module, inputs: torch.Tensor, labels, transform=None, device="cpu", embed_batch: int = 1024,
                 name: str | None = None, inner_module: nn.Module | None = None, eval_chunk: int = 64):
        from ..errors import FeatureError

        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
            raise FeatureError(f"inputs must be a tensor of shape (n_items, ...), got {getattr(inputs, 'shape', type(inputs).__name__)}")
        self.labels = np.asarray(labels)
        if self.labels.shape != (inputs.shape[0],):
            raise FeatureError(f"labels has shape {self.labels.shape}, expected ({inputs.shape[0]},) (one per item of inputs)")
        self.model = model
        self.device = torch.device(device)
        model.to(self.device)
        if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
            bad = int(torch.nonzero(~torch.isfinite(inputs.reshape(inputs.shape[0], -1)).all(1))[0, 0])
            raise FeatureError(f"inputs contain NaN or inf (first at item {bad}): the loss would be NaN from the first step")
        self.inputs = inputs
        self.transform = transform or _to_float
        self.embed_batch = int(embed_batch)
        self.eval_chunk = int(eval_chunk)
        self.name = name or type(model).__name__
        item_shape = tuple(self.transform(inputs[:1]).shape[1:])
        self.inner = inner_module if inner_module is not None else (model if len(item_shape) == 1 else ItemReshape(model, item_shape))
        was = model.training
        try:  # one item through the model now, so inputs that do not fit it fail here, named, not deep in a step
            model.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                model(self.transform(inputs[:1]).to(self.device))
        except RuntimeError as e:
            raise FeatureError(f"inputs: items of shape {tuple(inputs.shape[1:])} ({inputs.dtype}) do not fit model {self.name} "
                               "(its input dim or layout differs): "
                               f"{str(e).splitlines()[0][:200]}") from None
        finally:
            model.train(was)

    @classmethod
    def contract_example(cls, seed: int = 0, bad: str | None = None) -> "TensorLearner":
        """A small instance for the contract tests (:func:`fewmm.testing.contract_cases`): an MLP
        8 -> 16 -> 3 (initial weights from ``seed``) on 6 Gaussian classes x 6 items of 8-d features
        (the same data for every seed). ``bad="nan"``: one feature NaN; ``bad="dim"``: 9-d
        features (both must raise FeatureError)."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 8, generator=g).repeat_interleave(6, 0) * 3 + torch.randn(36, 8, generator=g)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        if bad == "nan":
            x[4, 2] = float("nan")
        elif bad == "dim":
            x = torch.cat([x, x[:, :1]], 1)
        return cls(model, x, np.repeat(np.arange(6), 6))

    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(idx).reshape(-1), device=self.inputs.device)
        return self.transform(self.inputs[t]).to(self.device)

    def batch(self, episodes: Episodes, step: int | None = None) -> tuple:
        """``(support (E, N*K, ...), support_y (E, N*K), query (E, N*Q, ...), query_y (E, N*Q))``,
        class-major, episode-local labels."""
        from ..episodes import check_episode_indices

        check_episode_indices(episodes, len(self.labels))
        e, n, k = episodes.support.shape
        q = episodes.query.shape[2]
        sx = self._gather(episodes.support)
        qx = self._gather(episodes.query)
        sx, qx = sx.reshape(e, n * k, *sx.shape[1:]), qx.reshape(e, n * q, *qx.shape[1:])
        sy = torch.arange(n, device=self.device).repeat_interleave(k).expand(e, n * k)
        qy = torch.arange(n, device=self.device).repeat_interleave(q).expand(e, n * q)
        return sx, sy, qx, qy

    def logits(self, batch) -> torch.Tensor:
        """ProtoNet logits ``-||f(q) - p_c||^2`` (E, N*Q, N) of the model's outputs (Snell et al. 2017)."""
        sx, sy, qx, _ = batch
        e, s = sx.shape[:2]
        m = qx.shape[1]
        n = int(sy[0].max()) + 1
        emb = self.model(torch.cat([sx.reshape(e * s, *sx.shape[2:]), qx.reshape(e * m, *qx.shape[2:])])).float()
        es, eq = emb[: e * s].reshape(e, n, s // n, -1), emb[e * s :].reshape(e, m, -1)
        protos = es.mean(2)
        return -torch.cdist(eq, protos).pow(2)

    def targets(self, batch) -> torch.Tensor:
        return batch[3]

    @torch.no_grad()
    def embed(self, items: np.ndarray) -> torch.Tensor:
        """Model outputs (len(items), h) float32 of ``items`` in eval mode, in chunks."""
        was = self.model.training
        self.model.eval()
        try:
            out = [self.model(self._gather(items[s : s + self.embed_batch])).float() for s in range(0, len(items), self.embed_batch)]
        finally:
            self.model.train(was)
        return torch.cat(out)

    def evaluate(self, episodes: Episodes) -> np.ndarray:
        """Per-episode ProtoNet accuracy of the model's outputs (items embedded once, eval mode),
        scored with :func:`fewmm.evaluate.evaluate_episodes`."""
        from ..evaluate import evaluate_episodes
        from ..methods.protonet import ProtoNet

        used = np.unique(np.concatenate([episodes.support.ravel(), episodes.query.ravel()]))
        emb = self.embed(used).cpu()
        table = torch.zeros(len(self.labels), emb.shape[1])
        table[torch.as_tensor(used)] = emb
        return evaluate_episodes(ProtoNet(), table, episodes)

    def describe(self) -> dict:
        """``{"kind": "tensor", "module": class name, "parameters": {name: shape}}``."""
        return {"kind": self.kind, "module": type(self.model).__name__,
                "parameters": {n: list(p.shape) for n, p in self.model.named_parameters()}}

    def inner_task(self, batch):
        """``(inner module, support rows (E, N*K, D), support_y, query rows (E, N*Q, D), query_y)``."""
        sx, sy, qx, qy = batch
        return self.inner, sx.reshape(*sx.shape[:2], -1), sy, qx.reshape(*qx.shape[:2], -1), qy

    def adapted_parameters(self, scope: str) -> list[str]:
        """``"all"``: every trainable parameter of the inner module; ``"classifier"``: its last
        layer with parameters (ANIL)."""
        from ..meta.functional import anil_layer_names

        if scope == "classifier":
            return anil_layer_names(self.inner)
        if scope != "all":
            raise ValueError(f"scope must be 'all' or 'classifier', got {scope!r}")
        return [n for n, p in self.inner.named_parameters() if p.requires_grad]


def check_corrupted(features: MMFeatures, corrupted: MMFeatures) -> None:
    """Raise FeatureError unless ``corrupted`` holds the same items (labels) with matching dims."""
    from ..errors import FeatureError

    if not isinstance(corrupted, MMFeatures):
        raise FeatureError(f"corrupted must be an MMFeatures, got {type(corrupted).__name__}")
    if len(corrupted) != len(features) or not np.array_equal(corrupted.labels, features.labels):
        raise FeatureError(f"corrupted features must hold the same items with the same labels ({len(corrupted)} vs {len(features)} items)")
    for m in corrupted.modalities:
        if m in features.modalities and corrupted.features[m].shape[1] != features.features[m].shape[1]:
            raise FeatureError(f"corrupted modality {m!r} has dim {corrupted.features[m].shape[1]}, clean has {features.features[m].shape[1]}")
    if not set(corrupted.modalities) & set(features.modalities):
        raise FeatureError(f"corrupted features share no modality with the features ({list(corrupted.modalities)})")


from ..registry import Registry  # noqa: E402

#: Learner kinds by name: ``LEARNERS.get("head")(head, features, ...)``.
LEARNERS: Registry = Registry("learner")
LEARNERS.register("head", "a fusion head on frozen multimodal features (fewmm.heads)")(HeadLearner)
LEARNERS.register("tensor", "a network on one tensor per item: frozen features or images (backbones)")(TensorLearner)
