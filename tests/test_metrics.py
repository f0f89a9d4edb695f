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
