"""The contract shared by every fusion head, and the masked building blocks they use.

A fusion head is a small :class:`torch.nn.Module` on top of frozen per-modality features. It
scores a whole batch of episodes at once and says how much it trusted each modality::

    logits, weights = head(batch)        # batch: fewmm.multimodal.MMBatch
    # logits  (E, M, N)            float32: class scores, argmax = episode-local class
    # weights (E, M, n_w)          float32: weight given to each modality for each query

``n_w`` is ``n_mod`` (the modalities in ``MMFeatures.modalities`` order), plus one last column
``"class_text"`` for heads that use class-level text (see :attr:`FusionHead.weight_names`).
Rows of ``weights`` sum to 1 over the modalities the query has *and* the episode's support set
has (0 for the others); a query that shares no modality with the support set gets a row of
zeros and uniform logits.

Missing modalities are handled by masks everywhere:

* every feature is L2-normalised first (zero rows, i.e. missing modalities, stay zero);
* per-modality prototypes are means over the support items that have the modality;
* a class with no support item in modality m is scored without m (late-fusion heads renormalise
  the modality weights over the modalities available for that (query, class) pair);
* a (query, class) pair with no modality in common gets the logit :data:`UNAVAILABLE_LOGIT`.

Bad input raises :class:`fewmm.errors.FeatureError` (a ``ValueError``): an item with no modality
at all (the message names the item), features of the wrong dimension, other modalities than the
head was built for, or missing class text for a head built with class text.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import nn

from ..errors import FeatureError
from ..methods.base import sq_euclidean_logits

#: Logit of a class that cannot be scored for a query (no modality in common). Finite, so no
#: NaN appears in softmax or cross-entropy; far below any real logit.
UNAVAILABLE_LOGIT = -1.0e4

_NEG = -1.0e9  # masked-out softmax input (finite: a row of all-masked entries gives no NaN)


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------
def l2n(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm over the last axis; zero rows stay zero. Shape kept."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` restricted to ``mask``; masked entries are exactly 0.

    Parameters
    ----------
    scores : torch.Tensor, float
    mask : torch.Tensor, bool, broadcastable to ``scores``

    Returns
    -------
    torch.Tensor, same shape as ``scores``: sums to 1 over the unmasked entries of ``dim``, and is
    all zero where every entry is masked.
    """
    mask = mask.expand_as(scores)
    p = torch.softmax(scores.masked_fill(~mask, _NEG), dim=dim)
    return p * mask.to(p.dtype)


def masked_mean(x: torch.Tensor, w: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Weighted mean over ``dim`` (the items axis), weights ``w`` (0 = excluded).

    Parameters
    ----------
    x : torch.Tensor of shape (..., K, d)
    w : torch.Tensor of shape (..., K), float (or bool)

    Returns
    -------
    torch.Tensor of shape (..., d); zeros where every weight is 0.
    """
    w = w.to(x.dtype)
    return (w.unsqueeze(-1) * x).sum(dim) / w.sum(-1, keepdim=True).clamp_min(1e-12)


def sq_dist(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Squared euclidean distances, batched: (E, M, d), (E, N, d) -> (E, M, N), >= 0."""
    return (-sq_euclidean_logits(query, protos)).clamp_min(0.0)


def normalised_inputs(batch, modalities) -> tuple[dict, dict]:
    """L2-normalised support and query features, zero where the modality is missing.

    Returns
    -------
    (support, query) : dicts of str to tensors of shape (E, N, K, d_m) and (E, M, d_m)
    """
    return normalised_side(batch.support, batch.support_mask, modalities), normalised_side(batch.query, batch.query_mask, modalities)


def normalised_side(x: dict, mask: torch.Tensor, modalities) -> dict:
    """L2-normalised features of one side (support or query), zero where the modality is missing."""
    return {m: l2n(x[m]) * mask[..., j : j + 1].to(x[m].dtype) for j, m in enumerate(modalities)}


def per_modality_sqdist(s: dict, q: dict, support_mask, modalities, shot_weights=None):
    """Per-modality ProtoNet distances.

    Parameters
    ----------
    s, q : dicts of normalised features, (E, N, K, d_m) and (E, M, d_m)
    support_mask : torch.Tensor of shape (E, N, K, n_mod), bool
    shot_weights : torch.Tensor of shape (E, N, K, n_mod), optional
        Non-negative weight of each support item in each modality's prototype (default 1).

    Returns
    -------
    dist : torch.Tensor of shape (E, M, N, n_mod), float32
        Squared euclidean distance from each query to each class prototype, per modality.
    class_has : torch.Tensor of shape (E, N, n_mod), bool
        Whether the class has at least one support item with the modality.
    """
    protos, class_has = modality_prototypes(s, support_mask, modalities, shot_weights)
    return prototype_sqdist(q, protos, modalities), class_has


def modality_prototypes(s: dict, support_mask, modalities, shot_weights=None) -> tuple[dict, torch.Tensor]:
    """Per-modality prototypes (masked means of the shots): dict of (E, N, d_m), and ``class_has``
    (E, N, n_mod) bool (see :func:`per_modality_sqdist`)."""
    protos = {}
    for j, m in enumerate(modalities):
        w = support_mask[..., j].to(s[m].dtype)
        if shot_weights is not None:
            w = w * shot_weights[..., j]
        protos[m] = masked_mean(s[m], w)
    return protos, support_mask.any(2)


def prototype_sqdist(q: dict, protos: dict, modalities) -> torch.Tensor:
    """(E, M, N, n_mod) squared distances from queries (E, M, d_m) to prototypes (E, N, d_m)."""
    return torch.stack([sq_dist(q[m], protos[m]) for m in modalities], -1)


def usable_modalities(query_mask: torch.Tensor, class_has: torch.Tensor) -> torch.Tensor:
    """(E, M, n_mod) bool: the query has the modality and some class of the episode has it."""
    return query_mask & class_has.any(1).unsqueeze(1)


def late_fusion(per_mod: torch.Tensor, avail: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted average of per-modality scores, renormalised per (query, class).

    Parameters
    ----------
    per_mod : torch.Tensor of shape (E, M, N, n_mod)
        Per-modality scores (logits or probabilities).
    avail : torch.Tensor of shape (E, M, N, n_mod), bool
        Query has the modality and the class has a prototype in it.
    weights : torch.Tensor of shape (E, M, n_mod) or (E, M, N, n_mod)
        Non-negative per-query (or per query-class pair) modality weights.

    Returns
    -------
    fused : torch.Tensor of shape (E, M, N)
        ``sum_m w_m s_m / sum_m w_m`` over the modalities available for the pair (0 if none).
    ok : torch.Tensor of shape (E, M, N), bool
        Pairs with at least one available modality.
    """
    ww = (weights.unsqueeze(2) if weights.ndim == 3 else weights) * avail.to(weights.dtype)
    denom = ww.sum(-1)
    fused = (ww * per_mod.masked_fill(~avail, 0.0)).sum(-1) / denom.clamp_min(1e-12)
    return fused, avail.any(-1)


def proto_logits(support_emb: torch.Tensor, support_valid: torch.Tensor, query_emb: torch.Tensor, scale) -> torch.Tensor:
    """ProtoNet logits in a fused embedding space.

    Parameters
    ----------
    support_emb : torch.Tensor of shape (E, N, K, h)
    support_valid : torch.Tensor of shape (E, N, K), bool: items with at least one modality
    query_emb : torch.Tensor of shape (E, M, h)
    scale : float or 0-d tensor: inverse temperature

    Returns
    -------
    torch.Tensor of shape (E, M, N): ``-scale * ||q - p_c||^2``, p_c the mean of the class's valid
    support embeddings; :data:`UNAVAILABLE_LOGIT` for a class with no valid support item.
    """
    protos = masked_mean(support_emb, support_valid)
    logits = -scale * sq_dist(query_emb, protos)
    has = support_valid.any(-1).unsqueeze(1)  # (E, 1, N)
    return torch.where(has, logits, torch.full_like(logits, UNAVAILABLE_LOGIT))


def uniform_weights(mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Uniform weights over the True entries of the last axis of ``mask`` (rows of zeros if none)."""
    w = mask.to(dtype)
    return w / w.sum(-1, keepdim=True).clamp_min(1.0)


# ------------------------------------------------------------------------------------------------
# the head contract
# ------------------------------------------------------------------------------------------------
class FusionHead(nn.Module):
    """Base class of fusion heads.

    Parameters
    ----------
    dims : mapping of str to int
        Feature dimension of each modality (``MMFeatures.dims``); may hold ``"class_text"``.
    modalities : sequence of str
        Item modalities, in ``MMFeatures.modalities`` order (columns of ``weights``).
    text_dim : int or None
        Dimension of class-level text embeddings if the head uses them (adds the weight column
        ``"class_text"``), else None.
    **hparams
        The subclass's hyper-parameters (JSON-serialisable), recorded in :meth:`config` so a
        checkpoint can rebuild the head with :func:`fewmm.heads.create`.

    Raises
    ------
    FeatureError
        No modality, a repeated modality, or a modality without a positive dimension in ``dims``.

    Notes
    -----
    Subclasses implement :meth:`_forward`; :meth:`forward` validates the batch first. Features are
    L2-normalised inside the head before anything else.
    """

    name: str = ""

    def __init__(self, dims, modalities, text_dim: int | None = None, **hparams):
        super().__init__()
        modalities = check_dims(dims, modalities)
        self.modalities = modalities
        self.dims = {m: int(dims[m]) for m in modalities}
        if text_dim is not None:
            self.dims["class_text"] = int(text_dim)
        self.hparams = dict(hparams)

    # -- description ---------------------------------------------------------------------------
    @property
    def n_mod(self) -> int:
        return len(self.modalities)

    @property
    def text_dim(self) -> int | None:
        """Dimension of the class-text embedding the head uses, or None."""
        return self.dims.get("class_text")

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Column names of ``weights``: the modalities, then ``"class_text"`` if used."""
        return self.modalities + (("class_text",) if self.text_dim is not None else ())

    @property
    def used_modalities(self) -> tuple[str, ...]:
        """Item modalities the head actually reads (all by default)."""
        return self.modalities

    @property
    def trainable(self) -> bool:
        """Whether the head has parameters to train (fixed fusion baselines have none)."""
        return any(p.requires_grad for p in self.parameters())

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def param_groups(self, lr: float, scale_lr_mult: float = 10.0) -> list[dict]:
        """Trainable parameters as optimizer groups: temperatures / scales / shot coefficients
        (parameters named ``log_*`` or ``shot_coef``: a handful of scalars) learn at
        ``lr * scale_lr_mult``, the rest at ``lr``. Empty list for a parameter-free head."""
        fast, slow = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                leaf = name.rsplit(".", 1)[-1]
                (fast if leaf.startswith("log_") or leaf == "shot_coef" else slow).append(p)
        groups = [{"params": slow, "lr": lr}, {"params": fast, "lr": lr * scale_lr_mult}]
        return [g for g in groups if g["params"]]

    def config(self) -> dict:
        """JSON-serialisable description: ``{"name", "modalities", "dims", "hparams"}``;
        ``fewmm.heads.create(name, dims, modalities, **hparams)`` rebuilds the head."""
        return {"name": self.name, "modalities": list(self.modalities), "dims": dict(self.dims), "hparams": dict(self.hparams)}

    def extra_repr(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"name={self.name!r}, dims={self.dims}" + (f", {hp}" if hp else "")

    # -- forward -------------------------------------------------------------------------------
    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch of episodes.

        Parameters
        ----------
        batch : fewmm.multimodal.MMBatch
            ``support[m]`` (E, N, K, d_m), ``support_mask`` (E, N, K, n_mod), ``query[m]``
            (E, M, d_m), ``query_mask`` (E, M, n_mod), ``class_text`` (E, N, d_t) or None.

        Returns
        -------
        logits : torch.Tensor of shape (E, M, N), float32
        weights : torch.Tensor of shape (E, M, n_w), float32
            n_w = ``len(self.weight_names)``; rows sum to 1 over the modalities the query has and
            the support set has, exactly 0 for the others.

        Raises
        ------
        FeatureError
            See :meth:`check_batch`.
        """
        self.check_batch(batch)
        return self._forward(batch)

    @abstractmethod
    def _forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Unchecked forward; support items whose mask is all False are padding (ignored)."""

    def support_state(self, batch):
        """The support-side part of :meth:`_forward` that does not depend on the queries, or None.

        Heads whose support and query items are embedded independently (``gmu``, ``attention``)
        return the support embeddings, so that :class:`~fewmm.heads.HeadClassifier` computes them
        once at ``fit`` and scores each query batch with :meth:`query_forward` alone (the cost of
        one query at batch size 1 then does not grow with the support set). For those heads
        ``_forward(batch) == query_forward(support_state(batch), batch)`` by construction.
        """
        return None

    def query_forward(self, state, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``_forward`` given ``state = support_state(batch)`` (only for heads returning a state)."""
        raise NotImplementedError(f"head {self.name!r} has no support state")

    # -- metric view (Proto-MAML, :mod:`fewmm.engine`) ---------------------------------------
    def item_embedding(self, x: dict, mask: torch.Tensor) -> torch.Tensor:
        """Embedding of items in the space where the head compares queries with class prototypes.

        Heads that declare one can be trained with the MAML family of :mod:`fewmm.engine`
        (Proto-MAML: the adapted linear classifier starts from the prototypes in this space).

        Parameters
        ----------
        x : dict of str to torch.Tensor of shape (..., d_m)
            Raw (not normalised) features; zero where the item lacks the modality.
        mask : torch.Tensor of shape (..., n_mod), bool

        Returns
        -------
        torch.Tensor of shape (..., h), float32

        Raises
        ------
        NotImplementedError
            The head has no item embedding (fixed heads): train it with trainer "protonet".
        """
        raise NotImplementedError(f"head {self.name!r} declares no item embedding: it cannot be trained with the MAML family")

    def class_embedding(self, batch) -> torch.Tensor:
        """Class prototypes (E, N, h) in the :meth:`item_embedding` space: by default the mean of
        the class's support embeddings (zeros for a class whose support items are all padding)."""
        es = self.item_embedding(batch.support, batch.support_mask)
        return masked_mean(es, batch.support_mask.any(-1))

    def metric_scale(self):
        """Inverse temperature ``s`` of the head's logits ``-s ||e_q - p_c||^2`` (float or 0-d tensor)."""
        return 1.0

    def check_batch(self, batch, check_items: bool = True) -> None:
        """Validate a batch against the head.

        Raises
        ------
        FeatureError
            Other modalities (or order) than the head's; a feature dimension differing from the
            head's ``dims``; inconsistent shapes; missing class text for a class-text head; with
            ``check_items``, a support or query item with no modality at all (named by episode,
            class and shot, or episode and query index).
        """
        if tuple(batch.modalities) != self.modalities:
            raise FeatureError(
                f"the batch has modalities {list(batch.modalities)} but the head was built for "
                f"{list(self.modalities)} (same order); use MMFeatures.select_modalities({list(self.modalities)})"
            )
        sm, qm = batch.support_mask, batch.query_mask
        if sm.ndim != 4 or sm.shape[-1] != self.n_mod or qm.ndim != 3 or qm.shape[-1] != self.n_mod:
            raise FeatureError(f"support_mask {tuple(sm.shape)} / query_mask {tuple(qm.shape)} must be (E, N, K, {self.n_mod}) / (E, M, {self.n_mod})")
        for m in self.modalities:
            for which, t, lead in (("support", batch.support[m], tuple(sm.shape[:3])), ("query", batch.query[m], tuple(qm.shape[:2]))):
                if tuple(t.shape[:-1]) != lead:
                    raise FeatureError(f"{which}[{m!r}] has shape {tuple(t.shape)}, expected {lead + (self.dims[m],)}")
                if t.shape[-1] != self.dims[m]:
                    raise FeatureError(
                        f"{which} features of modality {m!r} have dim {t.shape[-1]}, but the head was built for dim {self.dims[m]}"
                    )
        if self.text_dim is not None:
            ct = batch.class_text
            if ct is None:
                raise FeatureError(
                    f"head {self.name!r} was built with class text (dim {self.text_dim}) but the batch has none: "
                    "give MMFeatures.class_text, or build the head with use_text=False"
                )
            if tuple(ct.shape) != (sm.shape[0], sm.shape[1], self.text_dim):
                raise FeatureError(
                    f"class_text has shape {tuple(ct.shape)}, expected {(sm.shape[0], sm.shape[1], self.text_dim)} "
                    f"(the head was built for text dim {self.text_dim})"
                )
        if check_items:
            bad = ~sm.any(-1)
            if bad.any():
                e, c, k = (int(v) for v in torch.nonzero(bad)[0])
                raise FeatureError(
                    f"support item (episode {e}, class {c}, shot {k}) has no modality at all "
                    f"({int(bad.sum())} such support items): every item needs one of {list(self.modalities)}"
                )
            bad = ~qm.any(-1)
            if bad.any():
                e, i = (int(v) for v in torch.nonzero(bad)[0])
                raise FeatureError(
                    f"query item (episode {e}, query {i}) has no modality at all ({int(bad.sum())} such queries): "
                    f"every item needs one of {list(self.modalities)}"
                )


def init_projections(layers, freeze: bool = False) -> None:
    """Initialise per-modality projections (each ``d_m -> hidden``) jointly as one random
    orthogonal matrix of shape (hidden, sum d_m) split by columns, zero biases.

    When ``hidden >= sum d_m`` every projection is an isometry and their ranges are mutually
    orthogonal, so ``sum_m z_m W_m x_m`` is exactly the (gated) concatenation of the inputs: an
    untrained fusion head starts as ProtoNet on concatenated features. Below that, it is a
    norm-preserving random (Johnson-Lindenstrauss) projection of the concatenation (gain
    ``sqrt(sum d_m / hidden)``). ``freeze`` stops their training (only gates / attention / scales
    are then learned, which generalises best to novel classes when base classes are few).

    Parameters
    ----------
    layers : sequence of torch.nn.Linear with the same ``out_features``
    freeze : bool
    """
    layers = list(layers)
    hidden = layers[0].out_features
    total = sum(layer.in_features for layer in layers)
    w = torch.empty(hidden, total)
    nn.init.orthogonal_(w, gain=math.sqrt(max(1.0, total / hidden)))
    start = 0
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(w[:, start : start + layer.in_features])
            layer.bias.zero_()
            start += layer.in_features
            layer.requires_grad_(not freeze)


def check_dims(dims, modalities) -> tuple[str, ...]:
    """Validate head dims / modalities; returns ``tuple(modalities)``.

    Raises
    ------
    FeatureError
        No modality, a repeat, ``"class_text"`` as an item modality, or a modality without a
        positive dimension in ``dims``.
    """
    modalities = tuple(modalities)
    if not modalities:
        raise FeatureError("a fusion head needs at least one modality")
    if len(set(modalities)) != len(modalities):
        raise FeatureError(f"modalities {list(modalities)} contain a repeat")
    if "class_text" in modalities:
        raise FeatureError("'class_text' is class-level, not an item modality: pass it in dims only")
    for m in modalities:
        if m not in dims:
            raise FeatureError(f"dims has no entry for modality {m!r} (dims: {dict(dims)})")
        if int(dims[m]) < 1:
            raise FeatureError(f"dims[{m!r}] must be a positive int, got {dims[m]!r}")
    return modalities


def default_width(dims, modalities, cap: int = 4096) -> int:
    """``sum_m d_m`` capped at ``cap``: the width at which joint orthogonal projections are exact."""
    return int(min(cap, sum(int(dims[m]) for m in check_dims(dims, modalities))))


class LearnedScale(nn.Module):
    """A learned positive inverse temperature ``exp(log_scale)`` (Oreshkin et al. 2018, TADAM,
    metric scaling), initialised at ``init``."""

    def __init__(self, init: float = 10.0):
        super().__init__()
        if not init > 0:
            raise ValueError(f"init_scale must be > 0, got {init!r}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(float(init))))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(-5.0, 7.0).exp()
