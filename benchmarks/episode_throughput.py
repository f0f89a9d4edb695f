"""Episode throughput: fewmm's batched evaluation vs a per-episode loop vs learn2learn vs a bare gather.

One run, one cached feature table, one set of episodes (from :func:`fewmm.episodes.sample_episodes`):

(a) ``fewmm``  - :func:`fewmm.evaluate.evaluate_episodes` with :class:`fewmm.methods.ProtoNet`
                 (euclidean): validate and transform once, ``index_select`` into reused buffers,
                 chunks of ``--chunk-size`` episodes (default: fewmm's), batched prototypes /
                 distances / argmax.
(a') ``fewmm-compiled`` - the same call with ``compile=True``: chunks of 100 episodes scored by one
                 kernel that ``torch.compile`` fuses (gather + products + sum + argmax, no gathered
                 buffer written). Its first call compiles and is timed apart (not in the rate); its
                 predictions are compared with (a) (the summation order differs, so a near-tie can
                 flip). Skipped with ``--no-compile`` or when compilation fails (no C++ compiler).
(b) ``loop``   - a plain Python loop over the same episodes: gather one episode's support and query
                 rows, prototypes (mean of shots), negative squared euclidean distances (the same
                 ``2 q.p - |q|^2 - |p|^2`` expansion ProtoNet uses, so per-episode accuracies can be
                 compared exactly; ``torch.cdist`` rounds differently), argmax. Run on the first
                 ``--loop-episodes`` episodes; its per-episode rate is extrapolated.
(c) ``l2l``    - learn2learn 0.2.0: ``TaskDataset(MetaDataset(TensorDataset(features, labels)),
                 [NWays, KShots(K+Q), LoadData, RemapLabels])`` and, per task, the support/query split
                 and prototype scoring of learn2learn's own ``examples/vision/protonet_miniimagenet.py``.
                 Its tasks are sampled by learn2learn (not the same episodes), so only its mean
                 accuracy is compared (statistically). ``--l2l-episodes`` tasks, rate extrapolated.
                 Skipped with a message when learn2learn does not import
                 (install: ``PYTHON=.venv/bin/python scripts/install_learn2learn.sh``).
(d) ``gather`` - the memory-bound limit: ``torch.index_select`` of the same support and query rows
                 (the same bytes) into preallocated buffers, in the same chunks as (a), and nothing
                 else. By default (a) uses :func:`fewmm.evaluate.resolve_chunk_size` (about 8 MiB of
                 rows per chunk on CPU, 20 episodes here); both (a) and (d) are also timed with
                 chunks of 1000 episodes (``fewmm@1000``, ``gather@1000``) for reference.
(e) ``gather+product`` - the unfused floor: (d) plus the one batched product ``bmm(query,
                 prototypes^T)`` every euclidean ProtoNet scoring needs, in the same chunks, and nothing
                 else. Reported as ``unfused_floor_time_over_gather_time``: what stock (unfused) torch
                 ops cost at least relative to the gather, so how close (a) can get to the ``<= 2``
                 target without a fused kernel; ``fewmm_time_over_unfused_floor_time`` is (a)'s own
                 overhead above that floor (norms, argmax, checks, Python).

Each timed path runs once to warm up, then ``--repeats`` times, interleaved (``benchmarks/interleaved.py``);
the verdicts come from the median of the per-round ratios (the stable ratios); the best (shortest)
wall time gives the episodes/s and the best-round ratios printed for reference. The process CPU time of every call is
recorded too: with ``--threads 1`` it is a good estimate of the time on an idle machine when other
jobs share the cores (with 2+ threads, OpenMP barriers make wall times on a loaded machine erratic,
and CPU time includes spinning). All times and the load average go to the JSON. Targets from the
issue: fewmm >= 20x learn2learn, and fewmm evaluation time <= 2x the bare gather of the same bytes.

Usage::

    FEWMM_DATA=../shared/data .venv/bin/python benchmarks/episode_throughput.py \\
        --json results/episode_throughput.json
    .venv/bin/python benchmarks/episode_throughput.py --synthetic      # random (13180, 1280) table
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):  # run from a checkout without installing; the shared timing helper
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fewmm.episodes import Episodes, sample_episodes  # noqa: E402
from fewmm.evaluate import evaluate_episodes, resolve_chunk_size  # noqa: E402
from fewmm.methods.protonet import ProtoNet  # noqa: E402
from interleaved import (  # noqa: E402
    device_problem, fmt_ratio, json_path_problem, machine_state, pool_ratio_stats, ratio_stats, run_fresh_processes, run_interleaved,
    strip_last, verdict,
)

L2L_INSTALL_HINT = "PYTHON=.venv/bin/python scripts/install_learn2learn.sh  (pip install learn2learn fails on Python 3.11)"


# ----------------------------------------------------------------------------- features
def synthetic_features(n_classes: int = 659, per_class: int = 20, dim: int = 1280, seed: int = 0):
    """Random features shaped like Omniglot-evaluation x EfficientNet-Lite2: (13180, 1280), 659
    classes x 20, class centres plus noise (so accuracies are neither 0 nor 1)."""
    g = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(n_classes), per_class).astype(np.int64)
    centres = torch.randn(n_classes, dim, generator=g)
    feats = centres[torch.as_tensor(labels)] + 4.0 * torch.randn(labels.size, dim, generator=g)
    return feats.contiguous(), labels


def real_features(dataset: str, split: str | None, encoder: str, data_root: str | None, cache: str | None):
    """Cached features of every item of ``dataset`` with ``encoder`` (embeds once, then cache hits)."""
    import fewmm.data as D
    import fewmm.encoders as E
    from fewmm.cache import embed_table

    kw = {"root": data_root} if data_root else {}
    if split:
        kw["split"] = split
    table = D.load(dataset, **kw)
    t0 = time.perf_counter()
    fs = embed_table(table, E.create(encoder), cache=cache, progress=True)
    embed_s = time.perf_counter() - t0
    feats = fs.features
    labels = np.asarray(table.labels, dtype=np.int64)
    if not fs.mask.all():
        keep = np.flatnonzero(fs.mask)
        feats, labels = feats[torch.as_tensor(keep)], labels[keep]
    info = {"table": table.name, "cache_hit": bool(fs.cache_hit), "cache_file": str(fs.path), "embed_or_load_s": embed_s}
    return feats.contiguous(), labels, info


# ----------------------------------------------------------------------------- timing
def timed(fn, repeats: int, cpu: list | None = None):
    """Warm-up call, then ``repeats`` timed calls -> (last result, list of wall seconds). The
    process CPU seconds of each call are appended to ``cpu`` when given."""
    out = fn()
    times = []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return out, times


def timed_interleaved(fns: dict, repeats: int, cpu: dict | None = None):
    """benchmarks/interleaved.py's :func:`run_interleaved` (one warm-up each, then ``repeats``
    rounds, order reversed every other round) -> ({name: last result}, {name: [wall s]}, runs);
    process CPU seconds go to ``cpu[name]`` when ``cpu`` is a dict."""
    runs = run_interleaved(fns, rounds=repeats, warmup=1)
    outs = {n: p["last"] for n, p in runs["paths"].items()}
    times = {n: p["wall_s"] for n, p in runs["paths"].items()}
    if cpu is not None:
        for n, p in runs["paths"].items():
            cpu.setdefault(n, []).extend(p["cpu_s"])
    return outs, times, runs


# ----------------------------------------------------------------------------- (a) fewmm
def run_fewmm(feats, episodes: Episodes, chunk_size: int | None):
    # returns numpy accuracies: evaluate_episodes copies them to the CPU, which waits for the device
    return evaluate_episodes(ProtoNet(), feats, episodes, chunk_size=chunk_size)


# ----------------------------------------------------------------------------- (b) loop
def run_loop(feats, episodes: Episodes, n_episodes: int) -> np.ndarray:
    """Plain per-episode loop: gather, prototypes, distances, argmax."""
    _, n, k = episodes.support.shape
    q = episodes.query.shape[2]
    d = feats.shape[1]
    sup_idx = torch.as_tensor(episodes.support[:n_episodes].reshape(n_episodes, n * k), device=feats.device)
    qry_idx = torch.as_tensor(episodes.query[:n_episodes].reshape(n_episodes, n * q), device=feats.device)
    target = torch.arange(n, device=feats.device).repeat_interleave(q)
    acc = np.empty(n_episodes)
    with torch.inference_mode():
        for i in range(n_episodes):
            support = feats[sup_idx[i]].view(n, k, d)
            query = feats[qry_idx[i]]
            protos = support.mean(dim=1)
            logits = 2.0 * (query @ protos.T) - ((query * query).sum(1, keepdim=True) + (protos * protos).sum(1))
            acc[i] = (logits.argmax(dim=1) == target).double().mean().item()
    return acc


# ----------------------------------------------------------------------------- (c) learn2learn
def l2l_taskset(feats, labels, n_way: int, n_shot: int, n_query: int):
    """learn2learn's task pipeline over the same feature table."""
    import warnings

    import learn2learn as l2l

    warnings.filterwarnings("ignore", message="TaskDataset is deprecated", category=DeprecationWarning)
    dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(feats, torch.as_tensor(labels)))
    transforms = [
        l2l.data.transforms.NWays(dataset, n_way),
        l2l.data.transforms.KShots(dataset, n_shot + n_query),
        l2l.data.transforms.LoadData(dataset),
        l2l.data.transforms.RemapLabels(dataset),
    ]
    return l2l.data.TaskDataset(dataset, task_transforms=transforms, num_tasks=-1)


def run_l2l(taskset, n_tasks: int, n_way: int, n_shot: int, n_query: int, seed: int) -> np.ndarray:
    """Sample ``n_tasks`` tasks and score each with prototypes, as in learn2learn's
    examples/vision/protonet_miniimagenet.py (sort by label, boolean support mask, mean of shots,
    negative squared distances, argmax)."""
    random.seed(seed)  # learn2learn samples classes and shots with Python's `random`
    per = n_shot + n_query
    support_mask = np.zeros(n_way * per, dtype=bool)
    sel = np.arange(n_way) * per
    for off in range(n_shot):
        support_mask[sel + off] = True
    support_mask = torch.as_tensor(support_mask)
    query_mask = ~support_mask
    acc = np.empty(n_tasks)
    with torch.inference_mode():
        for i in range(n_tasks):
            data, y = taskset.sample()
            order = torch.sort(y).indices
            data, y = data[order], y[order]
            protos = data[support_mask].reshape(n_way, n_shot, -1).mean(dim=1)
            query = data[query_mask]
            yq = y[query_mask].long()
            logits = -((query.unsqueeze(1) - protos.unsqueeze(0)) ** 2).sum(dim=2)
            acc[i] = (logits.argmax(dim=1) == yq).double().mean().item()
    return acc


# ----------------------------------------------------------------------------- (d) gather
def make_gather(feats, episodes: Episodes, chunk_size: int, product: bool = False):
    """(d) The same index_select of the same rows into preallocated buffers, nothing else.

    ``product=True``: (e) the unfused floor: the same gather plus the one batched product that any
    euclidean ProtoNet scoring must do, ``bmm(query, prototypes^T)`` into a preallocated output
    (1-shot: the prototypes are the support rows; K-shot: their mean), and nothing else (no norms,
    no argmax, no checks). What stock, unfused torch ops cost at least; only a fused kernel
    (``compile=True``) can go below it. It returns the last chunk's products (a view; for tests).
    """
    e, n, k = episodes.support.shape
    q = episodes.query.shape[2]
    d = feats.shape[1]
    sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=feats.device)
    qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=feats.device)
    c = max(1, min(chunk_size, e))
    sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=feats.device)
    qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=feats.device)
    out = torch.empty((c, n * q, n), dtype=feats.dtype, device=feats.device) if product else None

    def gather():
        m = 0
        with torch.inference_mode():
            for s in range(0, e, c):
                m = min(c, e - s)
                sup = torch.index_select(feats, 0, sup_idx[s : s + m].reshape(-1), out=sup_buf[: m * n * k])
                qry = torch.index_select(feats, 0, qry_idx[s : s + m].reshape(-1), out=qry_buf[: m * n * q])
                if product:
                    protos = sup.view(m, n, d) if k == 1 else sup.view(m, n, k, d).mean(dim=2)
                    torch.bmm(qry.view(m, n * q, d), protos.transpose(1, 2), out=out[:m])
        if feats.device.type == "cuda":
            torch.cuda.synchronize()
        return out[:m] if product else None

    return gather


# ----------------------------------------------------------------------------- report
#: The issue's targets: ratio name -> (target, at_least).
TARGETS = {"fewmm_over_l2l": (20.0, True), "fewmm_time_over_gather_time": (2.0, False),
           "fewmm_compiled_time_over_gather_time": (2.0, False), "fewmm_compiled_over_l2l": (20.0, True)}


def with_verdicts(stable: dict) -> dict:
    return {k: {**v, **({"verdict": verdict(v, *TARGETS[k])} if k in TARGETS else {})} for k, v in stable.items()}


def print_stable(stable: dict, over: str) -> None:
    print(f"stable ratios (median over {over} [25th-75th percentile]):")
    for k, v in stable.items():
        vd = v.get("verdict")
        print(f"  {k:<40} {fmt_ratio(v)}" + (f"   target {vd['target']}: {vd['verdict']}{'' if vd['stable'] else ' (not stable)'}" if vd else ""))


def write_json(results: dict, path: str | None) -> None:
    """Write ``results`` to ``path`` (None: nothing), creating its folder."""
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float) + "\n")
        print(f"wrote {out}")


def run_processes(a, argv) -> dict:
    """``--processes K``: the whole benchmark K times, each in a fresh Python process, one after
    another; the stable ratios pool the interleaved rounds of all K (each process's own median is
    kept under ``per_run_median``), the tables are the first process's. Single runs on one day
    gave medians on both sides of the 2x target; pooling fresh processes (each with its own
    memory placement and moment of the day's load) gives a figure less tied to one of them."""
    parts = run_fresh_processes(__file__, sys.argv[1:] if argv is None else argv, a.processes)
    results = parts[0]
    results["config"]["processes"] = a.processes
    results["config"]["json"] = a.json
    per_process = [{"loadavg_before": p.get("loadavg_before"),
                    "medians": {k: v["median"] for k, v in p["stable_ratios"].items()}} for p in parts]
    results["stable_ratios"] = with_verdicts({k: pool_ratio_stats([p["stable_ratios"][k] for p in parts])
                                              for k in parts[0]["stable_ratios"]})
    results["processes"] = per_process
    print(f"== pooled over {a.processes} processes")
    print_stable(results["stable_ratios"], f"all rounds of {a.processes} fresh processes")
    for k, v in results["stable_ratios"].items():
        print(f"    {k:<38} per-process medians: {', '.join(f'{m:.2f}' for m in v['per_run_median'])}")
    write_json(results, a.json)
    return results


def mean_ci(acc) -> tuple[float, float]:
    acc = np.asarray(acc, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std(ddof=1) / math.sqrt(acc.size)) if acc.size > 1 else 0.0


def environment(threads: int) -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "requested_threads": threads,
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        env["cpu"] = None
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except Exception:
        env["git_commit"] = None
    try:
        import learn2learn

        env["learn2learn"] = learn2learn.__version__
    except Exception:
        env["learn2learn"] = None
    return env


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="omniglot")
    p.add_argument("--split", default="evaluation", help="data set split (default: evaluation; '' for the loader's default)")
    p.add_argument("--encoder", default="efficientnet-lite2")
    p.add_argument("--data-root", default=None, help="data root (default: $FEWMM_DATA, else ~/.cache/fewmm/data)")
    p.add_argument("--cache", default=None, help="feature cache folder (default: $FEWMM_CACHE or ~/.cache/fewmm/features)")
    p.add_argument("--synthetic", action="store_true", help="random (13180, 1280) features, 659 classes x 20, instead of a data set")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--episodes", type=int, default=10000, help="episodes for fewmm and the gather (default 10000)")
    p.add_argument("--loop-episodes", type=int, default=1000, help="first episodes run by the per-episode loop (default 1000)")
    p.add_argument("--l2l-episodes", type=int, default=1000, help="tasks sampled by learn2learn (default 1000)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="episodes per chunk for (a) and (d) (default: fewmm's own choice, resolve_chunk_size)")
    p.add_argument("--no-1000", action="store_true", help="skip the extra fewmm@1000 / gather@1000 timings")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds after one warm-up (episodes/s: the best round; verdicts: the median of the per-round ratios)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--device", default="cpu", help="torch device of the feature table, fewmm and the gather (default cpu; "
                   "learn2learn and the loop then run there too where they can)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1,
                   help="run the whole benchmark in this many fresh processes, one after another, and pool their rounds "
                        "for the stable ratios (default 1; the tables are the first process's)")
    p.add_argument("--no-compile", action="store_true", help="skip the compile=True path (torch.compile; needs a C++ compiler)")
    p.add_argument("--no-l2l", action="store_true", help="skip learn2learn even if it imports")
    p.add_argument("--json", default=None, metavar="OUT", help="write the measured numbers + environment here")
    a = p.parse_args(argv)
    for k in ("ways", "shots", "queries", "episodes", "loop_episodes", "l2l_episodes", "repeats", "threads", "processes"):
        if getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(a, k)}")
    for why in (device_problem(a.device), json_path_problem(a.json)):  # before any timing: a run must not be lost at its end
        if why:
            p.error(why)
    if a.chunk_size is not None and a.chunk_size < 1:  # resolve_chunk_size would clamp it to 1 silently
        p.error(f"--chunk-size must be >= 1 episodes (or left out for fewmm's own choice), got {a.chunk_size}")
    return a


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.processes > 1:
        return run_processes(a, argv)
    torch.set_num_threads(a.threads)
    np.random.seed(a.seed)

    t0 = time.perf_counter()
    if a.synthetic:
        feats, labels = synthetic_features(seed=a.seed)
        source = {"synthetic": True, "table": "synthetic(659x20, 1280-d)"}
    else:
        feats, labels, source = real_features(a.dataset, a.split or None, a.encoder, a.data_root, a.cache)
        source["synthetic"] = False
    feats = feats.float().contiguous().to(a.device)
    print(f"features: {source['table']} {tuple(feats.shape)} ({time.perf_counter() - t0:.1f} s to load"
          f"{', cache hit' if source.get('cache_hit') else ''}); torch threads {torch.get_num_threads()}")

    from fewmm.episodes import infeasibility

    why = infeasibility(labels, a.ways, a.shots, a.queries)
    if why:  # before any timing: a clear message, not a traceback
        raise SystemExit(f"episode_throughput.py: error: {source['table']}: {why.splitlines()[0].split(' Lower ')[0]} "
                         "(--ways / --shots / --queries)")
    episodes = sample_episodes(labels, a.ways, a.shots, a.queries, a.episodes, seed=a.seed)
    E, n, k, q = episodes.n_episodes, episodes.n_way, episodes.n_shot, episodes.n_query
    d = feats.shape[1]
    bytes_gathered = E * n * (k + q) * d * feats.element_size()
    chunk = resolve_chunk_size(a.chunk_size, episodes, d, feats.device, feats.element_size())
    print(f"episodes: {E} x {n}-way {k}-shot {q}-query; fewmm chunks of {chunk} episodes"
          f"{' (its default)' if a.chunk_size is None else ''}; {bytes_gathered / 1e9:.2f} GB of feature rows gathered per pass")

    results: dict = {"config": vars(a) | {"n_items": int(feats.shape[0]), "dim": int(d), "n_classes": int(np.unique(labels).size),
                                          "chunk_episodes": chunk},
                     "source": source, "bytes_gathered": bytes_gathered,
                     "loadavg_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}

    def record(name, episodes_run, wall, cpu, **extra):
        results[name] = {"episodes": episodes_run, "extrapolated": episodes_run < E, "times_s": wall, "cpu_s": cpu,
                         "episodes_per_s": episodes_run / min(wall), "episodes_per_cpu_s": episodes_run / min(cpu), **extra}
        return results[name]

    def line(label, r, unit="episodes/s", note=""):
        print(f"{label:<31s}{r['episodes_per_s']:9.0f} {unit}  ({min(r['times_s']):.3f} s wall for {r['episodes']}; "
              f"{r['episodes_per_cpu_s']:.0f} per CPU-second){note}")

    # (a) fewmm batched and (d) the bare gather of the same rows in the same chunks, timed
    # alternately (a, d, a, d, ...) so that both see the same machine load; plus both with
    # chunks of 1000 episodes for reference.
    paths = {"fewmm": lambda: run_fewmm(feats, episodes, a.chunk_size), "gather": make_gather(feats, episodes, chunk),
             "gather+product": make_gather(feats, episodes, chunk, product=True)}
    results["fewmm-compiled"] = None
    if not a.no_compile:
        # (a') the same evaluation with compile=True: one kernel fused by torch.compile per chunk.
        # The first call compiles (timed separately, not counted in the rate).
        try:
            tc = time.perf_counter()
            _, pred_c = evaluate_episodes(ProtoNet(), feats, episodes, compile=True, return_predictions=True)
            compile_s = time.perf_counter() - tc
        except Exception as e:  # no C++ compiler, unsupported platform, ...
            print(f"(a') fewmm compile=True: skipped, torch.compile failed ({type(e).__name__}: {str(e)[:200]})")
        else:
            _, pred_d = evaluate_episodes(ProtoNet(), feats, episodes, chunk_size=a.chunk_size, return_predictions=True)
            results["fewmm-compiled"] = {"first_call_s": compile_s, "prediction_agreement": float((pred_c == pred_d).mean())}
            paths["fewmm-compiled"] = lambda: evaluate_episodes(ProtoNet(), feats, episodes, compile=True)
    if not a.no_1000 and chunk != min(1000, E):
        paths["fewmm@1000"] = lambda: run_fewmm(feats, episodes, 1000)
        paths["gather@1000"] = make_gather(feats, episodes, 1000)
    n_loop = min(a.loop_episodes, E)
    paths["loop"] = lambda: run_loop(feats, episodes, n_loop)
    results["l2l"] = None
    l2l_mod = None
    if a.no_l2l:
        print("(c) learn2learn: skipped (--no-l2l)")
    else:
        try:
            import learn2learn as l2l_mod
        except Exception as e:  # not installed, or broken
            print(f"(c) learn2learn: skipped, it does not import ({type(e).__name__}: {e}).\n"
                  f"    Install it with: {L2L_INSTALL_HINT}")
        else:
            ts = time.perf_counter()
            taskset = l2l_taskset(feats, labels, n, k, q)
            setup_s = time.perf_counter() - ts
            n_l2l = a.l2l_episodes
            paths["l2l"] = lambda: run_l2l(taskset, n_l2l, n, k, q, a.seed)
    cpu: dict = {}
    outs, times, runs = timed_interleaved(paths, a.repeats, cpu)
    results["interleaved"] = strip_last(runs)
    acc_f = outs["fewmm"]
    m_f, ci_f = mean_ci(acc_f)
    rf = record("fewmm", E, times["fewmm"], cpu["fewmm"], chunk_episodes=chunk, acc_mean=m_f, acc_ci95=ci_f)
    line("(a) fewmm evaluate_episodes:", rf, note=f"   acc {m_f:.4f} +- {ci_f:.4f}")
    rg = record("gather", E, times["gather"], cpu["gather"], chunk_episodes=chunk,
                GB_per_s=bytes_gathered / min(times["gather"]) / 1e9)
    line("(d) bare gather, same bytes:", rg, note=f"   {rg['GB_per_s']:.1f} GB/s")
    line("(e) gather + one bmm (unfused floor):", record("gather+product", E, times["gather+product"], cpu["gather+product"], chunk_episodes=chunk))
    if "fewmm-compiled" in outs:
        info = results["fewmm-compiled"]
        m_c, ci_c = mean_ci(outs["fewmm-compiled"])
        rc = record("fewmm-compiled", E, times["fewmm-compiled"], cpu["fewmm-compiled"], acc_mean=m_c, acc_ci95=ci_c, **info)
        line("(a') fewmm compile=True:", rc, note=f"   acc {m_c:.4f}; predictions == (a) for {100 * info['prediction_agreement']:.3f}% of queries;"
             f" first call (compiles) {info['first_call_s']:.1f} s")
    if "fewmm@1000" in outs:
        if not np.array_equal(outs["fewmm@1000"], acc_f):
            raise AssertionError("fewmm's accuracies depend on the chunk size")
        line("    fewmm, chunks of 1000:", record("fewmm@1000", E, times["fewmm@1000"], cpu["fewmm@1000"], chunk_episodes=min(1000, E)),
             note="   (same accuracies)")
        line("    gather, chunks of 1000:", record("gather@1000", E, times["gather@1000"], cpu["gather@1000"], chunk_episodes=min(1000, E)))

    # (b) per-episode loop (timed in the same interleaved rounds)
    acc_l, t_l, cpu_l = outs["loop"], times["loop"], cpu["loop"]
    identical = bool(np.array_equal(acc_l, acc_f[:n_loop]))
    rl = record("loop", n_loop, t_l, cpu_l, acc_mean=mean_ci(acc_l)[0], identical_to_fewmm=identical)
    line("(b) per-episode loop:", rl, note=f"   {'rate extrapolated; ' if n_loop < E else ''}per-episode accuracies == (a): {identical}")
    if not identical:
        bad = np.flatnonzero(acc_l != acc_f[:n_loop])
        raise AssertionError(f"fewmm and the loop disagree on {bad.size} of {n_loop} episodes (first: {bad[:5].tolist()})")

    # (c) learn2learn (timed in the same interleaved rounds)
    if "l2l" in outs:
        acc_2, t_2, cpu_2 = outs["l2l"], times["l2l"], cpu["l2l"]
        m_2, ci_2 = mean_ci(acc_2)
        se = math.sqrt((ci_f / 1.96) ** 2 + (ci_2 / 1.96) ** 2)
        z = (m_f - m_2) / se if se > 0 else 0.0
        p_val = math.erfc(abs(z) / math.sqrt(2))
        r2 = record("l2l", n_l2l, t_2, cpu_2, setup_s=setup_s, acc_mean=m_2, acc_ci95=ci_2, acc_diff_vs_fewmm=m_f - m_2,
                    z=z, p_value=p_val, version=l2l_mod.__version__)
        line("(c) learn2learn TaskDataset:", r2, unit="tasks/s   ",
             note=f"   rate extrapolated; MetaDataset setup {setup_s:.2f} s not counted")
        print(f"    l2l acc {m_2:.4f} +- {ci_2:.4f} on its own tasks vs fewmm {m_f:.4f} +- {ci_f:.4f}:"
              f" diff {m_f - m_2:+.4f}, z {z:+.2f}, p {p_val:.2f}")

    # stable figures: per-round ratios of paths timed side by side, median and spread
    stable = {"fewmm_over_loop": ratio_stats(runs, "fewmm", "loop", scale=E / n_loop),
              "fewmm_time_over_gather_time": ratio_stats(runs, "gather", "fewmm"),
              "unfused_floor_time_over_gather_time": ratio_stats(runs, "gather", "gather+product"),
              "fewmm_time_over_unfused_floor_time": ratio_stats(runs, "gather+product", "fewmm")}
    if "l2l" in outs:
        stable["fewmm_over_l2l"] = ratio_stats(runs, "fewmm", "l2l", scale=E / n_l2l)
    if "fewmm-compiled" in outs:
        stable["fewmm_compiled_time_over_gather_time"] = ratio_stats(runs, "gather", "fewmm-compiled")
        if "l2l" in outs:
            stable["fewmm_compiled_over_l2l"] = ratio_stats(runs, "fewmm-compiled", "l2l", scale=E / n_l2l)
    if "fewmm@1000" in outs:
        stable["fewmm_time_over_gather1000_time"] = ratio_stats(runs, "gather@1000", "fewmm")
    results["stable_ratios"] = with_verdicts(stable)
    results["machine"] = machine_state()
    print_stable(results["stable_ratios"], "the interleaved rounds")

    def ratios_by(key):
        rr = {"fewmm_over_loop": results["fewmm"][key] / results["loop"][key],
              "fewmm_time_over_gather_time": results["gather"][key] / results["fewmm"][key]}
        if results["l2l"]:
            rr["fewmm_over_l2l"] = results["fewmm"][key] / results["l2l"][key]
        if results.get("fewmm-compiled"):
            rr["fewmm_compiled_time_over_gather_time"] = results["gather"][key] / results["fewmm-compiled"][key]
        if "fewmm@1000" in results:
            rr["fewmm1000_time_over_gather1000_time"] = results["gather@1000"][key] / results["fewmm@1000"][key]
            rr["fewmm_time_over_gather1000_time"] = results["gather@1000"][key] / results["fewmm"][key]
        return rr

    ratios = ratios_by("episodes_per_s")
    ratios_cpu = ratios_by("episodes_per_cpu_s")
    results["ratios"], results["ratios_cpu_time"] = ratios, ratios_cpu
    print("best-round ratios (for reference; the verdicts are the stable ratios' above): wall time, CPU time in brackets")
    print(f"  fewmm / loop             = {ratios['fewmm_over_loop']:6.1f}x  [{ratios_cpu['fewmm_over_loop']:.1f}x]")
    if "fewmm_over_l2l" in ratios:
        print(f"  fewmm / l2l              = {ratios['fewmm_over_l2l']:6.1f}x  [{ratios_cpu['fewmm_over_l2l']:.1f}x]")
    else:
        print("  fewmm / l2l              = n/a (learn2learn skipped)")
    print(f"  fewmm time / gather time = {ratios['fewmm_time_over_gather_time']:6.2f}   "
          f"[{ratios_cpu['fewmm_time_over_gather_time']:.2f}]    same {chunk}-episode chunks")
    if "fewmm_compiled_time_over_gather_time" in ratios:
        print(f"  fewmm compile=True time / gather time = {ratios['fewmm_compiled_time_over_gather_time']:.2f} "
              f"[{ratios_cpu['fewmm_compiled_time_over_gather_time']:.2f}]   (compile time not counted)")
    if "fewmm1000_time_over_gather1000_time" in ratios:
        print(f"  chunks of 1000: fewmm@1000 / gather@1000 = {ratios['fewmm1000_time_over_gather1000_time']:.2f} "
              f"[{ratios_cpu['fewmm1000_time_over_gather1000_time']:.2f}]; fewmm / gather@1000 = "
              f"{ratios['fewmm_time_over_gather1000_time']:.2f} [{ratios_cpu['fewmm_time_over_gather1000_time']:.2f}]")

    results["environment"] = environment(a.threads)
    write_json(results, a.json)
    return results


if __name__ == "__main__":
    main()
