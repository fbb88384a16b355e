"""File formats and atomic writes: ``.npz`` (never pickled), JSON and CSV.

Every writer goes through :func:`atomic_path`: the bytes go to a temporary file in the target's
folder, are flushed to disk, and the file is renamed over the target, so a crash leaves either the
old file or the new one, never half of one. Files get the usual mode (0666 less the umask). A
stage's outputs are written as one (:class:`Outputs`): checked writable before any work, then
every file written to its temporary, and only when all are written, renamed onto their targets
back to back; a failure before that leaves every old output as it was.
A temporary is named
``.<target name>.<writer's pid>-<random>.evomlp-tmp`` (gitignored and dvcignored by that suffix);
one left by a writer that was killed is removed by the next write of the same target, once its
pid is no longer alive (:func:`remove_stale_temporaries`). ``.npz`` files are written with a fixed timestamp on
every zip entry (numpy's own ``savez`` stamps the current time), so the same arrays always give the
same bytes and DVC sees no change when nothing changed.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import io
import json
import math
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evomlp.errors import EvomlpError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# 2: the model also holds its target column's name and, as JSON, its training settings and
# training-time metrics (what `evomlp info` shows); 1 had neither.
MODEL_FORMAT_VERSION = 2
TEMP_SUFFIX = ".evomlp-tmp"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` (beside it) left by writers that died; return them.

    A temporary whose writer's pid is alive is kept (a concurrent write of the same target). Names
    of the format before the pid was recorded (``.<name>.<8 characters>.tmp``) are removed too."""
    path = Path(path)
    name = re.escape(path.name)
    ours = re.compile(rf"\.{name}\.(\d+)-[^/]+{re.escape(TEMP_SUFFIX)}")
    legacy = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = ours.fullmatch(candidate.name)
        stale = (match is not None and not _process_alive(int(match.group(1)))) or legacy.fullmatch(candidate.name)
        if stale:
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file
# (targets, [(temporary, target) written], [targets to remove]) of the Outputs being written
_STAGED: contextvars.ContextVar = contextvars.ContextVar("evomlp_staged_outputs", default=None)


def _write_error(path: Path, error: OSError) -> EvomlpError:
    return EvomlpError(f"{path}: cannot write ({error.strerror or error})")


def _staging_for(path: Path):
    staged = _STAGED.get()
    if staged is not None and any(target == path or target in path.parents for target in staged[0]):
        return staged
    return None


def _new_temporary(path: Path, folder: Path) -> Path:
    """An empty new file in ``folder`` with the temporary name of ``path`` (see the module docstring)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=folder)
    os.close(handle)
    return Path(temporary)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, fsync and rename it onto ``path`` (or,
    while :meth:`Outputs.written` holds ``path``, when all the outputs are written). Stale
    temporaries of ``path`` (of killed writers) are removed first. A write error is an
    :class:`EvomlpError` naming ``path``."""
    path = Path(os.path.abspath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        temporary = _new_temporary(path, path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    staged = _staging_for(path)
    kept = False  # handed to the Outputs being written, which renames or deletes it
    try:
        try:
            os.chmod(temporary, _FILE_MODE)
            yield temporary
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            if staged is None:
                os.replace(temporary, path)
            else:
                staged[1].append((temporary, path))
                kept = True
        except OSError as error:
            raise _write_error(path, error) from None
    finally:
        if not kept and temporary.exists():
            temporary.unlink()


def remove_output(path: str | Path) -> None:
    """Delete ``path`` (if it exists), or, while :meth:`Outputs.written` holds it, once all the
    outputs are written."""
    path = Path(os.path.abspath(path))
    staged = _staging_for(path)
    if staged is not None:
        staged[2].append(path)
    else:
        path.unlink(missing_ok=True)


class Outputs:
    """A stage's outputs (files, or folders of files), written all or nothing.

    Made at the start of a stage, it checks that every output can be written (its folder created,
    a file created in it, an existing file writable), so a read-only folder fails before any work.
    Within :meth:`written`, the writers of :mod:`evomlp.artifacts` keep each file as its fsynced
    temporary; when the block ends without error they are renamed onto their targets one after the
    other, and removals done; on an error, every temporary is deleted and the old outputs stay.
    """

    def __init__(self, *paths: str | Path) -> None:
        self.paths = tuple(Path(os.path.abspath(p)) for p in paths)
        for path in self.paths:
            _check_writable(path)

    @contextlib.contextmanager
    def written(self) -> Iterator[None]:
        staged: tuple = (self.paths, [], [])
        token = _STAGED.set(staged)
        try:
            yield
        except BaseException:
            for temporary, _ in staged[1]:
                temporary.unlink(missing_ok=True)
            raise
        finally:
            _STAGED.reset(token)
        for index, (temporary, path) in enumerate(staged[1]):
            try:
                os.replace(temporary, path)
            except OSError as error:
                for left, _ in staged[1][index:]:
                    left.unlink(missing_ok=True)
                raise _write_error(path, error) from None
        for path in staged[2]:
            path.unlink(missing_ok=True)


def _check_writable(path: Path) -> None:
    """A file can be created where ``path`` goes (in the nearest folder that exists: nothing is
    created here), and an existing output can be replaced."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        _new_temporary(path, folder).unlink()
    except OSError as error:
        raise EvomlpError(f"{path}: cannot write there ({error.strerror or error}); nothing was run") from None
    targets = [p for p in folder.iterdir() if p.is_file()] if path.is_dir() else [path] if path.exists() else []
    for target in targets:
        if not os.access(target, os.W_OK):
            raise EvomlpError(f"{target}: cannot be replaced (not writable); nothing was run")


def save_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz``, atomically and byte-reproducibly.

    Only numeric, boolean and fixed-width string arrays are accepted: object arrays would need pickle.
    """
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            write_npz_entries(archive, arrays, path)


def write_npz_entries(archive: zipfile.ZipFile, arrays: dict[str, Any], path: str | Path) -> None:
    """Add ``arrays`` to an open ``.npz`` archive, sorted by name, with the fixed timestamp
    (``path`` names the file in the error for an object array)."""
    for name in sorted(arrays):
        array = np.asarray(arrays[name], order="C")
        if array.dtype.hasobject:
            raise EvomlpError(f"{path}: array {name!r} holds Python objects; not saved")
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
        info.external_attr = 0o644 << 16
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
        try:
            data = memoryview(array.reshape(-1)).cast("B")  # streamed from the array's memory: no copy
        except (TypeError, ValueError):  # a dtype the buffer protocol cannot show (datetime64)
            data = array.tobytes()
        with archive.open(info, "w") as entry:
            entry.write(header.getvalue())
            entry.write(data)


def load_npz(path: str | Path, required: tuple[str, ...] = (), what: str = "file") -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` without pickle; a clear error if unreadable or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise EvomlpError(f"{path}: {what} not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "pickle" in reason:  # numpy's advice to load it unsafely is no advice for a data file
            with open(path, "rb") as head:
                zipped = head.read(4) == b"PK\x03\x04"
            reason = "pickled data, never loaded" if zipped else "not a zip archive: not a .npz file at all"
        raise EvomlpError(f"{path}: not a readable .npz {what} ({reason})") from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise EvomlpError(f"{path}: {what} lacks array(s) {missing}")
    return arrays


def show_array(array: np.ndarray) -> str:
    """A short description of ``array`` for messages: its value if it is a scalar, else dtype and shape."""
    if array.ndim == 0:
        text = repr(array.item())
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {array.dtype} array of shape {array.shape}"


def check_numbers(path: str | Path, name: str, array: np.ndarray, shape: tuple, expected: str) -> None:
    """Array ``name`` of file ``path`` is real numbers of ``shape``, all finite; else one line
    naming the file, the array, the first bad entry and ``expected`` (what the shape should be)."""
    if array.dtype.kind not in "fiu" or array.shape != tuple(shape):
        raise EvomlpError(
            f"{path}: {name} is {show_array(array)}; expected numbers of shape {tuple(shape)} ({expected})"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = ", ".join(map(str, where))
        raise EvomlpError(
            f"{path}: {name} has {int(bad.sum())} NaN or infinite value(s) (first {array[where]!r} at "
            f"[{index}]); expected finite numbers"
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(data: dict) -> str:
    """JSON with sorted keys and a trailing newline (the same data, the same text); NaN/inf become null."""
    return json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n"


def save_json(path: str | Path, data: dict) -> None:
    """Write :func:`json_text` of ``data``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json_text(data))


def save_csv(path: str | Path, columns: list[str], rows: list[dict]) -> None:
    """Write rows of dicts as CSV with the given column order; floats with repr precision."""
    lines = [",".join(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append("" if value is None else (repr(float(value)) if isinstance(value, float) else str(value)))
        lines.append(",".join(cells))
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")


# -- the model file ---------------------------------------------------------------------------
MODEL_KEYS = (
    "format_version",
    "weights",
    "n_inputs",
    "hidden_layers",
    "activations",
    "n_outputs",
    "task",
    "classes",
)


def save_model(
    path: str | Path,
    spec,
    weights: np.ndarray,
    classes: np.ndarray,
    preprocessing: dict,
    *,
    target: str | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
) -> None:
    """Write a model: weights, architecture, class labels and the preprocessing arrays, and, when
    given, the target column's name (``target``), the training settings (``training``) and the
    training-time metrics (``metrics``), the last two as :func:`json_text` in a string array."""
    arrays = {
        "format_version": np.array(MODEL_FORMAT_VERSION),
        "weights": np.asarray(weights, dtype=np.float64),
        "n_inputs": np.array(spec.n_inputs),
        "hidden_layers": np.array(spec.hidden_layers, dtype=np.int64),
        "activations": np.array(spec.activations, dtype=str),
        "n_outputs": np.array(spec.n_outputs),
        "task": np.array(spec.task),
        "classes": np.asarray(classes, dtype=str),
    }
    arrays.update(preprocessing)
    if target is not None:
        arrays["target"] = np.array(str(target))
    for name, record in (("training", training), ("metrics", metrics)):
        if record is not None:
            arrays[name] = np.array(json_text(record))
    save_npz(path, arrays)


def model_record(arrays: dict[str, np.ndarray], name: str, path: str | Path) -> dict | None:
    """The JSON record ``name`` (``training`` or ``metrics``) of a loaded model; None if absent."""
    if name not in arrays:
        return None
    try:
        record = json.loads(str(arrays[name]))
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise EvomlpError(f"{path}: model array {name!r} is not a JSON object; expected one written by save_model")
    return record


def load_model(path: str | Path):
    """Read and check a model file: ``(spec, weights, classes, arrays)``; one-line errors otherwise."""
    from evomlp.network import MLPSpec

    arrays = load_npz(path, MODEL_KEYS, what="model file")
    path = Path(path)
    try:
        version = int(arrays["format_version"])
        if version != MODEL_FORMAT_VERSION:
            raise EvomlpError(f"{path}: model format version {version}, expected {MODEL_FORMAT_VERSION}")
        spec = MLPSpec(
            n_inputs=int(arrays["n_inputs"]),
            hidden_layers=tuple(int(h) for h in np.atleast_1d(arrays["hidden_layers"])),
            activations=tuple(str(a) for a in np.atleast_1d(arrays["activations"])),
            n_outputs=int(arrays["n_outputs"]),
            task=str(arrays["task"]),
        )
    except EvomlpError as error:
        message = str(error)
        raise EvomlpError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except (TypeError, ValueError) as error:
        raise EvomlpError(f"{path}: malformed model architecture ({error})") from None
    weights = arrays["weights"]
    if weights.dtype != np.float64 or weights.shape != (spec.n_weights,):
        raise EvomlpError(
            f"{path}: expected {spec.n_weights} float64 weights for layers {list(spec.layer_sizes)}, "
            f"got {weights.dtype} {weights.shape}"
        )
    if not np.all(np.isfinite(weights)):
        raise EvomlpError(f"{path}: weights contain NaN or inf")
    classes = np.atleast_1d(arrays["classes"])
    expected_classes = {"binary": 2, "multiclass": spec.n_outputs, "regression": 0}[spec.task]
    if classes.shape[0] != expected_classes:
        raise EvomlpError(f"{path}: expected {expected_classes} class labels for a {spec.task} model, got {classes.shape[0]}")
    if len(set(classes.tolist())) != len(classes):
        raise EvomlpError(f"{path}: repeated class labels {classes.tolist()}; expected each once")
    # the preprocessing the model carries (written by the train stage) feeds its inputs
    if "feature_names" in arrays and np.atleast_1d(arrays["feature_names"]).shape != (spec.n_inputs,):
        raise EvomlpError(
            f"{path}: {np.atleast_1d(arrays['feature_names']).shape[0]} feature names for a network of "
            f"{spec.n_inputs} inputs; expected one per input"
        )
    for name in ("pre_mean", "pre_scale"):
        if name in arrays:
            check_numbers(path, name, arrays[name], (spec.n_inputs,), "one per network input")
    return spec, weights, classes, arrays
