"""Checkpoints (evomlp.checkpoint): resumed only when whole and made by the same code and libraries;
anything else is set aside with one line and the run starts afresh; size flat in run length."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from test_trainer import PROVENANCE, make_trainer

from evomlp import checkpoint
from evomlp.artifacts import load_npz, save_npz
from evomlp.checkpoint import ROW_BYTES, Checkpoints, history_to_rows, provenance, rows_to_history
from evomlp.errors import EvomlpError

SETTINGS = dict(l2=1e-3)


def checkpointed_run(small_problem, directory, generations=12, provenance=PROVENANCE, strategy="rand1bin"):
    """A run that saved every generation (slot a: odd generations, b: even), stopped at ``generations``."""
    checkpoints = Checkpoints(directory, "train", "k", provenance, write_share=None)
    trainer, population, rng, _ = make_trainer(
        small_problem, checkpoint=lambda state, durable: checkpoints.save(state, trainer.optimizer, durable),
        max_generations=generations, checkpoint_every=1, strategy=strategy, **SETTINGS,
    )
    trainer.run(trainer.start(population, rng))
    return checkpoints


def resume(small_problem, directory, provenance=PROVENANCE, generations=30, strategy="rand1bin"):
    """What the stage does: resume if the checkpoint passes, else start afresh; run to the end."""
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=generations, strategy=strategy, **SETTINGS)
    checkpoints = Checkpoints(directory, "train", "k", provenance)
    state = checkpoints.load(trainer.optimizer, population.shape[1])
    resumed_from = None if state is None else state.optimizer.generation
    if state is None:
        state = trainer.start(population, rng)
    return trainer.run(state), checkpoints, resumed_from


@pytest.fixture(scope="module")
def reference(small_problem):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=30, **SETTINGS)
    return trainer.run(trainer.start(population, rng))


def same_run(result, reference) -> bool:
    return np.array_equal(result.weights, reference.weights) and result.history == reference.history


def test_history_rows_round_trip_with_none_and_nonfinite_values():
    history = [
        {"generation": 0, "n_evaluations": 12, "best_fitness": 0.5, "mean_fitness": float("inf"), "train_loss": -0.0,
         "train_accuracy": None, "validation_loss": float("nan"), "validation_accuracy": None},
        {"generation": 1, "n_evaluations": 24, "best_fitness": 1e-300, "mean_fitness": 2.0, "train_loss": 3.0,
         "train_accuracy": 0.75, "validation_loss": 0.25, "validation_accuracy": 1.0},
    ]
    rows = history_to_rows(history)
    assert rows.nbytes == 2 * ROW_BYTES
    back = rows_to_history(rows)
    assert [type(row["generation"]) for row in back] == [int, int]
    assert back[0]["train_accuracy"] is None and np.isnan(back[0]["validation_loss"])
    assert str(back[0]["train_loss"]) == "-0.0" and back[1] == history[1]


@pytest.mark.parametrize("tear", ["truncated", "zeroed block", "half of a new write"])
def test_a_torn_newest_slot_resumes_from_the_other_one_quietly(small_problem, tmp_path, reference, tear):
    checkpointed_run(small_problem, tmp_path)
    newest = tmp_path / "train-k.b.npz"  # generation 12; slot a holds 11
    data = newest.read_bytes()
    if tear == "truncated":
        newest.write_bytes(data[: len(data) // 2])
    elif tear == "zeroed block":
        newest.write_bytes(data[:5000] + bytes(4096) + data[9096:])
    else:  # killed while rewriting in place: the start of another state over the old bytes
        other = (tmp_path / "train-k.a.npz").read_bytes()
        newest.write_bytes(other[: len(other) // 2] + data[len(other) // 2 :])
    result, checkpoints, resumed_from = resume(small_problem, tmp_path)
    assert resumed_from == 11 and checkpoints.set_aside == ""
    assert same_run(result, reference)


def _resave(path, change, checksum=True):
    """Rewrite a slot as another tool would (valid zip CRCs), after ``change(arrays)``; with
    ``checksum``, as someone who knows our checksum (recomputed)."""
    arrays = load_npz(path)
    change(arrays)
    save_npz(path, arrays)  # the old checksum with it
    if checksum:
        arrays.pop("checksum")
        save_npz(path, arrays)
        with zipfile.ZipFile(path) as archive:
            arrays["checksum"] = np.array(checkpoint._entries_checksum(archive.infolist()), dtype=np.uint32)
        save_npz(path, arrays)


def _flip_bit(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _both_slots(action):
    return lambda directory: [action(directory / f"train-k.{slot}.npz") for slot in "ab"]


def _legacy(directory):
    for slot in "ab":
        (directory / f"train-k.{slot}.npz").unlink()
    (directory / "train-k.history").unlink()
    save_npz(directory / "train-k.npz", {"format_version": np.array(1), "key": np.array("k")})


def _wrong_shape(arrays):
    arrays["optimizer_population"] = arrays["optimizer_population"][:, :-1]


CORRUPTIONS = {
    "truncated": (_both_slots(lambda path: path.write_bytes(path.read_bytes()[:1000])), "unreadable"),
    "empty": (_both_slots(lambda path: path.write_bytes(b"")), "unreadable"),
    "garbage": (_both_slots(lambda path: path.write_bytes(np.random.default_rng(0).bytes(5000))), "unreadable"),
    "one bit of the population": (_both_slots(lambda path: _flip_bit(path, -3000)), "unreadable"),
    "re-saved with another shape": (_both_slots(lambda path: _resave(path, _wrong_shape, checksum=False)),
                                    "changed since it was written"),
    "re-saved with another shape and its checksum": (_both_slots(lambda path: _resave(path, _wrong_shape)),
                                                     "malformed state"),
    "another run's": (_both_slots(lambda path: _resave(path, lambda a: a.update(key=np.array("other")))),
                      "belongs to another run"),
    "another file": (_both_slots(lambda path: save_npz(path, {"weights": np.zeros(3)})), "not a checkpoint of this format"),
    "history truncated": (lambda directory: (directory / "train-k.history").write_bytes(b"\0" * 100), "history"),
    "history changed": (lambda directory: _flip_bit(directory / "train-k.history", 20), "history"),  # row 0: both slots
    "history missing": (lambda directory: (directory / "train-k.history").unlink(), "history"),
    "the format before slots": (_legacy, "older evomlp"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_set_aside_with_one_line_and_never_resumed(small_problem, tmp_path, reference, corruption):
    checkpointed_run(small_problem, tmp_path)
    corrupt, reason = CORRUPTIONS[corruption]
    corrupt(tmp_path)
    before = sorted(path.name for path in tmp_path.glob("train-k*"))
    result, checkpoints, resumed_from = resume(small_problem, tmp_path)  # never raises
    assert resumed_from is None
    message = checkpoints.set_aside
    assert "\n" not in message and reason in message, message
    assert message.startswith(str(tmp_path / "train-k.")) and message.endswith("starting afresh")
    kept = tmp_path / "set-aside" / "train-k-1"
    assert f"moved to {kept}/" in message
    assert sorted(path.name for path in kept.iterdir()) == before  # kept for inspection
    assert not list(tmp_path.glob("train-k*"))
    assert same_run(result, reference)  # the fresh run


@pytest.mark.parametrize("change, reason", [
    ({"code": {"evomlp/x.py": "1"}}, "made by other code (evomlp/x.py changed since)"),
    ({"code": {"evomlp/x.py": "0", "stages/new.py": "2"}}, "made by other code (stages/new.py changed since)"),
    ({"versions": {"numpy": "2"}}, "made with numpy 1, this run has 2"),
    ({"blas": ["openblas 0.3.30 SkylakeX"]}, "made with other numerical kernels (blas"),
    ({"numpy_simd": "AVX512_SPR"}, "made with other numerical kernels (numpy_simd"),
])
def test_a_checkpoint_of_other_code_or_libraries_is_set_aside(small_problem, tmp_path, reference, change, reason):
    checkpointed_run(small_problem, tmp_path)
    result, checkpoints, resumed_from = resume(small_problem, tmp_path, provenance=dict(PROVENANCE, **change))
    assert resumed_from is None and reason in checkpoints.set_aside
    assert same_run(result, reference)


def test_provenance_covers_every_source_file_and_the_numerical_libraries(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc.py").write_text("")
    made = provenance([tmp_path / "pkg"])
    assert sorted(made["code"]) == ["pkg/a.py", "pkg/sub/b.py"]
    assert set(made["versions"]) == {"python", "numpy", "scipy", "numba", "scikit-learn"}
    assert any(entry.startswith("openblas") for entry in made["blas"])
    (tmp_path / "pkg" / "sub" / "b.py").write_text("y = 3\n")
    assert checkpoint.provenance_difference(made, provenance([tmp_path / "pkg"])) == "made by other code (pkg/sub/b.py changed since)"


def test_only_the_newest_set_aside_checkpoints_are_kept(small_problem, tmp_path):
    for _ in range(5):
        checkpointed_run(small_problem, tmp_path, generations=2)
        resume(small_problem, tmp_path, provenance=dict(PROVENANCE, versions={"numpy": "other"}), generations=2)
    assert sorted(path.name for path in (tmp_path / "set-aside").iterdir()) == ["train-k-3", "train-k-4", "train-k-5"]


def test_finish_removes_the_runs_files_and_other_keys_but_not_what_is_set_aside(small_problem, tmp_path):
    checkpoints = checkpointed_run(small_problem, tmp_path, generations=3)
    others = ["train-old.a.npz", "train-old.history", "train-older.npz", ".train-older.npz.k3j_9x0a.tmp"]
    for name in others:
        (tmp_path / name).write_bytes(b"stale")
    (tmp_path / "train.lock").write_text("1\n")
    (tmp_path / "set-aside" / "train-x-1").mkdir(parents=True)
    removed = checkpoints.finish()
    assert sorted(path.name for path in removed) == sorted(others + ["train-k.a.npz", "train-k.b.npz", "train-k.history"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["set-aside", "train.lock"]


@pytest.mark.parametrize("strategy", ["rand1bin", "jade"])
def test_checkpoint_size_stays_flat_in_run_length(small_problem, tmp_path, strategy):
    sizes = {}
    for generations in (10, 200):
        directory = tmp_path / str(generations)
        checkpointed_run(small_problem, directory, generations=generations, strategy=strategy)
        sizes[generations] = (directory / "train-k.a.npz").stat().st_size, (directory / "train-k.history").stat().st_size
        assert sizes[generations][1] == ROW_BYTES * (generations + 1)  # the history: a fixed-size row a generation
    # the slot: the same arrays (the bit generator's state, as JSON, may take a digit more or less)
    assert abs(sizes[10][0] - sizes[200][0]) <= 4 * 8


def test_writes_are_skipped_to_keep_their_share_of_the_time_but_never_a_durable_one(small_problem, tmp_path, monkeypatch):
    clock = {"now": 100.0}

    def perf_counter():
        clock["now"] += 0.0005  # read at the start and the end of a write: every write "takes" 0.5 ms
        return clock["now"]

    monkeypatch.setattr(checkpoint, "_clock", perf_counter)
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=3, **SETTINGS)
    state = trainer.start(population, rng)
    checkpoints = Checkpoints(tmp_path, "train", "k", PROVENANCE, write_share=0.1)
    assert checkpoints.save(state, trainer.optimizer)  # 0.5 ms: the next may start 5 ms later
    trainer.step(state)
    assert not checkpoints.save(state, trainer.optimizer)
    assert checkpoints.saved_generation == 0
    assert checkpoints.save(state, trainer.optimizer, durable=True) and checkpoints.saved_generation == 1
    clock["now"] += 0.005
    trainer.step(state)
    assert checkpoints.save(state, trainer.optimizer) and checkpoints.saved_generation == 2
    loaded = Checkpoints(tmp_path, "train", "k", PROVENANCE).load(trainer.optimizer, population.shape[1])
    assert loaded.optimizer.generation == 2 and loaded.history == state.history


def test_a_disk_error_while_saving_is_one_line_naming_the_folder(small_problem, tmp_path):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=3, **SETTINGS)
    state = trainer.start(population, rng)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the checkpoints would go")
    with pytest.raises(EvomlpError) as error:
        Checkpoints(blocked, "train", "k", PROVENANCE).save(state, trainer.optimizer)
    assert str(error.value).startswith(f"{blocked}: cannot write the checkpoint (") and "\n" not in str(error.value)
