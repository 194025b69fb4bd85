"""worker.metrics against scikit-learn's definitions."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from worker import metrics


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(60, 4))
    target = rng.integers(0, 4, 60)
    pred = scores.argmax(1)
    got = metrics.compute("classification", scores, target,
                          ["accuracy", "top2_accuracy", "precision", "recall", "f1", "confusion_matrix"])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(target, pred))
    assert got["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(target, scores, k=2, labels=range(4)))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert got[name] == pytest.approx(fn(target, pred, average="macro", zero_division=0))
    assert got["confusion_matrix"] == skm.confusion_matrix(target, pred, labels=range(4)).tolist()


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=50), rng.normal(size=(50, 1))
    got = metrics.compute("regression", p, y, ["mse", "mae", "r2"])
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p[:, 0]))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p[:, 0]))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p[:, 0]))
