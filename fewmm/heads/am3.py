"""``am3``: adaptive prototype mixing conditioned on the support set, in the spirit of AM3.

Xing, Rostamzadeh, Oreshkin & Pinheiro, "Adaptive Cross-Modal Few-shot Learning", NeurIPS 2019.
AM3 mixes a class's visual prototype with a transformation of its label embedding,
``p'_c = lambda_c p_c + (1 - lambda_c) w_c``, ``w_c = g(e_c)``, ``lambda_c = sigmoid(h(w_c))``, so
the text can carry the class when shots are few. Generalised here to several item modalities
(and to no class text at all). All sources live in one common space of width ``hidden``::

    f_m(x)   = normalise(W_m normalise(x))                 item modality m -> common space
    p_{c,m}  = mean of f_m(x_{k,m}) over the class's support items having m
    p_{c,T}  = normalise(g(class_text_c))                  g: 2-layer MLP (AM3)
    alpha_c  = masked_softmax_s( h_s(p_{c,s}) + gamma_s log n_{c,s} )   over the sources s the
               class has (n_{c,s}: its number of shots with modality s; 1 for text)
    P_c      = sum_s alpha_{c,s} p_{c,s}
    beta_q   = masked_softmax_m( h_m(f_m(q_m)) )            over the query's modalities
    e_q      = sum_m beta_{q,m} f_m(q_m)
    logits_c = -s ||e_q - P_c||^2                           (s learned)

With one item modality and text, ``alpha_{c,v} = sigmoid(h_v(p_c) - h_T(w_c) + gamma_v log K)``:
AM3's ``lambda_c`` with an extra support-conditioned term (AM3 is the case ``h_v`` constant,
``gamma = 0``). Without class text it mixes the item-modality prototypes per class.

Weights reported (explain), (E, M, n_mod + 1) with text, (E, M, n_mod) without: for query q
assigned to class c* (argmax of its logits), the last column ``"class_text"`` is
``alpha_{c*,T}`` (the share of the class text in that class's prototype), and the item-modality
columns are ``(1 - alpha_{c*,T}) * beta_q`` (the query's own modality mixing). Rows sum to 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import FeatureError
from .base import UNAVAILABLE_LOGIT, FusionHead, LearnedScale, default_width, init_projections, l2n, masked_softmax, normalised_inputs, normalised_side, sq_dist


class AM3Head(FusionHead):
    """Adaptive (support- and text-conditioned) prototype mixing across modalities.

    Parameters
    ----------
    dims : mapping of str to int
        Per-modality dims; ``dims["class_text"]`` (if present) is the class-text dim.
    modalities : sequence of str
    hidden : int or None, default 512
        Width of the common space; None: the sum of the item-modality dims (capped at 4096),
        where the initial projections ``W_m`` are exact and mutually orthogonal (see
        :func:`~fewmm.heads.base.init_projections`).
    mix_hidden : int, default 128
        Hidden width of the mixing networks ``h_s``.
    text_hidden : int, default 300
        Hidden width of ``g`` (300 in AM3); 0: ``g`` is linear.
    use_text : bool or None, default None
        None: use class text when ``dims`` has ``"class_text"``; True: require it; False: never.
    shot_feature : bool, default True
        Add ``gamma_s log n_{c,s}`` to the mixing logits (lets the mix depend on the shot count).
    freeze_proj : bool, default False
        Keep the item projections ``W_m`` fixed (the text map ``g`` and the mixing networks are
        always learned, as in AM3 where the visual prototypes come from the backbone).
    dropout : float, default 0.1
        Dropout on the normalised item features (training only).
    text_dropout : float, default 0.7
        Dropout inside ``g`` (0.7 in AM3): ``g`` sees one text per class, so it overfits the
        base classes easily.
    init_scale : float, default 10.0

    Raises
    ------
    FeatureError
        ``use_text=True`` but ``dims`` has no ``"class_text"``.
    """

    name = "am3"

    def __init__(
        self,
        dims,
        modalities,
        hidden: int | None = 512,
        mix_hidden: int = 128,
        text_hidden: int = 300,
        use_text: bool | None = None,
        shot_feature: bool = True,
        freeze_proj: bool = False,
        dropout: float = 0.1,
        text_dropout: float = 0.7,
        init_scale: float = 10.0,
    ):
        text_dim = dims.get("class_text") if use_text is not False else None
        if use_text is True and text_dim is None:
            raise FeatureError("am3: use_text=True but dims has no 'class_text' entry (the features carry no class text)")
        hidden = default_width(dims, modalities) if hidden is None else int(hidden)
        super().__init__(
            dims, modalities, text_dim=text_dim, hidden=hidden, mix_hidden=int(mix_hidden), text_hidden=int(text_hidden),
            use_text=text_dim is not None, shot_feature=bool(shot_feature), freeze_proj=bool(freeze_proj), dropout=float(dropout),
            text_dropout=float(text_dropout), init_scale=float(init_scale),
        )
        self.embed = nn.ModuleDict({m: nn.Linear(self.dims[m], hidden) for m in self.modalities})
        init_projections(self.embed.values(), freeze_proj)
        sources = list(self.modalities) + (["class_text"] if text_dim else [])
        self.mix = nn.ModuleDict({s: nn.Sequential(nn.Linear(hidden, mix_hidden), nn.ReLU(), nn.Linear(mix_hidden, 1)) for s in sources})
        if text_dim:
            if text_hidden > 0:
                self.text = nn.Sequential(nn.Linear(text_dim, text_hidden), nn.ReLU(), nn.Dropout(text_dropout), nn.Linear(text_hidden, hidden))
            else:
                self.text = nn.Sequential(nn.Dropout(text_dropout), nn.Linear(text_dim, hidden))
        self.shot_coef = nn.Parameter(torch.zeros(self.n_mod)) if shot_feature else None
        self.drop = nn.Dropout(dropout)
        self.scale = LearnedScale(init_scale)

    def _embed(self, x: dict) -> torch.Tensor:
        """(..., d_m) per modality -> (..., n_mod, hidden), unit rows."""
        return torch.stack([l2n(self.embed[m](self.drop(x[m]))) for m in self.modalities], -2)

    def _mix_logits(self, e: torch.Tensor) -> torch.Tensor:
        """(..., n_mod, hidden) -> (..., n_mod)."""
        return torch.cat([self.mix[m](e[..., j, :]) for j, m in enumerate(self.modalities)], -1)

    def _query_mix(self, q: dict, qmask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised query features -> (mixed embedding (..., h), beta (..., n_mod))."""
        eq = self._embed(q)  # (..., n, h)
        beta = masked_softmax(self._mix_logits(eq), qmask)
        return (beta.unsqueeze(-1) * eq).sum(-2), beta

    def _class_mix(self, s: dict, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised support features -> (mixed prototypes (E, N, h), alpha (E, N, n_src), src_mask)."""
        smask = batch.support_mask
        # support: per-modality prototypes in the common space
        es = self._embed(s)  # (E, N, K, n, h)
        w = smask.to(es.dtype)  # (E, N, K, n)
        cnt = w.sum(2)  # (E, N, n)
        protos = (w.unsqueeze(-1) * es).sum(2) / cnt.clamp_min(1.0).unsqueeze(-1)  # (E, N, n, h)
        a = self._mix_logits(protos)
        if self.shot_coef is not None:
            a = a + self.shot_coef * cnt.clamp_min(1.0).log()
        src_mask = cnt > 0
        if self.text_dim is not None:
            pt = l2n(self.text(l2n(batch.class_text)))  # (E, N, h)
            protos = torch.cat([protos, pt.unsqueeze(-2)], -2)
            a = torch.cat([a, self.mix["class_text"](pt)], -1)
            src_mask = torch.cat([src_mask, torch.ones_like(src_mask[..., :1])], -1)
        alpha = masked_softmax(a, src_mask)  # (E, N, n_src)
        mixed = (alpha.unsqueeze(-1) * protos).sum(-2)  # (E, N, h)
        return mixed, alpha, src_mask

    def item_embedding(self, x, mask):
        """Query-side embedding (..., hidden): the item's modalities mixed by ``beta``."""
        return self._query_mix(normalised_side(x, mask, self.modalities), mask)[0]

    def class_embedding(self, batch):
        """The mixed class prototypes (E, N, hidden) (class text included when used)."""
        return self._class_mix(normalised_side(batch.support, batch.support_mask, self.modalities), batch)[0]

    def metric_scale(self):
        return self.scale()

    def _forward(self, batch):
        s, q = normalised_inputs(batch, self.modalities)
        # query: mix its own modalities
        zq, beta = self._query_mix(q, batch.query_mask)
        mixed, alpha, src_mask = self._class_mix(s, batch)
        logits = -self.scale() * sq_dist(zq, mixed)
        if self.text_dim is None:
            has = src_mask.any(-1).unsqueeze(1)  # (E, 1, N): padding-only classes
            return torch.where(has, logits, torch.full_like(logits, UNAVAILABLE_LOGIT)), beta
        c_star = logits.argmax(-1)  # (E, M)
        a_text = torch.gather(alpha[..., -1], 1, c_star)  # (E, M)
        weights = torch.cat([(1.0 - a_text).unsqueeze(-1) * beta, a_text.unsqueeze(-1)], -1)
        return logits, weights
