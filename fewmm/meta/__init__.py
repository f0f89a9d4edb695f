"""Meta-learning on frozen features: the MAML family, batched over tasks.

Usage::

    from fewmm.meta import MAML, MAMLClassifier, meta_train
    maml = MAML(head, inner_lr=0.5, inner_steps=5, first_order=False, variant="maml")
    loss, acc = maml.meta_loss(support_x, support_y, query_x, query_y)   # (T, S, d) ...
    meta_train(maml, base_features, base_labels, n_way=5, n_shot=1, n_query=15, steps=100)
    clf = MAMLClassifier(maml)          # the common fit / predict_proba contract

See :mod:`fewmm.meta.maml` for the two exact implementations ("gram" and "functional").
"""

from .maml import MAML, MAMLClassifier
from .train import episode_tensors, meta_train

__all__ = ["MAML", "MAMLClassifier", "meta_train", "episode_tensors"]
