"""The speed benchmarks' floors: what any exact path must compute, and the verdicts they imply.

``benchmarks/maml_speed.py`` times a ``floor`` path (the two matrix products every exact MAML
meta-step of an MLP head does) and marks a target above time(l2l) / time(floor) "infeasible";
``benchmarks/episode_throughput.py`` times the unfused floor of euclidean ProtoNet scoring (the
gather plus one ``bmm``). These tests check the arithmetic and the verdict rule on hand-made
round times (no timing in tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import episode_throughput as et  # noqa: E402
import maml_speed as ms  # noqa: E402


def _runs(times: dict[str, list[float]]) -> dict:
    return {"paths": {n: {"wall_s": t} for n, t in times.items()}}


def test_floor_computes_the_first_layer_products_of_every_item():
    torch.manual_seed(0)
    head = ms.make_head(12, 7, 5, seed=0)
    f = ms.FloorMethod(head)
    sx, qx = torch.randn(3, 5, 12), torch.randn(3, 10, 12)
    out = f.step(sx, None, qx, None)
    x = torch.cat([sx.reshape(-1, 12), qx.reshape(-1, 12)])
    assert f.d_out.shape == (45, 7)  # one output gradient row per support and query item
    want = float((x @ head[0].weight.detach().T)[0, 0] + (f.d_out.T @ x)[0, 0])
    assert out == pytest.approx(want, rel=1e-6)


def test_ceiling_marks_a_missed_target_above_it_infeasible():
    # l2l 10 s per round, floor 4 s (ceiling 2.5x), gram 5 s (2x: misses >= 5), functional 8 s (1.25x: meets >= 1)
    runs = _runs({"l2l": [10.0, 10.0, 10.0], "floor": [4.0, 4.0, 4.0], "gram": [5.0, 5.0, 5.0], "functional": [8.0, 8.0, 8.0]})
    res = {n: {"verdict": ms.verdict(ms.ratio_stats(runs, n, "l2l"), ms.TARGETS[n])} for n in ("gram", "functional")}
    res["floor"] = {}
    ms.apply_ceiling(res, runs)
    assert res["gram"]["verdict"]["verdict"] == "infeasible"
    assert res["gram"]["ceiling_vs_l2l"] == pytest.approx(2.5)
    assert res["gram"]["time_over_floor"] == pytest.approx(1.25)
    assert "2.50x" in res["gram"]["verdict"]["why"]
    assert res["functional"]["verdict"]["verdict"] == "met"  # a met target stays met
    assert res["functional"]["time_over_floor"] == pytest.approx(2.0)


def test_a_missed_target_below_the_ceiling_stays_missed():
    # floor 1 s: ceiling 10x; gram 4 s: 2.5x, missed but possible
    runs = _runs({"l2l": [10.0, 10.0, 10.0], "floor": [1.0, 1.0, 1.0], "gram": [4.0, 4.0, 4.0]})
    res = {"gram": {"verdict": ms.verdict(ms.ratio_stats(runs, "gram", "l2l"), 5.0)}, "floor": {}}
    ms.apply_ceiling(res, runs)
    assert res["gram"]["verdict"]["verdict"] == "missed"
    assert res["gram"]["ceiling_vs_l2l"] == pytest.approx(10.0)


def test_a_ceiling_whose_spread_reaches_the_target_is_not_called_infeasible():
    # ceilings per round 4, 4, 6: q75 = 5 >= 5, so the target is not proven out of reach
    runs = _runs({"l2l": [8.0, 8.0, 12.0], "floor": [2.0, 2.0, 2.0], "gram": [4.0, 4.0, 4.0]})
    res = {"gram": {"verdict": ms.verdict(ms.ratio_stats(runs, "gram", "l2l"), 5.0)}, "floor": {}}
    ms.apply_ceiling(res, runs)
    assert res["gram"]["verdict"]["verdict"] == "missed"


def test_no_floor_row_changes_nothing():
    runs = _runs({"l2l": [10.0], "gram": [5.0]})
    res = {"gram": {"verdict": {"target": ">= 5", "verdict": "missed", "stable": True}}}
    ms.apply_ceiling(res, runs)
    assert res == {"gram": {"verdict": {"target": ">= 5", "verdict": "missed", "stable": True}}}


@pytest.mark.parametrize("shot", [1, 3])
def test_unfused_floor_path_computes_the_protonet_products(shot):
    from fewmm.episodes import sample_episodes

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(60, 16, generator=g)
    labels = np.repeat(np.arange(6), 10)
    eps = sample_episodes(labels, 3, shot, 4, 7, seed=0)
    fn = et.make_gather(feats, eps, 3, product=True)
    last = fn()  # the last chunk: episode 6 alone (chunks 0-2, 3-5, 6)
    s_rows = feats[torch.as_tensor(eps.support[6])]  # (3, shot, 16)
    q_rows = feats[torch.as_tensor(eps.query[6].reshape(-1))]  # (12, 16)
    want = q_rows @ s_rows.mean(dim=1).T
    assert last.shape == (1, 12, 3)
    torch.testing.assert_close(last[0], want, rtol=1e-5, atol=1e-5)


def test_processes_option_strips_its_own_and_the_json_option():
    argv = ["--synthetic", "--json", "out.json", "--processes=3", "--threads", "1", "--processes", "2", "--json=x"]
    from interleaved import without_options

    assert without_options(argv, ("--processes", "--json")) == ["--synthetic", "--threads", "1"]


def test_processes_pool_the_rounds_of_fresh_processes(tmp_path):
    """``--processes 2``: two fresh processes, their rounds pooled (2 x 2 per ratio), each one's
    median kept, verdicts from the pooled figure; the speed report then names the processes."""
    import json

    from fewmm.bench.speed_report import throughput_md

    out = tmp_path / "tp.json"
    res = et.main(["--synthetic", "--threads", "1", "--repeats", "2", "--episodes", "10", "--no-l2l", "--no-compile",
                   "--loop-episodes", "2", "--no-1000", "--processes", "2", "--json", str(out)])
    assert json.loads(out.read_text())["config"]["processes"] == 2 and len(res["processes"]) == 2
    st = res["stable_ratios"]["fewmm_time_over_gather_time"]
    assert len(st["per_round"]) == 4 and len(st["per_run_median"]) == 2
    assert st["per_run_median"] == [p["medians"]["fewmm_time_over_gather_time"] for p in res["processes"]]
    assert st["median"] == pytest.approx(float(np.median(st["per_round"])))
    assert st["verdict"] == et.verdict(st, 2.0, at_least=False)
    md = throughput_md(res, "tp.json")
    assert "2 fresh processes" in md and "{" + ", ".join(f"{m:.2f}" for m in st["per_run_median"]) + "}" in md


def test_maml_pool_rows_pools_the_rounds_of_fresh_processes():
    """Two runs of one setting: round times concatenated, so the pooled per-round ratios are the
    two runs' together (l2l 4 s vs gram 2 s and 1 s: ratios 2 and 4; then 3 s vs 1 s: 3, 3), each
    run's median kept, the verdict and the ceiling (l2l / floor: 4, 4, 3, 3) recomputed from them."""

    def part(l2l, gram, floor):
        st = lambda fast: ms.ratio_stats(_runs({"l2l": l2l, fast: {"gram": gram, "floor": floor}[fast]}), fast, "l2l")
        methods = {"l2l": {"times_s": l2l, "cpu_s": l2l}, "gram": {"times_s": gram, "cpu_s": gram, "ratio_vs_l2l": st("gram")},
                   "floor": {"times_s": floor, "cpu_s": floor, "ratio_vs_l2l": st("floor")}}
        return {"speed": [{"inner_steps": 1, "order": "first", "head": "mlp", "methods": methods, "loadavg_per_round": [0.5, 0.5]}]}

    rows = ms.pool_rows([part([4.0, 4.0], [2.0, 1.0], [1.0, 1.0]), part([3.0, 3.0], [1.0, 1.0], [1.0, 1.0])])
    g = rows[0]["methods"]["gram"]
    assert g["ratio_vs_l2l"]["per_round"] == [2.0, 4.0, 3.0, 3.0] and g["ratio_vs_l2l"]["median"] == 3.0
    assert g["ratio_vs_l2l"]["per_run_median"] == [3.0, 3.0]
    assert g["ceiling_vs_l2l"] == 3.5 and g["verdict"]["verdict"] == "infeasible"  # 5x > the ceiling's q75 (4)
    assert g["times_s"] == [2.0, 1.0, 1.0, 1.0] and g["steps_per_s_median"] == 1.0
    assert rows[0]["loadavg_per_round"] == [0.5] * 4 and rows[0]["processes"] == 2
    with pytest.raises(ValueError, match="settings differ"):
        other = part([4.0], [2.0], [1.0])
        other["speed"][0]["inner_steps"] = 5
        ms.pool_rows([part([4.0], [2.0], [1.0]), other])
