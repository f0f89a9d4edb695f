"""``gmu``: Gated Multimodal Unit fusion, then ProtoNet in the fused space.

Arevalo, Solorio, Montes-y-Gomez & Gonzalez, "Gated Multimodal Units for Information Fusion",
ICLR workshop 2017. For two modalities the paper computes ``h_v = tanh(W_v x_v)``,
``h_t = tanh(W_t x_t)``, ``z = sigmoid(W_z [x_v, x_t])``, ``h = z h_v + (1 - z) h_t``. Here the
gate is generalised to n modalities with a softmax over the modalities an item has::

    x_m  <- x_m / ||x_m||          (0 if item lacks m)
    h_m  =  tanh(W_m x_m)
    z    =  masked_softmax_m( G([x_1, ..., x_n, mask]) )     G linear (paper) or a small MLP
    e    =  sum_m z_m h_m  ->  e / ||e||
    logits_c = -s ||e_q - p_c||^2,  p_c = mean of the class's support embeddings, s learned

The gate is per item, so it can learn to distrust a modality whose features look corrupted.
The ``W_m`` start as one joint random orthogonal matrix split by modality (see
:func:`~fewmm.heads.base.init_projections`): the projected modalities occupy orthogonal
subspaces (exactly when ``hidden >= sum d_m``) and tanh works in its linear range, so the
untrained fused embedding is the gate-weighted concatenation of the inputs. They are then
trained with the gate (``freeze_proj=True`` keeps them fixed: only the gate and the scale learn,
which generalises better when base classes are few or unlike the novel ones).
Trained episodically (ProtoNet-style) with :func:`fewmm.train.train_head`.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import FusionHead, LearnedScale, default_width, init_projections, l2n, masked_softmax, normalised_side, proto_logits


class GMUHead(FusionHead):
    """Gated multimodal unit + ProtoNet.

    Parameters
    ----------
    dims : mapping of str to int
    modalities : sequence of str
    hidden : int or None, default 512
        Width of the projected embeddings ``h_m`` and of the fused space. None: the sum of the
        modality dims (capped at 4096), where the initial projections are exact.
    gate_hidden : int, default 32
        0: the gate is linear in the concatenated inputs, as in the paper; > 0: an MLP with one
        hidden ReLU layer of this width (detects corrupted inputs more sharply).
    freeze_proj : bool, default False
        Keep ``W_m`` at their (joint, random orthogonal) initialisation; only the gate and the
        scale are learned. Choose on validation classes: learning the projections helped a lot
        with many base classes (Omniglot evaluation split, EfficientNet-Lite2 + pixel features,
        400 base classes, 5-way 1-shot, 300 steps: 0.91 vs 0.76) and hurt a little on the
        synthetic Gaussian classes of the tests.
    dropout : float, default 0.1
        Dropout on the normalised inputs (training only).
    init_scale : float, default 10.0
        Initial inverse temperature of the ProtoNet logits (learned).

    Notes
    -----
    ``weights`` (explain) are the gate values ``z`` of each query: (E, M, n_mod), rows sum to 1
    over the query's modalities.
    """

    name = "gmu"

    def __init__(self, dims, modalities, hidden: int | None = 512, gate_hidden: int = 32, freeze_proj: bool = False,
                 dropout: float = 0.1, init_scale: float = 10.0):
        hidden = default_width(dims, modalities) if hidden is None else int(hidden)
        super().__init__(dims, modalities, hidden=hidden, gate_hidden=int(gate_hidden), freeze_proj=bool(freeze_proj),
                         dropout=float(dropout), init_scale=float(init_scale))
        self.proj = nn.ModuleDict({m: nn.Linear(self.dims[m], hidden) for m in self.modalities})
        init_projections(self.proj.values(), freeze_proj)
        g_in = sum(self.dims[m] for m in self.modalities) + self.n_mod
        if gate_hidden > 0:
            self.gate = nn.Sequential(nn.Linear(g_in, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, self.n_mod))
        else:
            self.gate = nn.Linear(g_in, self.n_mod)
        last = self.gate[-1] if isinstance(self.gate, nn.Sequential) else self.gate
        nn.init.zeros_(last.weight)  # start from equal modality weights
        nn.init.zeros_(last.bias)
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
        emb : torch.Tensor of shape (..., hidden), unit norm
        z : torch.Tensor of shape (..., n_mod), the gate
        """
        xs = [self.drop(x[m]) for m in self.modalities]
        h = torch.stack([torch.tanh(self.proj[m](xm)) for m, xm in zip(self.modalities, xs)], -2)
        z = masked_softmax(self.gate(torch.cat(xs + [mask.to(xs[0].dtype)], -1)), mask)
        return l2n((z.unsqueeze(-1) * h).sum(-2)), z

    def item_embedding(self, x, mask):
        """Fused unit-norm embedding (..., width) of items (raw features; see :meth:`embed`)."""
        return self.embed(normalised_side(x, mask, self.modalities), mask)[0]

    def metric_scale(self):
        return self.scale()

    def support_state(self, batch):
        """Support embeddings (E, N, K, width), independent of the queries."""
        return self.embed(normalised_side(batch.support, batch.support_mask, self.modalities), batch.support_mask)[0]

    def query_forward(self, es, batch):
        eq, zq = self.embed(normalised_side(batch.query, batch.query_mask, self.modalities), batch.query_mask)
        return proto_logits(es, batch.support_mask.any(-1), eq, self.scale()), zq

    def _forward(self, batch):
        return self.query_forward(self.support_state(batch), batch)
