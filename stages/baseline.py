"""Stage baseline: the same network trained by backpropagation (scikit-learn's MLP), same split.

Reads params ``model.*`` and ``baseline.*``. Writes ``metrics/baseline.json`` with the same keys as
``metrics/test.json``, so ``dvc metrics show`` puts DE and gradient training side by side.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from stages.common import METRICS, PARAMS, load_part, load_preprocessing, run_stage
from stages.evaluate import evaluation_outputs, write_test_outputs

from evomlp.params import load_params

SKLEARN_ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


def fit_baseline(
    model: dict, baseline: dict, task: str, classes: np.ndarray, train_part: tuple, X_test: np.ndarray
) -> np.ndarray:
    """Train scikit-learn's MLP on ``train_part`` and return its test scores (probabilities of the
    positive class, class probabilities, or predicted values, as the evaluate stage has them)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X_train, y_train = train_part
    # scikit-learn's MLP has one activation for all hidden layers.
    activation = model["activations"][0] if model["activations"] else "relu"
    if activation not in SKLEARN_ACTIVATIONS or len(set(model["activations"])) > 1:
        activation = next((a for a in model["activations"] if a in SKLEARN_ACTIVATIONS), "relu")
        print(f"baseline: scikit-learn's MLP takes one activation of {SKLEARN_ACTIVATIONS}; using {activation}", file=sys.stderr)
    estimator_type = MLPRegressor if task == "regression" else MLPClassifier
    estimator = estimator_type(
        hidden_layer_sizes=tuple(model["hidden_layers"]),
        activation=activation,
        solver=baseline["solver"],
        alpha=baseline["alpha"],
        learning_rate_init=baseline["learning_rate_init"],
        max_iter=baseline["max_iter"],
        early_stopping=baseline["early_stopping"],
        random_state=baseline["seed"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X_train, y_train)
    if task == "regression":
        return estimator.predict(X_test)
    probabilities = np.zeros((X_test.shape[0], len(classes)))
    probabilities[:, estimator.classes_] = estimator.predict_proba(X_test)
    return probabilities[:, 1] if task == "binary" else probabilities


def main() -> None:
    params = load_params(PARAMS)
    outputs = evaluation_outputs(METRICS / "baseline.json", plots=False)
    model, baseline = params["model"], params["baseline"]
    preprocessing = load_preprocessing()
    task, classes = str(preprocessing["task"]), preprocessing["classes"]
    X_test, y_test = load_part("test", preprocessing)
    scores = fit_baseline(model, baseline, task, classes, load_part("train", preprocessing), X_test)
    metrics = write_test_outputs(outputs, METRICS / "baseline.json", task, y_test, scores, classes, plots=False)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"baseline: scikit-learn MLP ({baseline['solver']}): {shown}")


if __name__ == "__main__":
    run_stage(main)
