"""A ProtoNet-trained head (Snell, Swersky & Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017) on frozen features: a small embedding network trained with the
prototypical loss on episodes of the base classes, then ProtoNet (squared euclidean distance to
the support means in the embedding) on each novel-class episode. No inner loop: the episode's
support set only sets the prototypes. See :mod:`fewmm.methods.meta_base` for the base-class
protocol.
"""

from __future__ import annotations

import numpy as np
import torch

from .meta_base import MetaTrainedMethod, mlp


def _neg_sq_dist(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared euclidean distances from differences (not the ``|q|^2 + |p|^2 - 2 q.p``
    expansion, whose cancellation makes a query's logits depend on the batch it came in):
    (E, M, h), (E, N, h) -> (E, M, N)."""
    return -(query.unsqueeze(2) - protos.unsqueeze(1)).pow(2).sum(-1)


class ProtoNetHead(MetaTrainedMethod):
    """ProtoNet on the output of an MLP embedding meta-trained with prototypical episodes.

    Parameters
    ----------
    hidden : int, default 256
        Hidden width of the embedding ``Linear(d, hidden) -> ReLU -> Linear(hidden, out_dim)``.
    out_dim : int, default 128
        Embedding width.
    n_way, n_shot, n_query, meta_batch, steps, outer_lr, seed
        See :class:`fewmm.methods.meta_base.MetaTrainedMethod` (``n_way`` only shapes training
        episodes: any number of classes can be scored).
    """

    name = "protonet-head"

    def __init__(self, hidden=256, out_dim=128, n_way=5, n_shot=1, n_query=10, meta_batch=8, steps=100, outer_lr=1e-3,
                 seed=0):
        self.out_dim = out_dim
        super().__init__(hidden=hidden, n_way=n_way, n_shot=n_shot, n_query=n_query, meta_batch=meta_batch,
                         steps=steps, outer_lr=outer_lr, seed=seed)

    def check_params(self) -> None:
        """Raise ValueError naming a bad hyper-parameter (also those of the base class)."""
        super().check_params()
        from .meta_base import check_positive_int

        check_positive_int(self.out_dim, "out_dim")

    def _build(self, dim, n_out):
        return mlp(dim, int(self.hidden), int(self.out_dim), int(self.seed))

    def _meta_train(self, model, features, labels):
        """The engine's fit loop (:func:`fewmm.engine.fit`) with the ``protonet`` trainer on a
        :class:`fewmm.engine.TensorLearner`: Adam (``outer_lr``), ``steps`` updates of
        ``meta_batch`` episodes of the base classes from the seeded task stream, no validation
        (the last weights are kept)."""
        from ..engine import FitConfig, TensorLearner, create_trainer, fit

        learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")
        cfg = FitConfig(n_way=int(self.n_way), n_shot=int(self.n_shot), n_query=int(self.n_query),
                        episodes_per_step=int(self.meta_batch), steps=int(self.steps), lr=float(self.outer_lr), grad_clip=None,
                        validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=1.0)
        return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=False).history

    def _score(self, model, support, query):
        e, n, k, d = support.shape
        zs = model(support.reshape(-1, d)).reshape(e, n, k, -1)
        zq = model(query.reshape(-1, d)).reshape(e, query.shape[1], -1)
        return _neg_sq_dist(zq, zs.mean(dim=2))

    def _score_unbalanced(self, model, x, y, n, q):
        with torch.no_grad():
            z = model(x)
            protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=z.device).index_add_(0, y, z)
            protos = protos / torch.bincount(y, minlength=n).clamp_min(1).unsqueeze(1).to(z.dtype)
            return _neg_sq_dist(model(q).unsqueeze(0), protos.unsqueeze(0))[0]


__all__ = ["ProtoNetHead"]
