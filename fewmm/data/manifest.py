"""Your own data: a CSV or JSONL manifest listing items and their labels.

A manifest has a ``label`` column and at least one of the modality columns ``image``, ``audio``,
``text``; a row may fill any subset of the modality columns (but at least one)::

    label,image,audio,text
    cat,img/cat1.png,snd/cat1.wav,a small cat
    dog,img/dog1.jpg,,notes/dog1.txt
    dog,,snd/dog2.flac,

JSONL is the same with one JSON object per line (``{"label": "cat", "image": "img/cat1.png"}``).

* ``image`` / ``audio``: file paths, relative to the manifest's folder or absolute.
* ``text``: inline text, or the path of a UTF-8 ``.txt`` file (relative or absolute) when the
  value ends with ``.txt`` and that file exists; otherwise the value itself is the text.
* ``id`` (optional): item ids; default ``"<row>:<first image/audio path, or text sha1>"``.
* Any other column is kept as a ``meta`` column (strings).

Every row is validated before anything is returned, and every problem found is reported at once
in one :class:`~fewmm.errors.DataError`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, check_audio_file, image_size_problem
from .table import MODALITIES, FileRef, ItemTable

_RESERVED = ("label", "id") + MODALITIES
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v).strip()


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[str]]:
    """(columns, [(line number, row)], problems). Line numbers are 1-based lines of the file."""
    problems: list[str] = []
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the manifest as UTF-8 text: {e}") from None
    if path.suffix.lower() in _JSONL_SUFFIXES:
        columns: list[str] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {lineno}: not valid JSON: {e.msg} (column {e.colno})")
                continue
            if not isinstance(obj, dict):
                problems.append(f"line {lineno}: expected a JSON object, got {type(obj).__name__}")
                continue
            for k in obj:
                if k not in columns:
                    columns.append(str(k))
            lab = obj.get("label")
            if isinstance(lab, bool) or isinstance(lab, (dict, list)):
                problems.append(f"line {lineno}, column 'label': {json.dumps(lab)} is not a label; use a string or an integer")
            elif isinstance(lab, float):
                if lab != lab or lab in (float("inf"), float("-inf")) or lab != int(lab):
                    problems.append(f"line {lineno}, column 'label': {lab!r} is not a label; use a string or an integer")
                else:
                    obj = {**obj, "label": int(lab)}  # 1.0 and 1 are the same class
            rows.append((lineno, {str(k): _cell(v) for k, v in obj.items()}))
        return columns, rows, problems
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise DataError(f"{path}: unknown manifest type {path.suffix!r}; expected .csv, .tsv or .jsonl")
    import io as _io

    reader = csv.reader(_io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: manifest is empty (expected a header line with 'label' and 'image'/'audio'/'text')")
        columns = [h.strip() for h in header]
        line_start = reader.line_num + 1
        for rec in reader:
            lineno = line_start
            line_start = reader.line_num + 1
            if not any(c.strip() for c in rec):
                continue
            if len(rec) > len(columns):
                problems.append(f"line {lineno}: {len(rec)} fields but the header has {len(columns)}")
            rows.append((lineno, {c: (rec[i].strip() if i < len(rec) else "") for i, c in enumerate(columns)}))
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV near line {reader.line_num}: {e}") from None
    return columns, rows, problems


def _check_image(p: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(p) as im:
            size = im.size
            im.verify()
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError, ...
        return f"not a readable image: {type(e).__name__}: {e}"
    return image_size_problem(size)


def load_manifest(path: str | os.PathLike, name: str | None = None, require_labels: bool = True) -> ItemTable:
    """Load a CSV/TSV/JSONL manifest of labelled image / audio / text items.

    Parameters
    ----------
    path : path
        The manifest (``.csv``, ``.tsv``, ``.jsonl``). Relative paths inside it are relative to its
        folder.
    name : str or None
        Table name (part of feature-cache keys); default ``"manifest/<file stem>"``.
    require_labels : bool, default True
        False for items to predict: the ``label`` column may then be absent and its cells empty
        (an unlabelled row gets the class name ``""``).

    Returns
    -------
    ItemTable
        ``class_names``: the sorted unique labels (string sort). ``modalities``: one payload list
        per modality column present: :class:`FileRef` for image/audio, ``str`` for text, ``None``
        where a row leaves the cell empty (see :meth:`ItemTable.mask`). ``meta``: extra columns
        (str arrays) plus ``row`` (int, 1-based data row). ``info["manifest_sha256"]``: the
        manifest's hash. Rows keep the manifest's order.

    Raises
    ------
    fewmm.errors.DataError
        The manifest cannot be read, or it has problems: no ``label`` column; no modality column;
        and per row an empty label, no modality filled, a missing file, an unknown extension
        (images: .png .jpg .jpeg .bmp .gif .webp .tif .tiff; audio: .wav .flac .ogg .mp3), an
        unreadable / corrupt file (images checked with PIL ``verify()``, audio with
        :func:`fewmm.data.io.check_audio_file`), an image with an aspect ratio above
        :data:`fewmm.data.io.MAX_ASPECT_RATIO` (e.g. 1 x 16000 pixels), a truncated WAV (its
        header declares more frames than the file holds), a float WAV/FLAC holding NaN or inf
        samples, or a duplicate id. Float audio whose samples go beyond [-1, 1] is accepted with a
        :class:`~fewmm.errors.DataWarning` naming the file (it is clipped when read). ALL problems are listed in one error, each naming
        its line (line numbers of the file: for CSV the header is line 1, so data row r is line
        r + 1, as in a spreadsheet; for JSONL the line of the object), its column and its path.
    """
    path = Path(path).expanduser()
    columns, rows, problems = _read_rows(path)
    base = path.resolve().parent
    modal_cols = [m for m in MODALITIES if m in columns]
    if "label" not in columns and require_labels:
        problems.insert(0, f"no 'label' column (columns: {', '.join(columns) or 'none'})")
    if not modal_cols:
        problems.insert(0, "no modality column: expected at least one of 'image', 'audio', 'text' "
                           f"(columns: {', '.join(columns) or 'none'})")
    if not rows and not problems:
        problems.append("no data rows")

    labels: list[str] = []
    payloads: dict[str, list[Any]] = {m: [] for m in modal_cols}
    ids: list[str] = []
    seen_ids: dict[str, int] = {}
    seen_content: dict[tuple, int] = {}
    files: list[Path] = []
    checked: dict[tuple[str, Path], str | None] = {}
    for data_row, (lineno, row) in enumerate(rows, start=1):
        where = f"line {lineno} (data row {data_row})"
        label = row.get("label", "")
        if "label" in columns and not label and require_labels:
            problems.append(f"{where}, column 'label': empty label")
        labels.append(label)
        if modal_cols and not any(row.get(m, "") for m in modal_cols):
            problems.append(f"{where}: no modality given (all of {', '.join(modal_cols)} are empty)")
        key_part = None
        for m in modal_cols:
            val = row.get(m, "")
            if not val:
                payloads[m].append(None)
                continue
            if m == "text":
                txt = val
                if val.lower().endswith(".txt"):
                    p = Path(val).expanduser()
                    p = p if p.is_absolute() else base / p
                    if p.is_file():
                        try:
                            txt = p.read_text(encoding="utf-8")
                            files.append(p)
                        except (OSError, UnicodeDecodeError) as e:
                            problems.append(f"{where}, column 'text': {val}: cannot read as UTF-8 text: {e}")
                        if not txt.strip():
                            problems.append(f"{where}, column 'text': {val}: the text file is empty")
                    elif " " not in val.strip():
                        problems.append(f"{where}, column 'text': {val}: looks like a .txt path but no such file "
                                        f"(looked for {p}); write inline text with spaces, or fix the path")
                payloads[m].append(txt)
                if key_part is None:
                    key_part = "text-" + hashlib.sha1(txt.encode("utf-8")).hexdigest()[:12]
                continue
            p = Path(val).expanduser()
            p = p if p.is_absolute() else base / p
            exts = IMAGE_EXTENSIONS if m == "image" else AUDIO_EXTENSIONS
            payloads[m].append(FileRef(p))
            if key_part is None or key_part.startswith("text-"):
                key_part = val
            if p.suffix.lower() not in exts:
                problems.append(
                    f"{where}, column '{m}': {val}: unknown {m} file extension {p.suffix!r} "
                    f"(expected {' '.join(exts)})"
                )
                continue
            if not p.is_file():
                shown = f" (looked for {p})" if str(p) != val else ""
                problems.append(f"{where}, column '{m}': {val}: file not found{shown}")
                continue
            ck = (m, p)
            if ck not in checked:
                checked[ck] = _check_image(p) if m == "image" else check_audio_file(p)
            if checked[ck] is not None:
                problems.append(f"{where}, column '{m}': {val}: {checked[ck]}")
            files.append(p)
        content = (label, tuple(str(payloads[m][-1]) for m in modal_cols))
        if content in seen_content:
            problems.append(f"{where}: duplicate of data row {seen_content[content]} (same label and same payloads); "
                            "a duplicate could be both a support and a query item")
        seen_content.setdefault(content, data_row)
        item_id = row.get("id", "") or f"{data_row}:{key_part or ''}"
        if item_id in seen_ids:
            problems.append(f"{where}, column 'id': duplicate id {item_id!r} (first at data row {seen_ids[item_id]})")
        seen_ids.setdefault(item_id, data_row)
        ids.append(item_id)

    if problems:
        n = len(problems)
        if path.suffix.lower() in _JSONL_SUFFIXES:
            how = "line numbers are lines of the file, one JSON object per line, blank lines counted"
        else:
            how = "line numbers count the header as line 1, as in a spreadsheet; data row r of a CSV is line r + 1"
        head = f"{path}: {n} problem{'s' if n > 1 else ''} in manifest ({how}):"
        raise DataError("\n".join([head] + [f"  - {p}" for p in problems]))

    class_names = sorted(set(labels))
    index = {c: i for i, c in enumerate(class_names)}
    extra = [c for c in columns if c not in _RESERVED and c]
    meta = {c: np.array([row.get(c, "") for _, row in rows], dtype=str) for c in extra}
    meta.setdefault("row", np.arange(1, len(rows) + 1, dtype=np.int64))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    uniq_files = list(dict.fromkeys(files))
    return ItemTable(
        name=name or f"manifest/{path.stem}",
        ids=ids,
        labels=np.array([index[lab] for lab in labels], dtype=np.int64),
        class_names=class_names,
        modalities=payloads,
        meta=meta,
        source_files=[path.resolve()] + uniq_files,
        info={
            "dataset": "manifest",
            "manifest": str(path.resolve()),
            "manifest_sha256": digest,
            "split_notes": "one split: every row of the manifest",
            "n_rows": len(rows),
        },
    )


__all__ = ["load_manifest"]
