"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check runs on the CPU with tiny sizes, so
the script is ready for a GPU machine (no GPU was lent to the task that wrote it; see README)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # six Python processes (harness x2, throughput, MAML x2, Conv-4): ~1-2 min on 2 cores
def test_gpu_check_dry_run(tmp_path, data_root):
    env = {**os.environ, "PYTHON": sys.executable, "FEWMM_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    p = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["device"] == "cpu" and res["dry_run"] is True and res["all_steps_ok"] is True
    assert set(res["steps"]) == {"harness_cpu", "episode_throughput", "maml_mlp", "maml_gmu", "conv4_bf16"}
    assert all(s["exit_status"] == 0 for s in res["steps"].values())
    # the harness comparison ran on both methods (cpu against itself in a dry run: difference exactly 0)
    assert res["harness"]["settings"] == 2 and res["harness"]["max_abs_accuracy_diff_points"] == 0.0
    assert res["episode_throughput"]["fewmm_time_over_gather_time"] > 0
    mlp = res["maml_mlp"][0]
    assert (mlp["inner_steps"], mlp["order"]) == (1, "first") and {"l2l", "gram", "functional", "vmap"} <= set(mlp)
    assert "gram" not in res["maml_gmu"][0] and res["maml_gmu"][0]["functional"]["x_l2l"] > 0
    assert res["conv4_bf16"]["episodes_per_s"]["fewmm"] > 0


def test_gpu_check_refuses_unknown_arguments():
    p = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), "--bogus"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown argument --bogus" in p.stderr
