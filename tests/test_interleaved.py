"""benchmarks/interleaved.py: the shared timing helper of the speed benchmarks (hand-computed cases)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interleaved import fmt_ratio, machine_state, pool_ratio_stats, ratio_stats, run_interleaved, verdict  # noqa: E402


def test_rounds_alternate_order_and_record_everything():
    calls = []
    runs = run_interleaved({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a-b, b-a, a-b
    assert runs["rounds"] == 3 and len(runs["loadavg_per_round"]) == 3
    for name, last in (("a", 1), ("b", 2)):
        p = runs["paths"][name]
        assert len(p["wall_s"]) == len(p["cpu_s"]) == 3 and p["last"] == last and p["wall_s_median"] >= 0
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        run_interleaved({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="fns is empty"):
        run_interleaved({}, rounds=1)


def test_ratio_stats_and_verdict_hand_computed():
    runs = {"paths": {"fast": {"wall_s": [1.0, 2.0, 1.0, 1.0]}, "slow": {"wall_s": [3.0, 2.0, 2.5, 4.0]}}}
    st = ratio_stats(runs, "fast", "slow")  # per round 3, 1, 2.5, 4
    assert st["per_round"] == [3.0, 1.0, 2.5, 4.0]
    assert (st["median"], st["min"], st["max"]) == (2.75, 1.0, 4.0)
    assert (st["q25"], st["q75"]) == (2.125, 3.25)  # numpy linear percentiles of [1, 2.5, 3, 4]
    assert ratio_stats(runs, "fast", "slow", scale=2.0)["median"] == 5.5
    assert verdict(st, 2.0) == {"target": ">= 2", "verdict": "met", "stable": True}
    assert verdict(st, 3.0) == {"target": ">= 3", "verdict": "missed", "stable": False}  # q75 3.25 is over 3
    assert verdict(st, 3.5, at_least=False) == {"target": "<= 3.5", "verdict": "met", "stable": True}
    assert fmt_ratio(st) == "2.75x [2.12-3.25]"
    m = machine_state()
    assert m["torch_threads"] >= 1 and m["cpu_count"] >= 1 and len(m["loadavg_1_5_15"]) == 3


def test_pool_ratio_stats_pools_the_rounds_of_several_runs():
    """Two runs of one pair (rounds 1, 2, 3 and 4, 5): the pooled median and quartiles are those
    of all five rounds (numpy's linear percentiles: q25 of 1..5 is 2, q75 is 4), each run's own
    median is kept."""
    a = {"fast": "f", "slow": "s", "key": "wall_s", "median": 2.0, "per_round": [1.0, 2.0, 3.0]}
    b = {"fast": "f", "slow": "s", "key": "wall_s", "median": 4.5, "per_round": [5.0, 4.0]}
    p = pool_ratio_stats([a, b])
    assert (p["median"], p["q25"], p["q75"], p["min"], p["max"]) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert p["per_round"] == [1.0, 2.0, 3.0, 5.0, 4.0] and p["per_run_median"] == [2.0, 4.5]
    assert (p["fast"], p["slow"], p["key"]) == ("f", "s", "wall_s")
    assert verdict(p, 2.0, at_least=False) == {"target": "<= 2", "verdict": "missed", "stable": False}
    with pytest.raises(ValueError, match="different pairs"):
        pool_ratio_stats([a, {**b, "slow": "other"}])
    with pytest.raises(ValueError, match="no ratio_stats"):
        pool_ratio_stats([])
