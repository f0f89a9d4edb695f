"""``esc50-text``: ESC-50 environmental sounds (audio items) + class-name text.

Items
-----
Every ESC-50 clip present in the data root (``esc50/all``). In the project's shared data folder
that is the staged subset: 414 clips, 8-12 per class (all 400 clips of official fold 4 plus 14
from folds 2, 3 and 5), 16 kHz mono, 5 s. With 8 clips per class, K + Q <= 8 per episode (e.g.
5-way 1-shot 7-query, or 5-shot 3-query). Items carry audio only; the class text is in
``features.class_text``.

Class text
----------
``"the sound of {category}"`` with the category's underscores replaced by spaces (e.g.
"the sound of crackling fire"), embedded with ``minilm-l6`` (L2-normalised).

Splits: 30 base / 10 validation / 10 novel classes
--------------------------------------------------
Fixed lists (below), derived once from this documented seeded permutation, stratified over the
five ESC-50 major categories (targets 0-9 animals, 10-19 natural soundscapes and water, 20-29
human non-speech, 30-39 interior/domestic, 40-49 exterior/urban)::

    rng = numpy.random.default_rng(0)
    for g in range(5):
        p = 10 * g + rng.permutation(10)
        base += p[:6]; val += p[6:8]; novel += p[8:]

so every split holds 6 resp. 2 resp. 2 classes of each major category. A test re-derives the
lists from this recipe.

Encoders (defaults): audio ``birdnet`` (BirdNET 2.4, 1024-d, a general-sound embedding), class
text ``minilm-l6``. The full ``esc50/all`` table is embedded through the feature cache.

Source: ESC-50 (Piczak 2015), https://github.com/karolpiczak/ESC-50, CC BY-NC 3.0 (research use).
"""

from __future__ import annotations

import numpy as np
import torch

from ..cache import embed_table
from ..corrupt import Corruption, corrupt_table
from ..errors import DataError
from ..multimodal import MMFeatures
from . import Task, TaskError, embed_class_text, encoder_record, register, resolve_encoder

NAME = "esc50-text"
#: ESC-50 categories by target id (``meta/esc50.csv``).
CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
)
SPLIT_SEED = 0
#: 30 base classes (ESC-50 target ids): pig cow frog cat hen insects | rain crackling_fire crickets
#: chirping_birds wind thunderstorm | crying_baby clapping coughing footsteps snoring
#: drinking_sipping | keyboard_typing door_wood_creaks can_opening washing_machine vacuum_cleaner
#: clock_alarm | helicopter chainsaw siren engine airplane fireworks
BASE_CLASSES = (2, 3, 4, 5, 6, 7, 10, 12, 13, 14, 16, 19, 20, 22, 24, 25, 28, 29, 32, 33, 34, 35, 36, 37,
                40, 41, 42, 44, 47, 48)
#: 10 validation classes: dog crow pouring_water toilet_flush sneezing laughing mouse_click
#: glass_breaking train hand_saw
VAL_CLASSES = (0, 9, 17, 18, 21, 26, 31, 39, 45, 49)
#: 10 novel classes: rooster sheep sea_waves water_drops breathing brushing_teeth door_wood_knock
#: clock_tick car_horn church_bells
NOVEL_CLASSES = (1, 8, 11, 15, 23, 27, 30, 38, 43, 46)
TEXT_TEMPLATE = "the sound of {category}"


def derive_splits(seed: int = SPLIT_SEED) -> tuple[list[int], list[int], list[int]]:
    """Re-derive (base, val, novel) target ids, sorted, with the recipe of the module docstring."""
    rng = np.random.default_rng(seed)
    base, val, novel = [], [], []
    for g in range(5):
        p = 10 * g + rng.permutation(10)
        base += p[:6].tolist()
        val += p[6:8].tolist()
        novel += p[8:].tolist()
    return sorted(base), sorted(val), sorted(novel)


def class_texts() -> list[list[str]]:
    """``texts[t]``: the one class text of target t, e.g. ``["the sound of sea waves"]``."""
    return [[TEXT_TEMPLATE.format(category=c.replace("_", " "))] for c in CATEGORIES]


@register(NAME, folds=("default",), help="ESC-50 audio + class-name text; 30 base / 10 val / 10 novel classes")
def build_esc50_text(root=None, cache=None, device: str = "cpu", corruption: Corruption | None = None,
                     fold: str = "default", audio_encoder="birdnet", text_encoder="minilm-l6") -> Task:
    """Build ``esc50-text`` (see the module docstring for items, splits and class text).

    Parameters
    ----------
    root, cache, device
        See :func:`fewmm.tasks.build`.
    corruption : Corruption or None
        Only ``noise`` (audio white noise at a given SNR in dB) applies: the items have no image.
    fold : {"default"}
    audio_encoder, text_encoder : str or Encoder
        Registry names or encoder objects; ``text_encoder=None`` leaves ``class_text`` empty.

    Returns
    -------
    Task
        ``features.modalities == ("audio",)``; ``item_ids["audio"]``: official ESC-50 file names;
        ``meta``: ``esc50_fold`` (official fold 1-5), ``esc10`` (bool).

    Raises
    ------
    TaskError
        A corruption of another modality than audio, or an encoder of the wrong modality.
    fewmm.errors.DataError
        The loaded table's class names differ from :data:`CATEGORIES`.
    fewmm.errors.DataNotFoundError
        ESC-50 is not in the data root.
    """
    from .. import data as D

    if fold != "default":
        raise TaskError(f"{NAME}: unknown fold {fold!r}; expected 'default'")
    if corruption is not None and corruption.modality != "audio":
        raise TaskError(f"{NAME}: corruption {corruption.kind!r} applies to {corruption.modality!r}; "
                        "the items have audio only (use 'noise')")
    table = D.load("esc50", split="all", root=root)
    if tuple(table.class_names) != CATEGORIES:
        raise DataError(f"{NAME}: {table.name} class names differ from the ESC-50 categories this task's splits "
                        f"are written for: {table.class_names}")
    enc = resolve_encoder(audio_encoder, "audio", device)
    fs = embed_table(table, enc, cache=cache)
    if not fs.mask.all():
        raise TaskError(f"{NAME}: some audio payloads of {table.name} are missing")
    labels = table.labels.copy()
    n = labels.size
    class_names = list(CATEGORIES)
    texts = class_texts()
    class_text, text_rec = (None, None)
    if text_encoder is not None:
        class_text, text_rec = embed_class_text(NAME, class_names, texts, text_encoder, cache=cache)
    enc_rec = {"audio": encoder_record(enc)}
    if text_rec is not None:
        enc_rec["class_text"] = text_rec["encoder"]
    mm_info = {"task": NAME, "fold": fold, "encoders": enc_rec}
    features = MMFeatures({"audio": fs.features.float().contiguous()}, torch.ones((n, 1), dtype=torch.bool),
                          ("audio",), labels, class_names, class_text, dict(mm_info))

    corrupted = None
    corr_rec = None
    if corruption is not None:
        ctable = corrupt_table(table, "audio", corruption.kind, corruption.level, corruption.seed)
        cfs = embed_table(ctable, enc, cache=cache)
        corr_rec = {**corruption.as_dict(), "table": ctable.name, "cache_hit": cfs.cache_hit,
                    "n_silent": ctable.info["corruption"]["n_silent"]}
        corrupted = MMFeatures({"audio": cfs.features.float().contiguous()}, features.mask.clone(), ("audio",),
                               labels, class_names, class_text, {**mm_info, "corruption": corr_rec})

    counts = np.bincount(labels, minlength=len(class_names))
    src_keys = ("dataset", "split", "licence", "source_url", "variant", "sample_rate_hz", "n_present", "n_official")
    info = {
        "task": NAME,
        "fold": fold,
        "encoders": enc_rec,
        "feature_cache": {"audio": {"dataset": fs.key["dataset"], "ids_sha256": fs.key["ids_sha256"],
                                    "cache_hit": fs.cache_hit}},
        "class_text": text_rec,
        "text_templates": [TEXT_TEMPLATE],
        "split_rule": f"fixed lists; derived by default_rng({SPLIT_SEED}) permutations stratified over the five "
                      "ESC-50 major categories (6 base / 2 val / 2 novel of each)",
        "validation": "validation classes (10)",
        "data_sources": {"audio": {"table": table.name, "n_items": n,
                                   **{k: table.info[k] for k in src_keys if k in table.info}}},
        "items_per_class": {class_names[c]: int(counts[c]) for c in range(len(class_names))},
        "corruption": corr_rec,
    }
    desc = (f"esc50-text: {n} ESC-50 clips ({int(counts.min())}-{int(counts.max())} per class), audio only, with "
            f"class text {TEXT_TEMPLATE!r}. 30 base / 10 validation / 10 novel classes (fixed lists, stratified "
            f"over the 5 major categories); novel: {', '.join(CATEGORIES[c] for c in NOVEL_CLASSES)}.")
    return Task(
        name=NAME,
        features=features,
        base_classes=np.asarray(BASE_CLASSES, dtype=np.int64),
        val_classes=np.asarray(VAL_CLASSES, dtype=np.int64),
        novel_classes=np.asarray(NOVEL_CLASSES, dtype=np.int64),
        val_items=np.zeros(0, dtype=np.int64),
        fold=fold,
        description=desc,
        info=info,
        corrupted=corrupted,
        item_ids={"audio": list(table.ids)},
        meta={"esc50_fold": np.asarray(table.meta["fold"]), "esc10": np.asarray(table.meta["esc10"])},
    )
