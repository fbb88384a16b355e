"""Stage evaluate: test-set metrics and plot data of the trained model.

Reads ``models/model.npz`` and ``data/prepared/test.npz``. Writes ``metrics/test.json`` and the
chart data ``metrics/plots/roc.csv``, ``confusion.csv`` (classification) and ``predictions.csv``
(regression: actual, predicted, residual). All three files are written for every task; those of
the other task hold only their header, which DVC draws as no chart at all.
"""

from __future__ import annotations

from stages.common import METRICS, MODEL, PLOTS, PREPARED, load_part, load_preprocessing, run_stage

from evomlp.artifacts import Outputs, load_model, save_csv, save_json
from evomlp.errors import EvomlpError
from evomlp.metrics import plot_tables, task_metrics
from evomlp.network import forward, output_probabilities


PLOT_TABLES = ("roc", "confusion", "predictions")  # metrics/plots/<name>.csv, for every task


def evaluation_outputs(metrics_path, plots: bool) -> Outputs:
    """The outputs :func:`write_test_outputs` writes, checked writable."""
    return Outputs(metrics_path, *([PLOTS / f"{name}.csv" for name in PLOT_TABLES] if plots else []))


def write_test_outputs(outputs: Outputs, metrics_path, task, y, scores, classes, plots: bool) -> dict:
    """Compute the task's metrics (and, if ``plots``, every chart's data) and write them, all or none."""
    metrics = task_metrics(task, y, scores, classes)
    tables = plot_tables(task, y, scores, classes) if plots else {}
    assert set(tables) <= set(PLOT_TABLES)
    with outputs.written():
        for name, (columns, rows) in tables.items():
            save_csv(PLOTS / f"{name}.csv", list(columns), rows)
        save_json(metrics_path, metrics)
    return metrics


def main() -> None:
    outputs = evaluation_outputs(METRICS / "test.json", plots=True)
    spec, weights, classes, _ = load_model(MODEL)
    preprocessing = load_preprocessing()
    X_test, y_test = load_part("test", preprocessing)
    if X_test.shape[1] != spec.n_inputs:
        raise EvomlpError(
            f"{MODEL}: model takes {spec.n_inputs} inputs but the prepared test data has {X_test.shape[1]} "
            "(re-run the pipeline: dvc repro)"
        )
    prepared_task, prepared_classes = str(preprocessing["task"]), preprocessing["classes"].tolist()
    if spec.task != prepared_task or classes.tolist() != prepared_classes:
        raise EvomlpError(
            f"{MODEL}: a {spec.task} model of classes {classes.tolist()}, but {PREPARED / 'preprocessing.npz'} "
            f"is a {prepared_task} task of classes {prepared_classes} (re-run the pipeline: dvc repro)"
        )
    scores = output_probabilities(spec, forward(spec, weights, X_test))
    metrics = write_test_outputs(outputs, METRICS / "test.json", spec.task, y_test, scores, classes, plots=True)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"evaluate: {len(y_test)} test rows: {shown}")


if __name__ == "__main__":
    run_stage(main)
