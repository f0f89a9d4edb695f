"""Interleaved timing rounds and ratio reporting shared by the speed benchmarks.

A speed figure measured on a shared machine changes from day to day with the load; the ratio of
two paths timed side by side changes much less. Every compared pair is therefore run
*interleaved*: round r runs A once and B once (the order alternates from round to round, so neither
path always runs right after the other), over several rounds, in one process. What is reported:

* per path: every wall time and process CPU time (``time.process_time``), their medians;
* per pair: the per-round ratio ``time(B) / time(A)`` (how many times faster A is than B, in the
  same round), its median and its spread (min, 25th and 75th percentile, max);
* the machine: load average (``os.getloadavg``) before every round, ``torch`` intra- and inter-op
  thread counts, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, CPU count and model, versions.

A verdict against a target is ``"met"`` when the median ratio meets it, ``"missed"`` otherwise, and
is called *stable* when the 25th and 75th percentiles of the per-round ratios lie on the same side
of the target as the median (a coin flip between days otherwise).

Used by ``maml_speed.py``, ``episode_throughput.py`` and ``extraction_speed.py``::

    from interleaved import machine_state, ratio_stats, run_interleaved, verdict
    runs = run_interleaved({"fewmm": f, "l2l": g}, rounds=7)
    r = ratio_stats(runs, "fewmm", "l2l")      # median time(l2l) / time(fewmm)
    verdict(r, target=1.0)                     # {"target": ">= 1.0", "verdict": "met", "stable": True}
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable

import numpy as np


def machine_state() -> dict:
    """Load, thread counts and versions, for the JSON next to every timing."""
    import torch

    st = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            st["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        st["cpu"] = None
    return st


def run_interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict:
    """Time every callable once per round, interleaved, over ``rounds`` rounds.

    Parameters
    ----------
    fns : dict of name -> callable taking no argument
        The paths to compare. Each is called ``warmup`` times first (untimed, in order).
    rounds : int >= 1
        Timed rounds; round r calls the paths in the dict's order when r is even, reversed when odd.
    warmup : int >= 0, default 1

    Returns
    -------
    dict
        ``{"rounds": int, "loadavg_per_round": [float], "paths": {name: {"wall_s": [float] * rounds,
        "cpu_s": [float] * rounds, "wall_s_median": float, "cpu_s_median": float, "last": result}}}``
        (seconds; ``last`` is the return value of the last call, not JSON-serialised by callers).

    Raises
    ------
    ValueError
        ``rounds < 1``, ``warmup < 0`` or no callable.
    """
    if not fns:
        raise ValueError("run_interleaved: fns is empty; give at least one callable")
    if int(rounds) < 1 or int(warmup) < 0:
        raise ValueError(f"run_interleaved: rounds must be >= 1 and warmup >= 0, got rounds={rounds!r}, warmup={warmup!r}")
    names = list(fns)
    out = {n: {"wall_s": [], "cpu_s": [], "last": None} for n in names}
    for _ in range(int(warmup)):
        for n in names:
            out[n]["last"] = fns[n]()
    loads = []
    for r in range(int(rounds)):
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
        for n in (names if r % 2 == 0 else names[::-1]):
            c0, t0 = time.process_time(), time.perf_counter()
            out[n]["last"] = fns[n]()
            out[n]["wall_s"].append(time.perf_counter() - t0)
            out[n]["cpu_s"].append(time.process_time() - c0)
    for n in names:
        out[n]["wall_s_median"] = float(np.median(out[n]["wall_s"]))
        out[n]["cpu_s_median"] = float(np.median(out[n]["cpu_s"]))
    return {"rounds": int(rounds), "loadavg_per_round": loads, "paths": out}


def ratio_stats(runs: dict, fast: str, slow: str, key: str = "wall_s", scale: float = 1.0) -> dict:
    """Per-round ratio ``scale * time(slow) / time(fast)`` of two paths of one :func:`run_interleaved` run.

    ``scale`` converts unequal work (e.g. ``n_fast_items / n_slow_items`` when the slow path ran
    fewer items). Returns ``{"median", "min", "q25", "q75", "max", "per_round", "fast", "slow",
    "key"}``; the ratio is "how many times faster ``fast`` is than ``slow``" (> 1: faster).
    """
    a = np.asarray(runs["paths"][fast][key], dtype=float)
    b = np.asarray(runs["paths"][slow][key], dtype=float)
    return _stats(scale * b / a, fast=fast, slow=slow, key=key)


def _stats(r, **names) -> dict:
    r = np.asarray(r, dtype=float)
    return {**names, "median": float(np.median(r)), "min": float(r.min()), "q25": float(np.percentile(r, 25)),
            "q75": float(np.percentile(r, 75)), "max": float(r.max()), "per_round": [float(x) for x in r]}


def pool_ratio_stats(parts: list[dict]) -> dict:
    """One :func:`ratio_stats` result from several runs of the same pair (e.g. one per fresh
    process): the per-round ratios of all of them together, their median and spread, and each
    run's own median under ``"per_run_median"``.

    Raises
    ------
    ValueError
        No part, or parts of different pairs (``fast``/``slow``/``key`` differ).
    """
    if not parts:
        raise ValueError("pool_ratio_stats: no ratio_stats results to pool")
    names = {k: parts[0].get(k) for k in ("fast", "slow", "key")}
    for p in parts[1:]:
        if {k: p.get(k) for k in names} != names:
            raise ValueError(f"pool_ratio_stats: parts compare different pairs: {names} vs {({k: p.get(k) for k in names})}")
    out = _stats([x for p in parts for x in p["per_round"]], **names)
    out["per_run_median"] = [float(p["median"]) for p in parts]
    return out


def verdict(stats: dict, target: float, at_least: bool = True) -> dict:
    """Verdict of a :func:`ratio_stats` result against ``target`` (``>= target`` when ``at_least``,
    else ``<= target``): ``{"target", "verdict": "met" | "missed", "stable": bool}``; stable when the
    25th and 75th percentiles are on the median's side of the target."""
    ok = (lambda v: v >= target) if at_least else (lambda v: v <= target)
    met = ok(stats["median"])
    stable = ok(stats["q25"]) == met and ok(stats["q75"]) == met
    return {"target": f"{'>=' if at_least else '<='} {target:g}", "verdict": "met" if met else "missed", "stable": bool(stable)}


def fmt_ratio(stats: dict, digits: int = 2) -> str:
    """``"1.23x [1.10-1.31]"``: median, then the 25th-75th percentile range of the per-round ratios."""
    return f"{stats['median']:.{digits}f}x [{stats['q25']:.{digits}f}-{stats['q75']:.{digits}f}]"


def json_path_problem(path: str | None) -> str | None:
    """Why a benchmark could not write its JSON to ``path`` (None when it can, or no path): checked
    before any timing, so a long run is not lost at its end. Creates the folder and a probe file
    there (removed again)."""
    import tempfile
    from pathlib import Path

    if not path:
        return None
    out = Path(path).expanduser()
    if out.is_dir():
        return f"--json {path}: is a folder; expected a file path"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".probe-"):
            pass
    except OSError as e:
        return f"--json {path}: cannot write in {out.parent} ({e.strerror or e})"
    return None


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used by a benchmark here (None when it can): not a torch device
    string, or a CUDA device without a CUDA machine."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        return f"--device {device!r}: not a torch device; expected e.g. cpu, cuda or cuda:0"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device}: this machine has no usable CUDA device (torch.cuda.is_available() is False); use --device cpu"
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        return f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
    return None


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options ``names`` and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x in names:
            skip = True
        elif not any(x.startswith(n + "=") for n in names):
            out.append(x)
    return out


def run_fresh_processes(script: str, argv: list[str], k: int) -> list[dict]:
    """Run ``script`` (a benchmark taking ``--processes`` and ``--json``) ``k`` times, one after
    another, each in a fresh Python process with ``argv`` minus those two options plus
    ``--processes 1 --json <temporary file>``, and return the JSON each wrote, in order.

    Raises
    ------
    SystemExit
        A run failed: one line naming the script, which run and its exit status (the run's own
        message is printed above it); nothing is returned.
    """
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    base = without_options(list(argv), ("--processes", "--json"))
    name = Path(script).name
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(k):
            out = Path(tmp) / f"process{i}.json"
            print(f"== process {i + 1} of {k}", flush=True)
            rc = subprocess.run([sys.executable, str(Path(script).resolve()), *base, "--processes", "1", "--json", str(out)]).returncode
            if rc != 0:
                raise SystemExit(f"{name}: error: process {i + 1} of {k} failed (exit status {rc}); nothing was written")
            parts.append(json.loads(out.read_text()))
    return parts


def strip_last(runs: dict) -> dict:
    """``runs`` without the callables' return values (for JSON)."""
    return {**runs, "paths": {n: {k: v for k, v in p.items() if k != "last"} for n, p in runs["paths"].items()}}
