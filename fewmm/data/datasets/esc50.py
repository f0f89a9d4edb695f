"""ESC-50: environmental sound classification (Piczak, 2015).

Source: https://github.com/karolpiczak/ESC-50. Licence: CC BY-NC 3.0 (the ESC-10 subset CC BY
3.0): research use only. The official release has 2,000 5-second clips (40 per class, 5 folds)
at 44.1 kHz; the project's shared data folder holds a staged subset at 16 kHz.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ...errors import DataError
from ..download import locate
from ..table import FileRef, ItemTable
from . import check_split, read_csv_rows, register, require_columns

SPLITS = ("all", "fold1", "fold2", "fold3", "fold4", "fold5")
DEFAULT_SPLIT = "all"
N_CLASSES = 50
N_OFFICIAL = 2000
_COLUMNS = ("filename", "fold", "target", "category", "esc10")


def _official(folder) -> bool:
    return (folder / "audio").is_dir() and (folder / "esc50.csv").is_file()


def _present(folder) -> bool:
    return _official(folder) or (folder / "esc50_staged_subset.csv").is_file()


def _bool(s: str) -> bool:
    return str(s).strip().lower() in ("true", "1", "yes")


@register("esc50", help="ESC-50 environmental sounds, 50 classes, 5 s clips (CC BY-NC 3.0, research only)")
def load_esc50(split: str | None = None, root=None, download: bool = True) -> ItemTable:
    """ESC-50 environmental sound clips, whichever are present.

    Two layouts of ``<root>/esc50/`` are understood:

    * the official one, ``audio/*.wav`` (44.1 kHz) + ``esc50.csv``: the rows of ``esc50.csv``
      whose WAV is present (all 2,000 in a complete copy);
    * the staged subset of the shared data folder, ``esc50_staged_subset.csv`` whose
      ``staged_file`` column names 16 kHz mono FLAC files (there: 414 clips, all 400 of fold 4
      plus 14 from folds 2, 3 and 5).

    The official layout wins when both are present.

    Parameters
    ----------
    split : {"all", "fold1", ..., "fold5"}, default "all"
        All present clips, or those of one of the official cross-validation folds.
    root : path or None
        Data root.
    download : bool
        Fetch the official repository archive (about 600 MB, no archive hash pinned) into the user
        cache when neither layout is present.

    Returns
    -------
    ItemTable
        Modality ``"audio"``: :class:`FileRef` to a 5 s clip (16 kHz FLAC in the staged subset,
        44.1 kHz WAV in the official layout). ``ids``: the official file name
        (``"<fold>-<src>-<take>-<target>.wav"``), sorted. ``class_names``: all 50 categories ordered
        by ``target``; ``labels`` = ``target``. ``meta``: ``fold`` (int, 1..5), ``esc10`` (bool).
        ``info["n_present"]``: number of clips present (vs. ``info["n_official"]`` = 2,000).

    Raises
    ------
    fewmm.errors.DataNotFoundError
        Neither layout is in the data root and the download failed or was not allowed.
    fewmm.errors.DataError
        Unknown split, no clip of the asked fold present, a malformed CSV, or a listed clip missing.
    """
    split = check_split("esc50", split, SPLITS, DEFAULT_SPLIT)
    folder = locate("esc50", root, download, _present,
                    "esc50_staged_subset.csv (+ its audio files) or audio/*.wav + esc50.csv")
    folder = folder.resolve()
    meta_csv = folder / "esc50.csv"
    sources = []
    if _official(folder):
        rows = read_csv_rows(meta_csv, "ESC-50 metadata")
        require_columns(rows, meta_csv, _COLUMNS)
        all_rows = rows
        have = {p.name for p in (folder / "audio").iterdir()}
        rows = [r for r in rows if r["filename"] in have]
        paths = {r["filename"]: folder / "audio" / r["filename"] for r in rows}
        variant = "official 44.1 kHz WAV (audio/)"
        sample_rate = 44100
        sources.append(meta_csv)
    else:
        staged = folder / "esc50_staged_subset.csv"
        rows = read_csv_rows(staged, "ESC-50 staged subset")
        require_columns(rows, staged, _COLUMNS + ("staged_file",))
        paths = {r["filename"]: folder / r["staged_file"] for r in rows}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise DataError(f"{staged}: {len(missing)} listed clip(s) missing: {', '.join(missing[:5])}{more}")
        all_rows = rows
        if meta_csv.is_file():
            all_rows = read_csv_rows(meta_csv, "ESC-50 metadata")
            require_columns(all_rows, meta_csv, _COLUMNS)
            sources.append(meta_csv)
        sources.append(staged)
        variant = "staged subset, resampled to 16 kHz mono FLAC"
        sample_rate = 16000

    names: dict[int, str] = {}
    for r in all_rows + rows:
        names.setdefault(int(r["target"]), r["category"])
    class_names = [names.get(t, f"target{t}") for t in range(N_CLASSES)]

    rows = sorted(rows, key=lambda r: r["filename"])
    present_per_fold = Counter(int(r["fold"]) for r in rows)
    n_present = len(rows)
    if split != "all":
        fold = int(split[len("fold"):])
        rows = [r for r in rows if int(r["fold"]) == fold]
        if not rows:
            raise DataError(
                f"esc50: no clip of {split} is present in {folder} ({n_present} of {N_OFFICIAL} "
                f"clips present, per fold: {dict(sorted(present_per_fold.items()))})"
            )
    files = [paths[r["filename"]] for r in rows]
    return ItemTable(
        name=f"esc50/{split}",
        ids=[r["filename"] for r in rows],
        labels=np.array([int(r["target"]) for r in rows], dtype=np.int64),
        class_names=class_names,
        modalities={"audio": [FileRef(p) for p in files]},
        meta={
            "fold": np.array([int(r["fold"]) for r in rows], dtype=np.int64),
            "esc10": np.array([_bool(r["esc10"]) for r in rows], dtype=bool),
        },
        source_files=sources + files,
        info={
            "dataset": "esc50",
            "split": split,
            "licence": "CC BY-NC 3.0 (ESC-10 subset: CC BY 3.0); research use only",
            "source_url": "https://github.com/karolpiczak/ESC-50",
            "citation": "Piczak (2015), ESC: Dataset for Environmental Sound Classification, ACM MM",
            "variant": variant,
            "sample_rate_hz": sample_rate,
            "n_present": n_present,
            "n_official": N_OFFICIAL,
            "present_per_fold": {int(k): int(v) for k, v in sorted(present_per_fold.items())},
            "split_notes": f"{n_present} of {N_OFFICIAL} clips present; official 5 folds "
            "(cross-validation); split 'all' = every present clip",
        },
    )
