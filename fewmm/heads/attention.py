"""``attention``: attention pooling over modality tokens, then ProtoNet in the fused space.

Each modality an item has becomes a token: its L2-normalised features projected to a common
width plus a learned modality embedding (the modality/segment embeddings of multimodal
transformers). A learned query vector attends over the item's tokens with missing modalities
masked out (attention pooling with a learned seed query, as PMA in Lee et al. 2019, "Set
Transformer"; scaled dot-product attention of Vaswani et al. 2017)::

    t_m = W_m x_m + e_m                          for each modality m the item has
    a   = masked_softmax_m( u_h . (W_k LayerNorm(t_m))_h / sqrt(d_head) )   per attention head h
    e   = concat_h( sum_m a_{h,m} (t_m)_h )      values: the tokens (``value_proj=True``: W_o W_v t_m)
    e  <- e / ||e||;   logits_c = -s ||e_q - p_c||^2,   p_c = mean of the class's support embeddings

The attention is per item (keys depend on the item's features), so it can learn to distrust a
modality whose features look corrupted. The ``W_m`` start as one joint random orthogonal
matrix (mutually orthogonal token subspaces: the untrained pooled embedding is the
attention-weighted concatenation of the inputs), then learn (``freeze_proj=True``: they stay).
Trained episodically with
:func:`fewmm.train.train_head`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import FusionHead, LearnedScale, default_width, init_projections, l2n, masked_softmax, normalised_side, proto_logits


class AttentionHead(FusionHead):
    """Masked attention pooling over modality tokens + ProtoNet.

    Parameters
    ----------
    dims : mapping of str to int
    modalities : sequence of str
    width : int or None, default 512
        Token / fused embedding width; divisible by ``n_heads``. None: the sum of the modality
        dims (capped at 4096, rounded up to a multiple of ``n_heads``), where the initial token
        projections are exact and mutually orthogonal.
    n_heads : int, default 1
    key_hidden : int, default 32
        The key of a token is ``W_k2 relu(W_k1 LayerNorm(t))`` with this hidden width (0: one
        linear layer).
    value_proj : bool, default False
        Project values (``W_v``) and the pooled output (``W_o``) as in multi-head attention;
        off by default (values are the tokens, which generalises better to novel classes).
    freeze_proj : bool, default False
        Keep the token projections ``W_m`` at their joint random orthogonal initialisation (see
        :func:`~fewmm.heads.base.init_projections`); choose on validation classes.
    dropout : float, default 0.1
        Dropout on the normalised inputs (training only).
    init_scale : float, default 10.0
        Initial inverse temperature of the ProtoNet logits (learned).

    Notes
    -----
    ``weights`` (explain): the attention of each query over its modality tokens, averaged over
    attention heads, (E, M, n_mod); rows sum to 1 over the query's modalities.
    """

    name = "attention"

    def __init__(self, dims, modalities, width: int | None = 512, n_heads: int = 1, key_hidden: int = 32, value_proj: bool = False,
                 freeze_proj: bool = False, dropout: float = 0.1, init_scale: float = 10.0):
        if width is None:
            width = -(-default_width(dims, modalities) // int(n_heads)) * int(n_heads)
        if width % n_heads:
            raise ValueError(f"width {width} must be divisible by n_heads {n_heads}")
        super().__init__(dims, modalities, width=int(width), n_heads=int(n_heads), key_hidden=int(key_hidden),
                         value_proj=bool(value_proj), freeze_proj=bool(freeze_proj), dropout=float(dropout), init_scale=float(init_scale))
        self.n_heads, self.d_head = int(n_heads), int(width) // int(n_heads)
        self.proj = nn.ModuleDict({m: nn.Linear(self.dims[m], width) for m in self.modalities})
        init_projections(self.proj.values(), freeze_proj)
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(self.n_mod, width))
        self.norm = nn.LayerNorm(width)
        if key_hidden > 0:
            self.key = nn.Sequential(nn.Linear(width, key_hidden), nn.ReLU(), nn.Linear(key_hidden, width))
        else:
            self.key = nn.Linear(width, width)
        self.query = nn.Parameter(0.02 * torch.randn(self.n_heads, self.d_head))
        if value_proj:
            self.value = nn.Linear(width, width)
            self.out = nn.Linear(width, width)
        self.value_proj = bool(value_proj)
        self.drop = nn.Dropout(dropout)
        self.scale = LearnedScale(init_scale)

    def embed(self, x: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the (already normalised) features of items.

        Parameters
        ----------
        x : dict of str to torch.Tensor of shape (..., d_m)
        mask : torch.Tensor of shape (..., n_mod), bool

        Returns
        -------
        emb : torch.Tensor of shape (..., width), unit norm
        attn : torch.Tensor of shape (..., n_mod), attention averaged over heads
        """
        tok = torch.stack([self.proj[m](self.drop(x[m])) for m in self.modalities], -2) + self.modality_embedding
        lead = tok.shape[:-2]
        k = self.key(self.norm(tok)).view(*lead, self.n_mod, self.n_heads, self.d_head)
        v = (self.value(tok) if self.value_proj else tok).view(*lead, self.n_mod, self.n_heads, self.d_head)
        scores = torch.einsum("...nhd,hd->...hn", k, self.query) / math.sqrt(self.d_head)
        a = masked_softmax(scores, mask.unsqueeze(-2))  # (..., H, n)
        fused = torch.einsum("...hn,...nhd->...hd", a, v).reshape(*lead, -1)
        if self.value_proj:
            fused = self.out(fused)
        return l2n(fused), a.mean(-2)

    def item_embedding(self, x, mask):
        """Fused unit-norm embedding (..., width) of items (raw features; see :meth:`embed`)."""
        return self.embed(normalised_side(x, mask, self.modalities), mask)[0]

    def metric_scale(self):
        return self.scale()

    def support_state(self, batch):
        """Support embeddings (E, N, K, width), independent of the queries."""
        return self.embed(normalised_side(batch.support, batch.support_mask, self.modalities), batch.support_mask)[0]

    def query_forward(self, es, batch):
        eq, aq = self.embed(normalised_side(batch.query, batch.query_mask, self.modalities), batch.query_mask)
        return proto_logits(es, batch.support_mask.any(-1), eq, self.scale()), aq

    def _forward(self, batch):
        return self.query_forward(self.support_state(batch), batch)
