"""Population losses and metrics, computed from raw network outputs.

Every function takes ``outputs: (P, N, K)`` (logits for classification) and targets for the ``N``
rows, and returns one value per individual, ``(P,)``. Cross-entropies are computed from logits
with the log-sum-exp form, so they stay finite where a probability would round to 0 or 1.

The classification losses take optional ``row_weights (N,)``: the loss is then the weighted mean
``sum_i w_i l_i / sum_i w_i`` (``class_weights`` gives scikit-learn's "balanced" weights).
"""

from __future__ import annotations

import numpy as np

from evomlp.errors import EvomlpError


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights ``(N,)`` float64 that give every class the same total weight:
    ``N / (n_classes * count(y_i))``, scikit-learn's ``class_weight="balanced"`` (binary: pass
    ``n_classes=2``). A class absent from ``y`` takes no weight."""
    labels = np.asarray(y).astype(np.intp).reshape(-1)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = max(int(np.count_nonzero(counts)), 1)
    return labels.shape[0] / (present * counts[labels])


def row_mean(loss: np.ndarray, row_weights: np.ndarray | None) -> np.ndarray:
    """``(P, N) -> (P,)``: the mean over rows, or the ``row_weights``-weighted mean."""
    if row_weights is None:
        return loss.mean(axis=1)
    weights = row_weights.astype(loss.dtype, copy=False)
    return (loss * weights).sum(axis=1) / weights.sum()


def binary_cross_entropy(logits: np.ndarray, y: np.ndarray, row_weights: np.ndarray | None = None) -> np.ndarray:
    """Mean binary cross-entropy; ``logits: (P, N, 1)``, ``y: (N,)`` in {0, 1}."""
    z = logits[..., 0]
    # log(1 + exp(-|z|)) + max(z, 0) - z * y  ==  -[y log s(z) + (1 - y) log(1 - s(z))]
    loss = np.log1p(np.exp(-np.abs(z)))
    loss += np.maximum(z, 0)
    loss -= z * y.astype(z.dtype, copy=False)
    return row_mean(loss, row_weights)


def categorical_cross_entropy(logits: np.ndarray, y: np.ndarray, row_weights: np.ndarray | None = None) -> np.ndarray:
    """Mean softmax cross-entropy; ``logits: (P, N, K)``, ``y: (N,)`` class indices."""
    top = logits.max(axis=2, keepdims=True)
    log_normaliser = np.log(np.exp(logits - top).sum(axis=2)) + top[..., 0]
    picked = np.take_along_axis(logits, y.reshape(1, -1, 1).astype(np.intp), axis=2)[..., 0]
    return row_mean(log_normaliser - picked, row_weights)


def mean_squared_error(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean squared error over rows and targets; ``outputs: (P, N, K)``, ``y: (N,)`` or ``(N, K)``."""
    target = y.reshape(1, outputs.shape[1], -1).astype(outputs.dtype, copy=False)
    diff = outputs - target
    diff *= diff
    return diff.mean(axis=(1, 2))


def accuracy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of rows classified right; binary if ``K == 1`` (logit > 0 means class 1)."""
    if logits.shape[2] == 1:
        predicted = logits[..., 0] > 0
        return (predicted == (y > 0.5)).mean(axis=1)
    return (logits.argmax(axis=2) == y).mean(axis=1)


LOSSES = {
    "binary": binary_cross_entropy,
    "multiclass": categorical_cross_entropy,
    "regression": mean_squared_error,
}


def task_loss(task: str, outputs: np.ndarray, y: np.ndarray, row_weights: np.ndarray | None = None) -> np.ndarray:
    """The training loss of a task: the loss of its output head (``row_weights``: classification only)."""
    try:
        loss = LOSSES[task]
    except KeyError:
        raise EvomlpError(f"task: expected one of {list(LOSSES)}, got {task!r}") from None
    if row_weights is None:
        return loss(outputs, y)
    if task == "regression":
        raise EvomlpError("train.class_weight: only classification has classes to weigh; use none for regression")
    return loss(outputs, y, row_weights)
