"""Helpers for task factories: encoders from names or instances, their records, and class text
embedded through the feature cache. Re-exported by :mod:`fewmm.tasks`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .task import TaskError


def resolve_encoder(spec: Any, modality: str, device: str = "cpu"):
    """An encoder from a registry name or an :class:`~fewmm.encoders.Encoder` object.

    Raises
    ------
    TaskError
        The encoder embeds another modality than ``modality``.
    fewmm.errors.UnknownNameError, fewmm.errors.EncoderError
        From :func:`fewmm.encoders.create`.
    """
    if isinstance(spec, str):
        from .. import encoders

        enc = encoders.create(spec, device=device)
    else:
        enc = spec
    if getattr(enc, "modality", None) != modality:
        raise TaskError(f"encoder {getattr(enc, 'name', enc)!r} embeds {getattr(enc, 'modality', '?')!r}, "
                        f"but a {modality!r} encoder is needed here")
    return enc


def encoder_record(enc) -> dict:
    """JSON-able identity of an encoder: name, weights id, preprocessing, dim."""
    return {**enc.cache_key, "dim": int(enc.dim)}


def embed_class_text(task_name: str, class_names: Sequence[str], texts: Sequence[Sequence[str]], encoder,
                     cache=None) -> tuple[torch.Tensor, dict]:
    """Embed class-level texts: the mean over each class's texts, L2-normalised.

    The texts go through :func:`fewmm.cache.embed_table` as an :class:`~fewmm.data.ItemTable`
    named ``"class-text/<task_name>"`` whose item ids are the texts themselves, so a changed
    template can never hit a stale cache entry.

    Parameters
    ----------
    task_name : str
    class_names : sequence of str, length C
    texts : sequence of length C of sequences of str
        ``texts[c]``: the texts of class c (e.g. one per template); all texts must be distinct.
    encoder : Encoder with modality "text"
    cache : as for :func:`fewmm.cache.embed_table`

    Returns
    -------
    class_text : torch.Tensor of shape (C, encoder.dim), float32, rows of unit L2 norm
    record : dict
        The encoder's identity and the texts per class.

    Raises
    ------
    TaskError
        A class has no text, texts repeat, or the encoder is not a text encoder.
    """
    from ..cache import embed_table
    from ..data.table import ItemTable

    if len(texts) != len(class_names) or any(len(t) == 0 for t in texts):
        raise TaskError(f"{task_name}: every one of the {len(class_names)} classes needs at least one text")
    flat = [t for ts in texts for t in ts]
    labels = [c for c, ts in enumerate(texts) for _ in ts]
    if len(set(flat)) != len(flat):
        raise TaskError(f"{task_name}: class texts must be distinct")
    enc = resolve_encoder(encoder, "text")
    table = ItemTable(name=f"class-text/{task_name}", ids=flat, labels=np.asarray(labels), class_names=list(class_names),
                      modalities={"text": list(flat)})
    fs = embed_table(table, enc, cache=cache, progress=False)
    lab = torch.as_tensor(np.asarray(labels))
    out = torch.zeros((len(class_names), enc.dim), dtype=torch.float32)
    out.index_add_(0, lab, fs.features.float())
    out /= torch.bincount(lab, minlength=len(class_names)).clamp_min(1)[:, None].float()
    out = torch.nn.functional.normalize(out, dim=1)
    return out, {"encoder": encoder_record(enc), "texts": {class_names[c]: list(t) for c, t in enumerate(texts)},
                 "pooling": "mean over the class's texts, then L2-normalised"}
