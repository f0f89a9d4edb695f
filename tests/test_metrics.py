import numpy as np
import pytest

from fewmm.metrics import mean_ci, paired_difference, per_episode_accuracy


def test_mean_ci_matches_formula():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=600)
    est = mean_ci(v)
    assert est.mean == pytest.approx(100 * v.mean())
    assert est.ci95 == pytest.approx(100 * 1.959963984540054 * v.std(ddof=1) / np.sqrt(600))
    assert est.n == 600


def test_mean_ci_matches_scipy_normal_interval():
    from scipy import stats

    v = np.random.default_rng(1).uniform(size=1000)
    lo, hi = stats.norm.interval(0.95, loc=v.mean(), scale=stats.sem(v))
    assert mean_ci(v).ci95 == pytest.approx(100 * (hi - lo) / 2, rel=1e-9)


def test_single_episode_and_bad_input():
    assert mean_ci([0.5]).ci95 == 0.0
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([0.5, np.nan])


def test_paired_is_tighter_than_independent():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.3, 1.0, size=500)
    a = np.clip(difficulty + 0.02 + rng.normal(0, 0.01, 500), 0, 1)
    b = difficulty
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(100 * (a - b).mean())
    assert d.ci95 < 0.2 * mean_ci(a).ci95
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(a, b[:-1])


def test_per_episode_accuracy():
    p = np.array([[0, 1, 1], [2, 2, 2]])
    t = np.array([[0, 1, 2], [2, 2, 2]])
    assert per_episode_accuracy(p, t).tolist() == pytest.approx([2 / 3, 1.0])


def test_error_messages_name_the_problem():
    with pytest.raises(ValueError, match=r"^mean_ci needs at least one episode$"):
        mean_ci([])
    with pytest.raises(ValueError, match=r"^mean_ci got NaN or infinite per-episode accuracies$"):
        mean_ci([0.5, np.inf])


def test_two_episodes_have_a_spread():
    # n = 2: std = |a - b| / sqrt(2) (ddof=1), ci = 1.96 * std / sqrt(2) = 1.96 * |a - b| / 2
    e = mean_ci([0.25, 0.75])
    assert e.std == pytest.approx(100 * 0.5 / np.sqrt(2))
    assert e.ci95 == pytest.approx(100 * 1.959963984540054 * 0.25)


def test_float32_input_is_computed_in_float64():
    """Per-episode accuracies often arrive as float32 tensors: the statistics are computed in
    float64 on the float32 values (same result as converting first)."""
    rng = np.random.default_rng(3)
    a32 = rng.uniform(size=1000).astype(np.float32)
    b32 = np.clip(a32 + rng.normal(0, 0.05, 1000).astype(np.float32), 0, 1).astype(np.float32)
    a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
    for got, ref in ((mean_ci(a32), mean_ci(a64)), (paired_difference(a32, b32), paired_difference(a64, b64))):
        assert got.mean == ref.mean and got.std == ref.std and got.ci95 == ref.ci95
    # and the float64 result is not what float32 arithmetic gives
    assert paired_difference(a32, b32).std != pytest.approx(100 * float((a32 - b32).std(ddof=1)), abs=0, rel=1e-9)
