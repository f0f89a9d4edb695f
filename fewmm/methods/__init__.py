"""Few-shot methods on frozen features, one file each, one contract (see :mod:`.base`).

>>> import fewmm.methods as M
>>> M.list_methods()
['knn', 'linear-probe', 'protonet', 'protonet-cosine', 'simpleshot']
>>> m = M.create("protonet")
"""

from __future__ import annotations

from ..registry import Registry
from .base import FewShotMethod
from .knn import KNN
from .linear_probe import LinearProbe
from .protonet import ProtoNet
from .simpleshot import SimpleShot

METHODS: Registry[FewShotMethod] = Registry("method")
METHODS.register("protonet", "ProtoNet, squared euclidean (Snell et al. 2017)")(lambda **kw: ProtoNet(metric="euclidean", **kw))
METHODS.register("protonet-cosine", "ProtoNet, cosine similarity")(lambda **kw: ProtoNet(metric="cosine", **kw))
METHODS.register("simpleshot", "SimpleShot CL2N + nearest mean (Wang et al. 2019)")(SimpleShot)
METHODS.register("linear-probe", "logistic regression on L2-normalised features (scikit-learn)")(LinearProbe)
METHODS.register("knn", "k-nearest neighbours, cosine (k=1 default)")(KNN)


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


__all__ = ["FewShotMethod", "ProtoNet", "SimpleShot", "KNN", "LinearProbe", "create", "list_methods", "METHODS"]
