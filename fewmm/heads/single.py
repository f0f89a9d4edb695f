"""``single:<modality>``: ProtoNet on one modality only, no training.

ProtoNet (Snell, Swersky & Zemel, NeurIPS 2017) on the L2-normalised features of one modality, so
each modality is a row of the results next to the fusion heads. It reads MMFeatures with all
modalities (so its ``weights`` have the same columns as every other head's): weight 1 on its
modality, 0 elsewhere.

Items lacking the modality: support items without it are ignored; a class with no support item
in it gets :data:`~fewmm.heads.base.UNAVAILABLE_LOGIT`; a query without it gets uniform logits
and a row of zero weights (it abstains).
"""

from __future__ import annotations

import torch

from ..errors import FeatureError
from .base import UNAVAILABLE_LOGIT, FusionHead, late_fusion, modality_prototypes, normalised_side, prototype_sqdist


class SingleModalityHead(FusionHead):
    """ProtoNet on one modality.

    Parameters
    ----------
    dims : mapping of str to int
    modalities : sequence of str
        All item modalities of the features (weights columns); ``modality`` must be one of them.
    modality : str
    temperature : float, default 0.1
        Logits are ``-d^2 / T``.

    Raises
    ------
    FeatureError
        ``modality`` not in ``modalities``.
    """

    def __init__(self, dims, modalities, modality: str, temperature: float = 0.1):
        if modality not in tuple(modalities):
            raise FeatureError(f"single-modality head: modality {modality!r} is not one of {list(modalities)}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        super().__init__(dims, modalities, modality=modality, temperature=float(temperature))
        self.modality = modality
        self.temperature = float(temperature)
        self.index = tuple(modalities).index(modality)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"single:{self.modality}"

    @property
    def used_modalities(self) -> tuple[str, ...]:
        return (self.modality,)

    def support_state(self, batch):
        """The modality's prototypes of the normalised support set, and ``class_has``."""
        m, j = self.modality, self.index
        sm = batch.support_mask[..., j : j + 1]
        return modality_prototypes(normalised_side({m: batch.support[m]}, sm, (m,)), sm, (m,))

    def _forward(self, batch):
        return self.query_forward(self.support_state(batch), batch)

    def query_forward(self, state, batch):
        m, j = self.modality, self.index
        protos, class_has = state
        q = normalised_side({m: batch.query[m]}, batch.query_mask[..., j : j + 1], (m,))
        dist = prototype_sqdist(q, protos, (m,))
        usable = batch.query_mask[..., j : j + 1] & class_has.any(1).unsqueeze(1)  # (E, M, 1)
        w1 = usable.to(dist.dtype)
        avail = usable.unsqueeze(2) & class_has.unsqueeze(1)
        fused, ok = late_fusion(-dist / self.temperature, avail, w1)
        logits = torch.where(ok, fused, torch.full_like(fused, UNAVAILABLE_LOGIT))
        weights = torch.zeros(batch.query_mask.shape, dtype=dist.dtype, device=dist.device)
        weights[..., j] = w1[..., 0]
        return logits, weights
