"""Fusion heads: small modules on frozen per-modality features that learn how much to trust
each modality, one file each, one contract (see :mod:`.base`).

>>> import fewmm.heads as H
>>> H.list_heads()
['am3', 'attention', 'avg-proto', 'concat', 'gmu', 'single:<modality>', 'temperature']
>>> head = H.create("gmu", features.dims, features.modalities, hidden=128)
>>> logits, weights = head(batch)                       # batch: MMBatch
>>> clf = H.HeadClassifier(head).fit(support, support.labels)
>>> clf.predict_proba(query), clf.explain(query)

Fixed (no training): ``avg-proto``, ``concat``, ``single:<modality>``. Trained episodically
(:func:`fewmm.train.train_head`): ``gmu``, ``attention``, ``am3``, ``temperature``.
"""

from __future__ import annotations

from ..registry import Registry
from .am3 import AM3Head
from .attention import AttentionHead
from .avg_proto import AvgProtoHead
from .base import UNAVAILABLE_LOGIT, FusionHead
from .classifier import HeadClassifier, align_features, evaluate_head, features_to
from .concat import ConcatHead
from .gmu import GMUHead
from .single import SingleModalityHead
from .temperature import TemperatureHead

HEADS: Registry[FusionHead] = Registry("head", entry_point_group="fewmm.heads")
#: Decorator registering your own head class ``factory(dims, modalities, **hyper_parameters)``;
#: installed packages can use the ``fewmm.heads`` entry-point group.
register = HEADS.register
HEADS.register("avg-proto", "average of per-modality ProtoNet probabilities (fixed)")(AvgProtoHead)
HEADS.register("concat", "ProtoNet on concatenated L2-normalised modality features (fixed)")(ConcatHead)
HEADS.register("single", "ProtoNet on one modality: 'single:<modality>' (fixed)")(SingleModalityHead)
HEADS.register("gmu", "gated multimodal unit + ProtoNet (Arevalo et al. 2017)")(GMUHead)
HEADS.register("attention", "masked attention over modality tokens + ProtoNet")(AttentionHead)
HEADS.register("am3", "adaptive prototype mixing with class text (Xing et al. 2019, AM3)")(AM3Head)
HEADS.register("temperature", "learned per-modality (optionally per-sample) temperature")(TemperatureHead)


def create(name: str, dims, modalities=None, seed: int | None = None, **kwargs) -> FusionHead:
    """Build the head registered as ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_heads`; ``"single:<modality>"`` builds the one-modality ProtoNet.
    dims : mapping of str to int, or MMFeatures
        Feature dims (``MMFeatures.dims``, which includes ``"class_text"`` when present). An
        MMFeatures gives both dims and modalities.
    modalities : sequence of str, optional
        Item modalities in ``MMFeatures.modalities`` order (required unless ``dims`` is an
        MMFeatures).
    seed : int, optional
        Seed of the parameter initialisation (drawn under ``torch.random.fork_rng``, leaving
        the global generator untouched); default: the global torch generator.
    **kwargs
        The head's hyper-parameters.

    Raises
    ------
    UnknownNameError
        Unknown name (the message lists the known ones).
    FeatureError
        Bad dims / modalities.
    """
    from ..multimodal import MMFeatures

    if isinstance(dims, MMFeatures):
        modalities = dims.modalities if modalities is None else modalities
        dims = dims.dims
    if modalities is None:
        raise ValueError("create(name, dims, modalities): modalities is required when dims is a mapping")
    if isinstance(name, str) and name.startswith("single:"):
        mod = name.split(":", 1)[1]
        if kwargs.get("modality", mod) != mod:
            raise ValueError(f"head {name!r} given modality={kwargs['modality']!r}")
        kwargs["modality"] = mod
        name = "single"
    factory = HEADS.get(name)
    if seed is None:
        return factory(dict(dims), tuple(modalities), **kwargs)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return factory(dict(dims), tuple(modalities), **kwargs)


def list_heads(modalities=None) -> list[str]:
    """Registered head names; with ``modalities``, ``single:<modality>`` is expanded for each."""
    names = [n for n in HEADS.names() if n != "single"]
    if modalities is None:
        names.append("single:<modality>")
    else:
        names += [f"single:{m}" for m in modalities]
    return sorted(names)


#: Heads with parameters, trained episodically by :func:`fewmm.train.train_head`.
TRAINED_HEADS = ("am3", "attention", "gmu", "temperature")

__all__ = [
    "FusionHead", "HeadClassifier", "evaluate_head", "align_features", "features_to", "create", "list_heads", "HEADS", "register",
    "TRAINED_HEADS", "UNAVAILABLE_LOGIT", "AvgProtoHead", "ConcatHead", "SingleModalityHead", "GMUHead", "AttentionHead",
    "AM3Head", "TemperatureHead",
]
