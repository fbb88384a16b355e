"""Stage train: a randomized optimizer over all weights of the MLP, model chosen on validation loss.

Reads params ``model.*``, ``train.*`` and the chosen optimizer's block ``optimizer.<train.optimizer>``
(results) and ``runtime.yaml`` (speed and display only; not a DVC dependency). Writes
``models/model.npz``, ``metrics/train/metrics.json`` (through dvclive, rewritten every
``runtime.live_every`` generations with the run so far, so ``dvc exp show`` and ``dvc metrics show``
follow a run; see :mod:`stages.live`), ``metrics/plots/history.csv`` (the three all or none), and
the untracked ``logs/train-timing.json``. Every
``runtime.checkpoint_every`` generations (and when stopped) the whole run is saved to
``.checkpoints/train-<key>.{a,b}.npz`` and ``.checkpoints/train-<key>.history``, ``<key>`` a hash
of the params and data that affect results (:mod:`evomlp.checkpoint`). The next run with the same
key resumes from it, and ends with the same bytes, only if the checkpoint was written by the same
source files (``evomlp/``, ``stages/``) and the same versions of Python, numpy, scipy, numba,
scikit-learn and BLAS; otherwise, or if it is corrupt, it is moved to ``.checkpoints/set-aside/``
with a one-line warning and the run starts afresh. A finished run removes its checkpoint and any
of other keys.

Ctrl-C, SIGTERM or SIGHUP, or the death of the process that started the stage (``dvc repro``
killed: :class:`evomlp.lifeline.Lifeline`), stop training at the end of the generation: the
checkpoint is saved, no output is written, one line says which generation the checkpoint holds,
and the exit code is 130, 143 or 129. While it runs, the stage holds ``.checkpoints/train.lock``:
a second train run fails at once with one line (exit code 2).
"""

from __future__ import annotations

import os
import time

STARTED_BY = os.getppid()  # before the imports: dvc may die meanwhile
STARTED_AT, STARTED = time.time(), time.perf_counter()  # logs/train-timing.json's phases count from here

import json  # noqa: E402
import sys  # noqa: E402

from stages.common import (  # noqa: E402
    CHECKPOINTS,
    CODE,
    LIVE,
    LOGS,
    MODEL,
    PARAMS,
    PARTS,
    PLOTS,
    PREPARED,
    exit_at_once,
    load_part,
    load_preprocessing,
    outputs_lock,
    run_stage,
)

from stages.live import LiveMetrics  # noqa: E402

from evomlp.artifacts import Outputs, save_csv, save_model  # noqa: E402
from evomlp.checkpoint import Checkpoints, checkpoint_key, provenance  # noqa: E402
from evomlp.evaluation import shutdown_workers  # noqa: E402
from evomlp.lifeline import Lifeline  # noqa: E402
from evomlp.params import BUNDLED_DATASETS, load_params  # noqa: E402
from evomlp.trainer import HISTORY_COLUMNS, Trainer  # noqa: E402
from evomlp.training import train_network  # noqa: E402

IMPORTED = time.perf_counter()


def main() -> None:
    with outputs_lock(CHECKPOINTS / "train.lock", "train"):
        train_stage(Lifeline(STARTED_BY))


def train_stage(lifeline: Lifeline) -> None:
    phases = {"imports_s": IMPORTED - STARTED}
    mark = time.perf_counter()
    params = load_params(PARAMS)
    phases["params_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    outputs = Outputs(MODEL, LIVE / "metrics.json", PLOTS / "history.csv")  # writable, before any work
    model, train, runtime = params["model"], params["train"], params["runtime"]
    preprocessing = load_preprocessing()
    task, classes = str(preprocessing["task"]), preprocessing["classes"]
    train_part, validation_part = load_part("train", preprocessing), load_part("validation", preprocessing)
    optimizer_settings = params["optimizer"][train["optimizer"]]
    key = checkpoint_key({"model": model, "train": train, "optimizer": optimizer_settings},
                         [PREPARED / f"{name}.npz" for name in PARTS])
    checkpoints = Checkpoints(CHECKPOINTS, "train", key, provenance(CODE))
    started = time.perf_counter()
    phases["data_s"] = started - mark  # the prepared data read and checked, the checkpoint key hashed
    live = LiveMetrics(LIVE)
    try:
        trained = train_network(
            model, train, optimizer_settings, runtime, task, classes, train_part, validation_part, checkpoints,
            stop_when=lifeline.lost,
            report=lambda state: live.update(state.optimizer.generation, Trainer.progress_metrics(state)),
        )
        phases["train_s"] = time.perf_counter() - started
        _finish(params, outputs, live, trained, preprocessing, started, checkpoints, phases)
    except BaseException:
        live.restore()
        raise


def _finish(params, outputs, live, trained, preprocessing, started, checkpoints, phases) -> None:
    """The selected model's metrics, and every output, all or none."""
    mark = time.perf_counter()
    model, train, runtime = params["model"], params["train"], params["runtime"]
    optimizer_settings = params["optimizer"][train["optimizer"]]
    classes = preprocessing["classes"]
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
    data = params["data"]  # the name of the label column, as evomlp.data.load_dataset gives it
    target = "target" if data["dataset"] in BUNDLED_DATASETS or data["target"] is None else data["target"]
    with outputs.written():  # all three, or none
        save_model(MODEL, spec, weights, classes, preprocessing_arrays, target=target,
                   training={"model": model, "train": train, "optimizer": optimizer_settings}, metrics=metrics)
        live.finish(result.n_generations, metrics)
        save_csv(PLOTS / "history.csv", list(HISTORY_COLUMNS), result.history)
    live.end()
    phases["outputs_s"] = time.perf_counter() - mark
    timing = {
        "seconds": elapsed,
        "evaluations_per_second": result.n_evaluations / max(elapsed, 1e-9),
        **trained.timings,
        "live": live.timings,
        "n_jobs": runtime["n_jobs"],
        "backend": runtime["backend"],
        "phases": phases,  # the stage process from its first line (STARTED) on
        "started_at": STARTED_AT,
        "ended_at": time.time(),
    }
    LOGS.mkdir(exist_ok=True)
    (LOGS / "train-timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    summary = f"train: stopped after {result.n_generations} generations ({result.stop_reason}), "
    summary += f"{result.n_evaluations} evaluations in {elapsed:.1f} s; model from generation {result.best_generation}"
    if train_accuracy is not None:
        summary += f", validation accuracy {metrics['validation_accuracy']:.4f}"
    print(summary, file=sys.stderr)
    checkpoints.finish()


if __name__ == "__main__":
    run_stage(main)  # an error or a stop exits here, through sys.exit
    shutdown_workers()  # loky's, if runtime.backend is loky (threads and dask end with the run)
    exit_at_once()
