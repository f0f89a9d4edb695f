"""Frozen encoders: a string registry of feature extractors for image, audio and text.

>>> import fewmm.encoders as E
>>> E.list_encoders()                       # doctest: +SKIP
>>> enc = E.create("minilm-l6", device="cpu")   # doctest: +SKIP
>>> enc.embed(["hello world"]).shape        # doctest: +SKIP
torch.Size([1, 384])
"""

from __future__ import annotations

from ..registry import Registry
from .base import Encoder, file_sha256, resolve_device

ENCODERS: Registry[Encoder] = Registry("encoder", entry_point_group="fewmm.encoders")
register = ENCODERS.register


def create(name: str, device: str = "cpu", **kwargs) -> Encoder:
    """Build the encoder registered as ``name`` on ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``).

    Raises
    ------
    fewmm.errors.UnknownNameError
        ``name`` is not registered (the message lists the known names).
    fewmm.errors.EncoderError
        The weights cannot be found or loaded.
    """
    _import_builtin()
    return ENCODERS.get(name)(device=device, **kwargs)


def list_encoders(modality: str | None = None) -> list[str]:
    """Registered encoder names, optionally only those of one modality."""
    _import_builtin()
    names = ENCODERS.names()
    if modality is None:
        return names
    return [n for n in names if getattr(ENCODERS.get(n), "modality", None) == modality]


_BUILTIN_MODULES = (
    "pixels", "logmel", "efficientnet", "minilm", "whisper", "birdnet", "openclip", "hf_clip", "hf_clap",
)  # encoder modules, imported on first use
_imported = False


def _import_builtin() -> None:
    global _imported
    if _imported:
        return
    import importlib

    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    _imported = True


__all__ = ["Encoder", "create", "list_encoders", "register", "file_sha256", "resolve_device", "ENCODERS"]
