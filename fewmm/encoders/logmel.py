"""``logmel-stats``: per-band mean and standard deviation of a log-mel spectrogram."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import audio_at
from .base import Encoder


@register("logmel-stats", help="log-mel spectrogram (16 kHz, 64 bands) -> per-band mean and std over time")
class LogMelStatsEncoder(Encoder):
    """Log-mel statistics: the hand-crafted audio baseline.

    The clip is resampled to ``sample_rate`` Hz, a power mel spectrogram is computed
    (Hann window of ``n_fft`` samples, hop ``hop_length`` samples, centred frames with reflect
    padding, Slaney mel scale and area normalisation, 0 Hz to ``sample_rate / 2``), floored at
    ``1e-6`` and log-compressed (natural log). The embedding is the mean of each band over
    time followed by the standard deviation of each band over time (population std, ddof=0).
    Mel frames and filters come from :mod:`transformers.audio_utils` (numpy).

    Parameters
    ----------
    device : str, default "cpu"
        Validated only; everything runs on CPU in numpy.
    batch_size : int, default 64
    sample_rate : int, default 16000
        Hz.
    n_mels : int, default 64
        Mel bands; ``dim = 2 * n_mels``.
    n_fft : int, default 400
        Window length in samples (25 ms at 16 kHz).
    hop_length : int, default 160
        Hop in samples (10 ms at 16 kHz).

    Notes
    -----
    Output: float32 of shape (n, 2 * n_mels): columns ``[0, n_mels)`` are band means, columns
    ``[n_mels, 2 n_mels)`` band standard deviations (log units). Clips shorter than ``n_fft``
    samples are zero-padded to ``n_fft`` first. A classic baseline for environmental sound
    classification (cf. Piczak 2015, ESC-50, which used MFCC/ZCR summary statistics).
    """

    name = "logmel-stats"
    modality = "audio"
    dim = 128
    weights_id = "none"

    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 400,
        hop_length: int = 160,
    ):
        super().__init__(device=device, batch_size=batch_size)
        from transformers.audio_utils import mel_filter_bank, window_function

        if min(sample_rate, n_mels, n_fft, hop_length) < 1:
            raise EncoderError("logmel-stats: sample_rate, n_mels, n_fft and hop_length must be positive")
        self.sample_rate, self.n_mels = int(sample_rate), int(n_mels)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.dim = 2 * self.n_mels
        self._mel = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=0.0,
            max_frequency=self.sample_rate / 2.0,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self._window = window_function(self.n_fft, "hann")
        self.preprocess_id = (
            f"sr={self.sample_rate},n_fft={self.n_fft},hop={self.hop_length},n_mels={self.n_mels},"
            "slaney,log(max(mel,1e-6)),stats=mean+std"
        )

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram of a waveform at ``self.sample_rate``.

        Parameters
        ----------
        waveform : numpy.ndarray of shape (n_samples,), float32

        Returns
        -------
        numpy.ndarray of shape (n_mels, n_frames), float32, ``n_frames = 1 + n_samples // hop_length``
        """
        from transformers.audio_utils import spectrogram

        x = np.asarray(waveform, dtype=np.float32)
        if len(x) < self.n_fft:
            x = np.pad(x, (0, self.n_fft - len(x)))
        return spectrogram(
            x,
            self._window,
            frame_length=self.n_fft,
            hop_length=self.hop_length,
            power=2.0,
            mel_filters=self._mel,
            log_mel="log",
            mel_floor=1e-6,
        ).astype(np.float32)

    def _prepare(self, payload: Any) -> np.ndarray:
        S = self.log_mel(audio_at(payload, self.sample_rate)).astype(np.float64)
        return np.concatenate([S.mean(axis=1), S.std(axis=1)]).astype(np.float32)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(batch))
