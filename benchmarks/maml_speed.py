"""MAML meta-training speed: fewmm.meta.MAML vs learn2learn's MAML on the same head and tasks.

Head: ``Linear(d, h) - ReLU - Linear(h, N)`` (``--hidden``, default 256), float32, CPU,
``torch.set_num_threads(--threads)`` (default 2). Tasks: N-way K-shot Q-query (default 5-way
1-shot 15 queries), meta-batch of ``--meta-batch`` tasks (default 32), drawn with
:func:`fewmm.episodes.sample_episodes` from a feature table:

* default: a synthetic Gaussian-cluster table, ``--dim`` 1280: random-normal features (class means
  in a random rank-16 subspace, scale 0.15, plus isotropic N(0, 1/d) noise), L2-normalised; the
  noise dominates, so raw-feature ProtoNet gets ~45% (5-way 1-shot) and learning the subspace
  helps: a task stream where meta-learning is possible;
* ``--features FILE.safetensors``: real cached features (a fewmm feature-cache file: ``features``
  (n, d) and ``mask``; labels from a ``labels`` tensor in the file, from ``--labels FILE.npy``,
  or from the data set named in the file's metadata via ``fewmm.data.load``), L2-normalised.

Every method gets the same initial head (a copy), the same already-normalised tensors, the same
inner learning rate (``--inner-lr``, 0.5) and Adam (``--outer-lr``). fewmm runs with
``feature_norm=None`` because the inputs are normalised already.

Measured methods (``--methods``):

``l2l``        learn2learn 0.2.0: per task ``learner = MAML(head, lr, first_order).clone()``,
               ``learner.adapt(loss)`` x inner steps, query loss; mean over tasks; backward; Adam.
``gram``       fewmm ``MAML(path="gram")``: Gram products with the support set, no per-task weights.
``functional`` fewmm ``MAML(path="functional")``: the general path (any head; what fusion heads
               use): adapted ``nn.Linear`` layers kept low-rank (``W - U^T V``, no per-task weight
               copies) when the head runs batched over tasks, else dense per-task parameters.
``vmap``       fewmm ``MAML(path="functional", force_vmap=True)``: dense per-task weights,
               ``torch.func.vmap(functional_call)`` forward; a reference row (no target).
``floor``      not a MAML implementation: the two matrix products that EVERY exact meta-step of this
               head must compute, timed alone (``--head mlp`` only): the first layer's forward over all
               support and query items of the meta-batch, ``X @ W1.T`` ((T*N*(K+Q), d) x (d, h)), and its
               meta-gradient's outer-product sum, ``D.T @ X`` (the same multiply-adds). Exact MAML cannot
               skip either: the query logits need ``X W1'^T`` with the adapted ``W1'`` (a low-rank update of
               ``W1`` does not remove the product with ``W1``), and ``dL/dW1`` is a sum of outer products
               with every item. So time(l2l) / time(floor) is the CEILING of the speed-up any exact path can
               have over learn2learn on this machine, whatever its implementation; a target above the
               ceiling cannot be met here and is reported as "infeasible" with the ceiling beside it.

1. Speed, for every (inner steps in ``--inner-steps``, order in ``--orders``): each method runs one
   warm-up meta-step, then ``--repeats`` rounds in which every method runs one meta-step
   (interleaved, so load changes on a shared machine hit all methods alike). Reported: meta-steps
   per second from the best (shortest) and the median step time, ratio to learn2learn (best
   times; and from the median process CPU time, ``time.process_time``, which a busy shared
   machine disturbs less than wall time, but which counts the OpenMP workers' spin-waiting
   between small ops and so penalises learn2learn's per-task loop of small ops), and minor page
   faults per meta-step (``resource.getrusage(RUSAGE_SELF).ru_minflt``
   deltas, median). Also the largest absolute difference of the meta-gradients and of the query
   loss between each fewmm path and learn2learn on that meta-batch (float32).
   Tensor memory: one more meta-step per method under ``torch.profiler`` with
   ``profile_memory=True``; the peak of live CPU tensor bytes above those live at its start (every
   allocation and free of torch's CPU allocator; deterministic, not disturbed by other processes).
2. Peak resident memory (skip with ``--no-rss`` or ``--no-memory``): each (config, method) in a
   fresh subprocess: build the tasks and the method, run one warm-up meta-step (the first call
   pages in library code, which counts in RSS, and creates Adam's state), then 3 meta-steps.
   Reported: the peak of anonymous RSS (``RssAnon``, sampled every ~2 ms) above its value before
   the steps, and the peak RSS ``VmHWM`` (what ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
   reports, read from ``/proc/self/status`` because ``ru_maxrss`` keeps the pre-``exec`` peak of
   the forked parent; reset by writing ``5`` to ``/proc/self/clear_refs``) minus the RSS before
   the steps, with the part of it that was
   file-backed pages paged in again (VMs that reclaim cold pages inflate that figure; ``<=`` marks
   an upper bound where the peak cannot be reset). tracemalloc is not used: it does not see
   torch's tensor allocations.
3. Accuracy after a short training (skip with ``--train-steps 0``): learn2learn and fewmm (the
   path ``auto`` picks) are meta-trained for ``--train-steps`` meta-steps from the same init on the
   same task stream (base classes: the first 75% of the classes), ``--train-inner-steps`` inner
   steps, second order unless ``--train-first-order``; then evaluated on ``--eval-episodes``
   episodes of the held-out classes (the same episodes for both; adaptation with the same inner
   loop). Reported: mean accuracy with 95% interval, the paired difference, the accuracy of the
   untrained init and of ProtoNet (cosine) on the same episodes for context.

Usage::

    .venv/bin/python benchmarks/maml_speed.py --json results/maml_speed.json
    .venv/bin/python benchmarks/maml_speed.py --features ~/.cache/fewmm/features/.../x.safetensors
    .venv/bin/python benchmarks/maml_speed.py --repeats 2 --inner-steps 1 --train-steps 10 --no-memory  # quick

learn2learn does not ``pip install`` on Python 3.11: ``PYTHON=.venv/bin/python
scripts/install_learn2learn.sh``. Without it the fewmm rows are still measured.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):  # run from a checkout without installing; the shared timing helper
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fewmm.episodes import sample_episodes  # noqa: E402
from fewmm.meta import MAML, MAMLClassifier, episode_tensors  # noqa: E402
from interleaved import (  # noqa: E402
    device_problem, fmt_ratio, json_path_problem, machine_state, pool_ratio_stats, ratio_stats, run_interleaved, verdict,
    run_fresh_processes,
)

L2L_INSTALL_HINT = "PYTHON=.venv/bin/python scripts/install_learn2learn.sh  (pip install learn2learn fails on Python 3.11)"
ALL_METHODS = ("l2l", "gram", "functional", "vmap", "floor")
#: issue targets, x learn2learn meta-steps/s (median over the interleaved rounds)
TARGETS = {"gram": 5.0, "functional": 1.0}


# ----------------------------------------------------------------------------------------------
# data
def synthetic_table(n_classes=64, per_class=40, dim=1280, rank=16, scale=0.15, seed=0):
    """Gaussian clusters: class means ``U z_c`` (U a random orthonormal (dim, rank) basis,
    z_c ~ N(0, scale^2 / rank)), items mean + N(0, 1/dim) noise; float32 (n, dim), L2-normalised
    later. Built class by class (small transient memory)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g))
    z = torch.randn(n_classes, rank, generator=g) * (scale / rank**0.5)
    feats = torch.empty(n_classes * per_class, dim)
    for c in range(n_classes):
        feats[c * per_class : (c + 1) * per_class] = (u @ z[c]) + torch.randn(per_class, dim, generator=g) / dim**0.5
    return feats, np.repeat(np.arange(n_classes), per_class)


def load_feature_file(path: str, labels_path: str | None):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata() or {}
        feats = f.get_tensor("features").float()
        mask = f.get_tensor("mask").bool().numpy() if "mask" in keys else np.ones(feats.shape[0], bool)
        labels = f.get_tensor("labels").numpy() if "labels" in keys else None
    source = "file"
    if labels is None and labels_path:
        labels = np.load(labels_path) if labels_path.endswith(".npy") else np.loadtxt(labels_path, dtype=np.int64)
        source = labels_path
    if labels is None:
        key = json.loads(meta.get("key", "{}"))
        name = key.get("dataset")
        if not name:
            sys.exit(f"{path}: no 'labels' tensor and no data set in its metadata: pass --labels FILE.npy")
        import fewmm.data as D

        ds, _, split = name.partition("/")
        table = D.load(ds, split=split or None, download=False)
        labels = table.labels
        source = f"fewmm.data.load({ds!r}, split={split or None!r})"
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (feats.shape[0],):
        sys.exit(f"labels have shape {labels.shape}, features {tuple(feats.shape)}")
    return feats[torch.as_tensor(mask)], labels[mask], source


def build_data(args):
    if args.features:
        feats, labels, src = load_feature_file(args.features, args.labels)
        desc = f"{args.features} (labels: {src})"
    else:
        feats, labels = synthetic_table(dim=args.dim, seed=args.seed)
        desc = f"synthetic Gaussian clusters, 64 classes x 40 items, dim {args.dim}, rank-16 means, seed {args.seed}"
    if not args.no_normalize:
        feats = F.normalize(feats, dim=1)
    classes = np.unique(labels)
    n_base = max(args.way, int(round(0.75 * classes.size)))
    return feats, labels, classes[:n_base], classes[n_base:], desc


class GMUHead(nn.Module):
    """Gated multimodal unit over two modalities (Arevalo et al., "Gated Multimodal Units for
    Information Fusion", ICLR workshop 2017), then a linear classifier. Input ``(n, d)``: the first
    ``d_a`` columns are modality A's features, the rest modality B's. ``h_a = tanh(W_a x_a)``,
    ``h_b = tanh(W_b x_b)``, ``z = sigmoid(W_z [x_a; x_b])``, ``h = z * h_a + (1 - z) * h_b``,
    logits ``W_o h`` (n, n_way). Not an ``nn.Sequential``: MAML takes its general path."""

    def __init__(self, d_a, d_b, h, n):
        super().__init__()
        self.d_a = d_a
        self.proj_a = nn.Linear(d_a, h)
        self.proj_b = nn.Linear(d_b, h)
        self.gate = nn.Linear(d_a + d_b, h)
        self.out = nn.Linear(h, n)

    def forward(self, x):
        xa, xb = x[..., : self.d_a], x[..., self.d_a :]
        z = torch.sigmoid(self.gate(x))
        return self.out(z * torch.tanh(self.proj_a(xa)) + (1 - z) * torch.tanh(self.proj_b(xb)))


HEADS = ("mlp", "gmu")


def make_head(d, h, n, seed, kind="mlp"):
    """``mlp``: Linear(d, h)-ReLU-Linear(h, n); ``gmu``: :class:`GMUHead` over the two halves of
    the features (two stand-in modalities of d // 2 and d - d // 2 dims)."""
    torch.manual_seed(seed)
    if kind == "gmu":
        return GMUHead(d // 2, d - d // 2, h, n)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, n))


# ----------------------------------------------------------------------------------------------
# methods: each is a callable doing one meta-step on (sx, sy, qx, qy) and returning the loss
def import_l2l():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import learn2learn as l2l  # noqa: F401
        return l2l
    except Exception:
        return None


class L2LMethod:
    def __init__(self, head, inner_lr, steps, first_order, outer_lr):
        l2l = import_l2l()
        self.head = head
        self.meta = l2l.algorithms.MAML(head, lr=inner_lr, first_order=first_order)
        self.steps = steps
        self.opt = torch.optim.Adam(self.meta.parameters(), lr=outer_lr)

    def loss(self, sx, sy, qx, qy):
        total = 0.0
        correct = 0
        for t in range(sx.shape[0]):
            learner = self.meta.clone()
            for _ in range(self.steps):
                learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]))
            out = learner(qx[t])
            total = total + F.cross_entropy(out, qy[t])
            correct += int((out.argmax(1) == qy[t]).sum())
        return total / sx.shape[0], correct / qy.numel()

    def step(self, sx, sy, qx, qy):
        self.opt.zero_grad(set_to_none=True)
        loss, acc = self.loss(sx, sy, qx, qy)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def predict(self, sx, sy, qx):
        """Adapted predictions (T, Q) without meta-gradients (first-order graph only)."""
        preds = []
        for t in range(sx.shape[0]):
            learner = self.meta.clone()
            for _ in range(self.steps):
                learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]), first_order=True)
            with torch.no_grad():
                preds.append(learner(qx[t]).argmax(1))
        return torch.stack(preds)


class FewmmMethod:
    def __init__(self, head, inner_lr, steps, first_order, outer_lr, path):
        kw = dict(path="functional", force_vmap=True) if path == "vmap" else dict(path=path)
        self.head = head
        self.meta = MAML(head, inner_lr=inner_lr, inner_steps=steps, first_order=first_order, feature_norm=None, **kw)
        self.opt = torch.optim.Adam(self.meta.parameters(), lr=outer_lr)

    def loss(self, sx, sy, qx, qy):
        loss, acc = self.meta.meta_loss(sx, sy, qx, qy)
        return loss, float(acc)

    def step(self, sx, sy, qx, qy):
        self.opt.zero_grad(set_to_none=True)
        loss, _ = self.meta.meta_loss(sx, sy, qx, qy)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class FloorMethod:
    """The arithmetic every exact MAML meta-step of a ``Linear(d, h)``-first head must do (see the module
    docstring, ``floor``): ``X @ W1.T`` and ``D.T @ X`` over all support and query items. Not a learner:
    ``loss``/``predict`` are not defined and it is excluded from the accuracy run and the gradient check."""

    def __init__(self, head):
        self.head = head
        self.w = head[0].weight.detach()
        self.d_out = None

    def step(self, sx, sy, qx, qy):
        x = torch.cat([sx.reshape(-1, sx.shape[-1]), qx.reshape(-1, qx.shape[-1])])
        if self.d_out is None or self.d_out.shape[0] != x.shape[0]:
            self.d_out = torch.randn(x.shape[0], self.w.shape[0], generator=torch.Generator().manual_seed(0)).to(x.device)
        z = x @ self.w.T
        g = self.d_out.T @ x
        return float(z[0, 0] + g[0, 0])


def make_method(name, head, args, steps, first_order, outer_lr=None):
    lr = args.outer_lr if outer_lr is None else outer_lr
    if name == "floor":
        return FloorMethod(head)
    if name == "l2l":
        return L2LMethod(head, args.inner_lr, steps, first_order, lr)
    return FewmmMethod(head, args.inner_lr, steps, first_order, lr, name)


def timed_batch_items(labels, base, args) -> dict:
    """Item slots of the timed meta-batch (tasks x (support + query)) and how many distinct items fill
    them: items shared by several tasks are where a path could save first-layer work."""
    eps = sample_episodes(labels, args.way, args.shot, args.query, n_episodes=args.meta_batch, seed=args.seed, classes=base)
    idx = np.concatenate([np.asarray(eps.support).ravel(), np.asarray(eps.query).ravel()])
    return {"slots": int(idx.size), "distinct_items": int(np.unique(idx).size)}


def first_batch(feats, labels, base, args):
    eps = sample_episodes(labels, args.way, args.shot, args.query, n_episodes=args.meta_batch, seed=args.seed, classes=base)
    return episode_tensors(feats, eps.support, eps.query)


# ----------------------------------------------------------------------------------------------
def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def tensor_peak_mib(step) -> float:
    """Peak of live CPU tensor bytes allocated during one call of ``step()``, above the bytes live
    when it starts (torch.profiler with ``profile_memory=True``: every allocation and free of
    torch's CPU allocator, in time order). Deterministic, unaffected by other processes."""
    from torch.profiler import ProfilerActivity, profile

    sys.stderr.flush()
    saved = os.dup(2)  # the profiler's C++ side logs start/stop lines to fd 2: mute them
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                step()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    if not events:
        return 0.0
    return max(0.0, float(np.cumsum([e.nbytes() for e in events]).max())) / 2**20


def grad_check(methods: dict, batch) -> dict:
    """Max |meta-gradient difference| and |loss difference| of each fewmm method vs l2l."""
    if "l2l" not in methods:
        return {}
    out = {}
    ref = methods["l2l"]
    ref.opt.zero_grad(set_to_none=True)
    rloss, _ = ref.loss(*batch)
    rloss.backward()
    rg = {n: p.grad.clone() for n, p in ref.head.named_parameters()}
    for name, m in methods.items():
        if name in ("l2l", "floor"):
            continue
        m.opt.zero_grad(set_to_none=True)
        loss, _ = m.loss(*batch)
        loss.backward()
        g = {n: p.grad for n, p in m.head.named_parameters()}
        out[name] = {
            "max_abs_grad_diff": max(float((g[n] - rg[n]).abs().max()) for n in rg),
            "max_abs_grad": max(float(rg[n].abs().max()) for n in rg),
            "loss_diff": abs(float(loss.detach()) - float(rloss.detach())),
        }
    return out


def apply_ceiling(res: dict, runs: dict, targets: dict = TARGETS) -> None:
    """Add the ceiling to the verdicts of one setting's ``res`` (method -> row with ``verdict``), in place.

    The ceiling is time(l2l) / time(floor) per round (median and spread; ``floor``: the products
    every exact meta-step must do, see the module docstring). Each target row gets ``ceiling_vs_l2l``
    and ``time_over_floor`` (median over rounds of time(method) / time(floor)); a missed target
    above the ceiling's 75th percentile becomes ``"infeasible"`` with ``why``. No ``floor`` row: no
    change.
    """
    if "floor" not in res or "floor" not in runs["paths"] or "l2l" not in runs["paths"]:
        return
    ceiling = ratio_stats(runs, "floor", "l2l")
    for n, r in res.items():
        if n in targets and "verdict" in r:
            r["ceiling_vs_l2l"] = ceiling["median"]
            r["time_over_floor"] = ratio_stats(runs, "floor", n)["median"]
            if r["verdict"]["verdict"] == "missed" and ceiling["q75"] < targets[n]:
                r["verdict"]["verdict"] = "infeasible"
                r["verdict"]["why"] = (f"the arithmetic floor (the two products every exact meta-step does) is only "
                                       f"{ceiling['median']:.2f}x [{ceiling['q25']:.2f}-{ceiling['q75']:.2f}] faster than learn2learn "
                                       f"here; this path takes {r['time_over_floor']:.2f}x the floor's time")


def speed(args, feats, labels, base, methods_wanted):
    batch = first_batch(feats, labels, base, args)
    d = feats.shape[1]
    rows = []
    for steps in args.inner_steps:
        for order in args.orders:
            fo = order == "first"
            methods = {}
            for name in methods_wanted:
                head = make_head(d, args.hidden, args.way, args.seed, args.head).to(feats.device)
                methods[name] = make_method(name, head, args, steps, fo)
            check = grad_check(methods, batch)  # before any update: identical heads
            faults = {n: [] for n in methods}

            def timed_step(n, m):
                def f():
                    f0 = minflt()
                    m.step(*batch)
                    if feats.device.type == "cuda":
                        torch.cuda.synchronize()
                    faults[n].append(minflt() - f0)
                return f

            runs = run_interleaved({n: timed_step(n, m) for n, m in methods.items()}, rounds=args.repeats, warmup=1)
            peaks = {n: tensor_peak_mib(lambda m=m: m.step(*batch)) for n, m in methods.items()} if args.memory else {}
            res = {}
            for n in methods:
                p = runs["paths"][n]
                res[n] = {
                    "steps_per_s_median": 1.0 / p["wall_s_median"],
                    "steps_per_s_best": 1.0 / min(p["wall_s"]),
                    "times_s": p["wall_s"],
                    "cpu_s": p["cpu_s"],
                    "cpu_s_median": p["cpu_s_median"],
                    "minor_faults_per_step": int(np.median(faults[n][1:])),  # [0] is the warm-up
                    "tensor_peak_mib": peaks.get(n),
                    "path": getattr(getattr(methods[n], "meta", None), "path_", None) if n != "l2l" else None,
                }
            if "l2l" in res:
                for n in res:
                    if n == "l2l":
                        continue
                    st = ratio_stats(runs, n, "l2l")
                    res[n]["ratio_vs_l2l"] = st
                    if n in TARGETS:  # vmap is a reference row (forced dense per-task weights), not a target
                        res[n]["verdict"] = verdict(st, TARGETS[n])
                    res[n]["ratio_vs_l2l_cpu"] = ratio_stats(runs, n, "l2l", key="cpu_s")
                apply_ceiling(res, runs)
            for n, c in check.items():
                res[n]["vs_l2l"] = c
            row = {"inner_steps": steps, "order": order, "head": args.head, "methods": res, "loadavg_per_round": runs["loadavg_per_round"],
                   "machine": machine_state()}
            rows.append(row)
            print_speed_row(row)
    return rows


def print_speed_row(row):
    load = row["loadavg_per_round"]
    print(f"\ninner steps {row['inner_steps']}, {row['order']} order, head {row['head']} "
          f"(load average {min(load):.1f}-{max(load):.1f} over the rounds, {row['machine']['torch_threads']} torch threads)")
    print(f"  {'method':<11} {'steps/s med':>11} {'x l2l: median [q25-q75] of rounds':>34} {'verdict':>16} {'x l2l cpu':>9} "
          f"{'faults/step':>12} {'tensor peak MiB':>16}  {'|dgrad| vs l2l':>14}")
    for n, r in row["methods"].items():
        ratio = fmt_ratio(r["ratio_vs_l2l"]) if "ratio_vs_l2l" in r else "-"
        v = f"{r['verdict']['verdict']} {r['verdict']['target']}{'' if r['verdict']['stable'] else ' ?'}" if "verdict" in r else "-"
        rcpu = f"{r['ratio_vs_l2l_cpu']['median']:.2f}" if "ratio_vs_l2l_cpu" in r else "-"
        dg = f"{r['vs_l2l']['max_abs_grad_diff'] / max(r['vs_l2l']['max_abs_grad'], 1e-30):.1e} rel" if "vs_l2l" in r else "-"
        pk = f"{r['tensor_peak_mib']:.1f}" if r.get("tensor_peak_mib") is not None else "-"
        print(f"  {n:<11} {r['steps_per_s_median']:>11.2f} {ratio:>34} {v:>16} {rcpu:>9} {r['minor_faults_per_step']:>12d} {pk:>16}  {dg:>14}")
    for n, r in row["methods"].items():
        if "ceiling_vs_l2l" in r:
            print(f"  {n}: {r['time_over_floor']:.2f}x the floor's time; the ceiling of any exact path here is "
                  f"{r['ceiling_vs_l2l']:.2f}x learn2learn ({r['verdict']['verdict']} {r['verdict']['target']})")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
def proc_status_kib(*fields) -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in fields:
                out[k] = int(v.split()[0])
    return out


def memory_probe(args):
    """Subprocess mode: one method, one config; prints one JSON line.

    Two figures, after one warm-up meta-step: (a) the peak of anonymous resident memory
    (``RssAnon`` in ``/proc/self/status``, sampled every ~2 ms by a thread) during 3 meta-steps
    minus its value before them; (b) the peak RSS ``VmHWM`` (reset by writing ``5`` to
    ``/proc/self/clear_refs``) minus the RSS before the steps. ``VmHWM`` is the figure
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` reports, except that ``ru_maxrss`` also keeps the
    peak of the process image before ``exec`` (the forked benchmark parent: ~1.3 GB), which no
    reset clears. (b) also counts file-backed pages (library code) that the kernel dropped and
    the steps paged in again (VMs that reclaim cold pages): ``rss_file_delta_mib`` shows that part.
    """
    import gc
    import threading

    torch.set_num_threads(args.threads)
    name, steps, order = args._probe.split(",")
    feats, labels, base, _, _ = build_data(args)
    batch = first_batch(feats, labels, base, args)
    head = make_head(feats.shape[1], args.hidden, args.way, args.seed, args.head)
    m = make_method(name, head, args, int(steps), order == "first")
    m.step(*batch)  # warm-up: pages in library code and creates Adam's state
    gc.collect()
    try:  # reset the peak (VmHWM, which ru_maxrss reports) so set-up transients do not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = proc_status_kib("RssAnon", "RssFile")
    base_rss = rss_kib()
    max0 = proc_status_kib("VmHWM")["VmHWM"]
    peak_anon = [before["RssAnon"]]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], proc_status_kib("RssAnon")["RssAnon"])
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    for _ in range(3):
        m.step(*batch)
    stop.set()
    th.join()
    max1 = proc_status_kib("VmHWM")["VmHWM"]
    after = proc_status_kib("RssAnon", "RssFile")
    print(json.dumps({
        "anon_peak_delta_mib": (peak_anon[0] - before["RssAnon"]) / 1024,
        "hwm_delta_mib": (max1 - base_rss) / 1024,
        "rss_file_delta_mib": (after["RssFile"] - before["RssFile"]) / 1024,
        "baseline_rss_kib": base_rss, "hwm_before_kib": max0, "hwm_after_kib": max1,
        "peak_reset": reset, "hwm_upper_bound": (not reset) and max1 <= max0,
    }))


def memory(args, methods_wanted):
    rows = []
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--json")]
    # drop the value of --json too
    if "--json" in sys.argv:
        i = sys.argv.index("--json")
        passthrough = sys.argv[1:i] + sys.argv[i + 2 :]
    print("\npeak resident memory added by a meta-step, fresh process per method, MiB: anonymous RSS peak "
          "(VmHWM = ru_maxrss delta after a peak reset, of which file-backed pages paged in again)")
    for steps in args.inner_steps:
        for order in args.orders:
            res = {}
            for name in [m for m in methods_wanted if m != "floor"]:
                cmd = [sys.executable, __file__, *passthrough, "--_probe", f"{name},{steps},{order}"]
                p = subprocess.run(cmd, capture_output=True, text=True)
                line = [x for x in p.stdout.splitlines() if x.startswith("{")]
                if p.returncode != 0 or not line:
                    res[name] = {"error": p.stderr[-500:]}
                    continue
                res[name] = json.loads(line[-1])
            rows.append({"inner_steps": steps, "order": order, "methods": res})
            cells = "  ".join(
                f"{n} {r['anon_peak_delta_mib']:.1f} ({'<=' if r.get('hwm_upper_bound') else ''}{r['hwm_delta_mib']:.1f}, "
                f"file {r['rss_file_delta_mib']:+.1f})"
                if "anon_peak_delta_mib" in r else f"{n} error"
                for n, r in res.items()
            )
            print(f"  inner steps {steps}, {order} order: {cells}")
            sys.stdout.flush()
    return rows


# ----------------------------------------------------------------------------------------------
def train_and_eval(args, feats, labels, base, novel, methods_wanted):
    from fewmm.evaluate import evaluate_episodes
    from fewmm.methods import ProtoNet
    from fewmm.metrics import mean_ci, paired_difference

    d = feats.shape[1]
    fo = args.train_first_order
    stream = sample_episodes(labels, args.way, args.shot, args.query, n_episodes=args.train_steps * args.meta_batch, seed=args.seed + 1, classes=base)
    test = sample_episodes(labels, args.way, args.shot, args.query, n_episodes=args.eval_episodes, seed=args.seed + 2, classes=novel)
    ours = "gram" if args.head == "mlp" else "functional"
    names = [n for n in ("l2l", ours) if n in methods_wanted] or [ours]
    init_head = make_head(d, args.hidden, args.way, args.seed, args.head)
    out = {"train_steps": args.train_steps, "inner_steps": args.train_inner_steps, "outer_lr": args.train_outer_lr, "order": "first" if fo else "second",
           "n_base_classes": int(base.size), "n_novel_classes": int(novel.size), "eval_episodes": args.eval_episodes, "methods": {}}
    target = torch.arange(args.way).repeat_interleave(args.query)
    accs = {}

    def evaluate(name, m):
        if name == "l2l":
            sx, sy, qx, qy = episode_tensors(feats, test.support, test.query)
            pred = torch.cat([m.predict(sx[i : i + 50], sy[i : i + 50], qx[i : i + 50]) for i in range(0, sx.shape[0], 50)])
            return (pred == target).double().mean(1).numpy()
        return evaluate_episodes(MAMLClassifier(m.meta), feats, test, chunk_size=256)

    # context: ProtoNet and the untrained init
    accs["protonet-cosine"] = evaluate_episodes(ProtoNet(metric="cosine"), feats, test)
    init = FewmmMethod(copy.deepcopy(init_head), args.inner_lr, args.train_inner_steps, fo, args.outer_lr, "auto")
    accs["init (no meta-training)"] = evaluate("gram", init)
    print(f"\naccuracy after {args.train_steps} meta-steps ({args.train_inner_steps} inner steps, {out['order']} order, Adam {args.train_outer_lr:g}), "
          f"{args.eval_episodes} episodes of {novel.size} held-out classes")
    for name in names:
        m = make_method(name, copy.deepcopy(init_head), args, args.train_inner_steps, fo, outer_lr=args.train_outer_lr)
        t0 = time.perf_counter()
        losses = []
        for s in range(args.train_steps):
            sl = slice(s * args.meta_batch, (s + 1) * args.meta_batch)
            losses.append(m.step(*episode_tensors(feats, stream.support[sl], stream.query[sl])))
        train_s = time.perf_counter() - t0
        accs[name] = evaluate(name, m)
        out["methods"][name] = {"train_seconds": train_s, "first_losses": losses[:3], "last_losses": losses[-3:],
                                "path": getattr(m.meta, "path_", None) if name != "l2l" else None}
    for name, a in accs.items():
        est = mean_ci(a)
        out["methods"].setdefault(name, {})["accuracy"] = {"mean": est.mean, "ci95": est.ci95}
        extra = f"  (trained in {out['methods'][name]['train_seconds']:.1f} s)" if "train_seconds" in out["methods"][name] else ""
        print(f"  {name:<24} {est}{extra}")
    if "l2l" in accs and ours in accs:
        diff = paired_difference(accs[ours], accs["l2l"])
        out[f"paired_{ours}_minus_l2l"] = {"mean": diff.mean, "ci95": diff.ci95}
        print(f"  fewmm - learn2learn (paired): {diff} points")
    return out


# ----------------------------------------------------------------------------------------------
def pool_rows(parts: list[dict]) -> list[dict]:
    """The speed rows of several runs (one per fresh process) as one: every path's round times
    concatenated in run order, so that the per-round ratios (each a pair timed in the same round)
    of all runs are pooled; ratios, verdicts and the ceiling recomputed from them, as in
    :func:`speed`; each ratio keeps every run's own median under ``per_run_median``. The
    deterministic fields (tensor peaks, meta-gradient checks, faults) are the first run's."""
    rows = []
    for i, row in enumerate(parts[0]["speed"]):
        prow = [p["speed"][i] for p in parts]
        if any((r["inner_steps"], r["order"]) != (row["inner_steps"], row["order"]) for r in prow):
            raise ValueError("pool_rows: the runs' settings differ")
        runs = {"paths": {n: {"wall_s": [t for r in prow for t in r["methods"][n]["times_s"]],
                              "cpu_s": [t for r in prow for t in r["methods"][n]["cpu_s"]]} for n in row["methods"]}}
        res = {}
        for n, m in row["methods"].items():
            wall = runs["paths"][n]["wall_s"]
            res[n] = {**m, "times_s": wall, "cpu_s": runs["paths"][n]["cpu_s"],
                      "steps_per_s_median": 1.0 / float(np.median(wall)), "steps_per_s_best": 1.0 / min(wall),
                      "cpu_s_median": float(np.median(runs["paths"][n]["cpu_s"]))}
            for k in ("verdict", "ceiling_vs_l2l", "time_over_floor"):
                res[n].pop(k, None)
        if "l2l" in res:
            for n in res:
                if n == "l2l":
                    continue
                st = pool_ratio_stats([r["methods"][n]["ratio_vs_l2l"] for r in prow])
                res[n]["ratio_vs_l2l"] = st
                if n in TARGETS:
                    res[n]["verdict"] = verdict(st, TARGETS[n])
                res[n]["ratio_vs_l2l_cpu"] = ratio_stats(runs, n, "l2l", key="cpu_s")
            apply_ceiling(res, runs)
        rows.append({**row, "methods": res, "loadavg_per_round": [x for r in prow for x in r["loadavg_per_round"]],
                     "processes": len(parts)})
    return rows


def run_processes(args, argv) -> dict:
    """``--processes K``: the timing run K times, each in a fresh Python process, one after
    another; the rows pooled by :func:`pool_rows`; the rest of the JSON is the first run's."""
    parts = run_fresh_processes(__file__, sys.argv[1:] if argv is None else argv, args.processes)
    result = parts[0]
    result["config"]["processes"] = args.processes
    result["config"]["json"] = args.json
    result["speed"] = pool_rows(parts)
    result["machine"]["loadavg_end"] = parts[-1]["machine"]["loadavg_end"]
    print(f"\n== pooled over {args.processes} processes")
    for row in result["speed"]:
        print_speed_row(row)
        for n, m in row["methods"].items():
            if "ratio_vs_l2l" in m:
                print(f"    {n}: per-process medians x l2l {', '.join(f'{x:.2f}' for x in m['ratio_vs_l2l']['per_run_median'])}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return result


def _positive_ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1,5, got {text!r}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", help="a fewmm feature-cache .safetensors file (default: synthetic)")
    ap.add_argument("--labels", help="labels .npy / .txt for --features when the file has none")
    ap.add_argument("--dim", type=int, default=1280, help="synthetic feature dim (default 1280)")
    ap.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the features")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--head", choices=HEADS, default="mlp",
                    help="mlp: Linear-ReLU-Linear (Gram path applies); gmu: a GMU fusion head over the two halves of the "
                         "features (general path only; the gram method is dropped)")
    ap.add_argument("--way", type=int, default=5)
    ap.add_argument("--shot", type=int, default=1)
    ap.add_argument("--query", type=int, default=15)
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--inner-steps", type=_positive_ints, default=[1, 5])
    ap.add_argument("--orders", type=lambda s: s.split(","), default=["second", "first"])
    ap.add_argument("--inner-lr", type=float, default=0.5)
    ap.add_argument("--outer-lr", type=float, default=1e-3)
    ap.add_argument("--methods", type=lambda s: s.split(","), default=list(ALL_METHODS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true", help="skip both memory measurements")
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS measurement (one subprocess per config and method)")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--train-inner-steps", type=int, default=5)
    ap.add_argument("--train-outer-lr", type=float, default=1e-2, help="Adam step size of the training run")
    ap.add_argument("--train-first-order", action="store_true")
    ap.add_argument("--eval-episodes", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device of the heads and tasks (default cpu; tensor peaks and RSS are CPU-only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--processes", type=int, default=1,
                    help="run the timing in this many fresh processes, one after another, and pool their rounds (default 1)")
    ap.add_argument("--_probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for o in args.orders:
        if o not in ("first", "second"):
            ap.error(f"--orders takes 'first' and/or 'second', got {o!r}")
    bad = [m for m in args.methods if m not in ALL_METHODS]
    if bad:
        ap.error(f"unknown --methods {bad}; known: {','.join(ALL_METHODS)}")
    if args.head == "gmu" and ("gram" in args.methods or "floor" in args.methods):
        # the Gram path does not apply to a GMU head; the floor is the first Linear of the mlp head
        args.methods = [m for m in args.methods if m not in ("gram", "floor")]
        if not args.methods:
            ap.error("--head gmu leaves no method: gram and floor apply to the mlp head only; add functional, vmap "
                     "or l2l to --methods (or use --head mlp)")
    for k in ("dim", "hidden", "way", "shot", "query", "meta_batch", "repeats", "train_inner_steps",
              "eval_episodes", "threads", "processes"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    if args.train_steps < 0:  # 0 skips the accuracy run (the README's and gpu_check.sh's commands)
        ap.error(f"--train-steps must be >= 0 (0 skips the accuracy run), got {args.train_steps}")
    if not args.inner_steps or min(args.inner_steps) < 1:
        ap.error(f"--inner-steps must be positive integers (comma-separated), got {args.inner_steps}")
    if not args.methods:
        ap.error("--methods is empty")
    for k in ("inner_lr", "outer_lr", "train_outer_lr"):
        if getattr(args, k) < 0:
            ap.error(f"--{k.replace('_', '-')} must be >= 0 (a step size), got {getattr(args, k)}")
    if not args.features and args.dim < 16:  # the synthetic class means span a random rank-16 subspace
        ap.error(f"--dim must be >= 16 for the synthetic features (rank-16 class means), got {args.dim}")
    if args.features and not Path(args.features).is_file():
        ap.error(f"--features {args.features}: no such file (expected a fewmm feature-cache .safetensors file)")
    if args.labels and not Path(args.labels).is_file():
        ap.error(f"--labels {args.labels}: no such file (expected a .npy or .txt of integer labels)")
    for why in (device_problem(args.device), json_path_problem(args.json)):  # before any timing
        if why:
            ap.error(why)
    if args._probe:
        return memory_probe(args)
    if args.processes > 1:
        return run_processes(args, argv)
    args.memory = not args.no_memory

    torch.set_num_threads(args.threads)
    methods = list(args.methods)
    if "l2l" in methods and import_l2l() is None:
        print(f"learn2learn does not import: its rows are skipped. Install: {L2L_INSTALL_HINT}")
        methods.remove("l2l")
    feats, labels, base, novel, desc = build_data(args)
    from fewmm.episodes import infeasibility

    why = infeasibility(labels, args.way, args.shot, args.query, classes=base)
    if why:  # before any timing: one line naming this script's flags, not a traceback
        raise SystemExit(f"maml_speed.py: error: {desc}, base classes: {why.splitlines()[0].split(' Lower ')[0]} (--way / --shot / --query)")
    feats = feats.to(args.device)
    if args.device != "cpu":
        args.memory = False  # torch.profiler CPU tensor peaks and /proc RSS say nothing about device memory
    print(f"features: {desc}; {tuple(feats.shape)}, {'L2-normalised' if not args.no_normalize else 'raw'}")
    head_desc = (f"Linear({feats.shape[1]},{args.hidden})-ReLU-Linear({args.hidden},{args.way})" if args.head == "mlp" else
                 f"GMU(two modalities of {feats.shape[1] // 2} + {feats.shape[1] - feats.shape[1] // 2} dims, hidden {args.hidden})-Linear({args.hidden},{args.way})")
    print(f"head {head_desc}; {args.way}-way {args.shot}-shot "
          f"{args.query}-query, meta-batch {args.meta_batch}, inner lr {args.inner_lr}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    result = {
        "benchmark": "maml_speed",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "loadavg_start": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()},
        "config": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "features": desc,
        "head": head_desc,
        "timing": ("benchmarks/interleaved.py: one warm-up step per method, then --repeats rounds, each running every method once "
                   "(order reversed every other round); ratio_vs_l2l = median over rounds of time(l2l) / time(method) in the same "
                   "round, with its 25th-75th percentiles; ratios are the stable figures, steps/s are absolute numbers of this machine "
                   "at this load"),
        "speed": speed(args, feats, labels, base, methods),
        "timed_batch": timed_batch_items(labels, base, args),
    }
    if args.memory:
        result["tensor_memory_method"] = ("torch.profiler(profile_memory=True) over one meta-step: peak of live CPU tensor bytes "
                                         "above those live at its start (speed rows, 'tensor_peak_mib')")
    if args.memory and not args.no_rss:
        result["memory_method"] = ("fresh subprocess per (config, method), 1 warm-up meta-step, then 3 meta-steps: anon_peak_delta_mib = peak of "
                                  "RssAnon (/proc/self/status, sampled every ~2 ms) minus RssAnon before; hwm_delta_mib = "
                                  "VmHWM (= ru_maxrss without the pre-exec carry-over; peak reset with /proc/self/clear_refs) minus /proc/self/statm RSS "
                                  "before, which also counts reclaimed file-backed pages paged in again (rss_file_delta_mib); MiB")
        result["memory"] = memory(args, methods)
    if args.train_steps > 0:
        result["training"] = train_and_eval(args, feats, labels, base, novel, methods)
    result["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main()
