"""Population losses and metrics, computed from raw network outputs.

Every function takes ``outputs: (P, N, K)`` (logits for classification) and targets for the ``N``
rows, and returns one value per individual, ``(P,)``. Cross-entropies are computed from logits
with the log-sum-exp form, so they stay finite where a probability would round to 0 or 1.
"""

from __future__ import annotations

import numpy as np

from evomlp.errors import EvomlpError


def binary_cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy; ``logits: (P, N, 1)``, ``y: (N,)`` in {0, 1}."""
    z = logits[..., 0]
    # log(1 + exp(-|z|)) + max(z, 0) - z * y  ==  -[y log s(z) + (1 - y) log(1 - s(z))]
    loss = np.log1p(np.exp(-np.abs(z)))
    loss += np.maximum(z, 0)
    loss -= z * y.astype(z.dtype, copy=False)
    return loss.mean(axis=1)


def categorical_cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean softmax cross-entropy; ``logits: (P, N, K)``, ``y: (N,)`` class indices."""
    top = logits.max(axis=2, keepdims=True)
    log_normaliser = np.log(np.exp(logits - top).sum(axis=2)) + top[..., 0]
    picked = np.take_along_axis(logits, y.reshape(1, -1, 1).astype(np.intp), axis=2)[..., 0]
    return (log_normaliser - picked).mean(axis=1)


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


def task_loss(task: str, outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The training loss of a task: the loss of its output head."""
    try:
        loss = LOSSES[task]
    except KeyError:
        raise EvomlpError(f"task: expected one of {list(LOSSES)}, got {task!r}") from None
    return loss(outputs, y)
