"""What every stage script shares: paths, the error policy, and reading prepared data.

A stage turns :class:`evomlp.EvomlpError` (bad params, data or model files) into one line on
stderr, ``error: <file or key>: <what was expected>``, and exit code 2, with no traceback. Ctrl-C
exits with 130. Every output is written atomically by :mod:`evomlp.artifacts`, and only after all
of the stage's work has succeeded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

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
PARTS = ("train", "validation", "test")


def run_stage(main: Callable[[], None]) -> None:
    """Run ``main``; bad input becomes a one-line error and exit code 2. After a stage succeeds,
    one line on stdout says which kernels computed its results (:func:`evomlp.numerics.describe`)."""
    try:
        main()
        print(numerics.describe(), flush=True)
    except EvomlpError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def load_part(name: str) -> tuple:
    """``(X, y)`` of a prepared part (``train``, ``validation`` or ``test``)."""
    arrays = load_npz(PREPARED / f"{name}.npz", ("X", "y"), what="prepared data (run the prepare stage)")
    return arrays["X"], arrays["y"]


def load_preprocessing() -> dict:
    return load_npz(
        PREPARED / "preprocessing.npz", ("task", "classes"), what="prepared data (run the prepare stage)"
    )
