"""Your own manifest as a task for backbones trained from scratch (``python -m fewmm.bench.backbone
--task manifest:PATH``).

The manifest's few-shot splits (its ``split`` column, else the seeded class-disjoint split of
:func:`fewmm.data.manifest.class_splits`) become class x item tensors, as
:func:`fewmm.backbones.audio.audio_task` gives for FSDD and ESC-50:

* ``audio``: standardised log-mel spectrograms (40 bands, hop 20 ms, 16 kHz) of clips centred and
  cropped / zero-padded to ``seconds`` (default: the median clip length, rounded up to 0.5 s, at
  most 10 s), for the ``audio-conv4`` backbone;
* ``image``: 28 x 28 grayscale uint8 images (PIL bilinear resize, as the ``pixels`` encoder), for
  ``conv4``.

Rows lacking the modality are left out. Every class of a split keeps the same number of items (the
smallest class's count; a seeded choice in larger classes). Validation: the validation classes
when there are at least two, else held-out items of the base classes (the split column's val rows
of base classes, or a seeded 20 % of each base class).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.manifest import DEFAULT_SPLIT_FRACTIONS, class_splits, load_manifest
from ..errors import DataError


def _images28(payloads) -> np.ndarray:
    from PIL import Image

    from ..data.io import read_image

    out = []
    for p in payloads:
        a = read_image(p)
        img = Image.fromarray(a).convert("L") if a.ndim == 3 else Image.fromarray(a)
        out.append(np.asarray(img.resize((28, 28), resample=Image.BILINEAR), dtype=np.uint8))
    return np.stack(out)


def manifest_task(path, modality: str | None = None, seed: int = 0, split_seed: int = 0,
                  split_fractions=DEFAULT_SPLIT_FRACTIONS, seconds: float | None = None, val_fraction: float = 0.2,
                  progress: bool = False) -> dict:
    """Build the train / validation / test tensors of a manifest (see the module notes).

    Parameters
    ----------
    path : path
        The manifest.
    modality : {"audio", "image"} or None
        Default: audio when the items have audio, else image.
    seed : int, default 0
        Seed of the per-class item choice and of held-out validation items.
    split_seed, split_fractions
        The class split when the manifest has no ``split`` column (:func:`class_splits`).
    seconds : float or None
        Audio clip length in seconds (default: from the median clip length).
    val_fraction : float, default 0.2

    Returns
    -------
    dict
        ``train``, ``val``, ``test``: torch.Tensor (C, K, 40, frames) float32 (audio) or (C, K, 28, 28)
        uint8 (image); ``test_payloads`` (class-major list, C*K); ``test_table_name``; ``modality``;
        ``info`` (splits record, classes, items per class, preprocessing).

    Raises
    ------
    fewmm.errors.DataError
        Problems in the manifest, no item with the modality, or a split with fewer than 2 classes
        or fewer than 2 items per class.
    """
    table = load_manifest(path)
    mods = [m for m in ("audio", "image") if m in table.modalities and table.mask(m).any()]
    modality = modality or (mods[0] if mods else None)
    if modality not in mods:
        raise DataError(f"{path}: no {modality or 'audio or image'} item for a backbone trained from scratch "
                        f"(the items have {', '.join(m for m in table.modalities if table.mask(m).any())})")
    rec = class_splits(table, split_seed, split_fractions)
    has = table.mask(modality)
    labels = table.labels
    rng = np.random.default_rng(seed)
    val_items = np.asarray(rec["val_items"], dtype=np.int64)
    if len(rec["val"]) < 2 and val_items.size == 0:  # held-out base items, as digits-av / fsdd-digits
        picks = []
        for c in rec["base"]:
            idx = np.flatnonzero((labels == c) & has)
            picks += rng.permutation(idx)[: int(round(val_fraction * idx.size))].tolist()
        val_items = np.sort(np.asarray(picks, dtype=np.int64))
    held = np.zeros(len(table), dtype=bool)
    held[val_items] = True
    groups = {
        "train": [np.flatnonzero((labels == c) & has & ~held) for c in rec["base"]],
        "val": ([np.flatnonzero((labels == c) & has) for c in rec["val"]] if len(rec["val"]) >= 2
                else [np.flatnonzero((labels == c) & has & held) for c in rec["base"]]),
        "test": [np.flatnonzero((labels == c) & has) for c in rec["novel"]],
    }
    for s, g in groups.items():
        g = [i for i in g if i.size]
        if len(g) < 2 or min(i.size for i in g) < 2:
            raise DataError(f"{path}: the {s} split has {len(g)} classes with {modality} items (smallest: "
                            f"{min((i.size for i in g), default=0)} items); a backbone needs at least 2 classes of 2 items "
                            f"there (splits: {rec['rule']})")
        groups[s] = g
    k = {s: min(i.size for i in g) for s, g in groups.items()}
    rows = {s: np.concatenate([np.sort(rng.choice(i, k[s], replace=False)) for i in g]) for s, g in groups.items()}
    payloads = table.modalities[modality]
    info = {"task": "manifest", "manifest": table.info["manifest"], "manifest_sha256": table.info["manifest_sha256"],
            "modality": modality, "splits": rec, "items_per_class": k,
            "classes": {s: [table.class_names[int(labels[i[0]])] for i in g] for s, g in groups.items()},
            "validation": "validation classes" if len(rec["val"]) >= 2 else f"held-out base items ({val_items.size})"}
    out: dict = {}
    if modality == "audio":
        from .audio import logmel_tensor

        if seconds is None:
            import soundfile as sf

            lengths = [sf.info(str(payloads[i].path)).duration for i in np.concatenate(list(rows.values()))]
            seconds = min(10.0, max(0.5, math.ceil(2 * float(np.median(lengths))) / 2))
        mels = {s: logmel_tensor([payloads[i] for i in r], seconds, progress) for s, r in rows.items()}
        mean, std = float(mels["train"].mean()), float(mels["train"].std())
        for s, m in mels.items():
            out[s] = torch.from_numpy((m - mean) / std).reshape(len(groups[s]), k[s], *m.shape[1:])
        info.update(seconds=seconds, sample_rate=16000, n_mels=40, hop_length=320, standardisation=[mean, std])
    else:
        for s, r in rows.items():
            out[s] = torch.from_numpy(_images28([payloads[i] for i in r])).reshape(len(groups[s]), k[s], 28, 28)
        info.update(images="28x28 grayscale, PIL bilinear resize, uint8 (255 = white)")
    out["test_payloads"] = [payloads[i] for i in rows["test"]]
    out["test_table_name"] = f"{table.name}-{table.info['manifest_sha256'][:12]}"
    out["modality"] = modality
    out["info"] = info
    return out


__all__ = ["manifest_task"]
