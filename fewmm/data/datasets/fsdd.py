"""Free Spoken Digit Dataset (FSDD) v1.0.10.

Source: https://github.com/Jakobovski/free-spoken-digit-dataset (``recordings/``).
Licence: CC BY-SA 4.0. 3,000 recordings: digits 0-9 x 6 speakers x 50 takes, 8 kHz mono WAV.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ...errors import DataError
from ..download import locate
from ..table import FileRef, ItemTable
from . import check_split, read_csv_rows, register, require_columns

SPLITS = ("all", "train", "test")
DEFAULT_SPLIT = "all"
TEST_TAKES = range(0, 5)  # the customary split: takes 0-4 test, 5-49 train
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")

# The speakers' metadata, copied from the shared data folder's speakers.csv (the FSDD README
# describes the same speakers). Used when the data folder has no speakers.csv, e.g. a copy
# downloaded from the repository archive, which does not ship one in that form.
_SPEAKERS = {
    "jackson": ("male", "USA/neutral"),
    "nicolas": ("male", "BEL/French"),
    "theo": ("male", "USA/neutral"),
    "yweweler": ("male", "DEU/German"),
    "george": ("male", "GRC/Greek"),
    "lucas": ("male", "DEU/German"),
}


def _has_recordings(folder) -> bool:
    rec = folder / "recordings"
    return rec.is_dir() and any(_NAME.match(n) for n in os.listdir(rec))


@register("fsdd", help="Free Spoken Digit Dataset, 3,000 8 kHz recordings of digits 0-9 (CC BY-SA 4.0)")
def load_fsdd(split: str | None = None, root=None, download: bool = True, label: str = "digit") -> ItemTable:
    """Free Spoken Digit Dataset: spoken digits 0-9, 6 speakers, 50 takes each.

    Parameters
    ----------
    split : {"all", "train", "test"}, default "all"
        ``"all"``: 3,000 recordings; ``"train"``: takes 5-49 (2,700); ``"test"``: takes 0-4
        (300), the customary FSDD split.
    root : path or None
        Data root; the recordings are ``<root>/fsdd/recordings/{digit}_{speaker}_{take}.wav``.
    download : bool
        Fetch the v1.0.10 repository archive into the user cache when missing (no archive hash is
        pinned, see :mod:`fewmm.data.download`).
    label : {"digit", "speaker"}, default "digit"
        The task: digit recognition (10 classes ``"0"``..``"9"``) or speaker identification
        (classes = the speaker names, sorted). The table is named ``"fsdd/<split>"`` resp.
        ``"fsdd-speaker/<split>"``.

    Returns
    -------
    ItemTable
        Modality ``"audio"``: :class:`FileRef` to an 8 kHz mono int16 WAV, 0.14-2.28 s (read with
        :func:`fewmm.data.read_audio` -> float32 waveform, sample_rate 8000 Hz). ``ids``:
        ``"recordings/<file>.wav"``, sorted by (digit, speaker, take). ``meta``: ``digit`` (int),
        ``speaker`` (str), ``take`` (int), ``gender`` (str), ``accent`` (str), the last two from
        ``speakers.csv``.

    Raises
    ------
    fewmm.errors.DataNotFoundError
        No recordings in the data root and the download failed or was not allowed.
    fewmm.errors.DataError
        Unknown split or label, or a malformed speakers.csv.
    """
    split = check_split("fsdd", split, SPLITS, DEFAULT_SPLIT)
    if label not in ("digit", "speaker"):
        raise DataError(f"fsdd: unknown label {label!r}; expected 'digit' or 'speaker'")
    folder = locate("fsdd", root, download, _has_recordings, "recordings/{digit}_{speaker}_{take}.wav")
    rec = (folder / "recordings").resolve()
    entries = []
    for fname in os.listdir(rec):
        m = _NAME.match(fname)
        if m is None:
            continue
        digit, speaker, take = int(m.group(1)), m.group(2), int(m.group(3))
        if split == "train" and take in TEST_TAKES or split == "test" and take not in TEST_TAKES:
            continue
        entries.append((digit, speaker, take, fname))
    entries.sort()
    if not entries:
        raise DataError(f"fsdd: no recordings of split {split!r} in {rec}")

    speakers = dict(_SPEAKERS)
    sources = []
    csv_path = folder / "speakers.csv"
    if csv_path.is_file():
        rows = read_csv_rows(csv_path, "FSDD speakers")
        require_columns(rows, csv_path, ("speaker", "gender", "accent"))
        speakers = {r["speaker"]: (r["gender"], r["accent"]) for r in rows}
        sources.append(csv_path.resolve())

    if label == "digit":
        class_names = [str(d) for d in range(10)]
        labels = [e[0] for e in entries]
        name = f"fsdd/{split}"
    else:
        class_names = sorted({e[1] for e in entries})
        index = {s: i for i, s in enumerate(class_names)}
        labels = [index[e[1]] for e in entries]
        name = f"fsdd-speaker/{split}"
    paths = [rec / e[3] for e in entries]
    return ItemTable(
        name=name,
        payload_name=f"fsdd/{split}",
        ids=[f"recordings/{e[3]}" for e in entries],
        labels=np.array(labels, dtype=np.int64),
        class_names=class_names,
        modalities={"audio": [FileRef(p) for p in paths]},
        meta={
            "digit": np.array([e[0] for e in entries], dtype=np.int64),
            "speaker": np.array([e[1] for e in entries]),
            "take": np.array([e[2] for e in entries], dtype=np.int64),
            "gender": np.array([speakers.get(e[1], ("unknown", "unknown"))[0] for e in entries]),
            "accent": np.array([speakers.get(e[1], ("unknown", "unknown"))[1] for e in entries]),
        },
        source_files=sources + paths,
        info={
            "dataset": "fsdd",
            "split": split,
            "label": label,
            "licence": "CC BY-SA 4.0",
            "source_url": "https://github.com/Jakobovski/free-spoken-digit-dataset",
            "version": "v1.0.10",
            "sample_rate_hz": 8000,
            "split_notes": "customary split: takes 0-4 test, takes 5-49 train; every speaker and "
            "digit appears in both, so 'speaker' labels identify the same 6 people in train and test",
            "n_speakers": len({e[1] for e in entries}),
        },
    )
