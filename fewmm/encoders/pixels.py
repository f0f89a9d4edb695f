"""``pixels``: the raw-pixel baseline for images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import to_pil_gray
from .base import Encoder


@register("pixels", help="raw grayscale pixels, resized to size x size (bilinear), in [0, 1]")
class PixelsEncoder(Encoder):
    """Raw pixels: grayscale, resized, flattened, scaled to [0, 1].

    The classic nearest-neighbour baseline of few-shot image classification (e.g. the "pixels"
    rows of Lake et al. 2015, Omniglot). No weights.

    Parameters
    ----------
    device : str, default "cpu"
        Ignored beyond validation (no model); the output is on CPU.
    batch_size : int, default 256
    size : int, default 28
        Output side in pixels; images are resized to (size, size) with PIL bilinear
        interpolation (no crop: the aspect ratio is not kept).

    Notes
    -----
    Colour images are converted with PIL's ``convert("L")`` (ITU-R 601-2 luma). The embedding
    is ``(size * size,)`` float32 in [0, 1], row-major (row 0 first). ``dim = size ** 2``.
    """

    name = "pixels"
    modality = "image"
    dim = 28 * 28  # default size; set per instance
    weights_id = "none"

    def __init__(self, device: str | torch.device | None = "cpu", batch_size: int = 256, size: int = 28):
        super().__init__(device=device, batch_size=batch_size)
        if int(size) < 1:
            raise EncoderError(f"pixels: size must be a positive number of pixels, got {size}")
        self.size = int(size)
        self.dim = self.size * self.size
        self.preprocess_id = f"gray,resize={self.size}x{self.size},bilinear,scale=1/255"

    def _prepare(self, payload: Any) -> np.ndarray:
        from PIL import Image

        img = to_pil_gray(payload)
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), resample=Image.BILINEAR)
        return np.asarray(img, dtype=np.float32).reshape(-1) / np.float32(255.0)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(batch).astype(np.float32, copy=False))
