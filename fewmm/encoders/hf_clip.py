"""``hf-clip-image`` / ``hf-clip-text``: CLIP towers through ``transformers.CLIPModel``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import register
from ._hf import HFEncoder, text_max_length
from ._util import to_pil_rgb

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


@register("hf-clip-image", help="CLIP image tower (transformers CLIPModel; hub id or local folder)")
class HFCLIPImageEncoder(HFEncoder):
    """CLIP image embeddings (Radford et al. 2021, "Learning Transferable Visual Models From
    Natural Language Supervision") through ``transformers.CLIPModel.get_image_features``.

    Preprocessing is the checkpoint's own ``CLIPImageProcessor`` (from the folder): RGB (grayscale
    replicated), resize the shorter side to ``size`` pixels (bicubic), centre-crop, scale to [0, 1],
    normalise with the CLIP mean/std. Each image is processed on its own.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 32
    model : str or path-like, default "openai/clip-vit-base-patch32"
        Hub id, or a local folder holding the model and its image-processor files, e.g.
        ``create("hf-clip-image", model="/path/to/folder")``.
    revision, offline, normalize
        See :class:`fewmm.encoders._hf.HFEncoder` (embeddings L2-normalised by default).

    Notes
    -----
    Output: float32 of shape (n, projection_dim) (512 for ViT-B/32). ``weights_id`` is the sha256
    of the weights file (local folder) or ``"hub:<id>@<commit>"``. No CLIP weights ship in a PyPI
    package: offline, pass a folder.

    Raises
    ------
    EncoderError
        See :class:`~fewmm.encoders._hf.HFEncoder`.
    """

    name = "hf-clip-image"
    modality = "image"
    dim = 512
    model_class = "CLIPModel"
    default_model = DEFAULT_CLIP

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 32,
        model: str | os.PathLike | None = None,
        revision: str | None = None,
        offline: bool | None = None,
        normalize: bool = True,
    ):
        super().__init__(device, batch_size, model=model, revision=revision, offline=offline, normalize=normalize)
        ip = self.processor
        fields = ("size", "crop_size", "resample", "do_center_crop", "rescale_factor", "image_mean", "image_std")
        desc = ",".join(f"{k}={_compact(getattr(ip, k, None))}" for k in fields)
        self.preprocess_id = f"{type(ip).__name__}({desc}),l2={self.normalize}"

    def _load_processor(self, folder: Path) -> None:
        from transformers import AutoImageProcessor

        self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)

    def _prepare(self, payload: Any) -> np.ndarray:
        px = self.processor(images=to_pil_rgb(payload), return_tensors="pt")["pixel_values"][0]
        return px.numpy().astype(np.float32, copy=False)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        return self._finish(self._pooled(self.model.get_image_features(pixel_values=x)))


def _compact(v: Any) -> str:
    """Short stable text of a processor field (SizeDict -> its non-None entries)."""
    if hasattr(v, "__dict__") and not isinstance(v, (int, float, str)):
        v = {k: x for k, x in vars(v).items() if x is not None and not k.startswith("_")}
    elif isinstance(v, (list, tuple)):
        v = [round(x, 6) if isinstance(x, float) else x for x in v]
    return str(v).replace(" ", "")


@register("hf-clip-text", help="CLIP text tower (transformers CLIPModel; hub id or local folder)")
class HFCLIPTextEncoder(HFEncoder):
    """CLIP text embeddings (Radford et al. 2021) through ``transformers.CLIPModel.get_text_features``.

    Texts are tokenised with the checkpoint's tokenizer (from the folder), truncated to
    ``max_length`` tokens (default: the model's 77 positions), padded to the longest in the batch;
    CLIP pools the state at the end-of-text token under a causal mask, so padding does not change
    the result.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 64
    model : str or path-like, default "openai/clip-vit-base-patch32"
        Hub id, or a local folder with the model and tokenizer files.
    max_length : int, optional
        Tokens per text, at most the model's ``max_position_embeddings``.
    revision, offline, normalize
        See :class:`fewmm.encoders._hf.HFEncoder`.

    Notes
    -----
    Input payloads are ``str``. Output: float32 of shape (n, projection_dim).

    Raises
    ------
    EncoderError
        See :class:`~fewmm.encoders._hf.HFEncoder`; also a ``max_length`` out of range.
    """

    name = "hf-clip-text"
    modality = "text"
    dim = 512
    model_class = "CLIPModel"
    default_model = DEFAULT_CLIP

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
        model: str | os.PathLike | None = None,
        revision: str | None = None,
        offline: bool | None = None,
        normalize: bool = True,
        max_length: int | None = None,
    ):
        super().__init__(device, batch_size, model=model, revision=revision, offline=offline, normalize=normalize)
        self.max_length = text_max_length(
            self.tokenizer, self.model.config.text_config.max_position_embeddings, max_length
        )
        self.preprocess_id = f"clip_tokenizer,max_length={self.max_length},l2={self.normalize}"

    def _load_processor(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    def _prepare(self, payload: Any) -> str:
        from ..data.io import read_text

        return read_text(payload)

    def _forward(self, batch: list[str]) -> torch.Tensor:
        enc = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        out = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return self._finish(self._pooled(out))
