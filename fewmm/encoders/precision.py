"""Mixed precision for frozen encoders: the forward pass under :func:`torch.autocast` (bf16 / fp16).

>>> enc = with_precision(fewmm.encoders.create("efficientnet-lite2", device="cuda"), "bf16")  # doctest: +SKIP
>>> fewmm.cache.embed_table(table, enc)          # cached under a key with "precision": "bf16"  # doctest: +SKIP

Autocast runs matrix products and convolutions in the lower precision and keeps reductions and
normalisations in float32 (PyTorch's autocast op lists); the features come back as float32. The
cache key gains ``"precision"``, so bf16 / fp16 features never mix with float32 ones (a float32
encoder's key is unchanged: entries written before this option stay valid).

Tolerance against float32 (what ``tests/test_precision.py`` asserts, with the values it measured
beside the bounds): per item, the cosine similarity of the bf16 and float32 feature vectors, and
the relative error ``||f_bf16 - f_fp32|| / ||f_fp32||``. bf16 keeps 8 bits of mantissa (relative
rounding 2^-8 = 0.4%), so relative errors of about 1% per vector are expected; fp16 keeps 11 bits.
"""

from __future__ import annotations

import torch

from ..errors import EncoderError
from .base import Encoder

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def runs_in_torch(encoder: Encoder) -> bool:
    """True when the encoder's model is a :class:`torch.nn.Module` (autocast can act on it); the
    pixel / log-mel encoders and the ones running in CTranslate2 or LiteRT (Whisper, BirdNET) are
    not."""
    return isinstance(getattr(encoder, "model", None), torch.nn.Module)


class MixedPrecisionEncoder(Encoder):
    """An encoder whose forward pass runs under ``torch.autocast(device, dtype)``.

    Parameters
    ----------
    encoder : Encoder
        A torch encoder (see :func:`runs_in_torch`); its preprocessing (``_prepare``) is used as is.
    precision : {"bf16", "fp16"}

    Everything else (name, modality, dim, weights id, preprocessing id, device, batch size and any
    other attribute) is the wrapped encoder's; :meth:`embed` is the base class's, so features come
    back as float32 tensors of shape (n, dim) on CPU.
    """

    def __init__(self, encoder: Encoder, precision: str):
        if precision not in ("bf16", "fp16"):
            raise ValueError(f"precision must be 'bf16' or 'fp16' for a mixed-precision encoder, got {precision!r}")
        if not runs_in_torch(encoder):
            raise EncoderError(f"encoder {encoder.name!r} does not run a torch model, so autocast cannot change its "
                               f"precision; use precision fp32 with it (bf16/fp16 work with the torch encoders)")
        self.inner = encoder
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.name, self.modality, self.dim = encoder.name, encoder.modality, encoder.dim
        self.weights_id, self.preprocess_id = encoder.weights_id, encoder.preprocess_id
        self.device, self.batch_size = encoder.device, encoder.batch_size

    @property
    def cache_key(self) -> dict[str, str]:
        """The wrapped encoder's key plus ``"precision"``."""
        return {**self.inner.cache_key, "precision": self.precision}

    def _prepare(self, payload):  # the Encoder contract's hook, delegated
        return self.inner._prepare(payload)

    def _forward(self, batch) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            out = self.inner._forward(batch)
        return out.float()

    def __getattr__(self, name):  # model, tokenizer, ... of the wrapped encoder
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"MixedPrecisionEncoder({self.inner!r}, precision={self.precision!r})"


def with_precision(encoder: Encoder, precision: str = "fp32") -> Encoder:
    """``encoder`` itself for ``"fp32"``, else a :class:`MixedPrecisionEncoder` around it.

    Raises
    ------
    ValueError
        ``precision`` is not fp32, bf16 or fp16.
    fewmm.errors.EncoderError
        bf16/fp16 asked of an encoder that does not run in torch.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return encoder if precision == "fp32" else MixedPrecisionEncoder(encoder, precision)
