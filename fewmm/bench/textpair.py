"""Class text and aligned pairs for the main harness (``python -m fewmm.bench``).

The class-text methods (:func:`fewmm.methods.text_methods`: zero-shot, Tip-Adapter, LP++, ...)
need one text embedding per class in the space of the item features. For a run of the main
harness (a data set x an item encoder) this module gives

* the **class texts** of a data set (:func:`dataset_class_texts`), rendered with the same prompt
  templates as the tasks of :mod:`fewmm.bench.transfer`: ESC-50 categories with ``esc50-text`` 's
  template ``"the sound of {category}"``; digit data sets (``fsdd``, ``digits``, ``mnist``) with
  ``digits-av`` 's three templates (prompt-ensembled); ``banking77`` with its intent names
  (underscores as spaces); a manifest with its ``class_text`` column. Other data sets (e.g.
  ``omniglot``: alphabet/character ids, no text) are refused with a clear error;
* the **aligned pair** (:func:`make_pair`): for CLIP/CLAP item encoders their own text tower
  (:func:`fewmm.aligned.joint_pair`), otherwise a bridge (:func:`fewmm.aligned.train_bridge`)
  into a text encoder (default ``minilm-l6``) trained on the run's BASE classes only;
* the **class split of a task** (:func:`task_class_split`, ``base = "task:esc50-text"`` in a
  suite run): the task's fixed base / novel class lists, so a main-harness run evaluates on the
  same novel classes (and, with the same seed and counts, the same episodes) as
  :mod:`fewmm.bench.transfer`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import FewmmError

#: Text encoder of a bridge unless the suite / ``--text-encoder`` says otherwise.
DEFAULT_TEXT_ENCODER = "minilm-l6"
#: Data sets whose classes are the digits "0".."9" (class text: ``digits-av`` 's templates).
DIGIT_DATASETS = ("fsdd", "digits", "mnist")
#: banking77's class text: the intent name, underscores as spaces.
BANKING77_TEMPLATE = "{intent}"
#: Prefix of a run's ``base`` naming a task's fixed class split, e.g. ``"task:esc50-text"``.
TASK_PREFIX = "task:"


def dataset_class_texts(dataset: str, table, label: str | None = None, options: dict | None = None
                        ) -> tuple[list[list[str]], dict]:
    """The class texts of a data set's classes.

    Parameters
    ----------
    dataset : str
        Registry name (``"esc50"``, ``"fsdd"``, ``"digits"``, ``"mnist"``, ``"banking77"``) or
        ``"manifest"``.
    table : fewmm.data.ItemTable
        The loaded table (its ``class_names``; a manifest's ``meta["class_text"]``).
    label : str, optional
        The run's display name, for messages.
    options : dict, optional
        The run's data-set options; a manifest's ``path`` (the class texts of a split table, whose
        other classes have no rows in it, are read from the whole manifest).

    Returns
    -------
    texts : list of list of str
        ``texts[c]``: the texts of class c (one per prompt template), c in table class order.
    record : dict
        ``{"source", "templates", "cache_name"}`` (JSON-able), written to the results.

    Raises
    ------
    fewmm.errors.FewmmError
        The data set has no class text (e.g. ``omniglot``; a manifest without a ``class_text``
        column), or its class names are not the ones the templates are written for.
    """
    names = [str(n) for n in table.class_names]
    who = f"data set {label or dataset!r} ({table.name})"
    if dataset == "esc50":
        from ..tasks.esc50_text import CATEGORIES, NAME, TEXT_TEMPLATE, class_texts

        if tuple(names) != CATEGORIES:
            raise FewmmError(f"{who}: class names differ from the 50 ESC-50 categories the class text is written for")
        return class_texts(), {"source": "ESC-50 category names (underscores as spaces), as the esc50-text task",
                               "templates": [TEXT_TEMPLATE], "cache_name": NAME}
    if dataset in DIGIT_DATASETS:
        from ..tasks.digits_av import NAME, TEXT_TEMPLATES, class_texts

        if not all(n in [str(d) for d in range(10)] for n in names):
            raise FewmmError(f"{who}: class-text methods need digit classes '0'..'9' (digit words as class text), "
                             f"got classes such as {names[:5]}")
        t = class_texts()
        return [t[int(n)] for n in names], {"source": "digit words, as the digits-av task (3 templates, ensembled)",
                                            "templates": list(TEXT_TEMPLATES), "cache_name": NAME}
    if dataset == "banking77":
        return ([[BANKING77_TEMPLATE.format(intent=n.replace("_", " "))] for n in names],
                {"source": "banking77 intent names (underscores as spaces)", "templates": [BANKING77_TEMPLATE],
                 "cache_name": "banking77"})
    if dataset == "manifest":
        from ..tasks.manifest import manifest_class_texts

        if options and "path" in options and "class_text" in table.meta:  # a split: every class's text from all rows
            from .. import data as D

            full = D.load("manifest", split="all", **{k: v for k, v in options.items()
                                                      if k not in ("split_seed", "split_fractions")})
            if list(full.class_names) != list(table.class_names):
                raise FewmmError(f"{who}: its classes differ from the whole manifest's; cannot match their class texts")
            table = full
        texts, src = manifest_class_texts(table, "column")
        if texts is None:
            raise FewmmError(f"{who}: the class-text methods need a text per class, and this manifest has no "
                             "'class_text' column: add one (a description of the row's class, e.g. \"the sound of rain\") "
                             "or leave the class-text methods out")
        return texts, {"source": src, "templates": None, "cache_name": f"manifest-{table.name}"}
    raise FewmmError(f"{who} has no class text (its classes are ids such as {names[:3]}, with no names the kit can "
                     "turn into text), so the class-text methods cannot run on it; they run on esc50, "
                     f"{', '.join(DIGIT_DATASETS)}, banking77, or a manifest with a 'class_text' column")


def task_class_split(spec: str, table, label: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The fixed base / novel classes of a task, as class ids of ``table`` (matched by name).

    Parameters
    ----------
    spec : str
        ``"task:esc50-text"`` or ``"task:digits-av:A"`` (fold A or B).
    table : fewmm.data.ItemTable
        The evaluated table; every class of the split must be among its class names.

    Returns
    -------
    base, novel : numpy.ndarray of int64, sorted
        Class ids of ``table``. The task's validation classes (esc50-text: 10) are in neither.
    record : dict
        JSON-able description (task, fold, class names of each split).

    Raises
    ------
    fewmm.errors.FewmmError
        An unknown task or fold, or a class of the split missing from ``table``.
    """
    name, _, fold = spec[len(TASK_PREFIX):].partition(":")
    if name == "esc50-text":
        from ..tasks import esc50_text as m

        if fold not in ("", "default"):
            raise FewmmError(f"base {spec!r}: esc50-text has one fold, 'default'")
        names = m.CATEGORIES
        base, val, novel = m.BASE_CLASSES, m.VAL_CLASSES, m.NOVEL_CLASSES
    elif name == "digits-av":
        from ..tasks import digits_av as m

        fold = fold or "A"
        if fold not in m.FOLDS:
            raise FewmmError(f"base {spec!r}: digits-av folds are {sorted(m.FOLDS)}")
        names = [str(d) for d in range(10)]
        (base, novel), val = m.FOLDS[fold], ()
    else:
        raise FewmmError(f"base {spec!r}: a task class split is 'task:esc50-text' or 'task:digits-av[:A|B]'")
    index = {str(n): i for i, n in enumerate(table.class_names)}
    missing = [names[c] for c in (*base, *novel) if names[c] not in index]
    if missing:
        raise FewmmError(f"{label or table.name}: base {spec!r} names classes the data set does not have: {missing[:5]}")
    ids = lambda cs: np.asarray(sorted(index[names[c]] for c in cs), dtype=np.int64)  # noqa: E731
    rec = {"kind": "task", "task": name, "fold": fold or "default",
           "rule": f"the fixed class lists of the {name} task (fewmm.tasks); its validation classes are left out",
           "base_classes": [names[c] for c in base], "validation_classes_left_out": [names[c] for c in val],
           "novel_classes": [names[c] for c in novel],
           "note": "every method of a row is evaluated on episodes of the novel classes only"}
    return ids(base), ids(novel), rec


def text_encoder_for(item_encoder, text_encoder: str, device: str = "cpu"):
    """The text encoder of the pair: a joint model's own text tower (CLIP/CLAP item encoders,
    same weights), else ``text_encoder`` (the bridge's target space).

    Returns
    -------
    (encoder, joint) : (fewmm.encoders.Encoder, bool)
    """
    from .. import encoders as E
    from ..aligned import JOINT_FAMILIES

    fam = next((f for f in JOINT_FAMILIES if str(item_encoder.name).startswith(f + "-")), None)
    if fam is not None and item_encoder.modality == JOINT_FAMILIES[fam][0]:
        if fam == "openclip":
            raise FewmmError(f"{item_encoder.name}: the harness pairs hf-clip-*/hf-clap-* with their text tower; "
                             "for openclip use fewmm.aligned.joint_pair in Python")
        return E.create(f"{fam}-text", device=device, model=str(item_encoder.folder)), True
    return E.create(text_encoder, device=device), False


def make_pair(item_encoder, text_enc, joint: bool, base_features, base_labels, base_classes, class_text_base,
              seed: int = 0):
    """The aligned pair of a run: ``joint_pair`` or a bridge trained on the base items.

    Parameters
    ----------
    item_encoder, text_enc : fewmm.encoders.Encoder
    joint : bool
        From :func:`text_encoder_for`.
    base_features : torch.Tensor of shape (n_base, item_dim)
        Items of the BASE classes only (the bridge's training data; unused for a joint pair).
    base_labels : numpy.ndarray of shape (n_base,), int
        Rows of ``class_text_base``.
    base_classes : sequence of int
    class_text_base : torch.Tensor of shape (C_base_table, text_dim)
        Class text of the table ``base_labels`` index into.
    seed : int
        The bridge's :class:`~fewmm.aligned.BridgeConfig` seed (the suite seed).

    Returns
    -------
    fewmm.aligned.AlignedPair
    """
    from .. import aligned as A
    from ..tasks import encoder_record

    if joint:
        return A.joint_pair(item_encoder, text_enc)
    return A.train_bridge(base_features, base_labels, class_text_base, base_classes, A.BridgeConfig(seed=int(seed)),
                          item_encoder=encoder_record(item_encoder), text_encoder=encoder_record(text_enc))


def zero_shot_accuracy(z: torch.Tensor, labels: np.ndarray, text: torch.Tensor, classes) -> dict:
    """Zero-shot accuracy over ``classes`` at once: every item of those classes scored against
    every class text of ``classes`` (no support). ``z``: (n, d) joint item features, ``text``:
    (C, d) joint class text (row = class id). Returns ``{"classes", "items", "accuracy" (%), "chance" (%)}``."""
    cls = np.asarray(sorted(int(c) for c in classes), dtype=np.int64)
    items = np.flatnonzero(np.isin(labels, cls))
    pred = cls[(z[torch.as_tensor(items)] @ text[torch.as_tensor(cls)].T).argmax(1).numpy()]
    acc = float(np.mean(pred == labels[items]))
    return {"classes": int(cls.size), "items": int(items.size), "accuracy": round(100 * acc, 2),
            "chance": round(100 / cls.size, 2)}


__all__ = ["DEFAULT_TEXT_ENCODER", "DIGIT_DATASETS", "TASK_PREFIX", "dataset_class_texts", "task_class_split",
           "text_encoder_for", "make_pair", "zero_shot_accuracy"]
