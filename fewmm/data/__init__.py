"""Data sets as :class:`ItemTable` s, and reading their payloads.

>>> import fewmm.data as D
>>> D.list_datasets()
['banking77', 'digits', 'esc50', 'fsdd', 'mnist', 'omniglot']
>>> t = D.load("digits")
>>> len(t), t.n_classes, D.read_image(t.modalities["image"][0]).shape
(1797, 10, (8, 8))

Data sets (see each loader's docstring for splits, licence and source):

==========  =============================================  ==============  ===============
name        content                                        splits          default split
==========  =============================================  ==============  ===============
omniglot    1,623 handwritten characters (image)           background,     evaluation
                                                           evaluation
fsdd        spoken digits, 6 speakers, 8 kHz (audio)       all/train/test  all
esc50       environmental sounds, 50 classes (audio)       all, fold1..5   all
mnist       handwritten digits, test set only (image)      test            test
banking77   banking intents, 77 classes (text)             train, test     test
digits      scikit-learn's 8x8 digits (image)              all             all
manifest    your own CSV/JSONL manifest (any modality)     all/base/val/   all
                                                           novel
==========  =============================================  ==============  ===============

The 20 runs of the Omniglot one-shot classification challenge (Lake et al. 2015), which are not an
item table (each run pairs 20 training drawings with 20 test drawings), come from
:func:`load_omniglot_runs` (``omniglot/all_runs.zip``).

Files are looked for in the data root (``root`` / ``--data-root``, else ``$FEWMM_DATA``, else
``~/.cache/fewmm/data``) and downloaded from their official source when missing (see
:mod:`fewmm.data.download`).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import DataError, UnknownNameError
from .datasets import DATASETS, import_builtin
from .io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, read_audio, read_image, read_text, resample
from .manifest import DEFAULT_SPLIT_FRACTIONS, MANIFEST_SPLITS, class_splits, load_manifest, split_table
from .table import MODALITIES, AudioClip, FileRef, ItemTable, ids_digest

import_builtin()

from .datasets.omniglot import OneShotRun, load_omniglot_runs  # noqa: E402  (the one-shot challenge runs)


def list_datasets() -> list[str]:
    """Names of the built-in data sets, sorted (``"manifest"``, which needs a path, is not listed)."""
    return DATASETS.names()


def dataset_help(name: str) -> str:
    """One-line description of a built-in data set. Raises UnknownNameError for unknown names."""
    DATASETS.get(name)
    return DATASETS.help(name)


def load(name: str, split: str | None = None, root: str | os.PathLike | None = None,
         download: bool = True, **kw: Any) -> ItemTable:
    """Load a data set split as an :class:`ItemTable`.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`, or ``"manifest"`` with ``path=`` (see
        :func:`load_manifest`).
    split : str or None
        The split; ``None`` -> the data set's default split (see its loader's docstring). For a
        manifest: ``"all"`` (default), or ``"base"`` / ``"val"`` / ``"novel"`` from its ``split``
        column, else from a seeded class-disjoint split (:func:`class_splits`).
    root : path or None
        Data root; default ``$FEWMM_DATA``, else the user cache folder ``~/.cache/fewmm/data``.
    download : bool, default True
        When the files are missing, try the official source (into the user cache folder; socket
        timeout 5 s). ``False`` fails at once.
    **kw
        Loader-specific options, e.g. ``label="speaker"`` for ``fsdd``; ``path=`` / ``name=`` for
        ``"manifest"``, plus ``split_seed=`` (int, default 0) and ``split_fractions=`` (base,
        val, novel; default (0.6, 0.2, 0.2)) for its seeded class-disjoint split.

    Returns
    -------
    ItemTable
        Payloads are not decoded (except the in-memory arrays of ``mnist`` and ``digits``); read
        them with :func:`read_image` / :func:`read_audio`.

    Raises
    ------
    fewmm.errors.UnknownNameError
        ``name`` is not a known data set (the message lists the known ones).
    fewmm.errors.DataNotFoundError
        The files are not in the data root and could not be downloaded; the message names the
        folder looked in, where it came from, and how to fix it.
    fewmm.errors.DataError
        Unknown split or option (the message lists the valid ones), or malformed files.
    """
    if name == "manifest":
        if "path" not in kw:
            raise DataError("load('manifest', ...) needs path=<your manifest .csv/.jsonl>")
        if split not in (None,) + MANIFEST_SPLITS:
            raise DataError(f"manifest: unknown split {split!r}; expected one of {', '.join(MANIFEST_SPLITS)} "
                            "(from the manifest's 'split' column, else a seeded class-disjoint split)")
        seed = kw.pop("split_seed", 0)
        fractions = kw.pop("split_fractions", DEFAULT_SPLIT_FRACTIONS)
        table = load_manifest(kw.pop("path"), **kw)
        return split_table(table, split or "all", seed=seed, fractions=fractions)
    try:
        loader = DATASETS.get(name)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e} (Or 'manifest' with path=<your .csv/.jsonl>.)") from None
    import inspect

    params = inspect.signature(loader).parameters
    unknown = [k for k in kw if k not in params]
    if unknown:
        opts = [k for k in params if k not in ("split", "root", "download")]
        raise DataError(
            f"{name}: unknown option(s) {', '.join(unknown)}; "
            f"{'its options: ' + ', '.join(opts) if opts else 'it takes no options'}"
        )
    return loader(split=split, root=root, download=download, **kw)


__all__ = [
    "load",
    "load_omniglot_runs",
    "OneShotRun",
    "list_datasets",
    "dataset_help",
    "load_manifest",
    "class_splits",
    "split_table",
    "read_image",
    "read_audio",
    "read_text",
    "resample",
    "ItemTable",
    "FileRef",
    "AudioClip",
    "ids_digest",
    "MODALITIES",
    "IMAGE_EXTENSIONS",
    "AUDIO_EXTENSIONS",
    "DATASETS",
]
