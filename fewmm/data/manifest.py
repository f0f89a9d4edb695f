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
* ``split`` (optional): ``base`` (or ``train``), ``val`` (or ``validation``), ``novel`` (or
  ``test``) per row: the few-shot splits. Novel classes may not appear in base or validation rows;
  validation rows of a base class are held-out base items. Without the column,
  :func:`class_splits` draws a seeded class-disjoint base / validation / novel split.
* ``class_text`` (optional): a description of the row's class (e.g. "a photo of a cat"), used
  as class-level text by the fusion heads (:mod:`fewmm.tasks.manifest`).
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
from ..util import sha256_file
from .io import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, check_audio_file, image_size_problem
from .table import MODALITIES, FileRef, ItemTable

_RESERVED = ("label", "id") + MODALITIES
#: Accepted values of the ``split`` column and the split each stands for.
SPLIT_ALIASES = {"base": "base", "train": "base", "val": "val", "valid": "val", "validation": "val",
                 "novel": "novel", "test": "novel"}
#: The splits :func:`split_table` takes (``"all"``: every row).
MANIFEST_SPLITS = ("all", "base", "val", "novel")
#: Default fractions of the classes in the seeded base / validation / novel split.
DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v).strip()


_REPEATED = "\0repeated keys"


def _pairs_once(pairs):
    """``json.loads`` object hook: a dict, or one marking the keys that repeat (under ``_REPEATED``)."""
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    return {_REPEATED: dup} if dup else dict(pairs)


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
                obj = json.loads(line, object_pairs_hook=_pairs_once)
            except json.JSONDecodeError as e:
                problems.append(f"line {lineno}: not valid JSON: {e.msg} (column {e.colno})")
                continue
            if isinstance(obj, dict) and _REPEATED in obj:  # json.loads would keep the last value silently
                problems.append(f"line {lineno}: the key(s) {', '.join(map(repr, obj[_REPEATED]))} appear more than once "
                                "in the object; each key must appear once")
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
        dup = sorted({c for c in columns if c and columns.count(c) > 1})
        if dup:  # a dict row would keep only the last of them: refuse rather than read the wrong column
            raise DataError(f"{path}: the header names column(s) {', '.join(map(repr, dup))} more than once "
                            f"(columns {[i + 1 for i, c in enumerate(columns) if c in dup]}); each column must appear "
                            "once: rename or remove the extra one")
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
    splits: list[str] = []
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
        if "split" in columns:
            sp = row.get("split", "").strip().lower()
            if sp not in SPLIT_ALIASES:
                problems.append(f"{where}, column 'split': {row.get('split', '')!r} is not a split; expected one of "
                                f"{', '.join(SPLIT_ALIASES)} (base/train, val/validation, novel/test)")
            splits.append(SPLIT_ALIASES.get(sp, ""))
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
                    p = p if p.is_absolute() else Path(os.path.normpath(base / p))  # "../data/x.wav" -> a clean path
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
            p = p if p.is_absolute() else Path(os.path.normpath(base / p))  # "../data/x.wav" -> a clean path
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

    if splits and len(splits) == len(labels):
        novel = {lab for lab, sp in zip(labels, splits) if sp == "novel"}
        seen = sorted(novel & {lab for lab, sp in zip(labels, splits) if sp in ("base", "val")})
        if seen:
            problems.append(f"column 'split': class(es) {', '.join(map(repr, seen[:10]))}{' ...' if len(seen) > 10 else ''} "
                            "have novel rows and also base or val rows; novel classes must be new classes "
                            "(a few-shot method must never have seen them)")
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
    if "split" in columns:
        meta["split"] = np.array(splits, dtype=str)  # normalised: base / val / novel
    digest = sha256_file(path)
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


def has_split_column(path: str | os.PathLike) -> bool:
    """Whether a manifest has a ``split`` column (CSV/TSV: in its header; JSONL: in any object).
    Reads the file only; ``False`` when it cannot be read (loading it then says why)."""
    path = Path(path).expanduser()
    try:
        columns, _, _ = _read_rows(path)
    except DataError:
        return False
    return "split" in columns


def class_splits(table: ItemTable, seed: int = 0,
                 fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS) -> dict:
    """The few-shot splits of a manifest's table: base / validation / novel classes.

    From the ``split`` column when the manifest has one (``table.meta["split"]``); otherwise a
    seeded class-disjoint split: the classes (sorted names) are permuted with
    ``numpy.random.default_rng(seed)``; the first ``n_base`` are base, the next ``n_val``
    validation, the rest novel, with ``n_novel = max(1, round(f_novel * C))``, ``n_val =
    round(f_val * C)``, ``n_base = C - n_novel - n_val`` (C classes).

    Parameters
    ----------
    table : ItemTable
        From :func:`load_manifest`.
    seed : int, default 0
        Seed of the class permutation (ignored with a ``split`` column).
    fractions : (float, float, float), default (0.6, 0.2, 0.2)
        Fractions of the classes for base, validation and novel (they must sum to 1).

    Returns
    -------
    dict
        ``base`` / ``val`` / ``novel``: sorted class indices (lists of int, pairwise disjoint);
        ``val_items``: item indices of validation rows whose class is a base class (held-out base
        items; only from a ``split`` column); ``source``: ``"split column"`` or ``"seeded"``;
        ``rule``: one sentence saying how the split was made; ``seed`` and ``fractions`` (seeded
        only); ``class_names``: the names per split. JSON-able: written into results files.

    Raises
    ------
    fewmm.errors.DataError
        Bad fractions; too few classes for a base and a novel class; a ``split`` column with no
        base or no novel row.
    """
    names = list(table.class_names)
    c = len(names)
    if "split" in table.meta:
        sp = np.asarray(table.meta["split"])
        lab = table.labels
        base = sorted({int(x) for x in lab[sp == "base"]})
        val_rows = np.flatnonzero(sp == "val")
        val = sorted({int(x) for x in lab[val_rows]} - set(base))
        novel = sorted({int(x) for x in lab[sp == "novel"]})
        val_items = [int(i) for i in val_rows if int(lab[i]) in set(base)]
        if not base or not novel:
            raise DataError(f"{table.name}: the 'split' column needs base rows and novel rows "
                            f"(has {len(base)} base and {len(novel)} novel classes)")
        rec = {"source": "split column", "rule": "the manifest's 'split' column (base/train, val/validation, novel/test); "
               "validation rows of base classes are held-out base items"}
    else:
        try:
            f = tuple(float(x) for x in fractions)
        except (TypeError, ValueError):
            raise DataError(f"split fractions must be three numbers (base, val, novel), got {fractions!r}") from None
        if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-6 or f[0] == 0 or f[2] == 0:
            raise DataError(f"split fractions (base, val, novel) must be three numbers >= 0 summing to 1, base and novel "
                            f"> 0; got {fractions!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise DataError(f"split seed must be an integer >= 0, got {seed!r}")
        n_novel = max(1, int(round(f[2] * c)))
        n_val = int(round(f[1] * c))
        n_base = c - n_novel - n_val
        if n_base < 1:
            raise DataError(f"{table.name}: {c} classes are too few for a class-disjoint split with fractions {f} "
                            "(it needs at least one base and one novel class); add a 'split' column or change the fractions")
        perm = np.random.default_rng(int(seed)).permutation(c)
        base, val, novel = (sorted(int(x) for x in part) for part in (perm[:n_base], perm[n_base:n_base + n_val],
                                                                          perm[n_base + n_val:]))
        val_items = []
        rec = {"source": "seeded", "seed": int(seed), "fractions": list(f),
               "rule": f"classes (sorted names) permuted with numpy default_rng({int(seed)}): first {n_base} base, next "
                       f"{n_val} validation, last {n_novel} novel (fractions {f[0]:g}/{f[1]:g}/{f[2]:g} of {c} classes)"}
    rec.update(base=base, val=val, novel=novel, val_items=val_items,
               class_names={"base": [names[i] for i in base], "val": [names[i] for i in val],
                            "novel": [names[i] for i in novel]})
    return rec


def split_table(table: ItemTable, split: str, seed: int = 0,
                fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS) -> ItemTable:
    """The rows of one few-shot split of a manifest's table (see :func:`class_splits`).

    Parameters
    ----------
    table : ItemTable
        From :func:`load_manifest`.
    split : {"all", "base", "val", "novel"}
        ``"base"``: items of base classes, held-out validation items excluded; ``"val"``: items of
        validation classes plus held-out base items; ``"novel"``: items of novel classes;
        ``"all"``: ``table`` itself.
    seed, fractions
        See :func:`class_splits`.

    Returns
    -------
    ItemTable
        Named ``"<table name>/<split>"`` (``"/<split>-seed<seed>"`` for a seeded split), labels
        and class names unchanged (class indices stay those of the whole manifest);
        ``info["splits"]``: the record of :func:`class_splits`, written into results files.

    Raises
    ------
    fewmm.errors.DataError
        Unknown split, a split without items, or what :func:`class_splits` raises.
    """
    if split in (None, "all"):
        return table
    if split not in MANIFEST_SPLITS:
        raise DataError(f"manifest: unknown split {split!r}; expected one of {', '.join(MANIFEST_SPLITS)}")
    rec = class_splits(table, seed, fractions)
    keep = np.isin(table.labels, rec[split] if split != "val" else rec["val"])
    if split == "base":
        keep[rec["val_items"]] = False
    elif split == "val":
        keep[rec["val_items"]] = True
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        raise DataError(f"{table.name}: the {split} split has no items ({rec['rule']})")
    tag = split if rec["source"] == "split column" else f"{split}-seed{rec['seed']}"
    out = table.subset(idx, name=f"{table.name}/{tag}")
    out.info["splits"] = {**rec, "split": split}
    return out


__all__ = ["load_manifest", "class_splits", "split_table", "has_split_column", "MANIFEST_SPLITS", "SPLIT_ALIASES",
           "DEFAULT_SPLIT_FRACTIONS", "MANIFEST_SUFFIXES"]
