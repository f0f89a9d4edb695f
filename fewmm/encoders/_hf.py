"""Shared loading code of the transformers-backed encoders (``hf-clip-*``, ``hf-clap-*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import EncoderError
from ._util import l2_normalize, quiet_transformers, resolve_hf_model
from .base import Encoder


class HFEncoder(Encoder):
    """Base of encoders that load a transformers model from a hub id or a local folder.

    Subclasses set ``model_class`` (name of a ``transformers`` class) and ``default_model``, and
    load their processor in :meth:`_load_processor`.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int
    model : str or path-like
        Hub id (e.g. ``"openai/clip-vit-base-patch32"``) or a local folder written by
        ``save_pretrained`` holding the model and its processor files.
    revision : str, optional
        Hub branch, tag or commit (ignored for a folder).
    offline : bool, optional
        Never touch the network (default: when ``HF_HUB_OFFLINE`` is set).
    normalize : bool, default True
        L2-normalise the embeddings (the space CLIP/CLAP similarities are computed in).

    Raises
    ------
    EncoderError
        The folder has no weights, the hub id is unavailable (fails fast when offline, naming how
        to pass a local folder), or the model cannot be loaded.
    """

    model_class: str = ""
    default_model: str = ""

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 32,
        model: str | os.PathLike | None = None,
        revision: str | None = None,
        offline: bool | None = None,
        normalize: bool = True,
    ):
        super().__init__(device=device, batch_size=batch_size)
        import transformers

        self.model_ref = str(model or self.default_model)
        self.folder, self.weights_id = resolve_hf_model(self.model_ref, self.name, revision=revision, offline=offline)
        self.normalize = bool(normalize)
        try:
            with quiet_transformers():
                cls = getattr(transformers, self.model_class)
                self.model = cls.from_pretrained(str(self.folder), local_files_only=True)
                self._load_processor(self.folder)
        except EncoderError:
            raise
        except Exception as e:
            raise EncoderError(
                f"{self.name}: cannot load {self.model_class} from {self.folder}: {type(e).__name__}: {e}"
            ) from e
        self.model = self.model.eval().to(self.device)
        self.dim = int(self.model.config.projection_dim)

    def _load_processor(self, folder: Path) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.float()
        return (l2_normalize(emb) if self.normalize else emb).cpu()

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        """transformers 5 returns a model output from ``get_*_features``; 4.x returned the tensor."""
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_max_length(tokenizer: Any, max_positions: int, requested: int | None) -> int:
    """Tokens per text: ``requested`` or the smaller of the tokenizer's and the model's limits."""
    limit = int(max_positions)
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < limit:
        limit = tml
    if requested is None:
        return limit
    if not 1 <= int(requested) <= int(max_positions):
        raise EncoderError(f"max_length must be in [1, {max_positions}], got {requested}")
    return int(requested)
