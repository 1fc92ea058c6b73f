"""Numpy metrics against brute force and known cases."""

from __future__ import annotations

import numpy as np
import pytest

from streamfer.models.metrics import mean_average_precision, precision_recall_at_rate, roc_auc


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_auc_matches_pairwise_count_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    s = np.round(rng.random(400) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))
    assert roc_auc(y, y.astype(float)) == 1.0
    with pytest.raises(ValueError):
        roc_auc(np.zeros(5), np.arange(5.0))


def test_precision_recall_at_rate() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.1, 0, 0, 0, 0, 0, 0, 0])
    assert precision_recall_at_rate(y, s, 0.2) == (0.5, 0.5)


def test_map_perfect_missing_and_false_positives() -> None:
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float), np.array([0, 1]))]
    perfect = [(truth[0][0], np.array([0, 1]), np.array([0.9, 0.8]))]
    assert mean_average_precision(truth, perfect, 2)[0] == pytest.approx(1.0)
    wrong_class = [(truth[0][0], np.array([1, 0]), np.array([0.9, 0.8]))]
    assert mean_average_precision(truth, wrong_class, 2)[0] == 0.0
    # a confident false positive first, then the hit: AP 0.5 for class 0
    fp_first = [
        (
            np.array([[50, 50, 60, 60], [0, 0, 10, 10]], float),
            np.array([0, 0]),
            np.array([0.9, 0.5]),
        )
    ]
    m, aps = mean_average_precision(truth[:1], fp_first, 2)
    assert m == pytest.approx(0.25)
    assert aps[0] == pytest.approx(0.5) and aps[1] == 0.0
