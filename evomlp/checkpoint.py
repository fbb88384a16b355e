"""Checkpoints of a training run: the whole :class:`~evomlp.trainer.TrainerState`, resumed only by
the run, the code and the libraries that wrote it.

A run's checkpoint is three files in its directory, named by a key (:func:`checkpoint_key`, a hash
of the settings and the training data that affect results):

- ``<name>-<key>.a.npz`` and ``<name>-<key>.b.npz``, two slots written in turn, each **in place**
  (a zip of ``.npy`` entries, never pickled): the optimizer state (its ``state_to_arrays``:
  population, fitness, generation, evaluation count, the bit generator's state and its family's
  own arrays, :mod:`evomlp.protocol`), the model selection so far (best weights, best validation
  loss, patience counter), the key, the :func:`provenance` of the process, how many history rows
  belong to it and their CRC, and a checksum of all the entries' CRCs. A kill in the middle of a
  write tears only the slot being written; the other holds the generation before. Rewriting an
  existing file costs a twentieth of writing a new one and renaming it over the old (measured:
  0.07 against 1.4-1.6 ms for the 1.6 MB of a default run), and the slots are not fsynced
  (except the one saved when a run stops on a signal): a kill cannot lose what the page cache
  holds, and after a power cut a torn slot is detected and not resumed;
- ``<name>-<key>.history``: the history rows, appended (72 bytes a generation: the eight
  :data:`~evomlp.trainer.HISTORY_COLUMNS` as float64 and a mask of the ones that are ``None``),
  so a checkpoint's size and cost stay the same however long the run (the history was JSON inside
  each checkpoint before, 2.1 of the 3.8 MB at generation 2,000).

:meth:`Checkpoints.load` resumes from the newest slot that passes every check: readable with
every zip CRC right, the checksum, the format, the key, the provenance (a hash of every source
file of the library and the stages, the versions of Python, numpy, scipy, numba and
scikit-learn, and the BLAS libraries with their versions and kernels: any of them can change the
last bits of a result), the history's length and CRC, and the shapes of the state. If no slot
passes, the files are moved aside into ``set-aside/`` (the newest :data:`SET_ASIDE_KEEP` kept for
inspection), one line says why, and the run starts afresh: a checkpoint never blocks a run and is
never resumed into a model that the current code would not produce. :meth:`Checkpoints.finish`,
after a run's outputs are written, removes its files and those of every other key.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import time
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from evomlp.artifacts import load_npz, write_npz_entries
from evomlp.errors import EvomlpError
from evomlp.trainer import HISTORY_COLUMNS, TrainerState

FORMAT_VERSION = 2
SLOTS = ("a", "b")
SET_ASIDE = "set-aside"
SET_ASIDE_KEEP = 3
WRITE_SHARE = 0.1  # of the run's time, at most, spent writing checkpoints (Checkpoints.save)
_clock = time.perf_counter
LIBRARIES = ("numpy", "scipy", "numba", "scikit-learn")
_OPTIMIZER_PREFIX = "optimizer_"
_CHECKSUM = "checksum"
_ROW_FIELDS = len(HISTORY_COLUMNS) + 1  # the columns, then a bit mask of the ones that are None
ROW_BYTES = 8 * _ROW_FIELDS
_INTEGER_COLUMNS = ("generation", "n_evaluations")
_TRAINER_FIELDS = ("best_weights", "best_validation_loss", "best_generation", "generations_without_improvement",
                   "n_nonfinite", "history_rows", "history_crc")


def checkpoint_key(settings: dict, files: list[str | Path]) -> str:
    """A short hash of ``settings`` (JSON-able) and the bytes of ``files``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


# -- what produced a checkpoint ------------------------------------------------------------------
def source_digests(roots: Iterable[str | Path]) -> dict[str, str]:
    """``{"<root name>/<path>": sha256 prefix}`` of every ``.py`` file under each root."""
    digests = {}
    for root in map(Path, roots):
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                relative = f"{root.name}/{path.relative_to(root).as_posix()}"
                digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return digests


def provenance(code_roots: Iterable[str | Path]) -> dict:
    """What produces a run's bits besides its settings and data: the source files under
    ``code_roots`` (the library and the stages), the versions of Python and of the numerical
    libraries, and the BLAS libraries loaded (name, version, kernel) with numpy's SIMD level."""
    from threadpoolctl import threadpool_info

    from evomlp import numerics

    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    blas = sorted(
        f"{info.get('internal_api')} {info.get('version')} {info.get('architecture', '?')}"
        for info in threadpool_info() if info.get("user_api") == "blas"
    )
    return {"code": source_digests(code_roots), "versions": versions, "blas": blas,
            "numpy_simd": numerics.numpy_simd_level()}


def provenance_difference(saved: dict, current: dict) -> str:
    """Why a checkpoint made under ``saved`` cannot be resumed under ``current``, or ``""``."""
    saved_code, code = saved.get("code", {}), current.get("code", {})
    changed = sorted(name for name in set(saved_code) | set(code) if saved_code.get(name) != code.get(name))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        return f"made by other code ({shown} changed since)"
    saved_versions, versions = saved.get("versions", {}), current.get("versions", {})
    for name in sorted(set(saved_versions) | set(versions)):
        if saved_versions.get(name) != versions.get(name):
            return f"made with {name} {saved_versions.get(name, 'absent')}, this run has {versions.get(name, 'absent')}"
    for what in ("blas", "numpy_simd"):
        if saved.get(what) != current.get(what):
            return f"made with other numerical kernels ({what} {saved.get(what)}, this run has {current.get(what)})"
    return ""


# -- history rows ------------------------------------------------------------------------------
def history_to_rows(history: list[dict]) -> np.ndarray:
    """History rows as ``(n, 9)`` float64: the columns, ``None`` as NaN, and the mask of ``None``."""
    rows = np.empty((len(history), _ROW_FIELDS))
    for index, record in enumerate(history):
        mask = 0
        for column, name in enumerate(HISTORY_COLUMNS):
            value = record[name]
            if value is None:
                mask |= 1 << column
                value = np.nan
            rows[index, column] = value
        rows[index, -1] = mask
    return rows


def rows_to_history(rows: np.ndarray) -> list[dict]:
    """Inverse of :func:`history_to_rows`: the same values and types."""
    history = []
    for values in rows.tolist():
        mask = int(values[-1])
        history.append({
            name: None if mask >> column & 1 else (int(values[column]) if name in _INTEGER_COLUMNS else values[column])
            for column, name in enumerate(HISTORY_COLUMNS)
        })
    return history


# -- the files of a run -------------------------------------------------------------------------
@contextlib.contextmanager
def _disk_errors(directory: Path, doing: str):
    """An ``OSError`` (disk full, permissions) in the block becomes a one-line :class:`EvomlpError`."""
    try:
        yield
    except OSError as error:
        raise EvomlpError(f"{directory}: cannot {doing} ({error.strerror or error})") from None


class CheckpointRejected(EvomlpError):
    """A slot that must not be resumed; the message says why."""


def _entries_checksum(infos: Iterable[zipfile.ZipInfo]) -> int:
    """CRC32 of the names, sizes and CRCs of an archive's entries (the checksum entry aside)."""
    digest = 0
    for info in sorted(infos, key=lambda item: item.filename):
        if info.filename != f"{_CHECKSUM}.npy":
            digest = zlib.crc32(f"{info.filename}:{info.file_size}:{info.CRC};".encode(), digest)
    return digest


class Checkpoints:
    """The checkpoint of one run in ``directory``: slots ``<name>-<key>.{a,b}.npz`` and the
    history ``<name>-<key>.history`` (see the module docstring).

    ``provenance`` is this process's (:func:`provenance`); the ``optimizer`` given to
    :meth:`save` and :meth:`load` converts its state (``state_to_arrays``/``state_from_arrays``);
    ``write_share`` caps the time spent writing (:meth:`save`; ``None``: write every save).
    :attr:`saved_generation` is the generation the files hold (``None`` before the first save or
    resume); :attr:`set_aside` the one-line warning of the last :meth:`load`, if it set files aside.
    """

    def __init__(self, directory: str | Path, name: str, key: str, provenance: dict,
                 write_share: float | None = WRITE_SHARE):
        self.directory = Path(directory)
        self.name = name
        self.key = key
        self.stem = f"{name}-{key}"
        self.provenance = provenance
        self._provenance_text = json.dumps(provenance, sort_keys=True)
        self.saved_generation: int | None = None
        self.set_aside = ""
        self._next_slot = SLOTS[0]
        self.write_share = write_share
        self._history_rows = 0
        self._history_crc = 0
        self._last_start, self._last_duration = -np.inf, 0.0

    def slot_path(self, slot: str) -> Path:
        return self.directory / f"{self.stem}.{slot}.npz"

    @property
    def history_path(self) -> Path:
        return self.directory / f"{self.stem}.history"

    @property
    def path(self) -> Path:
        """The slot holding :attr:`saved_generation` (the next one to be written if none)."""
        if self.saved_generation is None:
            return self.slot_path(self._next_slot)
        return self.slot_path(SLOTS[1 - SLOTS.index(self._next_slot)])

    def _files(self) -> list[Path]:
        legacy = self.directory / f"{self.stem}.npz"  # format 1: one file, history inside
        return [path for path in (*map(self.slot_path, SLOTS), self.history_path, legacy) if path.exists()]

    # -- saving -----------------------------------------------------------------------------
    def save(self, state: TrainerState, optimizer, durable: bool = False) -> bool:
        """Write ``state``, unless it is skipped (:meth:`_save`); a disk's error as one line."""
        with _disk_errors(self.directory, "write the checkpoint"):
            return self._save(state, optimizer, durable)

    def _save(self, state: TrainerState, optimizer, durable: bool = False) -> bool:
        """Write ``state``: append its new history rows, then the state into the older slot, in
        place; return whether it was written.

        A write is skipped if the last one started less than its own duration divided by
        :attr:`write_share` ago, so that writing takes at most that share of the run's time
        whatever ``checkpoint_every`` asks (at ``checkpoint_every: 1`` on the default problem, a
        1.2 ms write against 4 ms generations: every third generation or so is written). Which
        generations are written never changes a result: any of them resumes to the same bytes.
        ``durable``: always written, and fsynced (a run stopping on a signal)."""
        now = _clock()
        if not durable and self.write_share and now - self._last_start < self._last_duration / self.write_share:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        rows = history_to_rows(state.history[self._history_rows :]).astype("<f8").tobytes()
        with open(self.history_path, "r+b" if self.history_path.exists() else "w+b") as history:
            os.pwrite(history.fileno(), rows, self._history_rows * ROW_BYTES)
            if durable:
                os.fsync(history.fileno())
        self._history_rows = len(state.history)
        self._history_crc = zlib.crc32(rows, self._history_crc)
        arrays = {_OPTIMIZER_PREFIX + name: value for name, value in optimizer.state_to_arrays(state.optimizer).items()}
        arrays.update(
            format_version=np.array(FORMAT_VERSION),
            key=np.array(self.key),
            provenance=np.array(self._provenance_text),
            best_weights=state.best_weights,
            best_validation_loss=np.array(state.best_validation_loss),
            best_generation=np.array(state.best_generation),
            generations_without_improvement=np.array(state.generations_without_improvement),
            n_nonfinite=np.array(state.n_nonfinite),
            history_rows=np.array(self._history_rows),
            history_crc=np.array(self._history_crc, dtype=np.uint32),
        )
        path = self.slot_path(self._next_slot)
        with open(path, "r+b" if path.exists() else "w+b") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                write_npz_entries(archive, arrays, path)
                write_npz_entries(archive, {_CHECKSUM: np.array(_entries_checksum(archive.infolist()), dtype=np.uint32)}, path)
            handle.truncate()
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        self.saved_generation = int(state.optimizer.generation)
        self._next_slot = SLOTS[1 - SLOTS.index(self._next_slot)]
        self._last_start, self._last_duration = now, _clock() - now
        return True

    # -- resuming ---------------------------------------------------------------------------
    def load(self, optimizer, n_weights: int) -> TrainerState | None:
        """The state to resume, or ``None`` (:meth:`_load`); a disk's error as one line."""
        with _disk_errors(self.directory, "resume or set aside the checkpoint"):
            return self._load(optimizer, n_weights)

    def _load(self, optimizer, n_weights: int) -> TrainerState | None:
        """The state of the newest slot that passes every check (for ``optimizer`` on a network of
        ``n_weights``), or ``None`` (no checkpoint, or all set aside: :attr:`set_aside` says why)."""
        self.set_aside = ""
        files = self._files()
        if not files:
            return None
        resumable, reasons = [], []
        for slot in SLOTS:
            path = self.slot_path(slot)
            if path.exists():
                try:
                    resumable.append((self._read(path, optimizer, n_weights), slot))
                except CheckpointRejected as rejected:
                    reasons.append((path, str(rejected)))
        if resumable:
            (state, rows, crc), slot = max(resumable, key=lambda item: item[0][0].optimizer.generation)
            with open(self.history_path, "r+b") as history:
                history.truncate(rows * ROW_BYTES)  # rows of a later, torn save
            self._history_rows, self._history_crc = rows, crc
            self.saved_generation = int(state.optimizer.generation)
            self._next_slot = SLOTS[1 - SLOTS.index(slot)]
            return state
        if not reasons:
            reasons.append((files[0], f"written by an older evomlp (checkpoint format 1, this code writes {FORMAT_VERSION})"))
        # the most telling reason: one from a readable slot over a torn one
        path, reason = next((item for item in reasons if not item[1].startswith("unreadable")), reasons[0])
        destination = self._set_aside(files)
        self.set_aside = f"{path}: {reason}; moved to {destination}/, starting afresh"
        return None

    def _read(self, path: Path, optimizer, n_weights: int) -> tuple[TrainerState, int, int]:
        """``(state, history rows, history CRC)`` of one slot; :class:`CheckpointRejected` otherwise."""
        try:
            arrays = load_npz(path, what="checkpoint")
            with zipfile.ZipFile(path) as archive:
                checksum = _entries_checksum(archive.infolist())
        except (EvomlpError, OSError, zipfile.BadZipFile) as error:
            message = str(error)
            raise CheckpointRejected(f"unreadable ({message.split(': ', 1)[-1] if message.startswith(str(path)) else message})") from None
        if _CHECKSUM not in arrays or "format_version" not in arrays:
            raise CheckpointRejected("not a checkpoint of this format (no checksum)")
        if int(arrays[_CHECKSUM]) != checksum:
            raise CheckpointRejected("changed since it was written (its checksum does not match)")
        if int(arrays["format_version"]) != FORMAT_VERSION:
            raise CheckpointRejected(f"checkpoint format {int(arrays['format_version'])}, this code writes {FORMAT_VERSION}")
        missing = [name for name in ("key", "provenance", *_TRAINER_FIELDS) if name not in arrays]
        if missing:
            raise CheckpointRejected(f"incomplete (lacks {missing})")
        if str(arrays["key"]) != self.key:
            raise CheckpointRejected(f"belongs to another run (key {arrays['key']}, this run's is {self.key})")
        try:
            saved = json.loads(str(arrays["provenance"]))
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise CheckpointRejected("its provenance is not a JSON object")
        difference = provenance_difference(saved, self.provenance)
        if difference:
            raise CheckpointRejected(difference)
        try:
            state = self._state(arrays, optimizer, n_weights)
        except CheckpointRejected:
            raise
        except Exception as error:  # any malformed state: set aside, never a traceback
            raise CheckpointRejected(f"malformed state ({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None
        rows, crc = int(arrays["history_rows"]), int(arrays["history_crc"])
        if rows != state.optimizer.generation + 1:
            raise CheckpointRejected(f"{rows} history rows for generation {state.optimizer.generation}")
        state.history = self._history(rows, crc)
        return state, rows, crc

    @staticmethod
    def _state(arrays: dict[str, np.ndarray], optimizer, n_weights: int) -> TrainerState:
        optimizer_state = optimizer.state_from_arrays(
            {name[len(_OPTIMIZER_PREFIX) :]: value for name, value in arrays.items() if name.startswith(_OPTIMIZER_PREFIX)}
        )
        population, fitness = np.asarray(optimizer_state.population), np.asarray(optimizer_state.fitness)
        best_weights = np.array(arrays["best_weights"])
        size = population.shape[0] if population.ndim == 2 else 0
        if (population.ndim != 2 or population.shape[1] != n_weights or size < 1 or fitness.shape != (size,)
                or best_weights.shape != (n_weights,) or optimizer_state.generation < 0):
            raise CheckpointRejected(
                f"malformed state (population {population.shape}, fitness {fitness.shape}, best weights "
                f"{best_weights.shape}, generation {optimizer_state.generation}; this network has {n_weights} weights)"
            )
        return TrainerState(
            optimizer=optimizer_state,
            best_weights=best_weights,
            best_validation_loss=float(arrays["best_validation_loss"]),
            best_generation=int(arrays["best_generation"]),
            generations_without_improvement=int(arrays["generations_without_improvement"]),
            n_nonfinite=int(arrays["n_nonfinite"]),
        )

    def _history(self, rows: int, crc: int) -> list[dict]:
        try:
            with open(self.history_path, "rb") as history:
                data = history.read(rows * ROW_BYTES)
        except OSError:
            data = b""
        if len(data) != rows * ROW_BYTES or zlib.crc32(data) != crc:
            raise CheckpointRejected(f"its history ({self.history_path}) does not hold the {rows} rows it recorded")
        return rows_to_history(np.frombuffer(data, dtype="<f8").reshape(rows, _ROW_FIELDS))

    def _set_aside(self, files: list[Path]) -> Path:
        """Move ``files`` into a new ``set-aside/<stem>-<N>`` folder; keep the newest few folders."""
        root = self.directory / SET_ASIDE
        root.mkdir(parents=True, exist_ok=True)
        numbered = sorted((int(path.name.rsplit("-", 1)[1]), path) for path in root.iterdir()
                          if path.is_dir() and path.name.rsplit("-", 1)[-1].isdigit())
        destination = root / f"{self.stem}-{numbered[-1][0] + 1 if numbered else 1}"
        destination.mkdir()
        for path in files:
            os.replace(path, destination / path.name)
        for _, old in numbered[: max(0, len(numbered) + 1 - SET_ASIDE_KEEP)]:
            shutil.rmtree(old, ignore_errors=True)
        return destination

    # -- the end of a run -------------------------------------------------------------------
    def finish(self) -> list[Path]:
        """Remove the run's checkpoint and the others (:meth:`_finish`); a disk's error as one line."""
        with _disk_errors(self.directory, "remove the finished run's checkpoints"):
            return self._finish()

    def _finish(self) -> list[Path]:
        """After the run's outputs are written: remove its files and every other
        ``<name>-*`` file (other keys' checkpoints, their temporaries); return what was removed.
        ``set-aside/`` and other names stay."""
        removed = []
        if not self.directory.is_dir():
            return removed
        for path in self.directory.iterdir():
            if path.is_file() and path.name.lstrip(".").startswith(f"{self.name}-"):
                path.unlink(missing_ok=True)
                removed.append(path)
        self.saved_generation = None
        self._history_rows = self._history_crc = 0
        self._next_slot = SLOTS[0]
        return removed
