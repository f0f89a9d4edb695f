"""``temperature``: learned per-modality temperatures on per-modality ProtoNet logits.

Each modality has its own ProtoNet (Snell, Swersky & Zemel, NeurIPS 2017) on L2-normalised
features; the fused logits are a sum of the per-modality logits, each scaled by a learned
positive inverse temperature (metric scaling as in Oreshkin et al. 2018, TADAM, one per
modality)::

    logits_c = sum_{m available} tau_m * (-||q_m - p_{c,m}||^2)
    tau_m    = exp(b_m)                          (per_sample=False)
    tau_m(x) = exp(b_m + f_m(x_m))               (per_sample=True: f_m a small MLP on the item)

With ``per_sample=True`` the support items also get their own ``tau_m(x)``: they weight the
per-modality prototype means (corrupted support items count less), and the class's reliability
in modality m, ``rho_{c,m} = mean over its shots of exp(f_m(x))``, multiplies the query's weight
of m when scoring that class (a class whose only audio shot looks corrupted is scored mostly on
its other modalities; the fused logit is renormalised per (query, class), so this changes the
mix, not the scale).
A class lacking modality m in its support is scored with the others: its logit is
``S * sum_m w_m l_m / sum_m w_m`` over the available modalities, ``S = sum_m tau_m`` over the
query's usable modalities and ``w_m = tau_m / S``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import UNAVAILABLE_LOGIT, FusionHead, late_fusion, normalised_inputs, normalised_side, per_modality_sqdist, usable_modalities


class TemperatureHead(FusionHead):
    """Per-modality learned temperature (optionally per sample).

    Parameters
    ----------
    dims : mapping of str to int
    modalities : sequence of str
    per_sample : bool, default False
        Condition each item's temperatures on its features.
    hidden : int, default 64
        Hidden width of the per-sample MLPs (``per_sample=True`` only).
    init_scale : float, default 10.0
        Initial ``tau_m`` (the MLPs start at 0, so per-sample starts as global).

    Notes
    -----
    ``weights`` (explain): ``tau_m / sum tau`` over the query's usable modalities, (E, M, n_mod).
    """

    name = "temperature"

    def __init__(self, dims, modalities, per_sample: bool = False, hidden: int = 64, init_scale: float = 10.0):
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not 0 < init_scale < float("inf"):
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        super().__init__(dims, modalities, per_sample=bool(per_sample), hidden=int(hidden), init_scale=float(init_scale))
        self.per_sample = bool(per_sample)
        self.log_tau = nn.Parameter(torch.full((self.n_mod,), math.log(float(init_scale))))
        if self.per_sample:
            self.sample_nets = nn.ModuleDict({m: nn.Sequential(nn.Linear(self.dims[m], hidden), nn.ReLU(), nn.Linear(hidden, 1)) for m in self.modalities})
            for net in self.sample_nets.values():
                nn.init.zeros_(net[2].weight)
                nn.init.zeros_(net[2].bias)

    def _sample_log(self, x: dict) -> torch.Tensor:
        return torch.cat([self.sample_nets[m](x[m]) for m in self.modalities], -1).clamp(-7.0, 7.0)

    def taus(self, x: dict, mask: torch.Tensor) -> torch.Tensor:
        """Inverse temperatures, (..., n_mod), 0 where the modality is missing.

        Parameters
        ----------
        x : dict of str to normalised features (..., d_m)
        mask : torch.Tensor of shape (..., n_mod), bool
        """
        logt = self.log_tau.clamp(-7.0, 7.0).expand(*mask.shape)
        if self.per_sample:
            logt = logt + self._sample_log(x)
        return logt.exp() * mask.to(logt.dtype)

    def item_embedding(self, x, mask):
        """``concat_m sqrt(tau_m) x_m`` (..., sum d_m) of the normalised features: squared
        distances in this space are the tau-weighted sums of per-modality squared distances (the
        numerator of this head's logits when every modality is available and taus are global)."""
        xn = normalised_side(x, mask, self.modalities)
        t = self.taus(xn, mask).clamp_min(0.0).sqrt()
        return torch.cat([xn[m] * t[..., j : j + 1] for j, m in enumerate(self.modalities)], -1)

    def _forward(self, batch):
        s, q = normalised_inputs(batch, self.modalities)
        shot_w = self.taus(s, batch.support_mask) if self.per_sample else None
        dist, class_has = per_modality_sqdist(s, q, batch.support_mask, self.modalities, shot_weights=shot_w)
        usable = usable_modalities(batch.query_mask, class_has)
        tq = self.taus(q, batch.query_mask) * usable.to(dist.dtype)
        total = tq.sum(-1, keepdim=True)  # (E, M, 1)
        w = tq / total.clamp_min(1e-12)
        avail = usable.unsqueeze(2) & class_has.unsqueeze(1)
        pair_w = w
        if self.per_sample:
            rel = self._sample_log(s).exp() * batch.support_mask.to(dist.dtype)  # (E, N, K, n)
            rho = rel.sum(2) / batch.support_mask.sum(2).clamp_min(1).to(dist.dtype)  # (E, N, n)
            pair_w = w.unsqueeze(2) * rho.unsqueeze(1)  # (E, M, N, n)
        fused, ok = late_fusion(-dist, avail, pair_w)
        logits = torch.where(ok, fused * total, torch.full_like(fused, UNAVAILABLE_LOGIT))
        return logits, w
