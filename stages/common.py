"""What every stage script shares: paths, the error policy, and reading prepared data.

A stage turns :class:`evomlp.EvomlpError` (bad params, data or model files) into one line on
stderr, ``error: <file or key>: <what was expected>``, and exit code 2, with no traceback. Ctrl-C
exits with 130 (the train stage's stops, :class:`evomlp.trainer.Stopped`, with their own code: 143
SIGTERM, 129 SIGHUP or dvc gone). Every output is written atomically by :mod:`evomlp.artifacts`,
and only after all of the stage's work has succeeded; :func:`outputs_lock` keeps a second run of
a stage off its outputs. A stage takes no arguments: ``--help`` (``-h``) prints its
docstring and exits 0 without running it; any other argument is a one-line error, exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from evomlp import numerics
from evomlp.artifacts import check_numbers, load_npz, show_array
from evomlp.errors import EvomlpError

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
MODEL = Path("models/model.npz")
METRICS = Path("metrics")
PLOTS = METRICS / "plots"
LIVE = METRICS / "train"  # dvclive's directory: metrics/train/metrics.json
LOGS = Path("logs")
CHECKPOINTS = Path(".checkpoints")
# the source files whose hash a checkpoint records (evomlp.checkpoint.provenance): the library's and the stages'
CODE = (Path(numerics.__file__).resolve().parent, Path(__file__).resolve().parent)
PARTS = ("train", "validation", "test")


class _StageArguments(argparse.ArgumentParser):
    """A stage's command line: ``--help`` alone; anything else is a one-line error, exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {self.prog}: {message}; a stage takes no arguments but --help "
                     "(its settings are in params.yaml)\n")


def parse_stage_arguments(main: Callable[[], None], argv: list[str] | None = None) -> None:
    """Check the command line of the stage whose entry point is ``main`` (``sys.argv`` by
    default): ``--help`` prints the stage module's docstring and exits 0."""
    module = sys.modules.get(main.__module__)
    spec = getattr(module, "__spec__", None)  # python -m stages.train: __main__, spec "stages.train"
    parser = _StageArguments(
        prog=f"python -m {spec.name if spec is not None else main.__module__}",
        description=getattr(module, "__doc__", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run by dvc repro (dvc.yaml); the settings are in params.yaml.",
    )
    parser.parse_args(sys.argv[1:] if argv is None else argv)


def run_stage(main: Callable[[], None], argv: list[str] | None = None) -> None:
    """Check the command line (:func:`parse_stage_arguments`), then run ``main``; bad input becomes
    a one-line error and exit code 2. After a stage succeeds, one line on stdout says which
    kernels computed its results (:func:`evomlp.numerics.describe`)."""
    parse_stage_arguments(main, argv)
    try:
        main()
        print(numerics.describe(), flush=True)
    except EvomlpError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:  # Ctrl-C, or evomlp.trainer.Stopped (a signal, dvc gone)
        try:
            print("interrupted", file=sys.stderr)
        except OSError:
            pass
        sys.exit(getattr(stop, "exit_code", 130))


def exit_at_once(code: int = 0) -> None:
    """End the process now, once stdout and stderr are flushed, without Python's finalisation:
    for a stage that has written (and fsynced) its outputs and stopped its workers, tearing down
    the modules it loaded (numba, dvclive and DVC's repository) only costs time, 0.4-0.7 s measured
    for the train stage."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


@contextlib.contextmanager
def outputs_lock(path: Path, stage: str) -> Iterator[None]:
    """Hold an exclusive lock (``fcntl.flock``) on ``path`` for the block, so that two runs of
    ``stage`` never write the same outputs: a second one fails at once with one line naming the
    lock and the pid of the run holding it. The lock ends with the holder, however it ends; the
    file (gitignored with ``.checkpoints/``) stays, holding the last holder's pid."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise EvomlpError(f"{path}: cannot create the lock of the {stage} stage ({error.strerror or error})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise EvomlpError(f"{path}: another {stage} run (pid {holder}) holds this lock and is writing its "
                              "outputs; wait for it to end, or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


PREPARED_WHAT = "prepared data (run the prepare stage)"
_RERUN = "re-run the prepare stage: dvc repro"
TASKS = ("binary", "multiclass", "regression")


def load_preprocessing() -> dict:
    """The arrays of ``data/prepared/preprocessing.npz``, checked: a known task, class labels that
    fit it (two for binary, at least two for multiclass, none for regression), feature names, and
    finite scaling statistics, one per feature."""
    path = PREPARED / "preprocessing.npz"
    arrays = load_npz(path, ("task", "classes", "feature_names"), what=PREPARED_WHAT)
    task = str(arrays["task"]) if arrays["task"].ndim == 0 else None
    if task not in TASKS:
        raise EvomlpError(f"{path}: task {show_array(arrays['task'])}, expected one of {list(TASKS)} ({_RERUN})")
    classes, names = arrays["classes"], arrays["feature_names"]
    if classes.ndim != 1 or names.ndim != 1 or names.shape[0] < 1:
        raise EvomlpError(
            f"{path}: expected 1-D arrays of class labels and of (at least one) feature names, got shapes "
            f"{classes.shape} and {names.shape} ({_RERUN})"
        )
    expected = {"binary": "2", "multiclass": "at least 2", "regression": "no"}[task]
    if (task == "binary" and len(classes) != 2) or (task == "multiclass" and len(classes) < 2) or (
        task == "regression" and len(classes)
    ):
        raise EvomlpError(f"{path}: {len(classes)} class labels for a {task} task, expected {expected} ({_RERUN})")
    if len(set(classes.tolist())) != len(classes):
        raise EvomlpError(f"{path}: repeated class labels {classes.tolist()}; expected each once ({_RERUN})")
    for name in ("pre_mean", "pre_scale"):
        if name in arrays:
            check_numbers(path, name, arrays[name], (names.shape[0],), f"one per feature name; {_RERUN}")
    if "pre_scale" in arrays and not np.all(arrays["pre_scale"] > 0):
        raise EvomlpError(f"{path}: pre_scale has values <= 0; expected positive scales ({_RERUN})")
    return arrays


def load_part(name: str, preprocessing: dict | None = None) -> tuple:
    """``(X, y)`` of a prepared part (``train``, ``validation`` or ``test``), checked against
    ``preprocessing`` (:func:`load_preprocessing` by default): ``X`` 2-D, finite, one column per
    feature name; ``y`` one entry per row of ``X``, class indices in ``[0, n_classes)`` for a
    classification, finite for regression. Each problem is one line naming the file."""
    if preprocessing is None:
        preprocessing = load_preprocessing()
    path = PREPARED / f"{name}.npz"
    arrays = load_npz(path, ("X", "y"), what=PREPARED_WHAT)
    X, y = arrays["X"], arrays["y"]
    n_features = preprocessing["feature_names"].shape[0]
    if X.ndim != 2 or X.shape[0] < 1:
        raise EvomlpError(f"{path}: X has shape {X.shape}; expected (rows, {n_features}) with rows >= 1 ({_RERUN})")
    check_numbers(path, "X", X, (X.shape[0], n_features),
                  f"{n_features} columns, one per feature of {PREPARED / 'preprocessing.npz'}; {_RERUN}")
    task, n_classes = str(preprocessing["task"]), len(preprocessing["classes"])
    if y.ndim not in ((1, 2) if task == "regression" else (1,)) or y.shape[0] != X.shape[0]:
        raise EvomlpError(f"{path}: y has shape {y.shape} but X has {X.shape[0]} rows; expected one label per row ({_RERUN})")
    if task == "regression":
        check_numbers(path, "y", y, y.shape, _RERUN)
        return X, y
    if not np.issubdtype(y.dtype, np.integer):
        raise EvomlpError(f"{path}: y is {y.dtype}; expected class indices (integers) for a {task} task ({_RERUN})")
    outside = np.flatnonzero((y < 0) | (y >= n_classes))
    if outside.size:
        raise EvomlpError(
            f"{path}: y has {outside.size} label(s) outside the {n_classes} classes (first {int(y[outside[0]])} on "
            f"row {int(outside[0])}); expected class indices from 0 to {n_classes - 1} ({_RERUN})"
        )
    return X, y
