"""Synthetic multimodal features for tests and sanity checks of fusion heads.

Two item modalities, each class-informative (Gaussian clusters around random class means), and
an optional corruption: for a fraction of items one modality is replaced by pure noise drawn from
a distinct distribution (a fixed offset plus isotropic noise), so a per-sample gate *can* detect
the corrupted items. Optional class text: a noisy linear image of the class's means.
"""

from __future__ import annotations

import numpy as np
import torch

from ..multimodal import MMFeatures


def make_synthetic(
    n_classes: int = 60,
    per_class: int = 20,
    dims=(("image", 32), ("audio", 24)),
    noise=(2.0, 2.0),
    signal_fraction: float = 0.5,
    corrupt_modality: str | None = "audio",
    corrupt_fraction: float = 0.5,
    corrupt_offset: float = 4.0,
    corrupt_noise: float = 1.0,
    missing_fraction: float = 0.0,
    text_dim: int | None = None,
    seed: int = 0,
) -> tuple[MMFeatures, np.ndarray]:
    """Gaussian-cluster multimodal features.

    Parameters
    ----------
    n_classes, per_class : int
        Items are class-major: item ``i`` has label ``i // per_class``.
    dims : sequence of (str, int)
        Modalities and their dimensions.
    noise : sequence of float
        Per-modality within-class standard deviation (isotropic).
    signal_fraction : float
        Class means are standard normal in a random subspace of this fraction of each modality's
        dimensions (0 elsewhere), as real features have class-irrelevant directions; 1: isotropic.
    corrupt_modality : str or None
        Modality replaced by noise ``corrupt_offset * u + corrupt_noise * N(0, I)`` (``u`` a fixed
        unit vector) for a random ``corrupt_fraction`` of the items.
    missing_fraction : float
        Fraction of items that lose one random modality (mask False, zero row).
    text_dim : int or None
        If given, ``class_text`` (n_classes, text_dim) = random projection of the class means + noise.
    seed : int

    Returns
    -------
    features : MMFeatures
        ``info["encoders"]`` holds synthetic weights ids.
    corrupted : numpy.ndarray of shape (n_items,), bool
        Items whose ``corrupt_modality`` is noise.
    """
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    labels = np.repeat(np.arange(n_classes), per_class)
    mods = tuple(m for m, _ in dims)
    feats, means = {}, []
    for (m, d), s in zip(dims, noise):
        k = max(1, int(round(signal_fraction * d)))
        rot = np.linalg.qr(rng.standard_normal((d, d)))[0]
        mu = rng.standard_normal((n_classes, k)) @ rot[:k] * np.sqrt(d / k)  # same mean norm as isotropic
        means.append(mu)
        feats[m] = mu[labels] + s * rng.standard_normal((n, d))
    corrupted = np.zeros(n, dtype=bool)
    if corrupt_modality is not None:
        d = feats[corrupt_modality].shape[1]
        u = rng.standard_normal(d)
        u /= np.linalg.norm(u)
        corrupted = rng.random(n) < corrupt_fraction
        feats[corrupt_modality][corrupted] = corrupt_offset * u + corrupt_noise * rng.standard_normal((int(corrupted.sum()), d))
    mask = np.ones((n, len(mods)), dtype=bool)
    if missing_fraction > 0:
        drop = rng.random(n) < missing_fraction
        which = rng.integers(0, len(mods), n)
        mask[drop, which[drop]] = False
    for j, m in enumerate(mods):
        feats[m][~mask[:, j]] = 0.0
    class_text = None
    if text_dim:
        allmu = np.concatenate(means, 1)
        proj = rng.standard_normal((allmu.shape[1], text_dim)) / np.sqrt(allmu.shape[1])
        class_text = torch.as_tensor(allmu @ proj + 0.3 * rng.standard_normal((n_classes, text_dim)), dtype=torch.float32)
    info = {"dataset": "synthetic", "seed": seed, "encoders": {m: {"encoder": "synthetic", "weights_id": f"synthetic-{seed}-{m}"} for m in mods}}
    mmf = MMFeatures(
        {m: torch.as_tensor(v, dtype=torch.float32) for m, v in feats.items()}, torch.as_tensor(mask), mods, labels,
        [f"class{c}" for c in range(n_classes)], class_text, info,
    )
    return mmf, corrupted
