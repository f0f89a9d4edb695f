"""``concat``: early-fusion baseline, no training.

ProtoNet (Snell, Swersky & Zemel, NeurIPS 2017) on the concatenation of the L2-normalised
per-modality features; a missing modality contributes zeros. Prototypes are means over all
support items of the class::

    x = [x_1 / ||x_1||, ..., x_n / ||x_n||]     (0 block where modality missing)
    logits_c = -||x_q - p_c||^2 / T
"""

from __future__ import annotations

import torch

from .base import FusionHead, normalised_inputs, proto_logits, uniform_weights


class ConcatHead(FusionHead):
    """ProtoNet on concatenated L2-normalised modality features (missing modality -> zeros).

    Parameters
    ----------
    dims : mapping of str to int
    modalities : sequence of str
    temperature : float, default 0.1
        Logits are ``-d^2 / T`` (only probabilities depend on it, not predictions).

    Notes
    -----
    ``weights`` (explain): uniform over the modalities the query has (each present modality block
    has unit norm, so each contributes equally to the distance).
    """

    name = "concat"

    def __init__(self, dims, modalities, temperature: float = 0.1):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        super().__init__(dims, modalities, temperature=float(temperature))
        self.temperature = float(temperature)

    def _forward(self, batch):
        s, q = normalised_inputs(batch, self.modalities)
        sx = torch.cat([s[m] for m in self.modalities], -1)
        qx = torch.cat([q[m] for m in self.modalities], -1)
        logits = proto_logits(sx, batch.support_mask.any(-1), qx, 1.0 / self.temperature)
        return logits, uniform_weights(batch.query_mask, qx.dtype)
