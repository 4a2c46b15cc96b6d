"""Classification metrics, their uncertainty and calibration: one implementation for every notebook and report.

Notebooks 12 and 13 derive each from scratch and checks it against this module (and scikit-learn, SciPy):
precision, recall and F1 per label from the confusion matrix; bootstrap intervals by resampling
the evaluated notes; McNemar's exact test and a paired bootstrap for two models scored on the same
notes; the expected calibration error (ECE) and temperature scaling (Guo et al., 2017).
Labels and predictions are integer arrays of shape (n,); logits are (n, labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

#: Bootstrap resamples for an interval: enough that the 2.5% and 97.5% percentiles are stable to ~0.005.
BOOTSTRAP_DRAWS = 2000
#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 10


def confusion(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: row = true label, column = predicted label."""
    return np.bincount(np.asarray(true) * k + np.asarray(predicted), minlength=k * k).reshape(k, k)


def classification_metrics(true: np.ndarray, predicted: np.ndarray, k: int) -> dict[str, object]:
    """Accuracy, per-label precision, recall and F1 (arrays of k; 0 where undefined), macro- and micro-F1."""
    c = confusion(true, predicted, k)
    tp = np.diag(c).astype(float)
    predicted_as, truly = c.sum(0), c.sum(1)
    precision = np.divide(tp, predicted_as, out=np.zeros(k), where=predicted_as > 0)
    recall = np.divide(tp, truly, out=np.zeros(k), where=truly > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    accuracy = tp.sum() / c.sum()
    # every wrong prediction is one false positive and one false negative, so micro-F1 equals accuracy
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1,
            "macro_f1": f1.mean(), "micro_f1": accuracy}  # fmt: skip


def accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(true) == np.asarray(predicted)))


def _draws(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) row indices, each row a resample of the n notes with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(draws, n))


def bootstrap(
    metric: Callable[[np.ndarray, np.ndarray], float],
    true: np.ndarray,
    predicted: np.ndarray,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """``metric`` on ``draws`` resamples of the notes: (draws,), the spread a new test set of this size would show."""
    true, predicted = np.asarray(true), np.asarray(predicted)
    return np.array([metric(true[d], predicted[d]) for d in _draws(len(true), draws, seed)])


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    true: np.ndarray,
    predicted: np.ndarray,
    level: float = 0.95,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile interval of ``metric`` at ``level`` from ``bootstrap``."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(bootstrap(metric, true, predicted, draws, seed), [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(
    true: np.ndarray, a: np.ndarray, b: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> np.ndarray:
    """Accuracy of A minus accuracy of B on the same resampled notes: (draws,). Pairing removes the
    notes' shared difficulty from the spread, so it is far narrower than two separate intervals."""
    true, a, b = np.asarray(true), np.asarray(a), np.asarray(b)
    d = _draws(len(true), draws, seed)
    return (a[d] == true[d]).mean(1) - (b[d] == true[d]).mean(1)


def mcnemar(true: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test: (notes only A gets right, notes only B gets right, two-sided p-value).

    Only the notes where the two models disagree carry evidence; under "equally good" each of them
    is A's with probability 1/2, so the count is Binomial(disagreements, 1/2).
    """
    true, a, b = np.asarray(true), np.asarray(a), np.asarray(b)
    only_a, only_b = int(np.sum((a == true) & (b != true))), int(np.sum((a != true) & (b == true)))
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)


def expected_calibration_error(logits: torch.Tensor, true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the share-weighted gap between accuracy and mean confidence over ``bins`` equal-width bins."""
    confidence, predicted = logits.double().softmax(-1).max(-1)
    confidence, correct = confidence.numpy(), (predicted.numpy() == np.asarray(true)).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # (n,) the bin of each prediction
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / len(correct))


def fit_temperature(logits: torch.Tensor, true: np.ndarray) -> float:
    """The temperature T > 0 that minimises the cross-entropy of ``logits / T`` (fit it on validation).

    Dividing by one number keeps every prediction and changes only how sure the model says it is.
    """
    log_t = torch.zeros(1, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)
    target = torch.as_tensor(np.asarray(true))
    scores = logits.detach().float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(scores / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
