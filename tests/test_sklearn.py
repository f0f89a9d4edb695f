"""scikit-learn's own estimator checks over every registered method (no hand-kept list)."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import fewmm.methods as M


@parametrize_with_checks([M.create(n) for n in M.list_methods()])
def test_sklearn_compatible_method(estimator, check):
    check(estimator)
