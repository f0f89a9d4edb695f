"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015), read straight from the official zips.

Source: https://github.com/brendenlake/omniglot (``python/images_background.zip`` and
``python/images_evaluation.zip``). Licence: MIT.
"""

from __future__ import annotations

import re

import numpy as np

from ...errors import DataError
from ..download import locate
from ..io import zip_handle
from ..table import FileRef, ItemTable
from . import check_split, register

SPLITS = ("background", "evaluation")
DEFAULT_SPLIT = "evaluation"
_MEMBER = re.compile(r"^images_(background|evaluation)/([^/]+)/(character\d+)/(\d+)_(\d+)\.png$")


@register("omniglot", help="Omniglot handwritten characters, 105x105 1-bit images (MIT)")
def load_omniglot(split: str | None = None, root=None, download: bool = True) -> ItemTable:
    """Omniglot: 1,623 handwritten characters from 50 alphabets, 20 drawings each.

    Parameters
    ----------
    split : {"background", "evaluation"}, default "evaluation"
        ``"background"``: 30 alphabets, 964 characters, 19,280 images (meta-train / base
        classes). ``"evaluation"``: 20 alphabets, 659 characters, 13,180 images (the novel
        classes of the few-shot benchmark). Read from ``<root>/omniglot/images_<split>.zip``
        without extracting it.
    root : path or None
        Data root (see :func:`fewmm.paths.data_root`).
    download : bool
        Fetch the zip from the official source into the user cache when missing.

    Returns
    -------
    ItemTable
        ``name`` ``"omniglot/<split>"``; modality ``"image"``: :class:`FileRef` (zip, member) to a
        105x105 1-bit PNG (read with :func:`fewmm.data.read_image` -> uint8 (105, 105), 0 = ink,
        255 = paper). ``ids``: the zip member path. ``class_names``: ``"<Alphabet>/characterNN"``
        sorted. ``meta``: ``alphabet`` (str), ``character`` (str, ``characterNN``), ``drawer``
        (int, 1..20).

    Raises
    ------
    fewmm.errors.DataNotFoundError
        The zip is not in the data root and cannot be downloaded.
    fewmm.errors.DataError
        Unknown split, or the zip is not an Omniglot zip.
    """
    split = check_split("omniglot", split, SPLITS, DEFAULT_SPLIT)
    zname = f"images_{split}.zip"
    folder = locate("omniglot", root, download, lambda d: (d / zname).is_file(), zname, only=[zname])
    zpath = (folder / zname).resolve()
    members = []
    for m in sorted(zip_handle(zpath).namelist()):
        match = _MEMBER.match(m)
        if match and match.group(1) == split:
            members.append((m, match))
    if not members:
        raise DataError(
            f"{zpath}: no member matches images_{split}/<Alphabet>/characterNN/<id>_<drawer>.png; "
            "is this the official Omniglot zip?"
        )
    classes = sorted({f"{mt.group(2)}/{mt.group(3)}" for _, mt in members})
    index = {c: i for i, c in enumerate(classes)}
    return ItemTable(
        name=f"omniglot/{split}",
        ids=[m for m, _ in members],
        labels=np.array([index[f"{mt.group(2)}/{mt.group(3)}"] for _, mt in members], dtype=np.int64),
        class_names=classes,
        modalities={"image": [FileRef(zpath, m) for m, _ in members]},
        meta={
            "alphabet": np.array([mt.group(2) for _, mt in members]),
            "character": np.array([mt.group(3) for _, mt in members]),
            "drawer": np.array([int(mt.group(5)) for _, mt in members], dtype=np.int64),
        },
        source_files=[zpath],
        info={
            "dataset": "omniglot",
            "split": split,
            "licence": "MIT",
            "source_url": "https://github.com/brendenlake/omniglot",
            "citation": "Lake, Salakhutdinov & Tenenbaum (2015), Human-level concept learning "
            "through probabilistic program induction, Science 350(6266)",
            "split_notes": "official background (30 alphabets, 964 characters) / evaluation "
            "(20 alphabets, 659 characters) split; 20 drawings per character; 105x105 1-bit PNG",
            "n_alphabets": len({mt.group(2) for _, mt in members}),
        },
    )
