"""Backbones trained from scratch with episodes (the classic few-shot protocol), as opposed to the
frozen pretrained encoders of :mod:`fewmm.encoders`.

>>> import fewmm.backbones as B
>>> net = B.create("conv4")          # Conv-4, 64-d embeddings of 28x28 grey images
"""

from __future__ import annotations

from ..registry import Registry
from .conv4 import AudioConv4, Conv4

BACKBONES: Registry = Registry("backbone")
BACKBONES.register("conv4", "Conv-4 (4 x conv3x3-BN-ReLU-maxpool, 64 filters) on images")(Conv4)
BACKBONES.register("audio-conv4", "Conv-4 on log-mel spectrograms, global average pooled")(AudioConv4)


def create(name: str, **kwargs):
    """Build the backbone registered as ``name`` (``conv4``, ``audio-conv4``).

    Raises
    ------
    UnknownNameError
        Unknown name (the message lists the known ones).
    """
    return BACKBONES.get(name)(**kwargs)


def list_backbones() -> list[str]:
    return BACKBONES.names()


__all__ = ["Conv4", "AudioConv4", "create", "list_backbones"]
