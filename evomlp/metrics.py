"""Test-set metrics and plot data, shared by the evaluate and baseline stages (same keys in both).

- binary: ``accuracy``, ``balanced_accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``,
  ``log_loss``;
- multiclass: the same with macro averages (``roc_auc`` one-vs-rest) plus ``per_class``;
- regression: ``rmse``, ``mae``, ``r2``.

Plot data (:func:`plot_tables`), one table per chart file, each written for every task so the
pipeline's outputs do not depend on it; a table that does not apply to the task has no rows:
- ``roc``: ROC points (binary; micro-averaged one-vs-rest for multiclass: every (row, class) pair
  is one binary decision scored by that class's probability), classification only;
- ``confusion``: one ``(actual, predicted)`` row per test row, by class name, for DVC's confusion
  template, classification only;
- ``predictions``: one ``(actual, predicted, residual)`` row per test row (per target), with
  ``residual = actual - predicted``, regression only.
"""

from __future__ import annotations

import numpy as np

from evomlp.errors import EvomlpError

ROC_COLUMNS = ("fpr", "tpr", "threshold")
CONFUSION_COLUMNS = ("actual", "predicted")
PREDICTION_COLUMNS = ("actual", "predicted", "residual")


def task_metrics(task: str, y: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict:
    """Metrics of predictions ``scores`` (probabilities ``(N, K)``, or values for regression)."""
    from sklearn import metrics

    if task == "regression":
        predicted = scores.reshape(y.shape[0], -1)
        target = y.reshape(y.shape[0], -1)
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(target, predicted))),
            "mae": float(metrics.mean_absolute_error(target, predicted)),
            "r2": float(metrics.r2_score(target, predicted)),
        }
    probabilities = _class_probabilities(task, scores)
    predicted = probabilities.argmax(axis=1)
    labels = np.arange(len(classes))
    result = {
        "accuracy": float(metrics.accuracy_score(y, predicted)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y, predicted)),
        "log_loss": float(metrics.log_loss(y, probabilities, labels=labels)),
    }
    if task == "binary":
        result.update(
            precision=float(metrics.precision_score(y, predicted, zero_division=0)),
            recall=float(metrics.recall_score(y, predicted, zero_division=0)),
            f1=float(metrics.f1_score(y, predicted, zero_division=0)),
            roc_auc=float(metrics.roc_auc_score(y, probabilities[:, 1])) if len(np.unique(y)) == 2 else None,
        )
        return result
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    present = np.unique(y)
    result.update(
        precision=float(precision.mean()),
        recall=float(recall.mean()),
        f1=float(f1.mean()),
        roc_auc=(
            float(metrics.roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=labels))
            if len(present) == len(classes)
            else None
        ),
        per_class={
            str(name): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
    )
    return result


def _class_probabilities(task: str, scores: np.ndarray) -> np.ndarray:
    if task == "binary":
        positive = scores.reshape(-1)
        return np.column_stack([1 - positive, positive])
    if scores.ndim != 2:
        raise EvomlpError(f"expected class probabilities (N, K), got shape {scores.shape}")
    return scores


def roc_points(task: str, y: np.ndarray, scores: np.ndarray, n_classes: int) -> list[dict]:
    """``[{fpr, tpr, threshold}, ...]``; empty for regression."""
    from sklearn.metrics import roc_curve

    if task == "regression":
        return []
    probabilities = _class_probabilities(task, scores)
    if task == "binary":
        truth, score = y, probabilities[:, 1]
    else:
        truth = (y[:, None] == np.arange(n_classes)[None, :]).ravel()
        score = probabilities.ravel()
    if len(np.unique(truth)) < 2:
        return []
    fpr, tpr, thresholds = roc_curve(truth, score, drop_intermediate=True)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn puts +inf (or max + 1) first
    return [
        {"fpr": round(float(f), 6), "tpr": round(float(t), 6), "threshold": round(float(h), 6)}
        for f, t, h in zip(fpr, tpr, thresholds)
    ]


def confusion_rows(task: str, y: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[dict]:
    """One ``{actual, predicted}`` row per test row, by class name; empty for regression."""
    if task == "regression":
        return []
    predicted = _class_probabilities(task, scores).argmax(axis=1)
    return [{"actual": str(classes[a]), "predicted": str(classes[p])} for a, p in zip(y, predicted)]


def prediction_rows(task: str, y: np.ndarray, scores: np.ndarray) -> list[dict]:
    """One ``{actual, predicted, residual}`` row per test row and target; empty for classification."""
    if task != "regression":
        return []
    actual = np.asarray(y, dtype=np.float64).reshape(-1)
    predicted = np.asarray(scores, dtype=np.float64).reshape(-1)
    if predicted.shape != actual.shape:
        raise EvomlpError(f"expected one prediction per target: {predicted.size} predictions for {actual.size} targets")
    return [
        {"actual": float(a), "predicted": float(p), "residual": float(a - p)} for a, p in zip(actual, predicted)
    ]


def plot_tables(task: str, y: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict[str, tuple]:
    """``{name: (columns, rows)}`` of every chart file (``roc``, ``confusion``, ``predictions``);
    the tables that do not apply to ``task`` have no rows."""
    return {
        "roc": (ROC_COLUMNS, roc_points(task, y, scores, len(classes))),
        "confusion": (CONFUSION_COLUMNS, confusion_rows(task, y, scores, classes)),
        "predictions": (PREDICTION_COLUMNS, prediction_rows(task, y, scores)),
    }
