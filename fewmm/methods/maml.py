"""MAML, ANIL and Meta-SGD as few-shot methods of the harness: a head meta-trained on base
classes, adapted by gradient steps on each episode's support set.

* ``maml``: Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
  Networks", ICML 2017 (second order; ``first_order=True`` for first-order MAML, section 5.2);
* ``anil``: Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse?", ICLR 2020
  (only the last layer adapts in the inner loop);
* ``metasgd``: Li, Zhou, Chen & Li, "Meta-SGD", arXiv:1707.09835, 2017 (learned per-parameter
  inner learning rates).

The inner loop is :class:`fewmm.meta.MAML`, the outer loop the engine's fit loop (through
:func:`fewmm.meta.meta_train`); see
:mod:`fewmm.methods.meta_base` for the base-class protocol.
"""

from __future__ import annotations

import torch

from .meta_base import MetaTrainedMethod, check_positive_float, check_positive_int, mlp


class MAMLMethod(MetaTrainedMethod):
    """A head meta-trained with the MAML family, adapted per episode.

    Parameters
    ----------
    variant : {"maml", "anil", "metasgd"}, default "maml"
    inner_lr : float, default 0.5
        Inner-loop step size (Meta-SGD: the initial per-parameter rate).
    inner_steps : int, default 5
        Gradient steps on the support set, in meta-training and per episode.
    first_order : bool, default False
        First-order meta-gradient (Finn et al. 2017, section 5.2).
    hidden, n_way, n_shot, n_query, meta_batch, steps, outer_lr, seed
        See :class:`fewmm.methods.meta_base.MetaTrainedMethod`.

    Notes
    -----
    With ``C`` support classes the logits are the first ``C`` outputs of the head (so ``C`` must
    not exceed ``n_way`` after :meth:`fit_base`; a ``FeatureError`` says so). Output ``j`` is
    adapted from the meta-learned row ``j``, so the probabilities depend on which class is
    ``classes_[j]`` (sorted labels): renaming classes can change them (measured: by up to 2.7e-02 on the
    contract's synthetic data), never which column belongs to which class
    (:attr:`class_order_dependent`).
    """

    name = "maml"

    #: read by :func:`fewmm.testing.check_method_classes_order` (the renamed-classes part only)
    class_order_dependent = (
        "output unit j of the head starts every episode from a meta-learned row (Finn et al. 2017; Meta-SGD also "
        "learns per-row inner rates), so the class encoded as j (classes_[j], by sorted label) changes the adapted "
        "probabilities; the columns still follow classes_. Removing this (zero- or prototype-initialised last layer, "
        "Kao et al. 2022 / Triantafillou et al. 2020) changes meta-training and results/meta-omniglot.json, and does "
        "not apply to Meta-SGD's per-row rates as is")

    def __init__(self, variant="maml", inner_lr=0.5, inner_steps=5, first_order=False, hidden=256, n_way=5, n_shot=1,
                 n_query=10, meta_batch=8, steps=100, outer_lr=1e-3, seed=0):
        self.variant = variant
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        super().__init__(hidden=hidden, n_way=n_way, n_shot=n_shot, n_query=n_query, meta_batch=meta_batch,
                         steps=steps, outer_lr=outer_lr, seed=seed)

    def check_params(self) -> None:
        """Raise ValueError naming a bad hyper-parameter (also those of the base class)."""
        super().check_params()
        if self.variant not in ("maml", "anil", "metasgd"):
            raise ValueError(f"variant must be 'maml', 'anil' or 'metasgd', got {self.variant!r}")
        if self.variant == "anil" and not self.hidden:
            raise ValueError("variant='anil' needs hidden >= 1 (a body to reuse); with hidden=0 ANIL is MAML")
        check_positive_float(self.inner_lr, "inner_lr")
        check_positive_int(self.inner_steps, "inner_steps")
        if not isinstance(self.first_order, bool):
            raise ValueError(f"first_order must be True or False, got {self.first_order!r}")

    def _build(self, dim, n_out):
        from ..meta import MAML

        return MAML(mlp(dim, int(self.hidden), n_out, int(self.seed)), inner_lr=float(self.inner_lr),
                    inner_steps=int(self.inner_steps), first_order=self.first_order, variant=self.variant, feature_norm=None)

    def _meta_train(self, model, features, labels):
        from ..meta import meta_train

        return meta_train(model, features, labels, n_way=int(self.n_way), n_shot=int(self.n_shot), n_query=int(self.n_query),
                          meta_batch=int(self.meta_batch), steps=int(self.steps), outer_lr=float(self.outer_lr),
                          seed=int(self.seed))

    def _max_classes(self, model):
        return model.n_way()  # the head's last layer is an nn.Linear (mlp)

    def _score(self, model, support, query):
        from ..meta import MAMLClassifier

        return MAMLClassifier(model).episode_logits(support, query)

    def _score_unbalanced(self, model, x, y, n, q):
        params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=False)
        with torch.no_grad():
            return model.predict_logits(params, q.unsqueeze(0))[0, :, :n].to(torch.float32)
