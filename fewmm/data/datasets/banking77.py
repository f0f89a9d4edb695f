"""BANKING77 (Casanueva et al., 2020): 13,083 customer-service queries in 77 intents.

Source: https://github.com/PolyAI-LDN/task-specific-datasets (``banking_data/``).
Licence: CC BY 4.0.
"""

from __future__ import annotations

import json

import numpy as np

from ...errors import DataError
from ..download import locate
from ..table import ItemTable
from . import check_split, read_csv_rows, register, require_columns

SPLITS = ("train", "test")
DEFAULT_SPLIT = "test"
_FILES = ("train.csv", "test.csv", "categories.json")


def read_categories(path) -> list[str]:
    """The intent names of ``categories.json`` (a JSON list of 77 unique strings).

    Raises
    ------
    fewmm.errors.DataError
        Not a JSON list of unique strings.
    """
    try:
        with open(path, encoding="utf-8") as f:
            cats = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats) or len(set(cats)) != len(cats):
        raise DataError(f"{path}: expected a JSON list of unique category names")
    return cats


@register("banking77", help="BANKING77 banking-intent queries, 77 classes (CC BY 4.0)")
def load_banking77(split: str | None = None, root=None, download: bool = True) -> ItemTable:
    """BANKING77 intent classification: short English queries, 77 intents.

    Parameters
    ----------
    split : {"train", "test"}, default "test"
        The official split: ``"train"`` 10,003 queries, ``"test"`` 3,080 queries (40 per intent).
    root : path or None
        Data root; files ``<root>/banking77/{train,test}.csv`` (columns ``text``, ``category``)
        and ``categories.json``.
    download : bool
        Fetch the files into the user cache when missing (CSV sha256-checked).

    Returns
    -------
    ItemTable
        Modality ``"text"``: ``str`` payloads. ``ids``: ``"<split>/<row>"`` (0-based data row,
        5 digits), in file order. ``class_names``: the 77 intents in ``categories.json`` order;
        ``labels`` = index in that list.

    Raises
    ------
    fewmm.errors.DataError
        Unknown split, malformed files, or a category not in ``categories.json``.
    fewmm.errors.DataNotFoundError
        The files are missing and cannot be downloaded.
    """
    split = check_split("banking77", split, SPLITS, DEFAULT_SPLIT)
    need = (f"{split}.csv", "categories.json")
    folder = locate("banking77", root, download, lambda d: all((d / f).is_file() for f in need),
                    " and ".join(need), only=list(need))
    folder = folder.resolve()
    class_names = read_categories(folder / "categories.json")
    index = {c: i for i, c in enumerate(class_names)}
    csv_path = folder / f"{split}.csv"
    rows = read_csv_rows(csv_path, "BANKING77")
    require_columns(rows, csv_path, ("text", "category"))
    unknown = sorted({r["category"] for r in rows} - set(index))
    if unknown:
        raise DataError(f"{csv_path}: categories not in categories.json: {', '.join(unknown[:10])}")
    return ItemTable(
        name=f"banking77/{split}",
        ids=[f"{split}/{i:05d}" for i in range(len(rows))],
        labels=np.array([index[r["category"]] for r in rows], dtype=np.int64),
        class_names=class_names,
        modalities={"text": [r["text"] for r in rows]},
        source_files=[csv_path, folder / "categories.json"],
        info={
            "dataset": "banking77",
            "split": split,
            "licence": "CC BY 4.0",
            "source_url": "https://github.com/PolyAI-LDN/task-specific-datasets",
            "citation": "Casanueva, Temcinas, Gerz, Henderson & Vulic (2020), Efficient Intent "
            "Detection with Dual Sentence Encoders, NLP4ConvAI",
            "split_notes": "official train (10,003) / test (3,080) split",
        },
    )
