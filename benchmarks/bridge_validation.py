"""Shared by ``bridge_engine.py`` and ``transfer_bridge_selection.py``: esc50-text's validation
split and how a trained bridge is scored on it (never the novel classes).

``setup()`` builds the task once: BirdNET audio features, labels and class texts, the base items
(the bridge's training set), the validation items and classes, and 300 5-way 1-shot 7-query
episodes over the validation classes (seed 0). ``score(pair, s)`` gives the bridge's zero-shot
accuracy over all validation classes and the per-episode accuracies of :data:`METHODS` on the
bridge features.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

import fewmm.methods as M
import fewmm.tasks as T
from fewmm.bench.transfer import evaluate_method_episodes

METHODS = ("zero-shot", "protonet", "cross-modal-lp")


def setup() -> SimpleNamespace:
    """esc50-text's features and validation split (see the module docstring)."""
    task = T.build("esc50-text")
    f = task.features
    return SimpleNamespace(task=task, x=f.features["audio"], y=f.labels, ct=f.class_text, base=task.split_items("base"),
                           val_items=task.split_items("val"), val_cls=task.val_classes,
                           ep=task.episodes("val", 5, 1, 7, 300, seed=0))


def train_on_base(train, s: SimpleNamespace, cfg):
    """``train(items, labels, class_text, base_classes, cfg)`` on the base items only."""
    return train(s.x[torch.as_tensor(s.base)], s.y[s.base], s.ct, s.task.base_classes, cfg)


def score(pair, s: SimpleNamespace) -> tuple[float, dict[str, np.ndarray]]:
    """(zero-shot accuracy over all validation classes as a fraction, {method: per-episode
    accuracies (300,)}) of a trained aligned ``pair``."""
    z, text = pair.items(s.x), pair.class_text(s.ct)
    tz = pair.texts(s.ct)[torch.as_tensor(s.val_cls)]
    zs = float(np.mean(s.val_cls[(z[torch.as_tensor(s.val_items)] @ tz.T).argmax(1).numpy()] == s.y[s.val_items]))
    per = {}
    for m in METHODS:
        make = (lambda m=m: M.create(m, class_text=text)) if m in M.text_methods() else (lambda m=m: M.create(m))
        per[m] = evaluate_method_episodes(make, z, s.y, s.ep)
    return zs, per
