import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evomlp.artifacts import (
    TEMP_SUFFIX,
    atomic_path,
    load_model,
    load_npz,
    save_csv,
    save_json,
    save_model,
    save_npz,
)
from evomlp.errors import EvomlpError
from evomlp.network import MLPSpec

ROOT = Path(__file__).resolve().parents[1]


def test_npz_bytes_depend_only_on_the_arrays(tmp_path, monkeypatch):
    import time

    arrays = {"b": np.arange(5.0), "a": np.array("text"), "c": np.array(["x", "yy"])}
    save_npz(tmp_path / "one.npz", arrays)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400 * 400)  # a year later
    save_npz(tmp_path / "two.npz", dict(reversed(list(arrays.items()))))
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    loaded = load_npz(tmp_path / "one.npz")
    assert loaded["a"].shape == () and str(loaded["a"]) == "text"
    np.testing.assert_array_equal(loaded["c"], ["x", "yy"])


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(EvomlpError, match="objects"):
        save_npz(tmp_path / "x.npz", {"bad": np.array([{"a": 1}], dtype=object)})
    assert not any(tmp_path.iterdir())


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    save_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text('{"accuracy": 0.')
            raise RuntimeError("crash in the middle of writing")
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


WRITER = """
import sys
from evomlp.artifacts import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    temporary.write_text("half of a")
    print(temporary, flush=True)
    sys.stdin.read()  # killed here, in the middle of the write
"""


def start_writer(target):
    """A process stopped in the middle of an atomic write of ``target``, and its temporary."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    temporary = Path(process.stdout.readline().strip())
    assert temporary.exists(), "the writer did not start its write"
    return process, temporary


def test_a_killed_writers_temporary_is_ignored_and_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.npz"
    killed, stale = start_writer(target)
    killed.kill()
    killed.wait()
    assert stale.exists() and stale.parent == tmp_path and stale.name.startswith(".model.npz.")
    # recognisable, and ignored by git and DVC wherever it lands (here as if in models/)
    relative = f"models/{stale.name}"
    assert subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT).returncode == 0
    assert any(stale.match(line.strip()) for line in (ROOT / ".dvcignore").read_text().splitlines() if line.strip())
    legacy = tmp_path / ".model.npz.k3j_9x0a.tmp"  # the name before the writer's pid was in it
    legacy.write_bytes(b"old")
    running, alive = start_writer(target)  # a write of the same target still under way is left alone
    try:
        other = tmp_path / f".other.npz.{killed.pid}-x{TEMP_SUFFIX}"  # another target's: not this write's to remove
        other.write_bytes(b"")
        save_npz(target, {"a": np.arange(3)})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.npz", alive.name, other.name])
    finally:
        running.kill()
        running.wait()


def test_json_is_sorted_and_nonfinite_becomes_null(tmp_path):
    save_json(tmp_path / "m.json", {"z": np.float64(1.5), "a": float("nan"), "n": {"inf": float("inf")}})
    text = (tmp_path / "m.json").read_text()
    assert text.index('"a"') < text.index('"z"')
    assert json.loads(text) == {"a": None, "n": {"inf": None}, "z": 1.5}


def test_csv_keeps_full_float_precision(tmp_path):
    save_csv(tmp_path / "h.csv", ["g", "v"], [{"g": 1, "v": 0.1 + 0.2}, {"g": 2, "v": None}])
    assert (tmp_path / "h.csv").read_text() == "g,v\n1,0.30000000000000004\n2,\n"


@pytest.fixture
def model_file(tmp_path):
    spec = MLPSpec(3, (4,), ("relu",), 1, "binary")
    weights = np.linspace(-1, 1, spec.n_weights)
    path = tmp_path / "model.npz"
    save_model(path, spec, weights, np.array(["benign", "malignant"]), {"pre_mean": np.zeros(3)})
    return path, spec, weights


def test_model_round_trip(model_file):
    path, spec, weights = model_file
    loaded_spec, loaded_weights, classes, arrays = load_model(path)
    assert loaded_spec == spec
    np.testing.assert_array_equal(loaded_weights, weights)
    assert list(classes) == ["benign", "malignant"]
    assert "pre_mean" in arrays


def test_truncated_model_is_refused(model_file):
    path = model_file[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EvomlpError, match="not a readable .npz model file"):
        load_model(path)


def test_garbage_and_missing_model_files_are_refused(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"\x00not a zip at all")
    with pytest.raises(EvomlpError, match="junk.npz: not a readable"):
        load_model(tmp_path / "junk.npz")
    with pytest.raises(EvomlpError, match="model file not found"):
        load_model(tmp_path / "absent.npz")


def test_model_with_pickled_arrays_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, weights=np.array([object()], dtype=object))
    with pytest.raises(EvomlpError, match="evil.npz"):
        load_model(path)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda a: a.update(weights=a["weights"][:-1]), "expected 21 float64 weights"),
        (lambda a: a.update(hidden_layers=np.array([5])), "expected 26 float64 weights"),
        (lambda a: a.update(activations=np.array(["swish"])), "swish"),
        (lambda a: a.update(format_version=np.array(99)), "format version 99"),
        (lambda a: a.update(classes=np.array(["only one"])), "expected 2 class labels"),
        (lambda a: a.pop("task"), "lacks array"),
        (lambda a: a.update(weights=np.full(21, np.nan)), "NaN"),
    ],
)
def test_mismatched_model_is_refused_with_a_reason(model_file, change, fragment):
    path = model_file[0]
    arrays = load_npz(path)
    change(arrays)
    save_npz(path, arrays)
    with pytest.raises(EvomlpError, match=fragment) as error:
        load_model(path)
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"\x80\x04\x95 a pickle"])
def test_evaluate_stage_refuses_a_bad_model_file_in_one_line(tmp_path, content):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.npz").write_bytes(content)
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-m", "stages.evaluate"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: models/model.npz: not a readable .npz model file")
    assert not (tmp_path / "metrics").exists()
