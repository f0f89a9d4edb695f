"""The optional learn2learn extra: its install script, and the episode-throughput benchmark.

learn2learn is never required: tests that need it are skipped when it does not import
(install it with ``PYTHON=.venv/bin/python scripts/install_learn2learn.sh``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install_learn2learn.sh"
BENCH = REPO / "benchmarks" / "episode_throughput.py"


def _l2l_available() -> bool:
    try:
        import learn2learn  # noqa: F401
    except Exception:
        return False
    return True


def test_install_script_is_valid_bash_and_strict():
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert "--no-deps" in text and "cython -3" in text and "gym==0.26.2" in text
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_install_script_rejects_missing_interpreter():
    if not shutil.which("bash"):
        pytest.skip("no bash")
    r = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PYTHON": "/nonexistent/python"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not an executable" in r.stderr


@pytest.mark.skipif(not _l2l_available(), reason="learn2learn not installed (scripts/install_learn2learn.sh)")
def test_install_script_is_idempotent_when_installed():
    r = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PYTHON": sys.executable},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stderr


@pytest.mark.skipif(not _l2l_available(), reason="learn2learn not installed (scripts/install_learn2learn.sh)")
def test_learn2learn_api_used_by_the_benchmark():
    import learn2learn as l2l
    import torch

    assert callable(l2l.algorithms.MAML) and callable(l2l.data.TaskDataset)
    x = torch.randn(60, 4)
    y = np.repeat(np.arange(6), 10)
    bench = _load_bench()
    ts = bench.l2l_taskset(x, y, n_way=3, n_shot=2, n_query=3)
    acc = bench.run_l2l(ts, n_tasks=5, n_way=3, n_shot=2, n_query=3, seed=0)
    assert acc.shape == (5,) and ((acc >= 0) & (acc <= 1)).all()


def _load_bench():
    spec = importlib.util.spec_from_file_location("episode_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_loop_matches_batched_evaluation():
    """The per-episode loop of the benchmark reproduces evaluate_episodes exactly."""
    import torch

    from fewmm.episodes import sample_episodes

    bench = _load_bench()
    g = torch.Generator().manual_seed(0)
    labels = np.repeat(np.arange(30), 8)
    feats = torch.randn(30, 64, generator=g)[torch.as_tensor(labels)] + 2.0 * torch.randn(240, 64, generator=g)
    ep = sample_episodes(labels, 5, 2, 4, 50, seed=1)
    acc_batched = bench.run_fewmm(feats, ep, chunk_size=16)
    acc_loop = bench.run_loop(feats, ep, 50)
    np.testing.assert_array_equal(acc_batched, acc_loop)


def test_benchmark_synthetic_smoke(tmp_path):
    out = tmp_path / "tp.json"
    bench = _load_bench()
    res = bench.main(["--synthetic", "--episodes", "40", "--loop-episodes", "10", "--l2l-episodes", "5",
                      "--repeats", "1", "--chunk-size", "16", "--json", str(out)])
    assert out.exists()
    assert res["loop"]["identical_to_fewmm"]
    assert res["fewmm"]["episodes_per_s"] > 0 and res["gather"]["episodes_per_s"] > 0
    assert (res["l2l"] is None) == (not _l2l_available())


def test_evaluate_fast_path_matches_protonet_episode_logits():
    """evaluate_episodes' euclidean-ProtoNet fast path (gathered row norms, 1-shot prototypes
    without a mean) predicts exactly what ProtoNet.episode_logits predicts, for any chunking."""
    import torch

    from fewmm.episodes import sample_episodes
    from fewmm.evaluate import _euclidean_protonet, evaluate_episodes
    from fewmm.methods.protonet import ProtoNet

    class GenericProtoNet(ProtoNet):  # same logits, but not eligible for the fast path
        def episode_logits(self, support, query):
            return super().episode_logits(support, query)

    assert _euclidean_protonet(ProtoNet()) and not _euclidean_protonet(GenericProtoNet())
    assert not _euclidean_protonet(ProtoNet(metric="cosine"))
    from fewmm.evaluate import _row_sq_norms

    x = torch.randn(300, 1280, generator=torch.Generator().manual_seed(0))
    idx = torch.randint(0, 300, (7, 75), generator=torch.Generator().manual_seed(1))
    gathered = x[idx.reshape(-1)].view(7, 75, 1280)
    assert torch.equal(_row_sq_norms(x)[idx], (gathered * gathered).sum(-1))  # bit for bit
    g = torch.Generator().manual_seed(3)
    labels = np.repeat(np.arange(25), 10)
    feats = torch.randn(25, 96, generator=g)[torch.as_tensor(labels)] + 3.0 * torch.randn(250, 96, generator=g)
    feats[0, :5] = -0.0
    for n, k, q in ((5, 1, 4), (4, 3, 5), (2, 1, 1)):
        ep = sample_episodes(labels, n, k, q, 60, seed=k)
        ref_acc, ref_pred = evaluate_episodes(GenericProtoNet(), feats, ep, chunk_size=60, return_predictions=True)
        for cs in (None, 1, 7, 1000):
            acc, pred = evaluate_episodes(ProtoNet(), feats, ep, chunk_size=cs, return_predictions=True)
            np.testing.assert_array_equal(acc, ref_acc)
            np.testing.assert_array_equal(pred, ref_pred)


def test_resolve_chunk_size():
    from fewmm.episodes import sample_episodes
    from fewmm.evaluate import CPU_CHUNK_BYTES, resolve_chunk_size

    labels = np.repeat(np.arange(10), 20)
    ep = sample_episodes(labels, 5, 1, 15, 5000, seed=0)
    assert resolve_chunk_size(250, ep, 1280) == 250
    assert resolve_chunk_size(10**9, ep, 1280) == 5000
    assert resolve_chunk_size(None, ep, 1280) == CPU_CHUNK_BYTES // (80 * 1280 * 4)
    assert resolve_chunk_size(None, ep, 10**7) == 1  # one huge episode: at least 1
    assert resolve_chunk_size(None, ep, 4) == 1000
    assert resolve_chunk_size(None, ep, 1280, device="cuda") == 1000  # no device needed to resolve
