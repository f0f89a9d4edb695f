"""The frozen-encoder contract.

An encoder turns payloads of one modality into feature vectors::

    enc = fewmm.encoders.create("efficientnet-lite2")
    feats = enc.embed(table.modalities["image"])   # torch.Tensor (n, enc.dim), float32, CPU

Subclasses implement :meth:`Encoder._prepare` (one payload -> model input, on CPU, numpy) and
:meth:`Encoder._forward` (a list of prepared inputs -> ``torch.Tensor (b, dim)``). The base class
does batching, ``torch.inference_mode``, the progress bar, and names the item on a read error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError, EncoderError
from ..util import file_sha256  # noqa: F401  (re-exported: fewmm.encoders.file_sha256)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available else CPU; ``"cuda"`` without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError("device='cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return dev


class Encoder(ABC):
    """A frozen, deterministic feature extractor for one modality.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"efficientnet-lite2"``.
    modality : {"image", "audio", "text"}
    dim : int
        Feature dimension.
    weights_id : str
        Identifies the exact weights: sha256 of the weights file, or hub id + revision, or
        ``"none"`` for parameter-free encoders.
    preprocess_id : str
        Describes the preprocessing (resolution, sample rate, ...); part of the cache key.
    device : torch.device
    batch_size : int
    """

    name: str = ""
    modality: str = ""
    dim: int = 0
    weights_id: str = "none"
    preprocess_id: str = ""

    def __init__(self, device: str | torch.device | None = "cpu", batch_size: int = 64):
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def _prepare(self, payload: Any) -> Any:
        """Read and preprocess one payload (numpy, CPU). Raise :class:`DataError` on bad input."""

    @abstractmethod
    def _forward(self, batch: list[Any]) -> torch.Tensor:
        """Embed a list of prepared inputs -> float tensor of shape (len(batch), dim)."""

    # -- shared -------------------------------------------------------------------------
    @property
    def cache_key(self) -> dict[str, str]:
        """What identifies this encoder's output: name, weights id, preprocessing."""
        return {"encoder": self.name, "weights_id": self.weights_id, "preprocess": self.preprocess_id}

    def embed(
        self,
        payloads: Sequence[Any],
        batch_size: int | None = None,
        progress: bool | None = None,
        desc: str | None = None,
        on_batch=None,
        progress_initial: int = 0,
    ) -> torch.Tensor:
        """Embed payloads.

        Parameters
        ----------
        payloads : sequence of payloads of this encoder's modality (see :mod:`fewmm.data.table`);
            ``None`` entries are not allowed (select present items first).
        batch_size : int, optional (default ``self.batch_size``)
        progress : bool, optional
            Show progress (a bar on a terminal, periodic plain lines otherwise, see
            :mod:`fewmm.progress`); default: when there are more than 4 batches.
        desc : str, optional
            Label of the progress display.
        on_batch : callable ``(start, features)``, optional
            Called after every batch with the index of its first payload and its features
            (tensor of shape (batch, dim), float32, CPU); :func:`fewmm.cache.embed_table` uses it
            to save finished chunks, so an interrupted extraction keeps what it encoded.
        progress_initial : int, default 0
            Items already encoded before this call (resumed extraction): the progress display
            counts from there, out of ``progress_initial + len(payloads)``.

        Returns
        -------
        torch.Tensor of shape (n, dim), float32, on CPU.

        Raises
        ------
        DataError
            A payload cannot be read or decoded; the message names the item.
        """
        from ..progress import progress_bar

        bs = batch_size if batch_size is not None else self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise ValueError(f"{self.name}: batch_size must be a positive int, got {bs!r}")
        bs = int(bs)
        n = len(payloads)
        out = torch.empty((n, self.dim), dtype=torch.float32)
        n_batches = (n + bs - 1) // bs
        show = (n_batches > 4) if progress is None else progress
        bar = progress_bar(total=n + progress_initial, initial=progress_initial, desc=desc or f"{self.name}", unit="item",
                           disable=not show, leave=False)
        starts = list(range(0, n, bs))
        # Read and decode batch i + 1 in a worker thread while the encoder runs batch i (decoding,
        # resampling and resizing release the GIL for most of their time): the pipeline's time
        # approaches the encoder's alone. Same prepared inputs in the same order, so the same
        # features; a read error of batch i + 1 is raised after batch i is finished and reported.
        with torch.inference_mode(), ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fewmm-{self.name}-read") as pool:
            nxt = pool.submit(self.prepare_batch, payloads[0:bs], 0) if starts else None
            for i, start in enumerate(starts):
                chunk_len = min(bs, n - start)
                prepared = nxt.result()  # re-raises the worker's DataError
                if i + 1 < len(starts):
                    s1 = starts[i + 1]
                    nxt = pool.submit(self.prepare_batch, payloads[s1 : s1 + bs], s1)
                emb = self._forward(prepared)
                if emb.shape != (chunk_len, self.dim):
                    nxt.cancel()
                    raise EncoderError(
                        f"{self.name}: forward returned shape {tuple(emb.shape)}, expected ({chunk_len}, {self.dim})"
                    )
                out[start : start + chunk_len] = emb.detach().float().cpu()
                if on_batch is not None:
                    on_batch(start, out[start : start + chunk_len])
                bar.update(chunk_len)
        bar.close()
        return out

    def prepare_batch(self, chunk: Sequence[Any], start: int) -> list[Any]:
        """Read and decode (``_prepare``) every payload of one batch, as :meth:`embed` does in its read-ahead thread;
        ``start`` is the index of its first payload, for the messages. Raises DataError naming the item."""
        prepared = []
        for j, p in enumerate(chunk):
            if p is None:
                raise DataError(f"{self.name}: item {start + j} has no {self.modality} payload (None)")
            try:
                prepared.append(self._prepare(p))
            except DataError:
                raise
            except Exception as e:  # decoding errors from PIL/soundfile/...
                raise DataError(
                    f"{self.name}: cannot read {self.modality} item {start + j} ({_describe(p)}): "
                    f"{type(e).__name__}: {e}"
                ) from e
        return prepared

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, dim={self.dim}, "
            f"weights_id={self.weights_id[:12]!r}, device={str(self.device)!r})"
        )


def _describe(payload: Any) -> str:
    if isinstance(payload, np.ndarray):
        return f"array shape={payload.shape} dtype={payload.dtype}"
    s = str(payload)
    return s if len(s) < 200 else s[:197] + "..."
