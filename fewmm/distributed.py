"""Sharded feature extraction over several processes (``torchrun`` + ``torch.distributed``).

::

    torchrun --nproc_per_node 4 -m fewmm.cache --dataset omniglot:background --encoder efficientnet-lite2
    python -m fewmm.cache --dataset digits --encoder pixels          # one process: the same entry

Each of the W processes (ranks; one GPU each, ``cuda:LOCAL_RANK``, where GPUs are present and
``--device`` is ``auto`` or ``cuda``; the NCCL backend then, else gloo on CPU) encodes one contiguous
slice of the data set's items, cut at multiples of the batch size so every batch is the batch a
single process would encode (the features are bit for bit a single process's, as far as the
encoder is deterministic for a given batch). Each rank saves its features as verified part files
of the unfinished cache entry (``<entry>.parts/<start>-<end>.safetensors``, the format of
:func:`fewmm.cache.embed_table`'s resumable chunks, written atomically) while it encodes. When
every rank has finished, rank 0 reads the parts, checks that they cover every item, and writes
the cache entry with the key and content a single process would have written (atomically:
temporary file + rename), then deletes the parts. So no partial entry is ever visible: a rank
that crashes or is killed leaves its verified parts (nothing half-written) and no entry; the next
run, with any number of ranks, encodes only what no part holds yet.

The cache folder must be one that every rank sees (one machine, or a shared file system for
several nodes): the ranks exchange their features through it.

Built on :mod:`torch.distributed` as launched by ``torchrun`` (environment variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); nothing of fewmm's own schedules
processes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from .cache import FeatureCache, FeatureSet, cache_key, clear_parts, embed_table, list_parts, read_part, save_part
from .data.table import ItemTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on
    its node (the GPU index it uses)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name}={v!r} is not an integer (set by torchrun)") from None


def rank_device(device: str | None, local_rank: int = 0) -> str:
    """The torch device of a rank: ``auto``/None -> ``cuda:LOCAL_RANK`` when CUDA is available,
    else ``cpu``; ``cuda`` -> ``cuda:LOCAL_RANK``; anything else as given."""
    d = "auto" if device is None else str(device)
    if d == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if d == "cuda":
        return f"cuda:{local_rank}"
    return d


def init_from_env(device: str | None = "auto", timeout_s: float = 3600.0) -> RankInfo:
    """Join the process group that ``torchrun`` describes in the environment.

    Parameters
    ----------
    device : str
        The rank's device as :func:`rank_device` gives it; CUDA devices use the NCCL backend
        (and become the current device), CPU uses gloo.
    timeout_s : float
        How long a collective (e.g. waiting for the slowest rank to finish its slice) may take,
        in seconds.

    Returns
    -------
    RankInfo
        ``RankInfo(0, 1, 0)`` without a process group (``WORLD_SIZE`` unset or 1): one process.

    Raises
    ------
    ValueError
        Malformed ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or a CUDA device index beyond the GPUs seen.
    """
    if dist.is_available() and dist.is_initialized():
        return RankInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return RankInfo()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = torch.device(rank_device(device, local))
    if dev.type == "cuda":
        if not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"rank {rank}: device {dev} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s); "
                             "use --nproc_per_node <= the GPUs of a node, or --device cpu")
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
    return RankInfo(rank, world, local)


def shard_range(n_items: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Items ``[lo, hi)`` that ``rank`` of ``world_size`` encodes: the batches (of ``batch_size``
    items, the last one shorter) split into ``world_size`` contiguous runs as even as possible, so
    every boundary is a multiple of ``batch_size`` (or ``n_items``). A rank beyond the batches gets
    an empty range."""
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_range: need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
    n_batches = -(-n_items // batch_size)
    b0, b1 = rank * n_batches // world_size, (rank + 1) * n_batches // world_size
    return min(b0 * batch_size, n_items), min(b1 * batch_size, n_items)


def _verified_parts(store: FeatureCache, key: dict, dim: int, lo: int, hi: int) -> dict[tuple[int, int], torch.Tensor]:
    """The verified part files inside ``[lo, hi)``; bad ones are deleted with a warning."""
    out = {}
    for a, b, path in list_parts(store, key):
        if a < lo or b > hi:
            continue
        try:
            out[(a, b)] = read_part(store, key, path, dim)
        except ValueError as e:
            warnings.warn(f"{e}; deleting it and encoding its items again", stacklevel=3)
            path.unlink(missing_ok=True)
    return out


def _reach(parts, start: int) -> tuple[int, list[tuple[int, int]]]:
    """How far a contiguous run of ``parts`` (``(start, end)`` pairs; runs of other slicings may
    overlap) reaches from ``start``, and the parts of one such run (breadth-first search)."""
    prev: dict[int, tuple[int, int] | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for p in frontier:
            for a, b in parts:
                if a == p and b not in prev:
                    prev[b] = (a, b)
                    nxt.append(b)
        frontier = nxt
    end = max(prev)
    path, p = [], end
    while prev[p] is not None:
        path.append(prev[p])
        p = prev[p][0]
    return end, path[::-1]


def missing_ranges(parts, lo: int, hi: int) -> list[tuple[int, int]]:
    """The ranges of ``[lo, hi)`` that no contiguous run of ``parts`` covers, in order: what a rank
    still has to encode. Each range ends where a part starts (or at ``hi``), so encoding them
    joins the runs into one from ``lo`` to ``hi``.

    Parameters
    ----------
    parts : iterable of (start, end)
        Part files inside ``[lo, hi)``.
    """
    parts = [(a, b) for a, b in parts if lo <= a < b <= hi]
    out, pos = [], lo
    while pos < hi:
        pos, _ = _reach(parts, pos)
        if pos >= hi:
            break
        nxt = min((a for a, _ in parts if a > pos), default=hi)
        out.append((pos, nxt))
        pos = nxt
    return out


class _Group:
    """The collectives used here; trivial without a process group (one process)."""

    def __init__(self):
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def gather(self, obj) -> list:
        if not self.on:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def bcast(self, obj):
        if not self.on:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def embed_table_sharded(
    table: ItemTable,
    encoder,
    modality: str | None = None,
    cache: FeatureCache | str | os.PathLike | bool | None = None,
    progress: bool | None = None,
    batch_size: int | None = None,
    chunk_items: int = 4096,
    chunk_seconds: float = 60.0,
) -> FeatureSet:
    """:func:`fewmm.cache.embed_table`, with the items split across the ranks of the process group.

    Call it on every rank with the same table and encoder (on the rank's device). Rank r encodes
    the items :func:`shard_range` gives it, less those that part files of earlier, interrupted
    runs already hold (whatever their number of ranks: :func:`missing_ranges`). Without a process
    group it is one rank holding every item (and then also completes the parts a sharded run left).

    Parameters
    ----------
    table, encoder, modality, progress, batch_size, chunk_items, chunk_seconds
        As :func:`fewmm.cache.embed_table` (progress is shown by rank 0 only, for its slice).
    cache : FeatureCache, path, True/None (default cache folder)
        A folder that every rank sees (the ranks exchange features through it). ``False`` (no
        cache): :func:`fewmm.cache.embed_table` in one process; refused with several ranks.

    Returns
    -------
    FeatureSet
        On every rank: ``features`` (n, encoder.dim) float32 and ``mask`` (n,) of the whole table
        (rank 0's copy is the one it wrote; the others read the entry); ``resumed_items`` counts the
        items that came from part files of earlier runs (all ranks together).

    Raises
    ------
    ValueError
        ``cache=False`` with several ranks; the ranks hold different tables or encoders (their
        cache keys differ); the table has no item of this modality.
    RuntimeError
        Rank 0 could not write the entry (its error is named on every rank).
    fewmm.errors.DataError
        A payload cannot be read (names the item); the other ranks are stopped by torchrun.
    """
    g = _Group()
    if cache is False:
        if g.on:
            raise ValueError("sharded extraction exchanges the ranks' features through the feature cache: cache=False "
                             "is only possible in one process")
        return embed_table(table, encoder, modality=modality, cache=False, progress=progress, batch_size=batch_size)
    modality = modality or encoder.modality
    if modality != encoder.modality:
        raise ValueError(f"encoder {encoder.name!r} embeds {encoder.modality!r}, not {modality!r}")
    mask = table.mask(modality)
    if not mask.any():
        raise ValueError(f"data set {table.name!r} has no item with modality {modality!r} (has: {sorted(table.modalities)})")
    store = cache if isinstance(cache, FeatureCache) else FeatureCache(None if cache in (None, True) else cache)
    key = cache_key(encoder, table, modality)
    keys = g.gather(json.dumps(key, sort_keys=True))
    bad = [i for i, k in enumerate(keys) if k != keys[0]]
    if bad:
        raise ValueError(f"the ranks do not embed the same items with the same encoder: the cache key of rank {bad[0]} "
                         f"({keys[bad[0]]}) differs from rank 0's ({keys[0]})")
    hit = store.load(key) if g.rank == 0 else None
    if g.bcast(hit is not None):
        return hit if g.rank == 0 else store.load(key)

    bs = int(batch_size if batch_size is not None else encoder.batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {bs}")
    idx = np.flatnonzero(mask)
    payloads = table.modalities[modality]
    todo = [payloads[i] for i in idx]
    lo, hi = shard_range(len(todo), bs, g.rank, g.world)
    gaps = missing_ranges(_verified_parts(store, key, encoder.dim, lo, hi), lo, hi)
    resumed = (hi - lo) - sum(b - a for a, b in gaps)
    if resumed:
        log.info("rank %d: %d of the %d items of its slice %d:%d of %s come from cache parts of an earlier run",
                 g.rank, resumed, hi - lo, lo, hi, table.name)
    pending: list[torch.Tensor] = []
    state = {"start": lo, "t": time.monotonic(), "saved": 0}

    def save_pending() -> None:
        if pending:
            chunk = torch.cat(pending)
            save_part(store, key, state["start"], chunk)
            state["start"] += len(chunk)
            state["saved"] += len(chunk)
            pending.clear()
        state["t"] = time.monotonic()

    def on_batch(start: int, emb: torch.Tensor) -> None:
        pending.append(emb.clone())
        if sum(len(p) for p in pending) >= chunk_items or time.monotonic() - state["t"] >= chunk_seconds:
            save_pending()

    try:
        for a, b in gaps:
            state["start"] = a
            encoder.embed(todo[a:b], batch_size=bs, progress=progress if g.rank == 0 else False,
                          desc=f"{encoder.name} {table.name}" + (f" [rank {g.rank}/{g.world}]" if g.on else ""),
                          on_batch=on_batch)
            save_pending()
    except BaseException as exc:
        try:
            save_pending()  # keep what this rank encoded before the interruption or failure
        except Exception as e:  # never hide the original error
            log.warning("rank %d could not save its encoded part: %s", g.rank, e)
        if state["saved"] + resumed:
            exc.fewmm_saved_parts = {"items": int(state["saved"] + resumed), "table": table.name, "encoder": encoder.name,
                                     "parts": str(store.path_for(key).with_suffix(".parts"))}
        raise
    counts = g.gather(resumed)  # also waits until every rank has finished its slice
    status, out = "ok", None
    if g.rank == 0:
        try:
            parts = _verified_parts(store, key, encoder.dim, 0, len(todo))
            end, chain = _reach(list(parts), 0)
            if end != len(todo):
                raise RuntimeError(f"the cache parts of {table.name} x {encoder.name} cover items 0:{end} of {len(todo)} "
                                   "only (a part deleted while the ranks ran?); run again")
            feats = torch.zeros((len(table), encoder.dim), dtype=torch.float32)
            feats[torch.as_tensor(idx)] = torch.cat([parts[c] for c in chain])
            path = store.save(key, feats, mask)  # atomic: temporary file + rename
            clear_parts(store, key)
            out = FeatureSet(feats, mask, key, cache_hit=False, path=path, resumed_items=int(sum(counts)))
        except Exception as e:
            status = f"rank 0 could not write the cache entry {store.path_for(key)}: {type(e).__name__}: {e}"
            g.bcast(status)
            raise
    status = g.bcast(status)
    if g.rank == 0:
        return out
    if status != "ok":
        raise RuntimeError(status)
    got = store.load(key)
    if got is None:
        raise RuntimeError(f"rank {g.rank}: the cache entry rank 0 wrote ({store.path_for(key)}) cannot be read here; "
                           "the cache folder must be one that every rank sees")
    return FeatureSet(got.features, got.mask, key, cache_hit=False, path=got.path, resumed_items=int(sum(counts)))


# --- data parallelism over the tasks of a meta-batch (episodic training) -------------------------


class TaskParallel:
    """Split each step's tasks (episodes) across the ranks and average the gradients.

    The tasks of a meta-batch are independent: the meta-gradient of the mean loss over T tasks is
    the task-weighted mean of the gradients of the mean loss over each rank's share,
    ``g = sum_r (n_r / T) g_r``. Each rank computes the loss of its contiguous share of the
    step's tasks (:meth:`split`), back-propagates, and :meth:`all_reduce_gradients` replaces its
    gradients with ``g`` (one all-reduce of one flat buffer); every rank then takes the same
    optimiser step, so the parameters stay identical on every rank, and equal those of one
    process on the same task stream up to the order of floating-point sums. This is what
    :class:`torch.nn.parallel.DistributedDataParallel` does for data batches; DDP itself does not
    fit the functional inner loop of MAML (the adapted weights are not module parameters), so the
    all-reduce is explicit. Only rank 0 (:attr:`writer`) writes checkpoints.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup, optional
        Default: the default group; without an initialised process group: one rank, every
        method a no-op (so one code path serves one process and many).
    """

    def __init__(self, group=None):
        self.group = group
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
        self.rank = dist.get_rank(group) if self.on else 0
        self.world_size = dist.get_world_size(group) if self.on else 1

    @property
    def writer(self) -> bool:
        """True on the rank that writes checkpoints and results (rank 0)."""
        return self.rank == 0

    def local_slice(self, n_tasks: int) -> slice:
        """This rank's contiguous share of ``n_tasks`` tasks: ``[r*T//W, (r+1)*T//W)``.

        Raises
        ------
        ValueError
            Fewer tasks than ranks (a rank would have none).
        """
        if n_tasks < self.world_size:
            raise ValueError(f"{n_tasks} task(s) per step cannot be split across {self.world_size} ranks: use at least "
                             f"one task per rank (episodes_per_step >= {self.world_size})")
        return slice(self.rank * n_tasks // self.world_size, (self.rank + 1) * n_tasks // self.world_size)

    def split(self, episodes):
        """This rank's share of a batch of episodes (:class:`fewmm.episodes.Episodes`)."""
        from .episodes import Episodes

        sl = self.local_slice(episodes.n_episodes)
        return Episodes(episodes.classes[sl], episodes.support[sl], episodes.query[sl], episodes.seed)

    def all_reduce_gradients(self, params, n_local: int, n_total: int) -> None:
        """Replace every parameter's ``.grad`` (of the mean loss over this rank's ``n_local``
        tasks) by the gradient of the mean loss over all ``n_total`` tasks. A parameter without a
        gradient here counts as a zero gradient when another rank has one; a parameter without a
        gradient on every rank keeps ``grad = None`` (as in one process)."""
        if not self.on:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        # which parameters have a gradient on some rank: the others keep None, as in one process
        # (an optimiser skips them; a zero gradient would still move Adam's moments)
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX, group=self.group)
        params = [p for p, h in zip(params, has.tolist()) if h]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(n_local / n_total)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        pos = 0
        for p in params:
            n = p.numel()
            p.grad = flat[pos : pos + n].view_as(p).clone()
            pos += n

    def mean(self, values, n_local: int, n_total: int) -> list[float]:
        """Task-weighted means over all ranks of per-rank means (e.g. ``[loss, accuracy]``)."""
        vals = [float(v) for v in values]
        if not self.on:
            return vals
        dev = "cuda" if dist.get_backend(self.group) == "nccl" else "cpu"
        t = torch.tensor(vals, dtype=torch.float64, device=dev) * (n_local / n_total)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return [float(x) for x in t.cpu()]

    def barrier(self) -> None:
        if self.on:
            dist.barrier(group=self.group)


# --- the command line: python -m fewmm.cache / torchrun ... -m fewmm.cache ---------------------------


def build_parser():
    import argparse

    from .clihelp import HelpFormatter, add_device_argument
    from .plugins import add_plugin_argument

    p = argparse.ArgumentParser(
        prog="python -m fewmm.cache",
        description="Fill the feature cache: embed data sets with frozen encoders, in one process or sharded "
        "over the ranks of torchrun (torchrun --nproc_per_node N -m fewmm.cache ...; one GPU per rank where "
        "present, else CPU with gloo). The entry written is the one a single process writes.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="data set[:split], comma-separated, or manifest:PATH[:split]")
    p.add_argument("--encoder", required=True, help="encoder name(s), comma-separated; each embeds the data sets "
                   "of its modality")
    add_device_argument(p)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="encoder arithmetic: fp32, or torch autocast to bf16/fp16 (torch encoders only; recorded in "
                   "the cache key; see fewmm.encoders.precision)")
    p.add_argument("--batch-size", type=int, help="encoder batch size (default: the encoder's)")
    p.add_argument("--data-root", help="data folder (default: $FEWMM_DATA, then ~/.cache/fewmm/data)")
    p.add_argument("--cache-dir", help="feature cache folder, seen by every rank (default $FEWMM_CACHE or "
                   "~/.cache/fewmm/features)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_plugin_argument(p)
    return p


def _main(argv=None) -> int:
    import sys

    from .errors import FewmmError
    from .plugins import import_plugins

    a = build_parser().parse_args(argv)
    if a.batch_size is not None and a.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {a.batch_size}", file=sys.stderr)
        return 2
    try:
        info = init_from_env(a.device)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    who = f"[rank {info.rank}/{info.world_size}] " if info.world_size > 1 else ""
    say = (lambda msg: None) if a.quiet or info.rank != 0 else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        import_plugins(a.plugin)
        from . import data as D
        from . import encoders as E
        from .bench.runner import RunSpec, parse_dataset
        from .encoders.precision import with_precision

        runs = [RunSpec(*parse_dataset(d)) for d in a.dataset.split(",") if d.strip()]
        tables = []
        for r in runs:
            if info.rank != 0:
                dist.barrier()  # rank 0 may download the data set first
            tables.append(D.load(r.dataset, split=r.split, root=a.data_root, download=info.rank == 0, **r.options))
            if info.rank == 0 and info.world_size > 1:
                dist.barrier()
        device = rank_device(a.device, info.local_rank)
        store = FeatureCache(a.cache_dir)
        n = 0
        for name in [e.strip() for e in a.encoder.split(",") if e.strip()]:
            enc = with_precision(E.create(name, device=device), a.precision)
            for table in tables:
                if enc.modality not in table.modalities:
                    say(f"[skip] {table.name} x {name}: the data set has no {enc.modality} (has {sorted(table.modalities)})")
                    continue
                t0 = time.time()
                fs = embed_table_sharded(table, enc, cache=store, progress=None if not a.quiet else False,
                                         batch_size=a.batch_size)
                n += 1
                how = "cache hit" if fs.cache_hit else (f"encoded by {info.world_size} rank(s) in {time.time() - t0:.1f}s"
                                                        + (f", {fs.resumed_items} items resumed from cache parts"
                                                           if fs.resumed_items else ""))
                say(f"{table.name} x {enc.name}{'' if a.precision == 'fp32' else ' ' + a.precision}: "
                    f"{tuple(fs.features.shape)} {how} -> {fs.path}")
        if n == 0:
            raise FewmmError(f"nothing to embed: no encoder of {a.encoder!r} embeds a modality of {a.dataset!r}")
    except (FewmmError, ValueError) as e:
        print(f"{who}error: {e}", file=sys.stderr)
        return 2
    finally:
        if info.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv=None) -> int:
    """The command line (see ``--help``); SIGTERM (torchrun stopping the other ranks when one
    fails) stops a rank like Ctrl-C: its encoded chunks are saved as cache parts, exit 130."""
    from .clihelp import run_interruptible

    return run_interruptible(_main, argv, "no cache entry was written")
