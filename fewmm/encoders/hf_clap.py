"""``hf-clap-audio`` / ``hf-clap-text``: CLAP towers through ``transformers.ClapModel``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._hf import HFEncoder, text_max_length
from ._util import audio_at

DEFAULT_CLAP = "laion/clap-htsat-unfused"


@register("hf-clap-audio", help="CLAP audio tower (transformers ClapModel; hub id or local folder)")
class HFCLAPAudioEncoder(HFEncoder):
    """CLAP audio embeddings (Wu et al. 2023, "Large-scale Contrastive Language-Audio Pretraining
    with Feature Fusion and Keyword-to-Caption Augmentation"; LAION-CLAP) through
    ``transformers.ClapModel.get_audio_features``.

    Preprocessing: the clip is resampled to the feature extractor's rate (48 kHz for LAION
    checkpoints); a clip longer than the extractor's window (``max_length_s``, 10 s) is
    centre-cropped to it; the checkpoint's ``ClapFeatureExtractor`` then pads it (``repeatpad``:
    repeat, then zero-pad) and computes its log-mel spectrogram (64 bands, 10 ms hop at 48 kHz).
    Truncation mode: ``"rand_trunc"`` for models without fusion, ``"fusion"`` for fused ones; since
    no clip exceeds the window after the crop, neither random crop ever happens, and ``is_longer``
    is set to False for every clip (the extractor would otherwise mark a random item of the batch
    as longer): the output is deterministic and independent of the batch size.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 16
    model : str or path-like, default "laion/clap-htsat-unfused"
        Hub id, or a local folder holding the model and its feature-extractor files, e.g.
        ``create("hf-clap-audio", model="/path/to/folder")``.
    revision, offline, normalize
        See :class:`fewmm.encoders._hf.HFEncoder`.

    Notes
    -----
    Output: float32 of shape (n, projection_dim) (512 for LAION CLAP), L2-normalised (the model
    normalises ``get_audio_features`` itself). ``weights_id``: sha256 of the weights file, or
    ``"hub:<id>@<commit>"``.

    Raises
    ------
    EncoderError
        See :class:`~fewmm.encoders._hf.HFEncoder`.
    """

    name = "hf-clap-audio"
    modality = "audio"
    dim = 512
    model_class = "ClapModel"
    default_model = DEFAULT_CLAP

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 16,
        model: str | os.PathLike | None = None,
        revision: str | None = None,
        offline: bool | None = None,
        normalize: bool = True,
    ):
        super().__init__(device, batch_size, model=model, revision=revision, offline=offline, normalize=normalize)
        fe = self.features
        cfg = self.model.config
        self.fusion = bool(getattr(cfg, "enable_fusion", False) or getattr(cfg.audio_config, "enable_fusion", False))
        self.truncation = "fusion" if self.fusion else "rand_trunc"
        self.sample_rate = int(fe.sampling_rate)
        self.max_samples = int(fe.nb_max_samples)
        self.preprocess_id = (
            f"sr={self.sample_rate},center_crop={self.max_samples / self.sample_rate:g}s,pad={fe.padding},"
            f"truncation={self.truncation},n_mels={fe.feature_size},hop={fe.hop_length},l2={self.normalize}"
        )

    def _load_processor(self, folder: Path) -> None:
        from transformers import ClapFeatureExtractor

        self.features = ClapFeatureExtractor.from_pretrained(str(folder), local_files_only=True)

    def _prepare(self, payload: Any) -> np.ndarray:
        wave = audio_at(payload, self.sample_rate)
        if len(wave) > self.max_samples:
            start = (len(wave) - self.max_samples) // 2
            wave = wave[start : start + self.max_samples]
        feats = self.features(
            wave,
            sampling_rate=self.sample_rate,
            truncation=self.truncation,
            padding=self.features.padding,
            return_tensors="np",
        )["input_features"][0]  # (channels, frames, n_mels); channels = 4 with fusion else 1
        return np.asarray(feats, dtype=np.float32)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        is_longer = torch.zeros((len(batch), 1), dtype=torch.bool, device=self.device)
        out = self.model.get_audio_features(input_features=x, is_longer=is_longer)
        return self._finish(self._pooled(out))


@register("hf-clap-text", help="CLAP text tower (transformers ClapModel; hub id or local folder)")
class HFCLAPTextEncoder(HFEncoder):
    """CLAP text embeddings (Wu et al. 2023, LAION-CLAP) through ``transformers.ClapModel.get_text_features``.

    Texts are tokenised with the checkpoint's tokenizer (RoBERTa BPE for LAION checkpoints),
    truncated to ``max_length`` tokens, padded to the longest in the batch (with an attention
    mask); the embedding is the projected first-token state.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 64
    model : str or path-like, default "laion/clap-htsat-unfused"
        Hub id, or a local folder with the model and tokenizer files.
    max_length : int, optional
        Tokens per text (default: the smaller of the tokenizer's limit and the model's positions,
        512 for LAION CLAP).
    revision, offline, normalize
        See :class:`fewmm.encoders._hf.HFEncoder`.

    Notes
    -----
    Input payloads are ``str``. Output: float32 of shape (n, projection_dim), L2-normalised.

    Raises
    ------
    EncoderError
        See :class:`~fewmm.encoders._hf.HFEncoder`; also a ``max_length`` out of range.
    """

    name = "hf-clap-text"
    modality = "text"
    dim = 512
    model_class = "ClapModel"
    default_model = DEFAULT_CLAP

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
        tc = self.model.config.text_config
        # RoBERTa-style positions start after the padding index
        positions = int(tc.max_position_embeddings) - int(getattr(tc, "pad_token_id", 1) or 0) - 1
        if positions < 1:
            raise EncoderError(f"{self.name}: model has no room for text ({tc.max_position_embeddings} positions)")
        self.max_length = text_max_length(self.tokenizer, positions, max_length)
        self.preprocess_id = f"clap_tokenizer,max_length={self.max_length},l2={self.normalize}"

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
