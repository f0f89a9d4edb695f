"""``python -m fewmm.data``: list data sets, and export few-shot train / test manifests.

    python -m fewmm.data list
    python -m fewmm.data export fsdd --label speaker --shots 5 --test 20 --seed 0 --out walkthrough/

``export`` writes ``train.csv`` (``--shots`` items per class) and ``test.csv`` (up to ``--test``
other items per class), drawn per class with a seeded shuffle, as manifests (:mod:`.manifest`)
whose file paths are relative to the manifest's folder (or inline text), so the folder can be moved
together with the files (keeping their relative position). Items held in memory (``mnist``, ``digits``) or inside
zip archives (``omniglot``) cannot be listed in a manifest and are refused with a message.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np


def export_fewshot(table, shots: int, test: int, seed: int, out) -> tuple[Path, Path, int, int]:
    """Write ``train.csv`` / ``test.csv`` manifests of ``table`` to the folder ``out``.

    Returns
    -------
    (train path, test path, train rows, test rows)

    Raises
    ------
    DataError
        ``shots`` < 1 or ``test`` < 0; a class with fewer than ``shots + 1`` items (named); payloads
        that are not plain files or text.
    """
    from ..errors import DataError
    from .table import FileRef

    if shots < 1 or test < 0:
        raise DataError(f"--shots must be >= 1 and --test >= 0, got {shots} and {test}")
    if seed < 0:
        raise DataError(f"--seed must be >= 0, got {seed}")
    if Path(out).exists() and not Path(out).is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    mods = [m for m, p in table.modalities.items() if any(v is not None for v in p)]
    for m in mods:
        for v in table.modalities[m]:
            if v is None or (m == "text" and isinstance(v, str)):
                continue
            if not isinstance(v, FileRef) or v.member is not None:
                raise DataError(f"{table.name}: {m} items are {'zip members' if isinstance(v, FileRef) else type(v).__name__ + ' objects'}, "
                                "which a manifest cannot list; use fewmm.Adapter from Python with these items instead")
            break
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for c, name in enumerate(table.class_names):
        idx = np.flatnonzero(table.labels == c)
        if idx.size < shots + 1:
            raise DataError(f"{table.name}: class {name!r} has {idx.size} items; --shots {shots} needs at least {shots + 1}")
        idx = rng.permutation(idx)
        train_rows += [(name, int(i)) for i in idx[:shots]]
        test_rows += [(name, int(i)) for i in idx[shots : shots + test]]
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--out {out}: cannot create the folder: {e}") from None

    here = out.resolve()

    def cell(m, i):
        v = table.modalities[m][i]
        if v is None:
            return ""
        if isinstance(v, str):
            return v
        try:  # relative to the manifest's folder: the folder can be moved together with the data it points to
            return Path(os.path.relpath(Path(v.path).resolve(), here)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return str(Path(v.path).resolve())

    paths = []
    for fname, rows in (("train.csv", train_rows), ("test.csv", test_rows)):
        p = out / fname
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["label"] + mods + ["id"])
            for name, i in rows:
                w.writerow([name] + [cell(m, i) for m in mods] + [table.ids[i]])
        paths.append(p)
    return paths[0], paths[1], len(train_rows), len(test_rows)


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter, seed_type

    p = argparse.ArgumentParser(prog="python -m fewmm.data", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the data sets", formatter_class=HelpFormatter)
    e = sub.add_parser("export", help="write few-shot train.csv / test.csv manifests of a data set", formatter_class=HelpFormatter)
    e.add_argument("dataset", help="data set name (see `list`)")
    e.add_argument("--split", default=None, help="data set split (default: the data set's default split)")
    e.add_argument("--label", default=None, help="loader option, e.g. 'speaker' for fsdd (default: the data set's label)")
    e.add_argument("--shots", type=int, default=5, help="training items per class")
    e.add_argument("--test", type=int, default=20, help="test items per class, at most")
    e.add_argument("--seed", type=seed_type, default=0, help="seed of the draw of training and test items")
    e.add_argument("--data-root", default=None, help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    e.add_argument("--out", required=True, help="folder for train.csv and test.csv")
    return p


def main(argv=None) -> int:
    from . import list_datasets, load
    from ..errors import FewmmError

    p = build_parser()
    a = p.parse_args(argv)
    try:
        if a.command == "list":
            print("\n".join(list_datasets()))
            return 0
        kw = {"label": a.label} if a.label else {}
        table = load(a.dataset, split=a.split, root=a.data_root, **kw)
        tr, te, n_tr, n_te = export_fewshot(table, a.shots, a.test, a.seed, a.out)
        print(f"{table.name}: {len(table.class_names)} classes; wrote {tr} ({n_tr} rows) and {te} ({n_te} rows)")
        return 0
    except FewmmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
