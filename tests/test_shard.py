"""Sharded benchmark grids (fewmm.bench.shard): N slices merged equal the unsharded results file."""

import json

import pytest

from fewmm.bench.cli import main
from fewmm.bench.merge import main as merge_main
from fewmm.bench.shard import RUN_SPECIFIC, parse_shard, select_cells

GRID = ["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,knn,simpleshot", "--ways", "3,5,20",
        "--shots", "1,5", "--queries", "5", "--episodes", "12", "--seed", "7"]


def bench(tmp_path, *args):
    return main([*GRID, *args, "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])


def comparable(doc):
    """The results without what describes the run itself (command, time stamps, timings)."""
    doc = {k: v for k, v in doc.items() if k not in RUN_SPECIFIC["top"]}
    doc["results"] = [{k: v for k, v in r.items() if k not in RUN_SPECIFIC["row"]} for r in doc["results"]]
    return doc


@pytest.mark.parametrize("n", [3, 5])
def test_merged_shards_equal_the_unsharded_results_file(tmp_path, n):
    """4 feasible cells (3/5-way x 1/5-shot; the 20-way cells are infeasible on digits' 10 classes)
    x 3 methods. n=3 gives slices of 1, 1 and 2 cells; n=5 gives 5 slices of which one is empty."""
    assert bench(tmp_path, "--name", "full") == 0
    for i in range(n):
        assert bench(tmp_path, "--name", "grid", "--shard", f"{i}/{n}") == 0
    res = tmp_path / "res"
    shards = sorted(res.glob(f"grid-shard*-of-{n}.json"))
    assert len(shards) == n
    cells = [json.loads(p.read_text())["shard"]["cells"] for p in shards]
    assert cells == ([[0], [1], [2, 3]] if n == 3 else [[], [0], [1], [2], [3]])
    assert merge_main([str(p) for p in reversed(shards)]) == 0  # any order
    full, merged = (json.loads((res / f"{s}.json").read_text()) for s in ("full", "grid"))
    assert len(full["results"]) == 12 and len(full["skipped"]) == 2  # 4 cells x 3 methods; 2 infeasible cells
    assert comparable(merged) == comparable(full)
    assert (res / "grid.csv").read_bytes() == (res / "full.csv").read_bytes()
    assert merged["finished"] is True and [s["index"] for s in merged["shards"]] == list(range(n))
    assert merged["command"].startswith("python -m fewmm.bench.merge ")
    # a shard's numbers are those of the same cell in the unsharded run (its episodes come from the seed alone)
    one = json.loads(shards[-1].read_text())
    assert one["results"] and [r["accuracy"] for r in one["results"]] == [r["accuracy"] for r in full["results"][-len(one["results"]):]]


def test_select_cells_cuts_contiguous_slices():
    blocks = [{"run": type("R", (), {"display": d, "split": None})(), "encoder": "e", "queries": 5,
               "cells": [(5, 1), (5, 5)]} for d in ("a", "b", "c")]
    got = [select_cells(blocks, (i, 4), ["m"], 0, 10) for i in range(4)]
    # 6 cells over 4 shards: [0, 1) [1, 3) [3, 4) [4, 6)
    assert [rec["cells"] for _, rec in got] == [[0], [1, 2], [3], [4, 5]]
    assert [[(b["run"].display, b["cells"]) for b in bl] for bl, _ in got] == [
        [("a", [(5, 1)])], [("a", [(5, 5)]), ("b", [(5, 1)])], [("b", [(5, 5)])], [("c", [(5, 1), (5, 5)])]]
    assert len({rec["grid_sha256"] for _, rec in got}) == 1
    assert select_cells(blocks, (0, 1), ["m"], 1, 10)[1]["grid_sha256"] != got[0][1]["grid_sha256"]  # another seed


@pytest.mark.parametrize("value, message", [("4/4", "0 <= I < N"), ("1", "I/N"), ("a/2", "I/N"), ("0/0", "N >= 1"),
                                            ("-1/3", "0 <= I < N")])
def test_parse_shard_refuses_bad_values(value, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(value)
    assert parse_shard(" 2/3 ") == (2, 3)


def test_bad_shard_flag_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench(tmp_path, "--shard", "2/2")
    assert e.value.code == 2 and "--shard must be I/N with N >= 1 and 0 <= I < N" in capsys.readouterr().err


def test_merge_refuses_missing_duplicate_foreign_and_unfinished_shards(tmp_path, capsys):
    for i in range(2):
        assert bench(tmp_path, "--name", "g", "--shard", f"{i}/2") == 0
    assert main([*GRID[:-2], "--seed", "8", "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
                 "--quiet", "--name", "other", "--shard", "1/2"]) == 0
    res = tmp_path / "res"
    s0, s1, other = res / "g-shard0-of-2.json", res / "g-shard1-of-2.json", res / "other-shard1-of-2.json"

    def err_of(*paths):
        capsys.readouterr()
        assert merge_main([str(p) for p in paths]) == 2
        return capsys.readouterr().err

    assert "missing shard(s) 1/2 of 2" in err_of(s0)
    assert "shard(s) [0] given twice" in err_of(s0, s0, s1)
    assert "of another grid than" in err_of(s0, other)
    assert "cannot be read as JSON (JSONDecodeError" in err_of(res / "g-shard0-of-2.csv")
    (res / "plain.json").write_text('{"finished": true, "results": []}')
    assert "plain.json is not the results file of a sharded run (no 'shard' record" in err_of(res / "plain.json")
    assert "does not exist" in err_of(res / "nope.json")
    doc = json.loads(s1.read_text())
    doc["finished"] = False
    s1.write_text(json.dumps(doc))
    assert f"unfinished shard(s) (interrupted or failed; 'finished' is false): {s1}" in err_of(s0, s1)
    assert not (res / "g.json").exists()


def test_slurm_array_script_runs_each_shard_and_the_merge_equals_the_full_run(tmp_path):
    """scripts/slurm/bench_array.sh as Slurm would run array task i of 2 (its environment set by
    hand; PYTHON is a stub that records its arguments, which are then run in-process, to keep
    the test fast), then the merge job's command, compared with an unsharded run."""
    import os
    import shlex
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm" / "bench_array.sh"
    stub = tmp_path / "python"
    stub.write_text('#!/bin/bash\nprintf "%q " "$@" > "$ARGV_FILE"\n')
    stub.chmod(0o755)
    args = [*GRID, "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    env = {**os.environ, "PYTHON": str(stub), "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MAX": "1",
           "ARGV_FILE": str(tmp_path / "argv")}
    for i in range(2):
        p = subprocess.run(["bash", str(script), *args, "--name", "grid"], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        argv = shlex.split((tmp_path / "argv").read_text())
        assert argv[:2] == ["-m", "fewmm.bench"] and argv[-2:] == ["--shard", f"{i}/2"]
        assert main(argv[2:]) == 0
    assert main([*args, "--name", "full"]) == 0
    res = tmp_path / "res"
    assert merge_main([str(res / "grid-shard0-of-2.json"), str(res / "grid-shard1-of-2.json")]) == 0
    assert (res / "grid.csv").read_bytes() == (res / "full.csv").read_bytes()
    assert comparable(json.loads((res / "grid.json").read_text())) == comparable(json.loads((res / "full.json").read_text()))
    bad = subprocess.run(["bash", str(script), *args], env={**env, "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MAX": "2"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "array indices must be 0..N-1 (got max 2 for 2 tasks)" in bad.stderr
    env.pop("SLURM_ARRAY_TASK_COUNT")
    bad = subprocess.run(["bash", str(script), *args], env={**env, "SLURM_ARRAY_TASK_ID": "0"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "SLURM_ARRAY_TASK_COUNT is not set" in bad.stderr
