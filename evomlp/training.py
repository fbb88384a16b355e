"""Training one network from validated params sections: the one training path of evomlp.

:func:`train_network` is what the train stage runs (``stages/train.py``), what
:class:`evomlp.estimator.EvoMLPClassifier` and :class:`~evomlp.estimator.EvoMLPRegressor` run in
``fit``, and what ``benchmarks/accuracy.py`` runs: the same sections and data give the same weights,
bit for bit, whichever of them calls it. It reads no file besides an optional checkpoint.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from evomlp import optimizers
from evomlp.checkpoint import Checkpoints
from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.network import MLPSpec, initial_population, initial_scales, per_weight
from evomlp.resources import check_resources
from evomlp.trainer import STOP_SIGNALS, Stopped, TrainConfig, Trainer, TrainerState, TrainResult

# ``stop_when`` (the train stage's: has dvc exited? three reads of /proc, 0.15 ms) is asked at
# most this often, and always after the last generation.
STOP_POLL_S = 0.05


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


def say(line: str) -> None:
    """``line`` on stderr, unless stderr is gone (a closed pipe must not hide what happened)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def stop_message(stop: KeyboardInterrupt, checkpoints: Checkpoints) -> str:
    """One line: why the run stopped, and exactly which generation its checkpoint holds."""
    if isinstance(stop, Stopped) and stop.completed:
        head = f"train: stopped at the end of generation {checkpoints.saved_generation} ({stop.reason})"
    else:
        reason = stop.reason if isinstance(stop, Stopped) else STOP_SIGNALS["SIGINT"][0]
        head = f"train: stopped in the middle of a generation ({reason})"
    if checkpoints.saved_generation is None:
        saved = "no generation is saved, the next run starts afresh"
    else:
        saved = f"generation {checkpoints.saved_generation} is saved in {checkpoints.path}, the next run resumes from it"
    return f"{head}; {saved}; no outputs written"


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
    checkpoints: Checkpoints | None = None,
    stop_when: Callable[[], str] | None = None,
    report: Callable[[TrainerState], None] | None = None,
) -> TrainedNetwork:
    """Train one network from validated params sections (``model``, ``train``, the chosen
    optimizer's block ``optimizer_settings``, ``runtime``).

    With ``checkpoints``, the run resumes from them if they pass their checks (otherwise they are
    set aside with a one-line warning on stderr, :meth:`Checkpoints.load`) and saves to them every
    ``runtime.checkpoint_every`` generations and when the run is stopped: by Ctrl-C, SIGTERM,
    SIGHUP or ``stop_when`` (:class:`evomlp.trainer.Trainer`), which raise
    :class:`~evomlp.trainer.Stopped` after one line on stderr saying which generation the files hold. With ``report``, it is called with the
    run's state every ``runtime.live_every`` generations (:meth:`Trainer.progress_metrics` turns
    that into the metrics so far). ``stop_when`` is asked at most every :data:`STOP_POLL_S`.
    """
    started = time.perf_counter()
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
    check_resources(spec, train, X_train.shape[0], optimizers.entry(train["optimizer"]).family == "es",
                    runtime["progress"])  # before the first (P, D) or (D,) array
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
        checkpoint_every=runtime["checkpoint_every"] if checkpoints is not None else 0,
        report_every=runtime["live_every"] if report else 0,
    )
    checkpoint = None
    if checkpoints is not None:
        checkpoint = lambda state, durable=False: checkpoints.save(state, optimizer, durable)  # noqa: E731
    with PopulationEvaluator(
        problem, runtime["n_jobs"], runtime["backend"], runtime["scheduler_address"], population_size=train["population_size"]
    ) as evaluate:
        trainer = Trainer(optimizer, evaluate, validation, scoring, config, progress=runtime["progress"],
                          checkpoint=checkpoint, stop_when=stop_when, report=report, stop_poll_s=STOP_POLL_S)
        if runtime["progress"]:
            if evaluate.n_jobs == 1 and runtime["backend"] != "dask":  # dask: on the cluster, even one chunk
                workers = "in-process"
            else:
                workers = f"{evaluate.n_jobs} worker{'s' * (evaluate.n_jobs > 1)} ({runtime['backend']})"
            print(f"train: evaluating {workers} (runtime.n_jobs {runtime['n_jobs']})", file=sys.stderr)
        state = None if checkpoints is None else checkpoints.load(optimizer, spec.n_weights)
        if checkpoints is not None and checkpoints.set_aside:
            say(f"warning: {checkpoints.set_aside}")
        if state is not None:
            say(f"train: resuming from generation {state.optimizer.generation} ({checkpoints.path})")
        setup = time.perf_counter() - started  # spec, optimizer, problems, workers, checkpoint loaded
        try:
            if state is None:
                population = initial_population(
                    spec, rng, train["population_size"], train["init"], train["init_scale"], lower, upper
                )
                state = trainer.start(population, rng)
            result = trainer.run(state)
        except KeyboardInterrupt as stop:
            if checkpoints is not None:
                say(stop_message(stop, checkpoints))
            raise
    timings = dict(setup_s=setup, **trainer.timings, n_workers=evaluate.n_jobs)
    return TrainedNetwork(spec, result, scoring, validation, timings)
