"""``manifest``: your own multimodal data set as a few-shot task for the fusion heads.

A CSV/JSONL manifest (:func:`fewmm.data.load_manifest`) whose items have any of ``image``,
``audio``, ``text`` (a row may lack some), optionally a ``class_text`` column (a description of
the row's class) and a ``split`` column (``base`` / ``val`` / ``novel``)::

    python -m fewmm.bench.fusion --task manifest:my_data/items.csv

Items
-----
Every row of the manifest. Each modality present in at least one row is embedded with its frozen
encoder (defaults: image ``efficientnet-lite2``, audio ``whisper-tiny-en``, text ``minilm-l6``;
``encoders={"audio": "logmel-stats"}`` to change one) through the feature cache; an item lacking
a modality has it masked.

Class text
----------
``class_text="column"`` (default): the ``class_text`` column when the manifest has it (the mean
of each class's distinct texts, embedded with ``text_encoder``; every class must have one);
a template such as ``"a photo of a {label}"``: one text per class from its label; ``None``: none.

Splits
------
From the ``split`` column, else a seeded class-disjoint split
(:func:`fewmm.data.manifest.class_splits`: default 60 % base / 20 % validation / 20 % novel
classes, ``split_seed`` 0). Without validation classes, a seeded ``val_fraction`` of each base
class's items is held out for validation (as in ``digits-av``). The split record is in
``task.info["splits"]`` and in the fusion bench's results.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..cache import embed_table
from ..corrupt import Corruption, corrupt_table
from ..data.manifest import DEFAULT_SPLIT_FRACTIONS, class_splits, load_manifest
from ..data.table import MODALITIES
from ..multimodal import MMFeatures
from . import Task, TaskError, embed_class_text, encoder_record, register, resolve_encoder
from .digits_av import validation_items

NAME = "manifest"
#: Encoder per item modality unless ``encoders=`` says otherwise.
DEFAULT_ENCODERS = {"image": "efficientnet-lite2", "audio": "whisper-tiny-en", "text": "minilm-l6"}
#: The corruption of the fusion bench's ``<m>-corrupt50`` condition, by the first modality present.
DEFAULT_CORRUPTIONS = (("audio", Corruption("noise", 0.0)), ("image", Corruption("occlude", 0.25)))


def check_label_template(template: str, name: str = "class_text") -> str:
    """Validate a class-text template such as ``"a photo of a {label}"`` -> the template.

    The only replacement field allowed is ``{label}`` (conversions / format specs such as
    ``{label!r}`` or ``{label:>10}`` are fine); write a literal brace as ``{{`` or ``}}``.

    Parameters
    ----------
    template : str
    name : str
        What messages call it (``"--class-text"`` from the fusion CLI).

    Raises
    ------
    TaskError (a ValueError)
        Not a str, no ``{label}`` field, another field (``{name}``, ``{}``, ``{0}``), an unmatched
        brace, or a format spec that does not apply to a str label.
    """
    import string

    if not isinstance(template, str):
        raise TaskError(f"{name} must be a str template with {{label}}, got {type(template).__name__}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise TaskError(f"{name} {template!r} is not a valid template ({e}); write a literal brace as '{{{{' or '}}}}'") from None
    other = [f for f in fields if f != "label"]
    if other or not fields:
        bad = ", ".join("{" + f + "}" for f in other)
        raise TaskError(f"{name} {template!r}: the only field a template may use is {{label}}"
                        + (f", it has {bad}" if other else ", and it has none") + "; write a literal brace as '{{' or '}}'")
    try:
        template.format(label="label")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise TaskError(f"{name} {template!r}: cannot be filled with a class name ({e})") from None
    return template


def manifest_class_texts(table, class_text="column") -> tuple[list[list[str]] | None, str | None]:
    """The class texts of a manifest table: ``(texts, source)`` with ``texts[c]`` the distinct
    texts of class c, or ``(None, None)`` when ``class_text`` is None/"none" or is "column" and the
    manifest has no ``class_text`` column (see the module docstring for the three sources).

    Raises
    ------
    TaskError
        A class whose rows all have an empty ``class_text``, or a bad ``class_text`` value.
    """
    names = list(table.class_names)
    if class_text is None or class_text == "none":
        return None, None
    if class_text == "column":
        if "class_text" not in table.meta:
            return None, None
        col = np.asarray(table.meta["class_text"])
        texts = [sorted({t.strip() for t in col[table.labels == c] if t.strip()}) for c in range(len(names))]
        missing = [names[c] for c, t in enumerate(texts) if not t]
        if missing:
            raise TaskError(f"{table.name}: the 'class_text' column is empty for every row of class(es) "
                            f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}; give each class a text, "
                            "or drop the column")
        return texts, "the manifest's 'class_text' column (mean of each class's distinct texts)"
    if isinstance(class_text, str) and "{" in class_text:
        check_label_template(class_text)
        return [[class_text.format(label=n)] for n in names], f"template {class_text!r}"
    raise TaskError(f"class_text must be 'column', None or a template with {{label}}, got {class_text!r}")


@register(NAME, folds=("default",), help="your own CSV/JSONL manifest: image/audio/text items (any subset), "
          "optional class text and split column")
def build_manifest_task(root=None, cache=None, device: str = "cpu", corruption: Corruption | None = None,
                        fold: str = "default", path: str | os.PathLike | None = None, encoders: dict | None = None,
                        text_encoder="minilm-l6", class_text: str | None = "column", split_seed: int = 0,
                        split_fractions=DEFAULT_SPLIT_FRACTIONS, val_fraction: float = 0.2, val_seed: int = 0,
                        default_corruption: bool = False) -> Task:
    """Build a task from a manifest (see the module docstring).

    Parameters
    ----------
    root, cache, device
        See :func:`fewmm.tasks.build` (``root`` is unused: the manifest names its files).
    corruption : Corruption or None
        Also compute :attr:`Task.corrupted` for this corruption (its modality must be present).
    fold : {"default"}
    path : path
        The manifest (.csv/.tsv/.jsonl); required.
    encoders : dict of str to (str or Encoder), optional
        Encoder per item modality, overriding :data:`DEFAULT_ENCODERS`.
    text_encoder : str or Encoder, default "minilm-l6"
        Encoder of the class text.
    class_text : "column", None or a template with ``{label}``, default "column"
    split_seed : int, default 0
    split_fractions : (float, float, float), default (0.6, 0.2, 0.2)
        Base / validation / novel fractions of the classes for the seeded split (ignored with a
        ``split`` column).
    val_fraction : float in [0, 1), default 0.2
    val_seed : int, default 0
        Held-out validation items of base classes when there are no validation classes.
    default_corruption : bool, default False
        With ``corruption=None``: corrupt audio with white noise at 0 dB SNR when the items have
        audio, else occlude a quarter of the image area when they have images (text: none).

    Returns
    -------
    Task
        ``features.modalities``: the item modalities present, in image, audio, text order;
        ``item_ids[m]``: the manifest's item ids; ``meta``: its extra columns and ``row``;
        ``info``: manifest path and sha256, encoders, splits record, class text, corruption.

    Raises
    ------
    TaskError
        No path, an encoder for a modality the items lack, a corruption of an absent modality,
        classes without class text, or no validation split possible.
    fewmm.errors.DataError
        The manifest has problems (all listed, each with its row), or a bad split.
    """
    if path is None:
        raise TaskError("task 'manifest' needs path=<your manifest .csv/.tsv/.jsonl> (--task manifest:PATH)")
    if fold != "default":
        raise TaskError(f"{NAME}: unknown fold {fold!r}; expected 'default'")
    table = load_manifest(path)
    splits, base, val, val_items, validation = _splits(table, split_seed, split_fractions, val_fraction, val_seed)
    mods = tuple(m for m in MODALITIES if m in table.modalities and table.mask(m).any())
    enc_spec = dict(DEFAULT_ENCODERS)
    for m, e in (encoders or {}).items():
        if m not in mods:
            raise TaskError(f"{table.name}: an encoder was given for {m!r}, but the items have only {', '.join(mods)}")
        enc_spec[m] = e
    encs = {m: resolve_encoder(enc_spec[m], m, device) for m in mods}
    n = len(table)
    feats, mask, cache_rec = {}, torch.zeros((n, len(mods)), dtype=torch.bool), {}
    for j, m in enumerate(mods):
        fs = embed_table(table, encs[m], cache=cache)
        feats[m] = fs.features.float().contiguous()
        mask[:, j] = torch.as_tensor(fs.mask)
        cache_rec[m] = {"dataset": fs.key["dataset"], "ids_sha256": fs.key["ids_sha256"], "cache_hit": fs.cache_hit}

    texts, text_source = manifest_class_texts(table, class_text)
    ct, text_rec = None, None
    if texts is not None and text_encoder is not None:
        ct, text_rec = embed_class_text(f"{NAME}/{Path(path).stem}", list(table.class_names), texts, text_encoder, cache=cache)
        text_rec["source"] = text_source

    enc_rec = {m: encoder_record(e) for m, e in encs.items()}
    if text_rec is not None:
        enc_rec["class_text"] = text_rec["encoder"]
    mm_info = {"task": NAME, "fold": fold, "encoders": enc_rec, "manifest": table.info["manifest"]}
    features = MMFeatures(feats, mask, mods, table.labels, list(table.class_names), ct, dict(mm_info))

    if corruption is None and default_corruption:
        corruption = next((c for m, c in DEFAULT_CORRUPTIONS if m in mods), None)
    corrupted, corr_rec = None, None
    if corruption is not None:
        m = corruption.modality
        if m not in mods:
            raise TaskError(f"{table.name}: corruption {corruption.kind!r} applies to {m!r}, which the items lack "
                            f"(they have {', '.join(mods)})")
        ctable = corrupt_table(table, m, corruption.kind, corruption.level, corruption.seed)
        cfs = embed_table(ctable, encs[m], cache=cache)
        cfeats = dict(feats)
        cfeats[m] = cfs.features.float().contiguous()
        corr_rec = {**corruption.as_dict(), "table": ctable.name, "cache_hit": cfs.cache_hit,
                    "n_silent": ctable.info["corruption"].get("n_silent", 0)}
        corrupted = MMFeatures(cfeats, mask.clone(), mods, table.labels, list(table.class_names), ct,
                               {**mm_info, "corruption": corr_rec})

    counts = np.bincount(table.labels, minlength=table.n_classes)
    info = {
        "task": NAME, "fold": fold, "manifest": table.info["manifest"], "manifest_sha256": table.info["manifest_sha256"],
        "encoders": enc_rec, "feature_cache": cache_rec, "class_text": text_rec, "splits": splits,
        "validation": validation, "val_seed": int(val_seed), "val_fraction": float(val_fraction),
        "items_per_modality": {m: int(mask[:, j].sum()) for j, m in enumerate(mods)},
        "items_per_class": {table.class_names[c]: int(counts[c]) for c in range(table.n_classes)},
        "corruption": corr_rec, "corrupt_modality": None if corruption is None else corruption.modality,
    }
    desc = (f"manifest {table.info['manifest']}: {n} items of {table.n_classes} classes, modalities "
            f"{', '.join(f'{m} ({int(mask[:, j].sum())})' for j, m in enumerate(mods))}; "
            f"{'class text from ' + text_source if text_rec else 'no class text'}; splits: {splits['rule']}.")
    return Task(
        name=NAME, features=features, base_classes=base, val_classes=val,
        novel_classes=np.asarray(splits["novel"], dtype=np.int64), val_items=val_items, fold=fold,
        description=desc, info=info, corrupted=corrupted, item_ids={m: list(table.ids) for m in mods},
        meta={k: np.asarray(v) for k, v in table.meta.items()},
    )


def _splits(table, split_seed, split_fractions, val_fraction, val_seed):
    """(splits record, base, val, val_items, validation sentence) of a manifest's table."""
    splits = class_splits(table, split_seed, split_fractions)
    base = np.asarray(splits["base"], dtype=np.int64)
    val = np.asarray(splits["val"], dtype=np.int64)
    val_items = np.asarray(splits["val_items"], dtype=np.int64)
    if val.size:
        validation = f"validation classes ({val.size})" + (f" + {val_items.size} held-out base items" if val_items.size else "")
    elif val_items.size:
        validation = f"held-out base items from the split column ({val_items.size})"
    else:
        if not 0.0 < float(val_fraction) < 1.0:
            raise TaskError(f"{table.name}: no validation classes, so val_fraction must lie in (0, 1), got {val_fraction!r}")
        val_items = validation_items(table.labels, base, float(val_fraction), int(val_seed))
        validation = (f"held-out items of the base classes: for each base class c, round({val_fraction} * n_c) items drawn "
                      f"with default_rng(SeedSequence([val_seed={val_seed}, c])); no validation classes")
        if val_items.size == 0:
            raise TaskError(f"{table.name}: no validation classes and too few base items to hold some out; add a "
                            "'split' column with val rows, or more items")
    return splits, base, val, val_items, validation


class ManifestSplits:
    """The class splits of a manifest task from its labels alone (nothing encoded): the same
    ``labels``, ``class_names``, ``info["manifest"]``, ``info["splits"]``, :meth:`split_classes`
    and :meth:`split_items` as the :class:`~fewmm.tasks.Task` that :func:`build_manifest_task`
    builds with the same options, so episode sizes can be checked before any encoding.

    Parameters
    ----------
    path : path
        The manifest.
    split_seed, split_fractions, val_fraction, val_seed
        As in :func:`build_manifest_task`.

    Raises
    ------
    fewmm.errors.DataError, TaskError
        As :func:`build_manifest_task` for the manifest and its splits.
    """

    def __init__(self, path, split_seed: int = 0, split_fractions=DEFAULT_SPLIT_FRACTIONS, val_fraction: float = 0.2,
                 val_seed: int = 0, **_ignored):
        table = load_manifest(path)
        splits, self.base_classes, self.val_classes, self.val_items, _ = _splits(
            table, split_seed, split_fractions, val_fraction, val_seed)
        self.novel_classes = np.asarray(splits["novel"], dtype=np.int64)
        self.labels = np.asarray(table.labels)
        self.class_names = list(table.class_names)
        self.info = {"manifest": table.info["manifest"], "splits": splits}

    def split_classes(self, split: str) -> np.ndarray:
        """Class indices of ``split``; ``"val"`` without validation classes: the base classes."""
        if split == "val" and not self.val_classes.size:
            return self.base_classes
        return {"base": self.base_classes, "val": self.val_classes, "novel": self.novel_classes}[split]

    def split_items(self, split: str) -> np.ndarray:
        """Item indices of ``split`` (as :meth:`fewmm.tasks.Task.split_items`), (n,) int64."""
        keep = np.isin(self.labels, {"base": self.base_classes, "val": self.val_classes, "novel": self.novel_classes}[split])
        if split == "base":
            keep[self.val_items] = False
        elif split == "val":
            keep[self.val_items] = True
        return np.flatnonzero(keep).astype(np.int64)
