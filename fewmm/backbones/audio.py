"""Audio few-shot tasks for backbones trained from scratch on log-mel spectrograms.

Each task gives class x item tensors of standardised log-mel spectrograms (float32, shape
(classes, items, n_mels, frames)) for training, validation and test, plus the test clips' payloads
in the same class-major order (so frozen pretrained encoders can be scored on the same episodes).

* ``fsdd-digits``: FSDD, DIGIT-disjoint: training digits 0-4 (240 takes per digit), validation =
  the other 60 takes of digits 0-4 (held-out items of the training classes: FSDD has only 10
  classes), test digits 5-9 (all 300 takes). Clips resampled to 16 kHz, centred and zero-padded /
  cropped to 1.0 s.
* ``esc50``: ESC-50 (the clips present), classes split as the ``esc50-text`` task (30 base / 10
  validation / 10 novel, :mod:`fewmm.tasks.esc50_text`), 8 clips per class (a seeded choice where
  a class has more), 5 s at 16 kHz.

Log-mel: 40 bands, 25 ms window, hop 20 ms (``logmel-stats``' filter bank and log), standardised
with the training split's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

N_MELS = 40
HOP = 320
SR = 16000


def _logmel_tensor(payloads, seconds: float, progress: bool) -> np.ndarray:
    from ..data.io import audio_at
    from ..encoders.logmel import LogMelStatsEncoder
    from ..progress import progress_bar

    enc = LogMelStatsEncoder(sample_rate=SR, n_mels=N_MELS, hop_length=HOP)
    n = int(round(seconds * SR))
    out = []
    bar = progress_bar(total=len(payloads), desc="log-mel", unit="clip", disable=not progress, leave=False)
    for p in payloads:
        bar.update(1)
        w = audio_at(p, SR)
        if len(w) >= n:
            s = (len(w) - n) // 2
            w = w[s : s + n]
        else:
            pad = n - len(w)
            w = np.pad(w, (pad // 2, pad - pad // 2))
        out.append(enc.log_mel(w))
    bar.close()
    return np.stack(out).astype(np.float32)


def logmel_tensor(payloads, seconds: float, progress: bool = False) -> np.ndarray:
    """Log-mel spectrograms of audio payloads (the module's settings: 16 kHz, 40 bands, hop 20 ms),
    each clip centred and cropped / zero-padded to ``seconds``.

    Returns
    -------
    numpy.ndarray of shape (n, 40, frames), float32 (not standardised).
    """
    return _logmel_tensor(payloads, seconds, progress)


def audio_task(name: str, root=None, seed: int = 0, progress: bool = True) -> dict:
    """Build ``fsdd-digits`` or ``esc50`` (see the module notes).

    Returns
    -------
    dict with ``train``, ``val``, ``test`` (torch.Tensor (C, K, n_mels, frames) float32),
    ``test_payloads`` (list, class-major, C*K), ``info`` (split description, class names).

    Raises
    ------
    ValueError
        Unknown task name.
    """
    from .. import data as D

    rng = np.random.default_rng(seed)
    if name == "fsdd-digits":
        t = D.load("fsdd", root=root)
        take = np.asarray(t.meta["take"])
        per = {c: np.flatnonzero(t.labels == c) for c in range(10)}
        # takes 0-49 per speaker: validation = takes 40-49 (60 per digit), training the rest
        train_idx = [per[c][take[per[c]] < 40] for c in range(5)]
        val_idx = [per[c][take[per[c]] >= 40] for c in range(5)]
        test_idx = [per[c] for c in range(5, 10)]
        seconds = 1.0
        info = {"task": name, "split": "digit-disjoint: train digits 0-4 (takes 0-39 of each speaker), validation digits 0-4 "
                "(takes 40-49), test digits 5-9 (all takes)", "seconds": seconds,
                "classes": {"train": [0, 1, 2, 3, 4], "val": [0, 1, 2, 3, 4], "test": [5, 6, 7, 8, 9]}}
    elif name == "esc50":
        from ..tasks.esc50_text import BASE_CLASSES, NOVEL_CLASSES, VAL_CLASSES

        t = D.load("esc50", root=root)
        target = np.asarray(t.meta["target"]).astype(int) if "target" in t.meta else None
        lab = target if target is not None else t.labels

        def pick(classes, k=8):
            out = []
            for c in classes:
                idx = np.flatnonzero(lab == c)
                if idx.size < k:
                    raise ValueError(f"esc50: class {c} has {idx.size} clips, fewer than {k}")
                out.append(np.sort(rng.choice(idx, k, replace=False)))
            return out

        train_idx, val_idx, test_idx = pick(BASE_CLASSES), pick(VAL_CLASSES), pick(NOVEL_CLASSES)
        seconds = 5.0
        info = {"task": name, "split": "ESC-50 target classes as the esc50-text task: 30 base / 10 validation / 10 novel; "
                "8 clips per class (seeded choice)", "seconds": seconds,
                "classes": {"train": list(BASE_CLASSES), "val": list(VAL_CLASSES), "test": list(NOVEL_CLASSES)}}
    else:
        raise ValueError(f"unknown audio task {name!r}; expected 'fsdd-digits' or 'esc50'")
    k = {s: min(len(i) for i in idx) for s, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
    splits = {}
    payloads = t.modalities["audio"]
    for s, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        rows = np.concatenate([i[: k[s]] for i in idx])
        mel = _logmel_tensor([payloads[i] for i in rows], seconds, progress)
        splits[s] = (rows, mel.reshape(len(idx), k[s], *mel.shape[1:]))
    mean, std = float(splits["train"][1].mean()), float(splits["train"][1].std())
    out = {s: torch.from_numpy((m - mean) / std) for s, (_, m) in splits.items()}
    out["test_payloads"] = [payloads[i] for i in splits["test"][0]]
    out["test_table_name"] = f"{t.name}"
    info.update({"items_per_class": k, "n_mels": N_MELS, "hop_length": HOP, "sample_rate": SR, "standardisation": [mean, std]})
    out["info"] = info
    return out
