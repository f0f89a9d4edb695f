"""``avg-proto``: the fixed late-fusion baseline, no training.

Each modality gets its own ProtoNet (Snell, Swersky & Zemel, NeurIPS 2017) on L2-normalised
features; the head averages the per-modality class probabilities with equal weights over the
modalities the query has (and the support set has)::

    p_m(c | q) = softmax_c(-||q_m - p_{c,m}||^2 / T)        over classes with a prototype in m
    p(c | q)   = mean over available m of p_m(c | q)

Returned logits are ``log p(c | q)``. A class with no support item in modality m is scored
without m (the average renormalised over the remaining modalities).
"""

from __future__ import annotations

import torch

from .base import (
    UNAVAILABLE_LOGIT,
    FusionHead,
    late_fusion,
    masked_softmax,
    modality_prototypes,
    normalised_side,
    prototype_sqdist,
    uniform_weights,
    usable_modalities,
)


class AvgProtoHead(FusionHead):
    """Average of per-modality ProtoNet probabilities (fixed, equal modality weights).

    Parameters
    ----------
    dims : mapping of str to int
        Feature dimension per modality (``MMFeatures.dims``; ``"class_text"`` is ignored).
    modalities : sequence of str
    temperature : float, default 0.1
        ``T`` in ``softmax(-d^2 / T)``; distances are between unit vectors (in [0, 4]). It changes
        the averaged probabilities, hence predictions: choose it on validation classes.

    Notes
    -----
    ``weights`` (explain): uniform over the modalities the query has and the support set has.
    """

    name = "avg-proto"

    def __init__(self, dims, modalities, temperature: float = 0.1):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        super().__init__(dims, modalities, temperature=float(temperature))
        self.temperature = float(temperature)

    def support_state(self, batch):
        """Per-modality prototypes of the normalised support set, and ``class_has``."""
        return modality_prototypes(normalised_side(batch.support, batch.support_mask, self.modalities), batch.support_mask,
                                   self.modalities)

    def _forward(self, batch):
        return self.query_forward(self.support_state(batch), batch)

    def query_forward(self, state, batch):
        protos, class_has = state
        q = normalised_side(batch.query, batch.query_mask, self.modalities)
        dist = prototype_sqdist(q, protos, self.modalities)
        # per-modality class probabilities, softmax over the classes having the modality
        probs = masked_softmax(-dist / self.temperature, class_has.unsqueeze(1), dim=2)  # (E, M, N, n)
        usable = usable_modalities(batch.query_mask, class_has)
        w = uniform_weights(usable, probs.dtype)
        avail = usable.unsqueeze(2) & class_has.unsqueeze(1)
        fused, ok = late_fusion(probs, avail, w)
        logits = torch.where(ok, fused.clamp_min(1e-30).log(), torch.full_like(fused, UNAVAILABLE_LOGIT))
        return logits, w
