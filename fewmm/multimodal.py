"""Multimodal feature tables and episode batches, the input of fusion heads.

Items may carry several modalities and may lack some: each modality has a feature matrix with
zero rows where the item lacks it, and a boolean mask says which modalities each item has.
Class-level text (class names or short descriptions, embedded once per class) is kept apart,
as ``class_text``: it is known for every class, novel ones included.

Shapes used throughout (E episodes, N ways, K shots, M queries per episode, d_m the dimension
of modality m, n_mod modalities in the order of ``modalities``)::

    MMBatch.support[m]      (E, N, K, d_m) float32      MMBatch.support_mask (E, N, K, n_mod) bool
    MMBatch.query[m]        (E, M, d_m)    float32      MMBatch.query_mask   (E, M, n_mod)    bool
    MMBatch.class_text      (E, N, d_t)    float32 or None
    MMBatch.query_labels    (E, M)         int64, episode-local classes 0..N-1
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .episodes import Episodes, check_episode_indices
from .errors import FeatureError


@dataclass
class MMFeatures:
    """Per-modality features of ``n`` items.

    Attributes
    ----------
    features : dict of str to torch.Tensor of shape (n, d_m), float32
        Zero rows where the item lacks the modality.
    mask : torch.Tensor of shape (n, n_mod), bool
        ``mask[i, j]``: item i has modality ``modalities[j]``.
    modalities : tuple of str
    labels : numpy.ndarray of shape (n,), int64
    class_names : list of str
    class_text : torch.Tensor of shape (n_classes, d_t), float32, or None
        Class-level text embeddings (row c for class c).
    info : dict
        Provenance: data set, encoders and weights ids, corruption applied, ...
    """

    features: dict[str, torch.Tensor]
    mask: torch.Tensor
    modalities: tuple[str, ...]
    labels: np.ndarray
    class_names: list[str]
    class_text: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = self.labels.shape[0]
        if set(self.features) != set(self.modalities):
            raise FeatureError(f"features has modalities {sorted(self.features)}, expected {list(self.modalities)}")
        self.mask = torch.as_tensor(self.mask, dtype=torch.bool)
        if self.mask.shape != (n, len(self.modalities)):
            raise FeatureError(f"mask has shape {tuple(self.mask.shape)}, expected ({n}, {len(self.modalities)})")
        self.features = dict(self.features)
        for m, f in list(self.features.items()):
            if not isinstance(f, torch.Tensor):
                try:
                    f = torch.as_tensor(np.asarray(f), dtype=torch.float32)
                except (TypeError, ValueError) as e:
                    raise FeatureError(f"features[{m!r}] must be a float tensor or array of shape (n, dim): {e}") from None
                self.features[m] = f
            if not f.is_floating_point():
                f = self.features[m] = f.float()
            if f.ndim != 2 or f.shape[0] != n:
                raise FeatureError(f"features[{m!r}] has shape {tuple(f.shape)}, expected ({n}, dim)")
            if not torch.isfinite(f).all():
                raise FeatureError(f"features[{m!r}] contains NaN or inf")
        if self.class_text is not None and self.class_text.shape[0] != len(self.class_names):
            raise FeatureError(f"class_text has {self.class_text.shape[0]} rows for {len(self.class_names)} classes")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension of each modality (plus ``"class_text"`` when present)."""
        d = {m: int(self.features[m].shape[1]) for m in self.modalities}
        if self.class_text is not None:
            d["class_text"] = int(self.class_text.shape[1])
        return d

    def select_modalities(self, modalities) -> "MMFeatures":
        """Keep only ``modalities`` (in that order); items left with no modality stay, masked."""
        idx = [self.modalities.index(m) for m in modalities]
        return MMFeatures({m: self.features[m] for m in modalities}, self.mask[:, idx], tuple(modalities),
                          self.labels, self.class_names, self.class_text, dict(self.info))

    def without_class_text(self) -> "MMFeatures":
        return MMFeatures(self.features, self.mask, self.modalities, self.labels, self.class_names, None, dict(self.info))

    def batch(self, episodes: Episodes, device=None) -> "MMBatch":
        """Gather the episodes' support and query items into an :class:`MMBatch`.

        Raises
        ------
        EpisodeError
            An episode index outside this table (named range and table size).
        """
        check_episode_indices(episodes, len(self))
        dev = device or self.mask.device
        s = torch.as_tensor(episodes.support, device=dev)
        q = torch.as_tensor(episodes.query.reshape(episodes.n_episodes, -1), device=dev)
        sup = {m: self.features[m].to(dev)[s] for m in self.modalities}
        qry = {m: self.features[m].to(dev)[q] for m in self.modalities}
        mask = self.mask.to(dev)
        ct = None
        if self.class_text is not None:
            ct = self.class_text.to(dev)[torch.as_tensor(episodes.classes, device=dev)]
        return MMBatch(sup, mask[s], qry, mask[q], ct, torch.as_tensor(episodes.query_labels(), device=dev), self.modalities)


@dataclass
class MMBatch:
    """A batch of multimodal episodes (see the module docstring for shapes)."""

    support: dict[str, torch.Tensor]
    support_mask: torch.Tensor
    query: dict[str, torch.Tensor]
    query_mask: torch.Tensor
    class_text: torch.Tensor | None
    query_labels: torch.Tensor
    modalities: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(E, N, K, M)."""
        e, n, k, _ = self.support_mask.shape
        return e, n, k, int(self.query_mask.shape[1])

    def to(self, device) -> "MMBatch":
        return MMBatch({m: v.to(device) for m, v in self.support.items()}, self.support_mask.to(device),
                       {m: v.to(device) for m, v in self.query.items()}, self.query_mask.to(device),
                       None if self.class_text is None else self.class_text.to(device), self.query_labels.to(device),
                       self.modalities)
