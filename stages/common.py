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

from evomlp import numerics
from evomlp.artifacts import load_npz
from evomlp.errors import EvomlpError

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
MODEL = Path("models/model.npz")
METRICS = Path("metrics")
PLOTS = METRICS / "plots"
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


def load_part(name: str) -> tuple:
    """``(X, y)`` of a prepared part (``train``, ``validation`` or ``test``)."""
    arrays = load_npz(PREPARED / f"{name}.npz", ("X", "y"), what="prepared data (run the prepare stage)")
    return arrays["X"], arrays["y"]


def load_preprocessing() -> dict:
    return load_npz(
        PREPARED / "preprocessing.npz", ("task", "classes"), what="prepared data (run the prepare stage)"
    )
