"""Multimodal few-shot tasks: items with several modalities, class text, and base/val/novel splits.

>>> import fewmm.tasks as T
>>> T.list_tasks()
['digits-av', 'esc50-text', 'manifest']
>>> task = T.build("digits-av", fold="A")                     # doctest: +SKIP
>>> task.features.modalities, task.features.dims              # doctest: +SKIP
(('image', 'audio'), {'image': 1280, 'audio': 384, 'class_text': 384})
>>> eps = task.episodes("novel", n_way=5, n_shot=1, n_query=15, n_episodes=600, seed=0)  # doctest: +SKIP
>>> batch = task.features.batch(eps)                          # doctest: +SKIP

A :class:`Task` bundles an :class:`~fewmm.multimodal.MMFeatures` table (per-item modality
features with a mask, labels, and class-level text embeddings ``class_text``) with class splits
written down in code: base classes (meta-train / fitting), validation classes or, where there
are no spare classes, held-out validation ITEMS of base classes, and novel classes (meta-test).
Hyperparameters are chosen on the validation split only, never on novel classes.

=============  ==================================================================================
task           content
=============  ==================================================================================
digits-av      MNIST test images paired within class with FSDD spoken digits (seeded shuffle),
               300 pairs per digit; class text "a spoken and handwritten digit: seven". Folds "A"
               (base 0-4, novel 5-9) and "B" (the reverse); validation = a seeded 20 % of the
               base-class items. See :mod:`fewmm.tasks.digits_av`.
esc50-text     ESC-50 clips (audio only) + class text "the sound of <category>"; 30 base / 10
               validation / 10 novel classes (fixed lists). See :mod:`fewmm.tasks.esc50_text`.
manifest       your own CSV/JSONL manifest (``path=``): items with any of image / audio / text,
               optional class text, splits from a ``split`` column or seeded and class-disjoint.
               See :mod:`fewmm.tasks.manifest`.
=============  ==================================================================================

Robustness settings, usable on any task:

* missing modality: :func:`apply_missing` (item level) / :func:`apply_missing_batch` (per
  episode, query and/or support items);
* corrupted modality: build the task with ``corruption="noise:0"`` (audio white noise at 0 dB
  SNR), ``"occlude:0.25"`` (a quarter of the image area occluded) or ``"pixel_noise:50"``
  (see :mod:`fewmm.corrupt`); ``task.corrupted`` then holds the same items with that modality's
  features recomputed from corrupted payloads, and :func:`apply_corruption` /
  :func:`apply_corruption_batch` swap a seeded fraction of items to them.

Every choice of items is seeded: ``choose_items(n, fraction, seed)`` picks ``round(fraction *
n)`` items with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

# The package is split by concern; every public name stays importable from fewmm.tasks.
from .factories import embed_class_text, encoder_record, resolve_encoder
from .registry import TASKS, build, list_tasks, register, task_folds, task_help
from .robustness import (apply_corruption, apply_corruption_batch, apply_missing, apply_missing_batch,
                         choose_items)
from .task import SPLITS, Task, TaskError

__all__ = [
    "Task", "TaskError", "SPLITS", "TASKS", "register", "build", "list_tasks", "task_folds", "task_help",
    "resolve_encoder", "encoder_record", "embed_class_text", "choose_items", "apply_missing", "apply_corruption",
    "apply_missing_batch", "apply_corruption_batch",
]
