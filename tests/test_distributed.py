"""Sharded feature extraction (fewmm.distributed): 2 CPU processes with gloo write the cache entry a
single process writes; a crashed rank leaves only verified parts and no entry."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewmm.cache import FeatureCache, cache_key, embed_table, list_parts, read_part
from fewmm.data.table import ItemTable
from fewmm.distributed import embed_table_sharded, missing_ranges, shard_range
from fewmm.encoders.base import Encoder

REPO = Path(__file__).resolve().parents[1]


def entry_content(path):
    """(metadata, features, mask) of a cache file: what two writes of one entry share (the byte
    order of safetensors' metadata follows a hash map, so the bytes themselves may differ)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), f.get_tensor("features"), f.get_tensor("mask")


def same_entry(a, b):
    (ma, fa, ka), (mb, fb, kb) = entry_content(a), entry_content(b)
    return Path(a).name == Path(b).name and ma == mb and torch.equal(fa, fb) and torch.equal(ka, kb)


class TinyNet(Encoder):
    """A deterministic torch encoder (seeded 16 -> 32 -> 8 MLP) on 16-d float arrays; its
    ``crash_after`` -th forward call raises, to play a rank that fails mid-way."""

    name, modality, dim = "tiny-net", "image", 8
    weights_id, preprocess_id = "tiny-net-seed0", "float32"

    def __init__(self, device="cpu", batch_size=4, crash_after=None):
        super().__init__(device, batch_size)
        g = torch.Generator().manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls, self.crash_after = 0, crash_after

    def _prepare(self, payload):
        return np.asarray(payload, dtype=np.float32)

    def _forward(self, batch):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("simulated crash of this rank")
        return self.model(torch.from_numpy(np.stack(batch)))


def toy_table(n=50):
    x = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
    return ItemTable(name="toy/all", ids=[f"i{i}" for i in range(n)], labels=np.zeros(n, dtype=np.int64),
                     class_names=["a"], modalities={"image": list(x)})


def _worker(rank, world, init_file, cache_dir, crash_rank):
    """One rank of a gloo job started by torch.multiprocessing.spawn (SIGTERM handled as the CLI
    does: as an interrupt, so a rank stopped by the others' failure saves its pending chunk)."""
    import torch.distributed as dist

    from fewmm.clihelp import sigterm_as_interrupt

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        with sigterm_as_interrupt():
            enc = TinyNet(crash_after=2 if rank == crash_rank else None)
            embed_table_sharded(toy_table(), enc, cache=cache_dir, batch_size=4, chunk_items=1)
    finally:
        dist.destroy_process_group()


def test_shard_range_cuts_at_batch_boundaries():
    assert [shard_range(1797, 100, r, 2) for r in range(2)] == [(0, 900), (900, 1797)]
    assert [shard_range(50, 4, r, 3) for r in range(3)] == [(0, 16), (16, 32), (32, 50)]  # 13 batches: 4, 4, 5
    assert [shard_range(5, 4, r, 3) for r in range(3)] == [(0, 0), (0, 4), (4, 5)]  # 2 batches, 3 ranks
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_range(10, 4, 2, 2)


def test_missing_ranges_fill_the_gaps_between_runs_of_parts():
    assert missing_ranges([], 0, 10) == [(0, 10)]
    assert missing_ranges([(0, 4), (4, 6), (8, 10)], 0, 10) == [(6, 8)]
    assert missing_ranges([(2, 4)], 0, 10) == [(0, 2), (4, 10)]
    # parts of runs with other slicings overlap: the longest run from 0 is 0-2-6, then 6-8
    assert missing_ranges([(0, 4), (0, 2), (2, 6), (6, 8)], 0, 10) == [(8, 10)]
    assert missing_ranges([(0, 4), (12, 16)], 0, 10) == [(4, 10)]  # parts outside [lo, hi) do not count


def test_crashed_rank_leaves_no_entry_and_a_run_with_another_rank_count_resumes(tmp_path):
    """Rank 1 of 2 fails at its 3rd batch: no cache entry exists, every part file left verifies (no
    half-written file), rank 1's two finished batches are among them. Then one process (world size
    1) encodes only what no part holds and writes the entry plain embed_table writes."""
    import torch.multiprocessing as mp

    cache = tmp_path / "cache"
    # spawn reports the first rank it sees fail: rank 1's crash, or rank 0 losing its peer
    with pytest.raises((mp.ProcessRaisedException, mp.ProcessExitedException)):
        mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(cache), 1), nprocs=2, join=True)
    store, enc, table = FeatureCache(cache), TinyNet(), toy_table()
    key = cache_key(enc, table, "image")
    entry = store.path_for(key)
    assert not entry.exists()
    left = list_parts(store, key)
    for a, b, path in left:  # every part verifies (key, checksum, shape)
        assert read_part(store, key, path, 8).shape == (b - a, 8)
    # anything else is a temporary file of a write cut short (never read: parts are *.safetensors)
    assert all(p.suffix == ".tmp" for p in cache.rglob("*") if p.is_file() and p.suffix != ".safetensors")
    spans = [(a, b) for a, b, _ in left]
    assert shard_range(50, 4, 1, 2) == (24, 50)  # rank 1's slice: 13 batches of 4 split 6 + 7
    assert [s for s in spans if s[0] >= 24] == [(24, 28), (28, 32)]  # rank 1 saved its 2 finished batches
    assert all(b <= 24 for _, b in spans if _ < 24)  # rank 0's parts (as far as it got) stay in its slice
    held = 50 - sum(b - a for a, b in missing_ranges(spans, 0, 50))
    fs = embed_table_sharded(table, enc, cache=cache, batch_size=4, chunk_items=1)  # no process group: 1 rank
    assert fs.resumed_items == held >= 8
    assert enc.calls == sum(-(-(b - a) // 4) for a, b in missing_ranges(spans, 0, 50))  # only what no part held
    assert torch.equal(fs.features, TinyNet().embed(table.modalities["image"], batch_size=4))
    assert list_parts(store, key) == [] and entry.is_file()
    assert [p for p in cache.rglob("*") if p.is_file()] == [entry]  # parts and temporary files gone
    ref = embed_table(table, TinyNet(), cache=tmp_path / "ref", batch_size=4)
    assert same_entry(ref.path, entry)  # same file name (key), metadata (key, checksum), features and mask


def test_torchrun_two_ranks_write_the_entry_one_process_writes(tmp_path):
    """torchrun --nproc_per_node 2 -m fewmm.cache on CPU (gloo): digits x pixels, batch size 100, so
    rank 0 encodes items 0:900 and rank 1 900:1797. The entry file is the one plain embed_table
    writes (same name, key, checksum, features and mask), and no part is left."""
    import fewmm.data as D
    import fewmm.encoders as E

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--monitor-interval", "0.1",
           "-m", "fewmm.cache", "--dataset", "digits", "--encoder", "pixels", "--device", "cpu",
           "--batch-size", "100", "--cache-dir", str(tmp_path / "dist")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "digits/all x pixels: (1797, 784) encoded by 2 rank(s)" in p.stderr
    table, enc = D.load("digits"), E.create("pixels")
    ref = embed_table(table, enc, cache=tmp_path / "one", batch_size=100)
    got = FeatureCache(tmp_path / "dist").load(cache_key(enc, table, "image"))
    assert got is not None and torch.equal(got.features, ref.features)
    assert same_entry(got.path, ref.path)
    assert sorted(p.name for p in (tmp_path / "dist").rglob("*")) == sorted(["pixels", ref.path.name])  # no parts, no temporary file


def test_cache_cli_in_one_process_and_its_errors(tmp_path, capsys):
    """python -m fewmm.cache without torchrun: one rank; a second run is a cache hit; bad requests
    exit 2 with one line naming the problem."""
    from fewmm.distributed import main

    args = ["--dataset", "digits", "--device", "cpu", "--cache-dir", str(tmp_path)]
    assert main([*args, "--encoder", "pixels"]) == 0
    assert "digits/all x pixels: (1797, 784) encoded by 1 rank(s)" in capsys.readouterr().err
    assert main([*args, "--encoder", "pixels"]) == 0
    assert "digits/all x pixels: (1797, 784) cache hit" in capsys.readouterr().err
    assert main([*args, "--encoder", "logmel-stats"]) == 2
    err = capsys.readouterr().err
    assert "[skip] digits/all x logmel-stats: the data set has no audio" in err
    assert "error: nothing to embed: no encoder of 'logmel-stats' embeds a modality of 'digits'" in err
    assert main([*args, "--encoder", "pixels", "--precision", "bf16"]) == 2
    assert "error: encoder 'pixels' does not run a torch model, so autocast cannot change its precision" in capsys.readouterr().err
    assert main([*args, "--encoder", "pixels", "--batch-size", "0"]) == 2
    assert "error: --batch-size must be >= 1, got 0" in capsys.readouterr().err

