"""Classification metrics, intervals, paired tests and calibration (course_utils.metrics) against scikit-learn and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from course_utils import metrics

RNG = np.random.default_rng(0)
TRUE = RNG.integers(0, 4, 300)
PREDICTED = np.where(RNG.random(300) < 0.7, TRUE, RNG.integers(0, 4, 300))


def test_per_label_scores_and_averages_match_scikit_learn():
    mine = metrics.classification_metrics(TRUE, PREDICTED, 4)
    p, r, f, _ = precision_recall_fscore_support(TRUE, PREDICTED, labels=range(4), zero_division=0)
    np.testing.assert_allclose([mine["precision"], mine["recall"], mine["f1"]], [p, r, f])
    assert math.isclose(mine["macro_f1"], f1_score(TRUE, PREDICTED, average="macro"))
    assert math.isclose(mine["micro_f1"], f1_score(TRUE, PREDICTED, average="micro"))
    np.testing.assert_array_equal(metrics.confusion(TRUE, PREDICTED, 4), confusion_matrix(TRUE, PREDICTED))
    constant = metrics.classification_metrics(TRUE, np.zeros_like(TRUE), 4)  # a label never predicted scores 0
    assert constant["precision"][1:].tolist() == [0, 0, 0] and constant["macro_f1"] < 0.25


def test_the_bootstrap_interval_is_close_to_the_normal_approximation():
    low, high = metrics.bootstrap_interval(metrics.accuracy, TRUE, PREDICTED)
    p = metrics.accuracy(TRUE, PREDICTED)
    half = 1.96 * math.sqrt(p * (1 - p) / len(TRUE))
    assert low < p < high and abs((high - low) / 2 - half) < 0.01
    assert metrics.bootstrap_interval(metrics.accuracy, TRUE, PREDICTED, seed=1) != (low, high)


def test_mcnemar_is_the_exact_binomial_test_and_pairing_narrows_the_interval():
    other = np.where(RNG.random(300) < 0.5, TRUE, PREDICTED)  # agrees with PREDICTED on most notes
    only_a, only_b, p_value = metrics.mcnemar(TRUE, other, PREDICTED)
    assert math.isclose(p_value, binomtest(only_a, only_a + only_b, 0.5).pvalue)
    differences = metrics.paired_bootstrap(TRUE, other, PREDICTED)
    assert math.isclose(
        differences.mean(), metrics.accuracy(TRUE, other) - metrics.accuracy(TRUE, PREDICTED), abs_tol=0.01
    )
    separate = (
        metrics.bootstrap(metrics.accuracy, TRUE, other).std()
        + metrics.bootstrap(metrics.accuracy, TRUE, PREDICTED).std()
    )
    assert differences.std() < separate / 2


def test_ece_follows_its_definition_and_temperature_scaling_undoes_overconfidence():
    z = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    true = torch.multinomial(z.softmax(-1), 1, generator=torch.Generator().manual_seed(1)).squeeze(1).numpy()
    assert metrics.expected_calibration_error(z, true) < 0.03  # labels drawn from the model's own probabilities
    overconfident = 3 * z
    assert metrics.expected_calibration_error(overconfident, true) > 0.15
    t = metrics.fit_temperature(overconfident, true)
    assert t == pytest.approx(3.0, rel=0.1)
    assert metrics.expected_calibration_error(overconfident / t, true) < 0.03
    # the definition, bin by bin
    confidence, predicted = overconfident.double().softmax(-1).max(-1)
    total = 0.0
    for b in range(metrics.ECE_BINS):
        low, high = b / metrics.ECE_BINS, (b + 1) / metrics.ECE_BINS
        in_bin = (confidence >= low) & ((confidence < high) if b < metrics.ECE_BINS - 1 else (confidence <= high))
        if in_bin.any():
            accuracy = (predicted[in_bin].numpy() == true[in_bin.numpy()]).mean()
            total += in_bin.double().mean().item() * abs(accuracy - confidence[in_bin].mean().item())
    assert math.isclose(metrics.expected_calibration_error(overconfident, true), total, abs_tol=1e-12)
