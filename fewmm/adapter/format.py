"""The saved-adapter format (names, version), the default encoders, and :class:`AdapterError`."""

from __future__ import annotations

from ..errors import FewmmError

#: Name and version of the saved format; :meth:`Adapter.load` refuses newer versions.
FORMAT = "fewmm-adapter"
FORMAT_VERSION = 1
CONFIG_NAME = "adapter.json"
TENSORS_NAME = "adapter.safetensors"

#: Encoders used for a modality when ``encoders`` does not name one (all run offline here).
DEFAULT_ENCODERS = {"image": "efficientnet-lite2", "audio": "whisper-tiny-en", "text": "minilm-l6"}


class AdapterError(FewmmError, ValueError):
    """A saved adapter cannot be used: missing or damaged files, a newer format, other encoder
    weights than the ones installed; or an adapter used before ``fit``."""


def encoder_spec(spec) -> tuple[str, dict]:
    """An encoder given as ``"name"`` or ``{"name": ..., **options}`` -> ``(name, options)``;
    ValueError otherwise."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        kw = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], kw
    raise ValueError(f"an encoder is given by its name or {{'name': ..., **options}}, got {spec!r}")
