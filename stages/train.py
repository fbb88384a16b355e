"""Stage train: a randomized optimizer over all weights of the MLP, model chosen on validation loss.

Reads params ``model.*``, ``train.*`` and the chosen optimizer's block ``optimizer.<train.optimizer>``
(results) and ``runtime.*`` (speed and display only; not a
DVC dependency). Writes ``models/model.npz``, ``metrics/train.json``,
``metrics/plots/history.csv``, and the untracked ``logs/train-timing.json``. Every
``runtime.checkpoint_every`` generations (and on Ctrl-C) the whole run is saved to
``.checkpoints/train-<key>.npz``, ``<key>`` a hash of the params and data that affect results; the
next run with the same key resumes from it and ends with the same bytes; a finished run removes it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stages.common import (
    CHECKPOINTS,
    LOGS,
    METRICS,
    MODEL,
    PARAMS,
    PARTS,
    PLOTS,
    PREPARED,
    load_part,
    load_preprocessing,
    run_stage,
)

from evomlp.artifacts import save_csv, save_json, save_model
from evomlp.checkpoint import checkpoint_key, load_checkpoint, save_checkpoint
from evomlp import optimizers
from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.network import MLPSpec, initial_population, initial_scales, per_weight
from evomlp.params import load_params
from evomlp.trainer import HISTORY_COLUMNS, TrainConfig, Trainer, TrainResult


def build_spec(model: dict, task: str, n_inputs: int, classes: np.ndarray, y: np.ndarray) -> MLPSpec:
    if task == "binary":
        n_outputs = 1
    elif task == "multiclass":
        n_outputs = len(classes)
    else:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
    return MLPSpec(n_inputs, tuple(model["hidden_layers"]), tuple(model["activations"]), n_outputs, task)


@dataclass
class TrainedNetwork:
    spec: MLPSpec
    result: TrainResult
    scoring: FitnessProblem
    validation: FitnessProblem
    timings: dict


def initial_deviation(spec: MLPSpec, train: dict, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Per-weight standard deviation of the initial population ``(D,)``: its uniform half-width
    over sqrt(3) (evolution strategies scale their step sizes by it)."""
    if train["init"] == "uniform":
        return (upper - lower) / np.sqrt(12.0)
    half_width = initial_scales(spec, train["init"]) * per_weight(spec, train["init_scale"])
    return np.minimum(half_width, upper) / np.sqrt(3.0)


def train_network(
    model: dict,
    train: dict,
    optimizer_settings: dict,
    runtime: dict,
    task: str,
    classes: np.ndarray,
    train_part: tuple[np.ndarray, np.ndarray],
    validation_part: tuple[np.ndarray, np.ndarray],
    checkpoint_path: Path | None = None,
    key: str = "",
) -> TrainedNetwork:
    """Train one network from validated params sections (``model``, ``train``, the chosen
    optimizer's block ``optimizer_settings``, ``runtime``).

    With ``checkpoint_path``, the run resumes from that file if it exists and saves to it every
    ``runtime.checkpoint_every`` generations and on Ctrl-C.
    """
    X_train, y_train = train_part
    X_validation, y_validation = validation_part
    spec = build_spec(model, task, X_train.shape[1], classes, y_train)
    if runtime["progress"]:
        print(
            f"train: {train['optimizer']} on a {'-'.join(map(str, spec.layer_sizes))} MLP "
            f"({spec.n_weights} weights), population {train['population_size']}, "
            f"{X_train.shape[0]} training rows, {train['dtype']}",
            file=sys.stderr,
        )
    rng = np.random.default_rng(train["seed"])
    bound = per_weight(spec, train["bounds"])
    lower, upper = -bound, bound
    optimizer = optimizers.make(
        train["optimizer"],
        optimizer_settings,
        lower,
        upper,
        initial_scale=initial_deviation(spec, train, lower, upper),
        max_evaluations=train["max_evaluations"] or train["population_size"] * (train["max_generations"] + 1),
    )
    weighting = {"dtype": train["dtype"], "class_weight": train["class_weight"]}
    problem = FitnessProblem(spec, X_train, y_train, l2=train["l2"], **weighting)
    scoring = problem  # its loss_and_accuracy leaves the L2 penalty out
    validation = FitnessProblem(spec, X_validation, y_validation, **weighting)
    config = TrainConfig(
        max_generations=train["max_generations"],
        max_evaluations=train["max_evaluations"],
        patience=train["patience"],
        minibatch_size=train["minibatch_size"],
        checkpoint_every=runtime["checkpoint_every"] if checkpoint_path else 0,
    )
    checkpoint = None
    if checkpoint_path is not None:
        checkpoint = lambda state: save_checkpoint(checkpoint_path, state, key, optimizer)  # noqa: E731
    with PopulationEvaluator(
        problem, runtime["n_jobs"], runtime["backend"], runtime["scheduler_address"], population_size=train["population_size"]
    ) as evaluate:
        trainer = Trainer(
            optimizer, evaluate, validation, scoring, config, progress=runtime["progress"], checkpoint=checkpoint
        )
        if runtime["progress"]:
            workers = "in-process" if evaluate.n_jobs == 1 else f"{evaluate.n_jobs} workers ({runtime['backend']})"
            print(f"train: evaluating {workers} (runtime.n_jobs {runtime['n_jobs']})", file=sys.stderr)
        if checkpoint_path is not None and checkpoint_path.exists():
            state = load_checkpoint(checkpoint_path, key, optimizer)
            print(f"train: resuming from generation {state.optimizer.generation} ({checkpoint_path})", file=sys.stderr)
        else:
            population = initial_population(
                spec, rng, train["population_size"], train["init"], train["init_scale"], lower, upper
            )
            state = trainer.start(population, rng)
        try:
            result = trainer.run(state)
        except KeyboardInterrupt:
            if checkpoint_path is not None:
                print(
                    f"train: interrupted at generation {state.optimizer.generation}; state saved to "
                    f"{checkpoint_path}; run dvc repro to resume",
                    file=sys.stderr,
                )
            raise
    return TrainedNetwork(spec, result, scoring, validation, dict(trainer.timings, n_workers=evaluate.n_jobs))


def main() -> None:
    params = load_params(PARAMS)
    model, train, runtime = params["model"], params["train"], params["runtime"]
    preprocessing = load_preprocessing()
    task, classes = str(preprocessing["task"]), preprocessing["classes"]
    train_part, validation_part = load_part("train"), load_part("validation")
    optimizer_settings = params["optimizer"][train["optimizer"]]
    key = checkpoint_key({"model": model, "train": train, "optimizer": optimizer_settings},
                         [PREPARED / f"{name}.npz" for name in PARTS])
    checkpoint_path = CHECKPOINTS / f"train-{key}.npz"
    started = time.perf_counter()
    trained = train_network(
        model, train, optimizer_settings, runtime, task, classes, train_part, validation_part, checkpoint_path, key
    )
    spec, result, scoring, validation = trained.spec, trained.result, trained.scoring, trained.validation
    elapsed = time.perf_counter() - started

    weights = result.weights
    selected = weights[None, :]
    train_loss, train_accuracy = scoring.loss_and_accuracy(selected)
    validation_loss, validation_accuracy = validation.loss_and_accuracy(selected)
    metrics = {
        "train_loss": float(train_loss[0]),
        "validation_loss": float(validation_loss[0]),
        "best_generation": result.best_generation,
        "generations": result.n_generations,
        "evaluations": result.n_evaluations,
        "nonfinite_fitness": result.n_nonfinite,
    }
    if train_accuracy is not None:
        metrics["train_accuracy"] = float(train_accuracy[0])
        metrics["validation_accuracy"] = float(validation_accuracy[0])
    preprocessing_arrays = {k: v for k, v in preprocessing.items() if k.startswith("pre_") or k == "feature_names"}
    save_model(MODEL, spec, weights, classes, preprocessing_arrays)
    save_json(METRICS / "train.json", metrics)
    save_csv(PLOTS / "history.csv", list(HISTORY_COLUMNS), result.history)
    timing = {
        "seconds": elapsed,
        "evaluations_per_second": result.n_evaluations / max(elapsed, 1e-9),
        **trained.timings,
        "n_jobs": runtime["n_jobs"],
        "backend": runtime["backend"],
    }
    LOGS.mkdir(exist_ok=True)
    (LOGS / "train-timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    summary = f"train: stopped after {result.n_generations} generations ({result.stop_reason}), "
    summary += f"{result.n_evaluations} evaluations in {elapsed:.1f} s; model from generation {result.best_generation}"
    if train_accuracy is not None:
        summary += f", validation accuracy {metrics['validation_accuracy']:.4f}"
    print(summary, file=sys.stderr)
    checkpoint_path.unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(main)
