"""Few-shot methods on frozen features, one file each, one contract (see :mod:`.base`).

>>> import fewmm.methods as M
>>> M.list_methods()
['anil', 'clip-adapter', 'cross-modal-lp', 'knn', 'linear-probe', 'lp++', 'mahalanobis-text', 'maml', 'metasgd', 'protonet', 'protonet-cosine', 'protonet-head', 'simpleshot', 'tip-adapter', 'tip-adapter-f', 'zero-shot', 'zs-lp']
>>> m = M.create("protonet")

Methods that use class text in a joint item-text space (``zero-shot``, ``tip-adapter``,
``tip-adapter-f``, ``clip-adapter``, ``cross-modal-lp``, ``lp++``, ``zs-lp``) take it as the
constructor argument ``class_text={label: embedding}`` (see :mod:`fewmm.methods.text`) and are
listed by :func:`text_methods`; run them on tasks with class text through
``python -m fewmm.bench.transfer``.

``mahalanobis-text`` also takes ``class_text`` (so :func:`text_methods` lists it) but scores
two feature blocks, ``[raw item features | joint-space features]`` with ``joint_dim`` = the
joint width, after ``fit_base(base_features, base_labels)`` on base-class items: it is listed
by :func:`joint_block_methods` too, and the harnesses (``python -m fewmm.bench``,
``python -m fewmm.bench.transfer``) build it so (:func:`fewmm.bench.transfer.joint_block_factory`).
Built bare (``create("mahalanobis-text")``: ``joint_dim=0``, no ``fit_base``) it is plain
prototypes of unit item features, as its docstring says.
"""

from __future__ import annotations

from ..registry import Registry
from .base import FewShotMethod
from .knn import KNN
from .linear_probe import LinearProbe
from .maml import MAMLMethod
from .meta_base import MetaTrainedMethod
from .protonet import ProtoNet
from .protonet_head import ProtoNetHead
from .simpleshot import SimpleShot
from .clip_adapter import CLIPAdapter
from .cross_modal_lp import CrossModalLinearProbe
from .lp_plus_plus import LPPlusPlus
from .mahalanobis_text import MahalanobisTextPrior
from .mahalanobis_text import register_into as _register_mahalanobis_text
from .text import TextMethod
from .tip_adapter import TipAdapter
from .tip_adapter_f import TipAdapterF
from .zero_shot import ZeroShot
from .zs_lp import ZSLinearProbe

METHODS: Registry[FewShotMethod] = Registry("method", entry_point_group="fewmm.methods")
#: Decorator registering your own method class or factory: ``@fewmm.methods.register("name", "help")``
#: (see README, "Add a method"). Installed packages can use the ``fewmm.methods`` entry-point group.
register = METHODS.register
METHODS.register("protonet", "ProtoNet, squared euclidean (Snell et al. 2017)")(lambda **kw: ProtoNet(metric="euclidean", **kw))
METHODS.register("protonet-cosine", "ProtoNet, cosine similarity")(lambda **kw: ProtoNet(metric="cosine", **kw))
METHODS.register("simpleshot", "SimpleShot CL2N + nearest mean (Wang et al. 2019)")(SimpleShot)
METHODS.register("linear-probe", "logistic regression on L2-normalised features (scikit-learn)")(LinearProbe)
METHODS.register("knn", "k-nearest neighbours, cosine (k=1 default)")(KNN)


def _variant(v: str):
    def factory(**kw) -> MAMLMethod:
        return MAMLMethod(**{"variant": v, **kw})

    factory.needs_base_labels = True  # read by meta_trained_methods without building the method
    return factory


METHODS.register("maml", "MAML head meta-trained on base classes, adapted per episode (Finn et al. 2017); needs a base split")(_variant("maml"))
METHODS.register("anil", "ANIL: MAML adapting the last layer only (Raghu et al. 2020); needs a base split")(_variant("anil"))
METHODS.register("metasgd", "Meta-SGD: MAML with learned inner learning rates (Li et al. 2017); needs a base split")(_variant("metasgd"))
METHODS.register("protonet-head", "MLP embedding trained with ProtoNet episodes on base classes (Snell et al. 2017); needs a base split")(ProtoNetHead)
METHODS.register("zero-shot", "class-text prototypes, cosine (Radford et al. 2021, CLIP); needs class_text")(ZeroShot)
METHODS.register("tip-adapter", "support cache + zero-shot logits, training-free (Zhang et al. 2022); needs class_text")(TipAdapter)
METHODS.register("tip-adapter-f", "Tip-Adapter with fine-tuned cache keys, fixed epochs (Zhang et al. 2022); needs class_text")(TipAdapterF)
METHODS.register("clip-adapter", "residual bottleneck MLP adapter (Gao et al. 2021); needs class_text")(CLIPAdapter)
METHODS.register("cross-modal-lp", "linear probe with class text as extra samples (Lin et al. CVPR 2023); needs class_text")(CrossModalLinearProbe)
METHODS.register("lp++", "class-wise blend of item weights and text (Huang et al. CVPR 2024); needs class_text")(LPPlusPlus)
METHODS.register("zs-lp", "linear probe initialised with the zero-shot classifier (Silva-Rodriguez et al. CVPR 2024); needs class_text")(ZSLinearProbe)
_register_mahalanobis_text(METHODS)


def create(name: str, **kwargs) -> FewShotMethod:
    """Build the method registered as ``name`` with hyper-parameters ``kwargs``.

    Returns
    -------
    FewShotMethod: an unfitted scikit-learn classifier.

    Raises
    ------
    UnknownNameError
        Unknown ``name`` (the message lists close matches).
    ValueError
        A bad hyper-parameter value (:meth:`FewShotMethod.check_params`); TypeError for an
        unknown hyper-parameter name.
    """
    m = METHODS.get(name)(**kwargs)
    m.check_params()
    return m


def list_methods() -> list[str]:
    return METHODS.names()


def meta_trained_methods() -> list[str]:
    """Registered methods meta-trained on labelled base classes (``needs_base_labels``), sorted:
    the harness gives them a base split (see :mod:`fewmm.methods.meta_base`)."""
    return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_base_labels", False)]


def text_methods() -> list[str]:
    """Registered methods that need ``class_text`` (a joint item-text space), sorted."""
    return [n for n in METHODS.names() if getattr(METHODS.get(n), "uses_class_text", False)]


def joint_block_methods() -> list[str]:
    """Registered methods that score ``[raw item features | joint-space features]``
    (``needs_joint_block``: ``joint_dim`` set to the joint width and ``fit_base(base_features,
    base_labels)`` on base-class items before the episodes), sorted. A subset of
    :func:`text_methods`; build them with :func:`fewmm.bench.transfer.joint_block_factory`."""
    return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_joint_block", False)]


__all__ = ["FewShotMethod", "ProtoNet", "SimpleShot", "KNN", "LinearProbe", "TextMethod", "ZeroShot", "TipAdapter",
           "TipAdapterF", "CLIPAdapter", "CrossModalLinearProbe", "LPPlusPlus", "ZSLinearProbe", "MahalanobisTextPrior", "create", "list_methods",
           "text_methods", "joint_block_methods", "meta_trained_methods", "MAMLMethod", "ProtoNetHead", "MetaTrainedMethod", "register", "METHODS"]
