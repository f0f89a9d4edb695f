"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015), read straight from the official zips.

Source: https://github.com/brendenlake/omniglot (``python/images_background.zip`` and
``python/images_evaluation.zip``). Licence: MIT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# ------------------------------------------------------------------ the one-shot challenge runs

RUNS_ZIP = "all_runs.zip"
N_RUNS = 20
_RUN_LINE = re.compile(r"^(run\d\d)/test/(item\d\d\.png) (run\d\d)/training/(class\d\d\.png)$")


@dataclass(frozen=True)
class OneShotRun:
    """One run of the Omniglot one-shot classification challenge (Lake et al. 2015): 20-way
    within-alphabet one-shot classification, one training image per class, 20 test items.

    Attributes
    ----------
    name : str
        ``"run01"`` .. ``"run20"``.
    training : numpy.ndarray of shape (20, 105, 105), uint8
        ``training/class01.png`` .. ``class20.png`` in that (sorted) order; 0 = ink, 255 = paper.
    test : numpy.ndarray of shape (20, 105, 105), uint8
        ``test/item01.png`` .. ``item20.png`` in that order.
    answers : numpy.ndarray of shape (20,), int64
        ``answers[i]`` = index into ``training`` of test item ``i``'s class (from
        ``class_labels.txt``).
    training_files, test_files : tuple of str
        The zip member names, in the order of the arrays.
    """

    name: str
    training: np.ndarray
    test: np.ndarray
    answers: np.ndarray
    training_files: tuple
    test_files: tuple


def load_omniglot_runs(root=None, download: bool = True) -> list[OneShotRun]:
    """The 20 official runs of the Omniglot one-shot classification challenge.

    Read from ``<root>/omniglot/all_runs.zip`` (the official
    ``python/one-shot-classification/all_runs.zip`` of github.com/brendenlake/omniglot, MIT;
    downloaded with its sha256 checked when missing and ``download=True``). Each run's
    ``class_labels.txt`` has 20 lines ``runNN/test/itemXX.png runNN/training/classYY.png``. The
    characters come from the evaluation alphabets: train models on ``images_background`` only.

    Parameters
    ----------
    root : path or None
        Data root (see :func:`fewmm.paths.data_root`).
    download : bool

    Returns
    -------
    list of :class:`OneShotRun`, ``run01`` .. ``run20`` in order.

    Raises
    ------
    fewmm.errors.DataNotFoundError
        ``all_runs.zip`` is not in the data root and cannot be downloaded.
    fewmm.errors.DataError
        The zip lacks a run, a ``class_labels.txt``, or an image it names; a line of a
        ``class_labels.txt`` is malformed, names another run, repeats a test item, or the images
        are not 105x105 greyscale (the message names the zip member).
    """
    import zipfile

    from ..io import read_image

    folder = locate("omniglot", root, download, lambda d: (d / RUNS_ZIP).is_file(), RUNS_ZIP, only=[RUNS_ZIP])
    zpath = (folder / RUNS_ZIP).resolve()
    try:
        with zipfile.ZipFile(zpath) as zf:
            members = set(zf.namelist())
            labels = {}
            for r in range(1, N_RUNS + 1):
                m = f"run{r:02d}/class_labels.txt"
                if m not in members:
                    raise DataError(f"{zpath}: no member {m}; is this the official all_runs.zip (run01..run{N_RUNS:02d})?")
                labels[r] = zf.read(m).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{zpath}: not a readable zip archive: {e}") from None
    runs = []
    for r in range(1, N_RUNS + 1):
        name = f"run{r:02d}"
        where = f"{zpath}:{name}/class_labels.txt"
        pairs = {}
        for k, line in enumerate(labels[r].splitlines(), 1):
            if not line.strip():
                continue
            mt = _RUN_LINE.match(line.strip())
            if not mt or mt.group(1) != name or mt.group(3) != name:
                raise DataError(f"{where} line {k}: expected '{name}/test/itemXX.png {name}/training/classYY.png', got {line.strip()!r}")
            if mt.group(2) in pairs:
                raise DataError(f"{where} line {k}: test item {mt.group(2)} listed twice")
            pairs[mt.group(2)] = mt.group(4)
        test_names = sorted(pairs)
        train_names = sorted(set(pairs.values()))
        if len(test_names) != 20 or len(train_names) != 20:
            raise DataError(f"{where}: expected 20 test items of 20 distinct training classes, got {len(test_names)} items of "
                            f"{len(train_names)} classes")
        tr_files = tuple(f"{name}/training/{f}" for f in train_names)
        te_files = tuple(f"{name}/test/{f}" for f in test_names)
        imgs = []
        for files in (tr_files, te_files):
            arr = []
            for f in files:
                if f not in members:
                    raise DataError(f"{where} names {f}, which is not in the zip")
                im = read_image(FileRef(zpath, f))
                if im.shape != (105, 105):
                    raise DataError(f"{zpath}:{f}: expected a 105x105 greyscale image, got shape {im.shape}")
                arr.append(im)
            imgs.append(np.stack(arr))
        answers = np.array([train_names.index(pairs[t]) for t in test_names], dtype=np.int64)
        runs.append(OneShotRun(name, imgs[0], imgs[1], answers, tr_files, te_files))
    return runs
