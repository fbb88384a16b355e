import os
import signal

import numpy as np
import pytest

from evomlp.checkpoint import Checkpoints, checkpoint_key
from evomlp.de import make_optimizer
from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.network import initial_population, per_weight
from evomlp.trainer import Stopped, TrainConfig, Trainer
from evomlp.training import stop_message

PROVENANCE = {"code": {"evomlp/x.py": "0"}, "versions": {"numpy": "1"}, "blas": [], "numpy_simd": "X"}


def make_trainer(small_problem, checkpoint=None, strategy="rand1bin", budget=0, **config):
    spec, (X, y), (X_val, y_val) = small_problem
    bound = per_weight(spec, 3.0)
    optimizer = make_optimizer(strategy, -bound, bound, mutation=0.6, crossover_rate=0.5,
                               max_evaluations=budget or config.get("max_evaluations", 0))
    problem = FitnessProblem(spec, X, y, l2=config.pop("l2", 0.0))
    scoring = FitnessProblem(spec, X, y)
    validation = FitnessProblem(spec, X_val, y_val)
    settings = dict(max_generations=40) | config
    trainer = Trainer(optimizer, PopulationEvaluator(problem), validation, scoring, TrainConfig(**settings), checkpoint=checkpoint)
    rng = np.random.default_rng(7)
    population = initial_population(spec, rng, 12, "glorot", 1.0, -bound, bound)
    return trainer, population, rng, validation


def test_the_model_kept_is_the_best_by_validation_loss(small_problem):
    trainer, population, rng, validation = make_trainer(small_problem, max_generations=60)
    result = trainer.run(trainer.start(population, rng))
    losses = [row["validation_loss"] for row in result.history]
    best_row = int(np.argmin(losses))
    assert result.best_generation == result.history[best_row]["generation"]
    assert validation.loss_and_accuracy(result.weights[None])[0][0] == pytest.approx(min(losses), rel=1e-12)
    # the training fitness keeps improving after the selected generation; the model does not follow it
    assert result.history[-1]["best_fitness"] <= result.history[best_row]["best_fitness"]
    assert [row["generation"] for row in result.history] == list(range(61))


def test_progress_is_reported_every_report_every_generations_with_the_model_selected_so_far(small_problem):
    reports = []
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=23, report_every=5)
    trainer.report = lambda state: reports.append(Trainer.progress_metrics(state))
    result = trainer.run(trainer.start(population, rng))
    assert [report["generations"] for report in reports] == [5, 10, 15, 20]
    rows = {row["generation"]: row for row in result.history}
    for report in reports:
        seen = [row for row in result.history if row["generation"] <= report["generations"]]
        best = min(seen, key=lambda row: row["validation_loss"])  # the first on ties, as the trainer
        assert report["best_generation"] == best["generation"]
        assert report["validation_loss"] == best["validation_loss"]
        assert report["train_loss"] == rows[report["best_generation"]]["train_loss"]
        assert report["validation_accuracy"] == best["validation_accuracy"]
        assert report["evaluations"] == rows[report["generations"]]["n_evaluations"]
    start = Trainer.progress_metrics(trainer.start(population, np.random.default_rng(7)))
    assert start["generations"] == start["best_generation"] == 0  # before any generation: the initial best


def test_patience_stops_after_that_many_generations_without_improvement(small_problem):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=10_000, patience=5)
    result = trainer.run(trainer.start(population, rng))
    assert result.stop_reason == "patience"
    assert result.n_generations == result.best_generation + 5
    losses = [row["validation_loss"] for row in result.history]
    assert min(losses[-5:]) >= min(losses[:-5])


def test_max_evaluations_is_never_exceeded(small_problem):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=10_000, max_evaluations=200)
    result = trainer.run(trainer.start(population, rng))
    assert result.stop_reason == "max_evaluations"
    assert 200 - 12 < result.n_evaluations <= 200
    assert result.n_evaluations == 12 * (result.n_generations + 1)


def test_minibatch_compares_parents_and_trials_on_the_same_rows(small_problem):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=5, minibatch_size=30)
    calls = []

    class Recording(PopulationEvaluator):  # records what it is asked to evaluate
        def __call__(self, pop, rows=None):
            calls.append((pop.shape[0], None if rows is None else rows.copy()))
            return super().__call__(pop, rows)

    trainer.evaluate = Recording(trainer.evaluate.problem)
    result = trainer.run(trainer.start(population, rng))
    assert [size for size, _ in calls[1:]] == [24] * 5  # parents + trials together
    assert all(len(rows) == 30 and np.all(np.diff(rows) > 0) for _, rows in calls)
    assert len({tuple(rows) for _, rows in calls}) == 6  # a new minibatch every generation
    assert result.n_evaluations == 12 + 5 * 24


@pytest.mark.parametrize("strategy", ["rand1bin", "jade", "shade", "lshade", "jso"])
def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(small_problem, tmp_path, strategy):
    # a budget makes L-SHADE and jSO shrink their population and move through their stages
    settings = dict(strategy=strategy, budget=12 * 31, l2=1e-3)
    reference_trainer, population, rng, _ = make_trainer(small_problem, max_generations=30, **settings)
    reference = reference_trainer.run(reference_trainer.start(population, rng))

    checkpoints = Checkpoints(tmp_path, "run", "k", PROVENANCE, write_share=None)
    saved = []
    trainer, population, rng, _ = make_trainer(
        small_problem, checkpoint=lambda state, durable: saved.append(checkpoints.save(state, trainer.optimizer, durable)),
        max_generations=13, checkpoint_every=13, **settings,
    )
    trainer.run(trainer.start(population, rng))
    assert saved == [True]
    resumed_trainer, _, _, _ = make_trainer(small_problem, max_generations=30, **settings)
    state = Checkpoints(tmp_path, "run", "k", PROVENANCE).load(resumed_trainer.optimizer, population.shape[1])
    assert state.optimizer.generation == 13
    resumed = resumed_trainer.run(state)
    assert np.array_equal(resumed.weights, reference.weights)
    assert resumed.history == reference.history
    assert resumed.n_evaluations == reference.n_evaluations


def test_checkpoint_key_changes_with_settings_and_data(tmp_path):
    data = tmp_path / "train.npz"
    data.write_bytes(b"rows")
    key = checkpoint_key({"seed": 1}, [data])
    assert key == checkpoint_key({"seed": 1}, [data])
    assert key != checkpoint_key({"seed": 2}, [data])
    data.write_bytes(b"other rows")
    assert key != checkpoint_key({"seed": 1}, [data])


def test_nonfinite_fitness_is_counted_and_never_selected(small_problem):
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=5)

    class Poisoned(PopulationEvaluator):
        def __call__(self, pop, rows=None):
            fitness = super().__call__(pop, rows)
            fitness[::3] = np.nan
            return fitness

    trainer.evaluate = Poisoned(trainer.evaluate.problem)
    result = trainer.run(trainer.start(population, rng))
    assert result.n_nonfinite == 4 * 6
    assert all(np.isfinite(row["best_fitness"]) for row in result.history)


def test_resume_under_other_workers_and_backends_gives_the_same_bytes(small_problem, tmp_path):
    """Interrupted with 4 loky workers, resumed with 2 threads: the same run as in-process throughout."""
    spec, (X, y), _ = small_problem
    reference_trainer, population, rng, _ = make_trainer(small_problem, max_generations=20, l2=1e-3)
    reference = reference_trainer.run(reference_trainer.start(population, rng))

    checkpoints = Checkpoints(tmp_path, "run", "k", PROVENANCE, write_share=None)

    def with_evaluator(n_jobs, backend, generations, checkpoint=None):
        trainer, population, rng, _ = make_trainer(small_problem, checkpoint=checkpoint, max_generations=generations,
                                                   checkpoint_every=7 if checkpoint else 0, l2=1e-3)
        trainer.evaluate = PopulationEvaluator(trainer.evaluate.problem, n_jobs=n_jobs, backend=backend)
        return trainer, population, rng

    first, population, rng = with_evaluator(
        4, "loky", 7, checkpoint=lambda state, durable: checkpoints.save(state, first.optimizer, durable))
    with first.evaluate:
        first.run(first.start(population, rng))
    second, _, _ = with_evaluator(2, "threading", 20)
    with second.evaluate:
        resumed = second.run(Checkpoints(tmp_path, "run", "k", PROVENANCE).load(second.optimizer, spec.n_weights))
    assert np.array_equal(resumed.weights, reference.weights)
    assert resumed.history == reference.history


# -- stops: signals and a lost parent end a run at the end of a generation, saved ---------------
def checkpointed(small_problem, tmp_path, **config):
    """A trainer saving every generation into fresh checkpoints (no write skipped), and a log of
    ``(generation, durable)`` per save."""
    checkpoints = Checkpoints(tmp_path, "train", "k", PROVENANCE, write_share=None)
    saves = []

    def save(state, durable):
        saves.append((state.optimizer.generation, durable))
        checkpoints.save(state, trainer.optimizer, durable)

    trainer, population, rng, _ = make_trainer(small_problem, checkpoint=save, checkpoint_every=1, **config)
    return trainer, trainer.start(population, rng), checkpoints, saves


def test_stop_when_ends_the_run_after_that_generation_saved_and_durable(small_problem, tmp_path):
    trainer, state, checkpoints, saves = checkpointed(small_problem, tmp_path, max_generations=40)
    trainer.stop_when = lambda: "its parent process (dvc, pid 1234) exited" if state.optimizer.generation >= 7 else ""
    with pytest.raises(Stopped) as stopped:
        trainer.run(state)
    assert (stopped.value.completed, stopped.value.exit_code) == (True, 129)
    assert saves[-1] == (7, True) and checkpoints.saved_generation == 7 == state.optimizer.generation
    assert stop_message(stopped.value, checkpoints) == (
        "train: stopped at the end of generation 7 (its parent process (dvc, pid 1234) exited); generation 7 is "
        f"saved in {tmp_path}/train-k.a.npz, the next run resumes from it; no outputs written")
    assert Checkpoints(tmp_path, "train", "k", PROVENANCE).load(trainer.optimizer, state.best_weights.size).optimizer.generation == 7


def test_a_stop_after_the_last_generation_still_saves_and_writes_nothing(small_problem, tmp_path):
    trainer, state, checkpoints, saves = checkpointed(small_problem, tmp_path, max_generations=5)
    calls = []  # asked at the end of generations 1..5, then once more when the run is done
    trainer.stop_when = lambda: "gone" if calls.append(state.optimizer.generation) or len(calls) > 5 else ""
    with pytest.raises(Stopped):
        trainer.run(state)
    assert calls == [1, 2, 3, 4, 5, 5]
    assert saves[-2:] == [(5, False), (5, True)] and checkpoints.saved_generation == 5


@pytest.mark.parametrize("name, exit_code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_double_signal_during_a_save_lets_it_finish_and_says_the_generation_saved(small_problem, tmp_path, name, exit_code):
    trainer, state, checkpoints, saves = checkpointed(small_problem, tmp_path, max_generations=40)
    number = getattr(signal, name)
    save = trainer.checkpoint

    def save_and_signal_twice(state, durable):
        save(state, durable)
        if state.optimizer.generation == 3:  # two Ctrl-C a few ms apart, while the checkpoint is written
            os.kill(os.getpid(), number)
            os.kill(os.getpid(), number)

    trainer.checkpoint = save_and_signal_twice
    before = signal.getsignal(number)
    with pytest.raises(Stopped) as stopped:
        trainer.run(state)
    assert signal.getsignal(number) == before  # the run's handlers are gone with it
    assert (stopped.value.completed, stopped.value.exit_code) == (True, exit_code)
    assert saves[-2:] == [(3, False), (4, True)]  # the next generation completed, then saved, then stopped
    assert checkpoints.saved_generation == 4 == state.optimizer.generation
    message = stop_message(stopped.value, checkpoints)
    assert "end of generation 4" in message and "generation 4 is saved in" in message


def test_a_second_ctrl_c_in_the_middle_of_a_generation_stops_at_once_and_says_what_the_file_holds(small_problem, tmp_path):
    trainer, state, checkpoints, saves = checkpointed(small_problem, tmp_path, max_generations=40)

    class Interrupted(PopulationEvaluator):  # the user presses Ctrl-C twice during generation 6's evaluation
        def evaluate_plan(self, plan, rows=None):
            if state.optimizer.generation == 5:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return super().evaluate_plan(plan, rows)

    trainer.evaluate = Interrupted(trainer.evaluate.problem)
    with pytest.raises(Stopped) as stopped:
        trainer.run(state)
    assert not stopped.value.completed and stopped.value.exit_code == 130
    assert saves[-1] == (5, False) and checkpoints.saved_generation == 5
    message = stop_message(stopped.value, checkpoints)
    assert message.startswith("train: stopped in the middle of a generation (Ctrl-C (SIGINT), a second stop request)")
    assert "generation 5 is saved in" in message


def test_without_a_checkpoint_saved_yet_the_message_says_the_next_run_starts_afresh(tmp_path):
    message = stop_message(KeyboardInterrupt(), Checkpoints(tmp_path, "train", "k", PROVENANCE))
    assert message == ("train: stopped in the middle of a generation (Ctrl-C (SIGINT)); no generation is saved, the "
                       "next run starts afresh; no outputs written")


def test_the_batched_validation_pass_selects_the_same_model_and_history_as_one_pass_a_generation(small_problem, monkeypatch):
    from evomlp import trainer as trainer_module

    trainer, population, rng, _ = make_trainer(small_problem, max_generations=37)
    batched = trainer.run(trainer.start(population, rng))
    monkeypatch.setattr(trainer_module, "VALIDATION_BATCH", 1)
    trainer, population, rng, _ = make_trainer(small_problem, max_generations=37)
    single = trainer.run(trainer.start(population, rng))
    assert batched.history == single.history and batched.best_generation == single.best_generation
    assert batched.weights.tobytes() == single.weights.tobytes()


def test_the_train_stage_module_loads_neither_dvclive_nor_numba_nor_scipy_at_import(tmp_path):
    import subprocess
    import sys

    code = "import sys, stages.train; print(sorted(m for m in ('dvclive', 'numba', 'scipy', 'sklearn', 'pandas') if m in sys.modules))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
