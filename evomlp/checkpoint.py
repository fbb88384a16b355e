"""Checkpoints of a training run: the whole :class:`~evomlp.trainer.TrainerState` in one ``.npz``.

A checkpoint holds the optimizer state (whatever the optimizer's ``state_to_arrays`` gives: its
population, fitness, generation, evaluation count, the bit generator's state and its family's own
arrays, :mod:`evomlp.protocol`) and the model selection so far (best weights,
best validation loss, patience counter, history), so a run resumed from it ends with the same bytes
as one that was never interrupted. Files are written atomically and never pickled. The file name
carries a key, a hash of everything that affects results (the settings and the training data), so
a checkpoint is only ever resumed by the run it belongs to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from evomlp.artifacts import load_npz, save_npz
from evomlp.errors import EvomlpError
from evomlp.trainer import TrainerState

FORMAT_VERSION = 1
_OPTIMIZER_PREFIX = "optimizer_"


def checkpoint_key(settings: dict, files: list[str | Path]) -> str:
    """A short hash of ``settings`` (JSON-able) and the bytes of ``files``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | Path, state: TrainerState, key: str, optimizer) -> None:
    arrays = {_OPTIMIZER_PREFIX + name: value for name, value in optimizer.state_to_arrays(state.optimizer).items()}
    arrays.update(
        format_version=np.array(FORMAT_VERSION),
        key=np.array(key),
        best_weights=state.best_weights,
        best_validation_loss=np.array(state.best_validation_loss),
        best_generation=np.array(state.best_generation),
        generations_without_improvement=np.array(state.generations_without_improvement),
        n_nonfinite=np.array(state.n_nonfinite),
        history=np.array(json.dumps(state.history)),
    )
    save_npz(path, arrays)


def load_checkpoint(path: str | Path, key: str, optimizer) -> TrainerState:
    """The state saved at ``path``; an error if it is unreadable or belongs to another run."""
    arrays = load_npz(path, ("format_version", "key", "best_weights", "history"), what="checkpoint")
    if int(arrays["format_version"]) != FORMAT_VERSION or str(arrays["key"]) != key:
        raise EvomlpError(f"{path}: checkpoint of another run or format (delete it to start afresh)")
    optimizer_state = optimizer.state_from_arrays(
        {name[len(_OPTIMIZER_PREFIX) :]: value for name, value in arrays.items() if name.startswith(_OPTIMIZER_PREFIX)}
    )
    return TrainerState(
        optimizer=optimizer_state,
        best_weights=np.array(arrays["best_weights"]),
        best_validation_loss=float(arrays["best_validation_loss"]),
        best_generation=int(arrays["best_generation"]),
        generations_without_improvement=int(arrays["generations_without_improvement"]),
        n_nonfinite=int(arrays["n_nonfinite"]),
        history=json.loads(str(arrays["history"])),
    )
