"""Sharded benchmark grids: run one slice of a suite per job, then merge the slices.

A suite is a grid of *cells* (data set x encoder x way x shot); every method of a cell runs on the
same episodes, which are sampled from the suite's seed alone (:func:`fewmm.episodes.sample_episodes`),
so a cell's rows do not depend on which other cells run in the same process. ``--shard I/N`` of
``python -m fewmm.bench`` plans the whole grid (every data set is loaded and every cell checked, as
in an unsharded run), numbers the feasible cells 0..C-1 in the order an unsharded run measures them,
and measures the contiguous slice ``[I*C//N, (I+1)*C//N)`` (contiguous, so a data set x encoder
block is encoded by as few shards as possible). Each shard writes its own results file
``<name>-shard<I>-of-<N>.{json,csv}`` with a ``shard`` record (index, count, its cell numbers and a
sha256 of the planned grid); :func:`merge_results` (``python -m fewmm.bench.merge``) checks that
the N files are the N slices of one grid and writes the results file the unsharded run writes:
the same rows in the same order, the same ``datasets``, ``encoders`` and ``skipped``; the CSV is
byte for byte the unsharded one. Only what describes the run itself differs: ``command``,
``created`` and ``wall_seconds`` (the longest shard's) describe the merge, ``shards`` lists each
shard's file, command, start time and wall time, and each row's ``eval_seconds`` is that
shard's timing (see :data:`RUN_SPECIFIC`).

Shards share the feature cache safely: entries are written atomically (:mod:`fewmm.cache`), so
two shards encoding the same data set at once each write a whole, identical entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from ..errors import FewmmError

#: Keys of a results file that describe the run rather than the results: the merged file's values
#: differ from an unsharded run's (top level), as does each row's ``eval_seconds`` (a timing).
RUN_SPECIFIC = {"top": ("command", "created", "wall_seconds", "shard", "shards"), "row": ("eval_seconds",)}

_STEM_RE = re.compile(r"^(?P<stem>.*)-shard(?P<i>\d+)-of-(?P<n>\d+)$")


def parse_shard(value: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (I is 0-based, as Slurm's ``--array=0-(N-1)``).

    Raises
    ------
    ValueError
        Not two integers separated by ``/``, ``N < 1`` or ``I`` outside ``0..N-1``.
    """
    head, sep, tail = str(value).strip().partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        raise ValueError(f"--shard must be I/N (shard I of N, 0 <= I < N, e.g. 0/4), got {value!r}") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard must be I/N with N >= 1 and 0 <= I < N (0-based, e.g. 0/4 ... 3/4), got {value!r}")
    return i, n


def shard_type(value: str) -> tuple[int, int]:
    """argparse ``type`` of ``--shard``."""
    try:
        return parse_shard(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def shard_stem(name: str | None, suite_name: str, shard: tuple[int, int]) -> str:
    """File stem of shard ``I/N``: ``<name or suite name>-shard<I>-of-<N>`` (no time stamp, so the
    N jobs of one array agree on it without being told)."""
    i, n = shard
    return f"{name or suite_name}-shard{i}-of-{n}"


def cell_id(block: dict, ways: int, shots: int) -> list:
    """What identifies one cell of a planned grid (a block of :func:`fewmm.bench.runner.run_suite`)."""
    r = block["run"]
    return [r.display, r.split, block["encoder"], int(ways), int(shots), int(block["queries"])]


def grid_digest(blocks: list[dict], methods: list[str], seed: int, episodes: int, precision: str = "fp32") -> str:
    """sha256 of the planned grid (every feasible cell in order, the methods, seed, episode count
    and encoder precision): shards of one grid share it; merging refuses shards whose digests differ."""
    cells = [cell_id(b, w, k) for b in blocks for w, k in b["cells"]]
    doc = {"cells": cells, "methods": list(methods), "seed": int(seed), "episodes": int(episodes), "precision": precision}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def select_cells(blocks: list[dict], shard: tuple[int, int], methods: list[str], seed: int,
                 episodes: int, precision: str = "fp32") -> tuple[list[dict], dict]:
    """Keep the cells of shard ``I/N`` of the planned ``blocks``.

    Parameters
    ----------
    blocks : list of dict
        The feasible blocks of a planned suite, in run order, each with ``cells`` (list of
        ``(ways, shots)``).
    shard : (I, N)
    methods, seed, episodes, precision
        The suite's (and the encoders' precision), for :func:`grid_digest`.

    Returns
    -------
    (blocks, record)
        The blocks holding at least one cell of the slice (copies, ``cells`` cut to the slice),
        and the ``shard`` record for the results file: ``index``, ``count``, ``cells`` (the global
        cell numbers measured, a list of int), ``n_cells`` (C) and ``grid_sha256``.
    """
    i, n = shard
    n_cells = sum(len(b["cells"]) for b in blocks)
    lo, hi = i * n_cells // n, (i + 1) * n_cells // n
    out, pos = [], 0
    for b in blocks:
        keep = [c for j, c in enumerate(b["cells"]) if lo <= pos + j < hi]
        pos += len(b["cells"])
        if keep:
            out.append({**b, "cells": keep})
    record = {"index": i, "count": n, "cells": list(range(lo, hi)), "n_cells": n_cells,
              "grid_sha256": grid_digest(blocks, methods, seed, episodes, precision)}
    return out, record


# --- merging ------------------------------------------------------------------------------------

_SAME = ("suite", "seed", "episodes", "datasets", "skipped", "ci95_definition", "paired_definition")
_SAME_ENV = ("fewmm_version", "git_commit", "packages", "plugins")


def _read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FewmmError(f"shard results file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FewmmError(f"shard results file {path} cannot be read as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shard"), dict) or not isinstance(doc.get("results"), list):
        raise FewmmError(f"{path} is not the results file of a sharded run (no 'shard' record; "
                         "write shards with python -m fewmm.bench ... --shard I/N)")
    return doc


def merge_docs(docs: list[dict], names: list[str]) -> dict:
    """Merge the results documents of the N shards of one grid into the unsharded document.

    Parameters
    ----------
    docs : list of dict
        The shards' results JSON documents, in any order.
    names : list of str
        Their file names, for messages and the ``shards`` record.

    Returns
    -------
    dict
        The merged document (see the module docstring for what equals an unsharded run's).

    Raises
    ------
    fewmm.errors.FewmmError
        Shards of different grids or code (grid digest, suite, seed, episodes, data sets, skipped
        cells, fewmm version, git commit or package versions differ), a shard missing or given
        twice, a shard not finished, or a shard whose rows are not those of its cells.
    """
    if not docs:
        raise FewmmError("nothing to merge: give the results files of every shard")
    order = sorted(range(len(docs)), key=lambda j: docs[j]["shard"].get("index", -1))
    docs, names = [docs[j] for j in order], [names[j] for j in order]
    first, n = docs[0], docs[0]["shard"].get("count")
    for d, name in zip(docs, names):
        s = d["shard"]
        if s.get("count") != n or s.get("grid_sha256") != first["shard"].get("grid_sha256"):
            raise FewmmError(f"{name} is shard {s.get('index')}/{s.get('count')} of another grid than {names[0]} "
                             f"(shard {first['shard'].get('index')}/{n}): grid digests or shard counts differ")
        for k in _SAME:
            if d.get(k) != first.get(k):
                raise FewmmError(f"{name} and {names[0]} differ in {k!r}: not shards of one run")
        for k in _SAME_ENV:
            if d.get("environment", {}).get(k) != first.get("environment", {}).get(k):
                raise FewmmError(f"{name} and {names[0]} were run with different code ({k!r} differs in 'environment'); "
                                 "rerun the shards at one commit with one set of packages")
    got = [d["shard"]["index"] for d in docs]
    dup = sorted({i for i in got if got.count(i) > 1})
    if dup:
        raise FewmmError(f"shard(s) {dup} given twice: " + ", ".join(nm for d, nm in zip(docs, names) if d["shard"]["index"] in dup))
    missing = sorted(set(range(n)) - set(got))
    if missing:
        raise FewmmError(f"missing shard(s) {', '.join(f'{i}/{n}' for i in missing)} of {n}: run them "
                         f"(python -m fewmm.bench ... --shard I/{n}) and give every shard's results file")
    unfinished = [nm for d, nm in zip(docs, names) if not d.get("finished")]
    if unfinished:
        raise FewmmError(f"unfinished shard(s) (interrupted or failed; 'finished' is false): {', '.join(unfinished)}; "
                         "rerun them (features already encoded come from the cache)")
    n_methods = None
    rows, encoders = [], {}
    for d, name in zip(docs, names):
        cells = d["shard"].get("cells", [])
        methods = {r.get("method") for r in d["results"]}
        n_methods = n_methods or (len(methods) if methods else None)
        if n_methods and len(d["results"]) != len(cells) * n_methods:
            raise FewmmError(f"{name}: {len(d['results'])} rows for {len(cells)} cell(s) x {n_methods} method(s)")
        rows += d["results"]
        for k, v in d.get("encoders", {}).items():
            encoders.setdefault(k, v)
    covered = [c for d in docs for c in d["shard"].get("cells", [])]
    if covered != list(range(first["shard"].get("n_cells", len(covered)))):
        raise FewmmError(f"the shards' cells {covered} are not the grid's cells 0..{first['shard'].get('n_cells', 0) - 1}")
    merged = {k: v for k, v in first.items() if k not in ("shard", "results", "skipped", "finished")}
    merged["encoders"] = encoders
    merged["wall_seconds"] = max(float(d.get("wall_seconds", 0.0)) for d in docs)
    merged["shards"] = [{"file": nm, "index": d["shard"]["index"], "cells": d["shard"]["cells"],
                         "command": d.get("command"), "created": d.get("created"), "device": d.get("device"),
                         "wall_seconds": d.get("wall_seconds"), "platform": d.get("environment", {}).get("platform")}
                        for d, nm in zip(docs, names)]
    merged["finished"] = True
    merged["results"] = rows
    merged["skipped"] = first.get("skipped", [])
    return merged


def merge_results(paths: list[str | Path], out_dir: str | Path | None = None, stem: str | None = None,
                  command: str | None = None):
    """Merge the results files of the N shards of one grid into one results file (JSON + CSV).

    Parameters
    ----------
    paths : list of path
        The shards' ``.json`` results files (``<name>-shard<I>-of-<N>.json``), any order.
    out_dir : path, optional
        Default: the folder of the first file.
    stem : str, optional
        Default: the shards' common stem without ``-shard<I>-of-<N>``.
    command : str, optional
        Recorded as the merged file's ``command``.

    Returns
    -------
    fewmm.bench.runner.Reporter
        Its ``json_path`` / ``csv_path`` are the files written.

    Raises
    ------
    fewmm.errors.FewmmError
        See :func:`merge_docs`; also an unreadable file or one not written by a sharded run.
    """
    import time

    from .runner import Reporter

    paths = [Path(p) for p in paths]
    docs = [_read(p) for p in paths]
    merged = merge_docs(docs, [str(p) for p in paths])
    if stem is None:
        m = _STEM_RE.match(paths[0].stem)
        stem = m.group("stem") if m else paths[0].stem + "-merged"
    merged["command"] = command or "merge of " + " ".join(str(p) for p in paths)
    merged["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows, skipped = merged.pop("results"), merged.pop("skipped")
    merged.pop("finished")
    rep = Reporter(Path(out_dir) if out_dir is not None else paths[0].parent, stem, merged, quiet=True)
    if rep.json_path.resolve() in {p.resolve() for p in paths}:
        raise FewmmError(f"the merged file {rep.json_path} would overwrite a shard's file; give another --name")
    rep.rows, rep.skipped = rows, skipped
    rep.flush(finished=True, force=True)
    return rep
