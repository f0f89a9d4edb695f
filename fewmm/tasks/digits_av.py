"""``digits-av``: handwritten (MNIST) + spoken (FSDD) digits, paired within class, plus class text.

Items
-----
For each digit c = 0..9 the FSDD clips of c (``fsdd/all``: 300 per digit, 6 speakers x 50
takes) and the MNIST test images of c (``mnist/test``: 892-1,135 per digit) are shuffled, each
with its own generator ``numpy.random.default_rng(SeedSequence([pair_seed, c, 0]))`` (images) and
``SeedSequence([pair_seed, c, 1])`` (clips), and the i-th image is paired with the i-th clip;
``min(count)`` pairs are kept, i.e. 300 per digit, 3,000 items. Items are ordered by digit, then
by pair position. Every item has both modalities (image, audio). A pair is an artificial
association: the image and the clip share only their class.

Class text
----------
Each digit's texts are :data:`TEXT_TEMPLATES` filled with its word and numeral (e.g. "a spoken
and handwritten digit: seven"), embedded with the text encoder (default ``minilm-l6``), averaged
over templates and L2-normalised (:func:`fewmm.tasks.embed_class_text`).

Splits (10 classes only: two folds, report both)
------------------------------------------------
======  ==============  ===============  =================================================
fold    base classes    novel classes    validation
======  ==============  ===============  =================================================
A       0 1 2 3 4       5 6 7 8 9        a seeded 20 % of the base-class ITEMS
B       5 6 7 8 9       0 1 2 3 4        a seeded 20 % of the base-class ITEMS
======  ==============  ===============  =================================================

There are no spare classes for validation classes, so validation uses held-out items of the
base classes: for each base class c, ``round(val_fraction * n_c)`` of its items (60 of 300) drawn
with ``default_rng(SeedSequence([val_seed, c]))`` (the same items of a class in either fold).
They are excluded from the ``"base"`` split. Novel classes are never used for validation.

Encoders (defaults)
-------------------
image ``efficientnet-lite2`` (its default resolution, 128 px), audio ``whisper-tiny-en``, class
text ``minilm-l6``. The FULL ``mnist/test`` and ``fsdd/all`` tables are embedded through
:func:`fewmm.cache.embed_table` and the paired rows taken from them, so the features are shared
with (and cached by) every other use of those tables; ``n_per_class=`` (a small task for tests
and development) embeds only the rows it uses, as sub-tables with their own cache names.

Sources: MNIST test set (LeCun et al. 1998, CC BY-SA 3.0); Free Spoken Digit Dataset v1.0.10
(Jakobovski et al., CC BY-SA 4.0).
"""

from __future__ import annotations

import numpy as np
import torch

from ..cache import embed_table
from ..corrupt import Corruption, corrupt_table
from ..multimodal import MMFeatures
from . import Task, TaskError, embed_class_text, encoder_record, register, resolve_encoder

NAME = "digits-av"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Class-text templates; ``{word}`` = the digit's English word, ``{digit}`` = its numeral.
TEXT_TEMPLATES = (
    "a spoken and handwritten digit: {word}",
    "the number {word}",
    "a picture and a recording of the digit {digit}",
)
#: fold -> (base classes, novel classes)
FOLDS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "A": ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
    "B": ((5, 6, 7, 8, 9), (0, 1, 2, 3, 4)),
}
VAL_FRACTION = 0.2
MODALITIES = ("image", "audio")


def class_texts(templates=TEXT_TEMPLATES) -> list[list[str]]:
    """``texts[d]``: the templates filled in for digit d (10 lists)."""
    return [[t.format(word=DIGIT_WORDS[d], digit=d) for t in templates] for d in range(10)]


def pair_within_class(image_labels: np.ndarray, audio_labels: np.ndarray, seed: int, n_classes: int = 10,
                      n_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair image rows with audio rows of the same class by a seeded shuffle.

    Parameters
    ----------
    image_labels : numpy.ndarray of shape (n_images,), int
        Class of each row of the image table.
    audio_labels : numpy.ndarray of shape (n_audio,), int
    seed : int
        For class c, image rows are shuffled with ``default_rng(SeedSequence([seed, c, 0]))`` and
        audio rows with ``default_rng(SeedSequence([seed, c, 1]))``.
    n_classes : int, default 10
    n_per_class : int or None
        Keep only the first ``n_per_class`` pairs of each class (default: ``min`` of the two
        counts, every possible pair).

    Returns
    -------
    image_rows, audio_rows, labels : numpy.ndarray of shape (n_pairs,), int64
        Pair i joins ``image_rows[i]`` and ``audio_rows[i]``, both of class ``labels[i]``; pairs
        are ordered by class, then by shuffled position. No row is used twice.

    Raises
    ------
    TaskError
        A class has no image or no audio row, or ``n_per_class`` exceeds what a class has.
    """
    il, al = np.asarray(image_labels), np.asarray(audio_labels)
    img, aud, lab = [], [], []
    for c in range(n_classes):
        ri, ra = np.flatnonzero(il == c), np.flatnonzero(al == c)
        n = min(ri.size, ra.size)
        if n == 0:
            raise TaskError(f"{NAME}: class {c} has {ri.size} images and {ra.size} clips; cannot pair")
        if n_per_class is not None:
            if not 1 <= int(n_per_class) <= n:
                raise TaskError(f"{NAME}: n_per_class={n_per_class}, but class {c} has only {n} pairs")
            n = int(n_per_class)
        ri = np.random.default_rng(np.random.SeedSequence([int(seed), c, 0])).permutation(ri)[:n]
        ra = np.random.default_rng(np.random.SeedSequence([int(seed), c, 1])).permutation(ra)[:n]
        img.append(ri)
        aud.append(ra)
        lab.append(np.full(n, c))
    return (np.concatenate(img).astype(np.int64), np.concatenate(aud).astype(np.int64),
            np.concatenate(lab).astype(np.int64))


def validation_items(labels: np.ndarray, classes, fraction: float, seed: int) -> np.ndarray:
    """Held-out validation items: for each class c in ``classes``, ``round(fraction * n_c)`` of
    its items drawn with ``default_rng(SeedSequence([seed, c]))``.

    Returns
    -------
    numpy.ndarray of shape (n_val,), int64, sorted item indices.

    Raises
    ------
    TaskError
        ``fraction`` outside [0, 1).
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise TaskError(f"{NAME}: val_fraction must lie in [0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    out = []
    for c in sorted(int(c) for c in classes):
        items = np.flatnonzero(labels == c)
        k = int(round(float(fraction) * items.size))
        out.append(np.random.default_rng(np.random.SeedSequence([int(seed), c])).permutation(items)[:k])
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def _source_record(table) -> dict:
    keys = ("dataset", "split", "licence", "source_url", "version")
    return {"table": table.name, "n_items": len(table), **{k: table.info[k] for k in keys if k in table.info}}


@register(NAME, folds=tuple(FOLDS), help="MNIST images + FSDD spoken digits paired within class, + class text; "
          "folds A (base 0-4 / novel 5-9) and B (reverse)")
def build_digits_av(root=None, cache=None, device: str = "cpu", corruption: Corruption | None = None,
                    fold: str = "A", pair_seed: int = 0, val_seed: int = 0, val_fraction: float = VAL_FRACTION,
                    n_per_class: int | None = None, image_encoder="efficientnet-lite2",
                    audio_encoder="whisper-tiny-en", text_encoder="minilm-l6") -> Task:
    """Build ``digits-av`` (see the module docstring for pairing, splits and class text).

    Parameters
    ----------
    root, cache, device, corruption
        See :func:`fewmm.tasks.build`. ``corruption`` may be any kind: ``noise`` corrupts the
        FSDD audio, ``occlude`` / ``pixel_noise`` the MNIST images (28x28, background 0).
    fold : {"A", "B"}, default "A"
        A: base 0-4, novel 5-9. B: base 5-9, novel 0-4.
    pair_seed : int, default 0
        Seed of the within-class pairing (:func:`pair_within_class`).
    val_seed : int, default 0
    val_fraction : float in [0, 1), default 0.2
        Fraction of each base class's items held out for validation (:func:`validation_items`).
    n_per_class : int or None
        Keep only this many pairs per digit (for tests / development); the default keeps all
        (300 per digit) and reuses the cached features of the full tables.
    image_encoder, audio_encoder, text_encoder : str or Encoder
        Registry names or encoder objects; ``text_encoder=None`` leaves ``class_text`` empty.

    Returns
    -------
    Task
        ``features.modalities == ("image", "audio")``; ``item_ids`` gives the MNIST id
        (``"t10k/01234"``) and the FSDD id (``"recordings/7_theo_12.wav"``) of each item;
        ``meta``: ``mnist_row``, ``fsdd_row``, ``speaker``, ``take``.

    Raises
    ------
    TaskError
        Unknown fold, bad ``n_per_class`` / ``val_fraction``, or an encoder of the wrong modality.
    fewmm.errors.DataNotFoundError
        MNIST or FSDD is not in the data root.
    """
    from .. import data as D

    if fold not in FOLDS:
        raise TaskError(f"{NAME}: unknown fold {fold!r}; expected one of {', '.join(map(repr, FOLDS))}")
    mnist = D.load("mnist", split="test", root=root)
    fsdd = D.load("fsdd", split="all", root=root)
    img_rows, aud_rows, labels = pair_within_class(mnist.labels, fsdd.labels, pair_seed, n_per_class=n_per_class)
    encs = {"image": resolve_encoder(image_encoder, "image", device),
            "audio": resolve_encoder(audio_encoder, "audio", device)}
    sources = {"image": (mnist, img_rows), "audio": (fsdd, aud_rows)}

    feats: dict[str, torch.Tensor] = {}
    cache_rec: dict[str, dict] = {}
    for m, (table, rows) in sources.items():
        if n_per_class is None:  # the full table: shared, cached features; then index the rows
            fs = embed_table(table, encs[m], cache=cache)
            f, mask = fs.features[torch.as_tensor(rows)], fs.mask[rows]
        else:
            fs = embed_table(table.subset(rows), encs[m], cache=cache)
            f, mask = fs.features, fs.mask
        if not mask.all():
            raise TaskError(f"{NAME}: some {m} payloads of {table.name} are missing")
        feats[m] = f.float().contiguous()
        cache_rec[m] = {"dataset": fs.key["dataset"], "ids_sha256": fs.key["ids_sha256"], "cache_hit": fs.cache_hit,
                        "rows": "all rows embedded, paired rows taken" if n_per_class is None else "paired rows only"}

    class_names = [str(d) for d in range(10)]
    texts = class_texts()
    class_text, text_rec = (None, None)
    if text_encoder is not None:
        class_text, text_rec = embed_class_text(NAME, class_names, texts, text_encoder, cache=cache)

    base, novel = (np.asarray(c, dtype=np.int64) for c in FOLDS[fold])
    val_items = validation_items(labels, base, val_fraction, val_seed)
    n = labels.size
    enc_rec = {m: encoder_record(e) for m, e in encs.items()}
    if text_rec is not None:
        enc_rec["class_text"] = text_rec["encoder"]
    mm_info = {"task": NAME, "fold": fold, "encoders": enc_rec, "pair_seed": int(pair_seed)}
    features = MMFeatures(feats, torch.ones((n, 2), dtype=torch.bool), MODALITIES, labels, class_names,
                          class_text, dict(mm_info))

    corrupted = None
    corr_rec = None
    if corruption is not None:
        m = corruption.modality
        if m not in sources:
            raise TaskError(f"{NAME}: corruption {corruption.kind!r} applies to {m!r}, which the task lacks")
        table, rows = sources[m]
        ctable = corrupt_table(table.subset(rows), m, corruption.kind, corruption.level, corruption.seed)
        cfs = embed_table(ctable, encs[m], cache=cache)
        cfeats = dict(feats)
        cfeats[m] = cfs.features.float().contiguous()
        corr_rec = {**corruption.as_dict(), "table": ctable.name, "cache_hit": cfs.cache_hit,
                    "n_silent": ctable.info["corruption"]["n_silent"]}
        corrupted = MMFeatures(cfeats, features.mask.clone(), MODALITIES, labels, class_names, class_text,
                               {**mm_info, "corruption": corr_rec})

    counts = np.bincount(labels, minlength=10)
    validation = (f"held-out items of the base classes: for each base class c, round({val_fraction} * n_c) items "
                  f"drawn with default_rng(SeedSequence([val_seed={val_seed}, c])); no validation classes")
    info = {
        "task": NAME,
        "fold": fold,
        "encoders": enc_rec,
        "feature_cache": cache_rec,
        "class_text": text_rec,
        "text_templates": list(TEXT_TEMPLATES),
        "pair_seed": int(pair_seed),
        "pairing": "per digit c: MNIST rows shuffled with default_rng(SeedSequence([pair_seed, c, 0])), FSDD rows "
                   "with default_rng(SeedSequence([pair_seed, c, 1])); i-th with i-th; min(count) pairs"
                   + ("" if n_per_class is None else f", first {n_per_class} kept"),
        "n_per_class": n_per_class,
        "val_seed": int(val_seed),
        "val_fraction": float(val_fraction),
        "validation": validation,
        "data_sources": {"image": _source_record(mnist), "audio": _source_record(fsdd)},
        "folds": {k: {"base": list(b), "novel": list(nv)} for k, (b, nv) in FOLDS.items()},
        "items_per_class": {class_names[c]: int(counts[c]) for c in range(10)},
        "corruption": corr_rec,
    }
    desc = (f"digits-av fold {fold}: {n} items, MNIST test images paired within class with FSDD spoken digits "
            f"(pair_seed={pair_seed}; {int(counts.min())}-{int(counts.max())} pairs per digit); class text from "
            f"{len(TEXT_TEMPLATES)} templates such as {texts[7][0]!r}. Base classes {base.tolist()} "
            f"({val_items.size} of their items held out for validation, val_seed={val_seed}), "
            f"novel classes {novel.tolist()}.")
    return Task(
        name=NAME,
        features=features,
        base_classes=base,
        val_classes=np.zeros(0, dtype=np.int64),
        novel_classes=novel,
        val_items=val_items,
        fold=fold,
        description=desc,
        info=info,
        corrupted=corrupted,
        item_ids={"image": [mnist.ids[i] for i in img_rows], "audio": [fsdd.ids[i] for i in aud_rows]},
        meta={
            "mnist_row": img_rows,
            "fsdd_row": aud_rows,
            "speaker": np.asarray(fsdd.meta["speaker"])[aud_rows],
            "take": np.asarray(fsdd.meta["take"])[aud_rows],
        },
    )
