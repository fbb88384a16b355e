"""The population evaluator: bit-identical fitness whatever runs it, data sent once, ``n_jobs: auto``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import evomlp.evaluation as evaluation
from evomlp.errors import EvomlpError
from evomlp.evaluation import (
    AUTO_MIN_FLOPS,
    FitnessProblem,
    PopulationEvaluator,
    choose_n_jobs,
    weight_square_sums,
    worker_cache_tokens,
)
from evomlp.network import FORWARD_BLOCK_BYTES, MLPSpec, _forward_blocks, apply_activation, forward_population

# the HTTP server of a LocalCluster's scheduler takes another port when 8787 is taken
pytestmark = pytest.mark.filterwarnings("ignore:Port .* is already in use")

SPECS = {
    "binary": MLPSpec(6, (16, 8), ("relu", "tanh"), 1, "binary"),
    "multiclass": MLPSpec(6, (12,), ("elu",), 4, "multiclass"),
    "regression": MLPSpec(6, (10, 5), ("logistic", "relu"), 2, "regression"),
}


def make_problem(task="binary", n_rows=120, dtype="float64", l2=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    spec = SPECS[task]
    X = rng.normal(size=(n_rows, spec.n_inputs))
    if task == "regression":
        y = rng.normal(size=(n_rows, spec.n_outputs))
    else:
        y = rng.integers(0, max(2, spec.n_outputs), size=n_rows)
    return FitnessProblem(spec, X, y, l2=l2, dtype=dtype)


def population(spec, size, seed=1, scale=0.7):
    return np.random.default_rng(seed).normal(scale=scale, size=(size, spec.n_weights))


def naive_forward(spec, pop, X):
    """The textbook forward pass, one individual at a time."""
    out = []
    for vector in pop:
        hidden = X.astype(pop.dtype)
        layers = spec.unpack(vector)
        for index, (W, b) in enumerate(layers):
            hidden = hidden @ W + b
            if index < len(layers) - 1:
                hidden = apply_activation(spec.activations[index], hidden)
        out.append(hidden)
    return np.stack(out)


# -- the forward pass ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_rows", [37, 3000])  # 3000 rows: blocks of rows as well as of individuals
def test_forward_pass_is_independent_of_the_batch(dtype, n_rows):
    spec = MLPSpec(5, (64, 32), ("relu", "relu"), 3, "multiclass")
    X = np.random.default_rng(0).normal(size=(n_rows, 5))
    pop = population(spec, 23).astype(dtype)
    whole = forward_population(spec, pop, X)
    assert whole.dtype == dtype and whole.shape == (23, n_rows, 3)
    for split in ([1] * 23, [7, 9, 7], [22, 1]):
        parts = np.split(pop, np.cumsum(split)[:-1])
        assert np.array_equal(np.concatenate([forward_population(spec, part, X) for part in parts]), whole)
    tolerance = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(whole, naive_forward(spec, pop, X), rtol=tolerance, atol=tolerance)


def test_forward_pass_blocks_rows_when_one_individual_is_bigger_than_a_block():
    spec = MLPSpec(5, (64,), ("relu",), 1, "binary")
    individuals, rows = _forward_blocks(spec, 100_000, 8)
    assert rows * 64 * 8 <= FORWARD_BLOCK_BYTES and individuals == 1


def test_relu_of_the_forward_pass_matches_apply_activation_on_special_values():
    spec = MLPSpec(1, (4,), ("relu",), 1, "regression")
    # W_1 = 1, b_1 chosen to make hidden values -inf, -0.0, 0, nan; W_2 = 1, b_2 = 0
    vector = np.array([1.0, 1.0, 1.0, 1.0, -np.inf, -0.0, 0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    X = np.array([[0.0], [np.nan]])
    hidden = X @ vector[:4].reshape(1, 4) + vector[4:8]
    expected = apply_activation("relu", hidden.copy()) @ vector[8:12].reshape(4, 1) + vector[12:]
    np.testing.assert_array_equal(forward_population(spec, vector[None], X)[0], expected)


# -- bit-identical fitness -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_fitness_is_bitwise_identical_across_n_jobs_backends_and_chunkings(task, dtype):
    problem = make_problem(task, dtype=dtype)
    pop = population(problem.spec, 11)
    reference = problem(pop)
    assert reference.dtype == np.float64 and np.all(np.isfinite(reference))
    one_by_one = np.concatenate([problem(pop[i : i + 1]) for i in range(len(pop))])
    assert np.array_equal(one_by_one, reference)
    uneven = np.concatenate([problem(pop[:2]), problem(pop[2:10]), problem(pop[10:])])
    assert np.array_equal(uneven, reference)
    for n_jobs, backend in [(1, "loky"), (2, "loky"), (3, "loky"), (2, "threading"), (4, "threading")]:
        with PopulationEvaluator(problem, n_jobs, backend) as evaluate:
            for _ in range(2):
                assert np.array_equal(evaluate(pop), reference), (n_jobs, backend)


def test_fitness_does_not_depend_on_the_blas_threads_of_the_caller():
    problem = make_problem("binary", n_rows=400, dtype="float32")
    pop = population(problem.spec, 9)
    with threadpool_limits(limits=1, user_api="blas"):
        one = problem(pop)
    with threadpool_limits(limits=2, user_api="blas"):
        two = problem(pop)
    assert np.array_equal(one, two)



@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "loky"), (2, "threading"), (3, "threading")])
def test_a_plan_is_built_and_evaluated_the_same_way_everywhere(n_jobs, backend):
    from evomlp.de import make_optimizer

    problem = make_problem("multiclass", dtype="float32")
    start = population(problem.spec, 13)
    bound = np.full(problem.spec.n_weights, 2.0)
    optimizer = make_optimizer("currenttopbest1bin", -bound, bound, crossover_rate=0.3)
    state = optimizer.init(start, problem(start), np.random.default_rng(5))
    plan = optimizer.propose(state)
    expected = plan.build()
    with PopulationEvaluator(problem, n_jobs, backend) as evaluate:
        assert np.array_equal(evaluate.build(plan), expected)
        trials, fitness = evaluate.evaluate_plan(plan)
    assert np.array_equal(trials, expected)
    assert np.array_equal(fitness, problem(expected))


def test_threading_runs_pin_blas_to_one_thread_and_give_the_callers_setting_back():
    problem = make_problem("binary", n_rows=400, dtype="float32")
    pop = population(problem.spec, 9)
    reference = problem(pop)

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info_blas()}

    with threadpool_limits(limits=2, user_api="blas"):
        with PopulationEvaluator(problem, 2, "threading") as evaluate:
            assert evaluation._PINNED_RUNS == 1 and blas_threads() == {1}
            assert np.array_equal(evaluate(pop), reference)
        assert evaluation._PINNED_RUNS == 0 and blas_threads() == {2}
        assert np.array_equal(problem(pop), reference)  # limits itself again once the run is over


def test_blas_stays_pinned_until_the_last_of_overlapping_threading_runs_ends():
    problem = make_problem("binary", dtype="float32")

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info_blas()}

    with threadpool_limits(limits=2, user_api="blas"):
        first, second = PopulationEvaluator(problem, 2, "threading"), PopulationEvaluator(problem, 2, "threading")
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # not in reverse order of entry
        assert evaluation._PINNED_RUNS == 1 and blas_threads() == {1}
        second.__exit__(None, None, None)
        assert evaluation._PINNED_RUNS == 0 and blas_threads() == {2}


def threadpool_info_blas():
    from threadpoolctl import threadpool_info

    return [info for info in threadpool_info() if info["user_api"] == "blas"]

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_minibatch_rows_give_the_same_fitness_in_workers(dtype):
    problem = make_problem("multiclass", dtype=dtype)
    pop = population(problem.spec, 8)
    rows = np.sort(np.random.default_rng(5).choice(problem.n_rows, size=40, replace=False))
    reference = problem(pop, rows)
    assert not np.array_equal(reference, problem(pop))
    for n_jobs, backend in [(2, "loky"), (2, "threading")]:
        with PopulationEvaluator(problem, n_jobs, backend) as evaluate:
            assert np.array_equal(evaluate(pop, rows), reference)


def test_big_chunks_go_through_the_shared_file_with_the_same_results(monkeypatch):
    monkeypatch.setattr(evaluation, "SHARED_CHUNK_BYTES", 0)
    for dtype in ("float64", "float32"):
        problem = make_problem("binary", dtype=dtype)
        pop = population(problem.spec, 10)
        reference = problem(pop)
        with PopulationEvaluator(problem, 2) as evaluate:
            first = evaluate(pop)
            shared = evaluate._shared
            assert shared is not None and shared.dtype == dtype
            token = shared.token
            # unlinked at once: a kill of this process can leave nothing behind in /dev/shm
            assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"evomlp-{os.getpid()}-")]
            second = evaluate(pop[:7])  # a smaller population reuses the file
            assert evaluate._shared is shared
            bigger = population(problem.spec, 13, seed=4)
            third = evaluate(bigger)  # a bigger one gets a new file, maybe under the same /proc path
            assert evaluate._shared.token != token
        assert evaluate._shared is None
        assert np.array_equal(first, reference)
        assert np.array_equal(second, reference[:7])
        assert np.array_equal(third, problem(bigger))  # the worker did not read the old file


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nonfinite_fitness_is_reported_the_same_way_everywhere():
    problem = make_problem("regression", l2=0.0)
    pop = population(problem.spec, 6)
    pop[1] *= 1e200  # overflows to inf / nan
    pop[4, 0] = np.nan
    reference = problem(pop)
    assert not np.isfinite(reference[1]) and np.isnan(reference[4])
    assert np.all(np.isfinite(np.delete(reference, [1, 4])))
    for n_jobs, backend in [(2, "loky"), (3, "threading")]:
        with PopulationEvaluator(problem, n_jobs, backend) as evaluate:
            assert np.array_equal(evaluate(pop), reference, equal_nan=True)


def test_l2_penalty_is_added_in_float64_after_the_loss_and_ignores_other_rows():
    problem = make_problem("binary", dtype="float32", l2=0.5)
    pop = population(problem.spec, 7)
    mask = np.zeros(problem.spec.n_weights, dtype=bool)
    for w, _ in problem.spec.layer_offsets():
        mask[w] = True
    fitness = problem(pop)
    # l2 times the raw sum, whatever the number of rows (120 here)
    np.testing.assert_allclose(fitness, problem.loss(pop) + 0.5 * (pop[:, mask] ** 2).sum(axis=1), rtol=1e-14)
    assert np.array_equal(fitness, problem.loss(pop) + 0.5 * weight_square_sums(problem.spec, pop))
    assert make_problem("binary", n_rows=30, l2=0.5).penalty_per_square == problem.penalty_per_square == 0.5
    # the same bits for a row alone, at another offset, or in another population
    sums = weight_square_sums(problem.spec, pop)
    for index in range(len(pop)):
        assert weight_square_sums(problem.spec, pop[index : index + 1])[0] == sums[index]
        assert weight_square_sums(problem.spec, np.ascontiguousarray(pop[index:]))[0] == sums[index]
    shifted = np.empty(pop.size + 1)[1:].reshape(pop.shape)  # misaligned by one element
    shifted[...] = pop
    assert np.array_equal(weight_square_sums(problem.spec, shifted), sums)


@pytest.mark.parametrize("minibatch_size", [0, 30])
def test_a_training_run_is_identical_whatever_evaluates_it(small_problem, minibatch_size):
    from evomlp.de import make_optimizer
    from evomlp.trainer import TrainConfig, Trainer

    spec, (X, y), (X_val, y_val) = small_problem
    results = []
    for n_jobs, backend in [(1, "loky"), (2, "loky"), (3, "threading")]:
        bound = np.full(spec.n_weights, 3.0)
        optimizer = make_optimizer("rand1bin", -bound, bound, mutation=0.6, crossover_rate=0.7)
        problem = FitnessProblem(spec, X, y, l2=1e-3, dtype="float32")
        scoring = FitnessProblem(spec, X, y, dtype="float32")
        validation = FitnessProblem(spec, X_val, y_val, dtype="float32")
        rng = np.random.default_rng(7)
        start = rng.uniform(-1, 1, size=(12, spec.n_weights))
        config = TrainConfig(max_generations=8, minibatch_size=minibatch_size)
        with PopulationEvaluator(problem, n_jobs, backend) as evaluate:
            trainer = Trainer(optimizer, evaluate, validation, scoring, config)
            results.append(trainer.run(trainer.start(start, rng)))
    for other in results[1:]:
        assert np.array_equal(other.weights, results[0].weights)
        assert other.history == results[0].history


# -- the data goes to each worker once -------------------------------------------------------
def test_training_data_is_sent_to_a_worker_once_per_run(monkeypatch):
    pickled = []

    def counting_getstate(self):
        pickled.append(self.token)
        return self.__dict__.copy()

    monkeypatch.setattr(FitnessProblem, "__getstate__", counting_getstate, raising=False)
    problem = make_problem("binary", n_rows=2000)
    pop = population(problem.spec, 12)
    reference = problem(pop)
    with PopulationEvaluator(problem, 2, "loky") as evaluate:  # the caller + one worker process
        for _ in range(10):
            assert np.array_equal(evaluate(pop), reference)
        assert evaluate.n_calls == 10
        assert evaluate.n_problem_sends == 1
        assert pickled == [problem.token]
        tokens = evaluate._processes.submit(worker_cache_tokens).result()
        assert problem.token in tokens
    # A worker that lost the problem (e.g. restarted after an idle timeout) asks for it again.
    with PopulationEvaluator(problem, 2, "loky") as evaluate:
        evaluate._sent_once = True  # as if a previous call had sent it: the worker has it already
        assert np.array_equal(evaluate(pop), reference) and evaluate.n_problem_sends == 0
        other = make_problem("binary", n_rows=2000, seed=3)
        evaluate.problem = other
        assert np.array_equal(evaluate(pop), other(pop))  # the worker answers "missing", gets it
        assert evaluate.n_problem_sends == 1 and pickled == [problem.token, other.token]


def _loky_memory_limit():
    from joblib.externals.loky import process_executor

    return process_executor._MAX_MEMORY_LEAK_SIZE


def test_process_workers_are_not_restarted_for_the_memory_they_keep():
    problem = make_problem("binary")
    with PopulationEvaluator(problem, 2, "loky") as evaluate:
        evaluate(population(problem.spec, 4))
        assert evaluate._processes.submit(_loky_memory_limit).result() >= evaluation.WORKER_MEMORY_GROWTH


def test_threads_share_the_problem_without_pickling(monkeypatch):
    def refuse(self):
        raise AssertionError("the threading backend must not pickle the problem")

    monkeypatch.setattr(FitnessProblem, "__getstate__", refuse, raising=False)
    problem = make_problem("binary")
    pop = population(problem.spec, 9)
    with PopulationEvaluator(problem, 3, "threading") as evaluate:
        assert np.array_equal(evaluate(pop), problem(pop))
        assert evaluate.n_problem_sends == 0


def test_token_survives_pickling_and_differs_between_problems():
    import pickle

    problem = make_problem()
    assert pickle.loads(pickle.dumps(problem)).token == problem.token
    assert make_problem().token != problem.token


def test_problem_rejects_an_unknown_dtype():
    with pytest.raises(EvomlpError, match="float16"):
        make_problem(dtype="float16")


# -- n_jobs: auto ----------------------------------------------------------------------------
def sized_problem(flops_per_evaluation, dtype="float64"):
    """A 10-10-1 network (200 FLOPs per row) on as many rows as it takes."""
    spec = MLPSpec(10, (10,), ("relu",), 1, "binary")
    n_rows = flops_per_evaluation // 220 + 1
    problem = FitnessProblem(spec, np.zeros((1, 10)), np.zeros(1, dtype=int), dtype=dtype)
    problem.X = np.zeros((n_rows, 10), dtype=dtype)  # only the shape matters here
    return problem


def test_choose_n_jobs_thresholds():
    per_eval = 10_000_000
    problem = sized_problem(per_eval)
    flops = problem.flops_per_evaluation
    threshold = int(np.ceil(AUTO_MIN_FLOPS["loky"][0] / flops))
    assert choose_n_jobs(problem, threshold - 1, cores=2) == 1
    assert choose_n_jobs(problem, threshold, cores=2) == 2
    assert choose_n_jobs(problem, 10 * threshold, cores=1) == 1
    assert choose_n_jobs(problem, 10 * threshold, cores=8) >= 2
    assert choose_n_jobs(problem, 10 * threshold, cores=8) <= 8
    # float32 counts half: it needs twice the population to go parallel
    problem32 = sized_problem(per_eval, "float32")
    assert choose_n_jobs(problem32, threshold, cores=2) == 1
    assert choose_n_jobs(problem32, 2 * threshold, cores=2) == 2
    # never fewer than AUTO_MIN_INDIVIDUALS_PER_WORKER individuals per worker
    huge = sized_problem(10 * int(AUTO_MIN_FLOPS["loky"][0]))
    assert choose_n_jobs(huge, 2 * evaluation.AUTO_MIN_INDIVIDUALS_PER_WORKER - 1, cores=4) == 1
    assert choose_n_jobs(huge, 2 * evaluation.AUTO_MIN_INDIVIDUALS_PER_WORKER, cores=4) == 2
    assert choose_n_jobs(huge, 1, cores=4) == 1


def test_default_problem_runs_in_process_and_x100_rows_in_workers():
    spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
    default = FitnessProblem(spec, np.zeros((318, 30)), np.zeros(318, dtype=int))
    x100 = FitnessProblem(spec, np.zeros((31_800, 30)), np.zeros(31_800, dtype=int), dtype="float32")
    assert choose_n_jobs(default, 50, cores=2) == 1
    assert choose_n_jobs(x100, 50, cores=2) == 2


def test_threads_pay_from_much_less_work_than_processes():
    spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
    default = FitnessProblem(spec, np.zeros((318, 30)), np.zeros(318, dtype=int), dtype="float32")
    assert choose_n_jobs(default, 50, cores=2, backend="loky") == 1
    assert choose_n_jobs(default, 50, cores=2, backend="threading") == 2
    small = FitnessProblem(MLPSpec(30, (16,), ("relu",), 1, "binary"), np.zeros((20, 30)), np.zeros(20, dtype=int))
    assert choose_n_jobs(small, 20, cores=2, backend="threading") == 1
    first, _ = evaluation.AUTO_MIN_FLOPS["threading"]
    assert AUTO_MIN_FLOPS["loky"][0] / first >= 10  # a thread hand-over is far cheaper than a process's


def test_auto_n_jobs_in_the_evaluator():
    problem = make_problem()
    assert PopulationEvaluator(problem, "auto", population_size=20).n_jobs == choose_n_jobs(problem, 20)
    threaded = PopulationEvaluator(problem, "auto", "threading", population_size=200)
    assert threaded.n_jobs == choose_n_jobs(problem, 200, backend="threading")
    with pytest.raises(EvomlpError, match="population size"):
        PopulationEvaluator(problem, "auto")
    with pytest.raises(EvomlpError, match="auto"):
        PopulationEvaluator(problem, "many")
    assert PopulationEvaluator(problem, 3).n_jobs == 3


class _DiesInWorkers(FitnessProblem):
    """Kills the process that evaluates it, unless that is the test process itself."""

    def loss(self, population, rows=None):
        if os.getpid() != self.parent_pid:
            os._exit(7)
        return super().loss(population, rows)


def test_a_worker_that_dies_ends_the_evaluation_with_a_clear_error_not_a_hang():
    spec = MLPSpec(3, (4,), ("tanh",), 1, "binary")
    rng = np.random.default_rng(0)
    problem = _DiesInWorkers(spec, rng.normal(size=(20, 3)), rng.integers(0, 2, 20))
    problem.parent_pid = os.getpid()
    population = rng.normal(size=(8, spec.n_weights))
    with pytest.raises(EvomlpError, match="worker process died"):
        with PopulationEvaluator(problem, n_jobs=2, backend="loky") as evaluate:
            evaluate(population)
    # the next run starts a fresh pool and works
    healthy = FitnessProblem(spec, problem.X, problem.y)
    with PopulationEvaluator(healthy, n_jobs=2, backend="loky") as evaluate:
        np.testing.assert_array_equal(evaluate(population), healthy(population))


def _ignores_sigint(pid):
    with open(f"/proc/{pid}/status") as status:
        ignored = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return bool(ignored >> (signal.SIGINT - 1) & 1)


def test_process_workers_ignore_ctrl_c_from_their_start():
    problem = make_problem("binary")
    pop = population(problem.spec, 12)
    reference = problem(pop)
    evaluation.shutdown_workers()  # workers started by this run
    with PopulationEvaluator(problem, n_jobs=3, backend="loky") as evaluate:
        assert np.array_equal(evaluate(pop), reference)
        workers = list(evaluate._processes._processes)
        assert len(workers) == 2
        # started ignoring it (inherited, not set by the worker later), so no start-up window
        assert all(_ignores_sigint(pid) for pid in workers)
        for pid in workers:  # what a Ctrl-C sends to every process of the terminal's group
            os.kill(pid, signal.SIGINT)
        assert np.array_equal(evaluate(pop), reference)
        assert list(evaluate._processes._processes) == workers
    assert not _ignores_sigint(os.getpid())  # the calling process keeps its Ctrl-C


KILLED_EVALUATOR = """
import os, sys
import evomlp
import numpy as np
from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.network import MLPSpec
spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
rng = np.random.default_rng(0)
problem = FitnessProblem(spec, rng.normal(size=(60, 30)), rng.integers(0, 2, 60), dtype="float32")
pop = rng.normal(size=(300, spec.n_weights))  # chunks of 2.4 MB: through the shared file
with PopulationEvaluator(problem, 2, "loky") as evaluate:
    evaluate(pop)
    print(*evaluate._processes._processes, flush=True)
    while True:
        evaluate(pop)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_training_process_leaves_no_worker_and_nothing_in_dev_shm(kill):
    process = subprocess.Popen([sys.executable, "-c", KILLED_EVALUATOR], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[1])
    workers = [int(pid) for pid in process.stdout.readline().split()]
    assert workers and process.poll() is None, "the evaluator did not start its worker"

    def ours():
        return [name for name in os.listdir("/dev/shm") if f"-{process.pid}-" in name and "loky" not in name]

    assert ours() == []  # the shared population file has no name, even while in use
    process.send_signal(kill)
    process.wait(timeout=60)
    deadline = time.monotonic() + 120  # generous: a loaded machine; the event ends the wait
    while any(_alive(pid) for pid in workers) or [n for n in os.listdir("/dev/shm") if f"loky-{process.pid}-" in n]:
        assert time.monotonic() < deadline, f"worker {workers} or loky's semaphores outlived the killed process"
        time.sleep(0.05)
    assert ours() == []


# -- dask.distributed -------------------------------------------------------------------------
def _dask_problem(n_rows=100, seed=4):
    spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n_rows, 30)), rng.integers(0, 2, n_rows)
    return FitnessProblem(spec, X, y, l2=1e-3, dtype="float32")


@pytest.fixture(scope="module")
def two_worker_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


@pytest.mark.parametrize("n_jobs", [1, 2, 5, -1])
def test_dask_gives_the_same_bits_for_any_number_of_chunks(two_worker_cluster, n_jobs):
    """The multi-machine path, by address: every chunking and a minibatch give the local bytes."""
    problem = _dask_problem()
    population = np.random.default_rng(4).normal(scale=0.3, size=(13, problem.spec.n_weights))
    rows = np.random.default_rng(5).choice(problem.n_rows, 30, replace=False)
    expected = problem(population)
    from evomlp.de import make_optimizer

    bound = np.full(problem.spec.n_weights, 1.0)
    optimizer = make_optimizer("jade", -bound, bound)
    plan = optimizer.propose(optimizer.init(population, expected, np.random.default_rng(5)))
    trials = plan.build()
    evaluator = PopulationEvaluator(problem, n_jobs, "dask", two_worker_cluster.scheduler_address)
    with evaluator as evaluate:
        assert evaluate.n_jobs == (2 if n_jobs == -1 else n_jobs)  # -1: the cluster's two worker threads
        first = evaluate(population)
        second = evaluate(population[::-1].copy())
        minibatch = evaluate(population, rows)
        planned_trials, planned_fitness = evaluate.evaluate_plan(plan)
    assert np.array_equal(first, expected)
    assert np.array_equal(second, expected[::-1])
    assert np.array_equal(minibatch, problem(population, rows))
    assert np.array_equal(planned_trials, trials) and np.array_equal(planned_fitness, problem(trials))
    assert evaluator.n_problem_sends == 2  # once per worker, not per call


def _transfers(dask_worker):
    return dask_worker.state.transfer_incoming_count_total


def test_dask_sends_the_data_once_per_worker_and_keeps_it_there(two_worker_cluster):
    """Each worker holds its own copy for the whole run: dask's memory manager, which drops extra
    replicas of a key no task waits for, finds none, so no generation fetches the data again."""
    from distributed import Client

    problem = _dask_problem(n_rows=400)
    population = np.random.default_rng(1).normal(scale=0.3, size=(8, problem.spec.n_weights))
    with Client(two_worker_cluster.scheduler_address, set_as_default=False) as client:
        with PopulationEvaluator(problem, 2, "dask", two_worker_cluster.scheduler_address) as evaluate:
            copies = evaluate._dask._copies
            holders = client.who_has(list(copies.values()))
            assert sorted(copies) == sorted(client.nthreads())
            assert all(holders[future.key] == (worker,) for worker, future in copies.items())
            transfers = client.run(_transfers)
            for _ in range(3):
                client.amm.run_once()  # what the scheduler does every 2 s
                assert np.array_equal(evaluate(population), problem(population))
            assert client.run(_transfers) == transfers  # nothing fetched from another worker
            assert client.who_has(list(copies.values())) == holders
            assert evaluate.n_problem_sends == 2


class _RefusesHere(FitnessProblem):
    """Fails if evaluated in the process that built it: the work must run on a dask worker."""

    def loss(self, population, rows=None):
        assert os.getpid() != self.parent_pid, "evaluated in the client, not on a worker"
        return super().loss(population, rows)


def test_a_one_worker_cluster_computes_on_the_worker():
    distributed = pytest.importorskip("distributed")
    base = _dask_problem()
    problem = _RefusesHere(base.spec, base.X, base.y, l2=base.l2, dtype=base.dtype)
    problem.parent_pid = os.getpid()
    population = np.random.default_rng(2).normal(scale=0.3, size=(6, problem.spec.n_weights))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for n_jobs in (1, -1, "auto"):
            with PopulationEvaluator(problem, n_jobs, "dask", cluster.scheduler_address, population_size=6) as evaluate:
                assert evaluate.n_jobs == 1
                assert np.array_equal(evaluate(population), base(population))


def test_dask_n_jobs_minus_one_and_auto_count_the_clusters_worker_threads():
    distributed = pytest.importorskip("distributed")
    problem = _dask_problem(n_rows=20_000)  # enough work per generation for several workers
    with distributed.LocalCluster(n_workers=3, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        evaluator = PopulationEvaluator(problem, -1, "dask", address, population_size=200)
        assert evaluator.n_jobs is None  # not known before connecting
        with evaluator as evaluate:
            assert evaluate.n_jobs == 6
        with PopulationEvaluator(problem, "auto", "dask", address, population_size=200) as evaluate:
            assert evaluate.n_jobs == choose_n_jobs(problem, 200, cores=6, backend="dask") == 6
        with PopulationEvaluator(problem, -2, "dask", address, population_size=200) as evaluate:
            assert evaluate.n_jobs == 5
        with PopulationEvaluator(problem, 3, "dask", address) as evaluate:
            assert evaluate.n_jobs == 3  # a number is a number of chunks, whatever the cluster
    with pytest.raises(EvomlpError, match="population size"):
        PopulationEvaluator(problem, "auto", "dask", address)
    # without an address: a local cluster of that many workers, counted on this machine
    assert PopulationEvaluator(problem, -1, "dask").n_jobs == os.cpu_count()


# -- a cluster started by hand (scheduler and workers as processes), to kill parts of it
class _HandStartedCluster:
    """``dask scheduler`` and ``dask worker --no-nanny`` processes (a killed worker stays dead),
    started pinned as docs/scale-out.md says."""

    def __init__(self, workers: int, pinned: bool = True, **worker_env: str):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))  # workers import this module
        python = [sys.executable, "-m", "evomlp.pinned", sys.executable, "-m"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(python + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                                    "--port", str(port), "--no-dashboard"], env=env, **quiet)
        worker_python = python if pinned else [sys.executable, "-m"]
        self.workers = [
            subprocess.Popen(worker_python + ["distributed.cli.dask_worker", self.address, "--nthreads", "1",
                                              "--no-nanny", "--no-dashboard", "--death-timeout", "60"],
                             env=dict(env, **worker_env), **quiet)
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout=120, set_as_default=False) as client:  # the scheduler is up
            if workers:
                client.wait_for_workers(workers, timeout=120)  # an event, generous for a loaded machine

    def close(self):
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)


@pytest.fixture
def hand_cluster(request):
    pytest.importorskip("distributed")
    cluster = _HandStartedCluster(getattr(request, "param", 2))
    yield cluster
    cluster.close()


class _Gated(FitnessProblem):
    """In a worker: says so with a file ``started-<pid>`` in ``gate``, then waits for ``gate/go``."""

    def loss(self, population, rows=None):
        if os.getpid() != self.parent_pid:
            gate = Path(self.gate)
            (gate / f"started-{os.getpid()}").touch()
            while not (gate / "go").exists():
                time.sleep(0.005)
        return super().loss(population, rows)


def _gated_problem(tmp_path):
    base = _dask_problem()
    problem = _Gated(base.spec, base.X, base.y, l2=base.l2, dtype=base.dtype)
    problem.parent_pid, problem.gate = os.getpid(), str(tmp_path)
    return base, problem


def _started_workers(gate: Path, count: int = 1) -> list[int]:
    deadline = time.monotonic() + 120  # generous: a loaded machine; the files end the wait
    while len(started := [int(p.name.split("-")[1]) for p in gate.glob("started-*")]) < count:
        assert time.monotonic() < deadline, "no worker started evaluating"
        time.sleep(0.01)
    return started


def test_a_lost_dask_worker_costs_a_retry_of_the_generation_and_no_bit(hand_cluster, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    base, problem = _gated_problem(tmp_path)
    population = np.random.default_rng(3).normal(scale=0.3, size=(10, problem.spec.n_weights))
    with PopulationEvaluator(problem, 2, "dask", hand_cluster.address) as evaluate:
        with ThreadPoolExecutor(1) as thread:
            running = thread.submit(evaluate, population)
            victim = _started_workers(tmp_path)[0]
            process = next(worker for worker in hand_cluster.workers if worker.pid == victim)
            process.kill()
            process.wait(timeout=60)
            (tmp_path / "go").touch()
            fitness = running.result(timeout=300)
        assert np.array_equal(fitness, base(population))
        assert evaluate._dask.n_retries >= 1
        assert np.array_equal(evaluate(population), base(population))  # and on with the worker left
        assert sorted(evaluate._dask._copies) == sorted(evaluate._dask.client.nthreads())  # the one left


LOSSES = {  # what is killed: (the bound that then applies, the one line it ends with)
    "every worker": ("WORKER_TIMEOUT_S", r"every worker of the dask scheduler at tcp://127.0.0.1:\d+ is gone \(none for 1 s\)"),
    "the scheduler": ("SCHEDULER_TIMEOUT_S", r"lost the dask scheduler at tcp://127.0.0.1:\d+ \(no answer for 1 s\)"),
}


@pytest.mark.parametrize("lost", LOSSES)
def test_losing_every_dask_worker_or_the_scheduler_mid_run_ends_in_one_line(hand_cluster, tmp_path, monkeypatch, lost):
    from concurrent.futures import ThreadPoolExecutor

    bound, message = LOSSES[lost]
    monkeypatch.setattr(evaluation, bound, 1)  # how long a new worker, or the scheduler's return, is waited for
    _, problem = _gated_problem(tmp_path)
    population = np.random.default_rng(3).normal(scale=0.3, size=(10, problem.spec.n_weights))
    with PopulationEvaluator(problem, 2, "dask", hand_cluster.address) as evaluate:
        with ThreadPoolExecutor(1) as thread:
            running = thread.submit(evaluate, population)
            _started_workers(tmp_path)
            for process in hand_cluster.workers if lost == "every worker" else [hand_cluster.scheduler]:
                process.kill()
                process.wait(timeout=60)
            with pytest.raises(EvomlpError, match=rf"^runtime.scheduler_address: {message}; nothing was written"):
                running.result(timeout=300)
        (tmp_path / "go").touch()


def test_a_dask_worker_with_other_kernels_refuses_the_work_in_one_line():
    """A worker started without ``python -m evomlp.pinned``, whose OpenBLAS runs other kernels."""
    pytest.importorskip("distributed")
    cluster = _HandStartedCluster(1, pinned=False, OPENBLAS_CORETYPE="SandyBridge")
    try:
        problem = _dask_problem()
        population = np.random.default_rng(3).normal(scale=0.3, size=(4, problem.spec.n_weights))
        with pytest.raises(EvomlpError, match=r"^dask worker tcp://127.0.0.1:\d+ \(pid \d+\): computes with .*"
                           r"Sandybridge.*, the training process with openblas Haswell.*python -m evomlp.pinned"):
            with PopulationEvaluator(problem, 1, "dask", cluster.address) as evaluate:
                evaluate(population)
    finally:
        cluster.close()


@pytest.mark.parametrize("hand_cluster", [0], indirect=True)
def test_a_dask_scheduler_without_workers_or_unreachable_is_one_line(hand_cluster, monkeypatch):
    monkeypatch.setattr(evaluation, "WORKER_TIMEOUT_S", 1)
    monkeypatch.setattr(evaluation, "SCHEDULER_TIMEOUT_S", 1)
    problem = _dask_problem()
    with pytest.raises(EvomlpError, match=r"runtime.scheduler_address: the dask scheduler at tcp://127.0.0.1:\d+ has "
                       r"no worker \(none joined within 1 s\); start some: python -m evomlp.pinned dask worker"):
        with PopulationEvaluator(problem, 2, "dask", hand_cluster.address):
            pass
    hand_cluster.close()  # nothing listens there any more
    with pytest.raises(EvomlpError, match=r"runtime.scheduler_address: no dask scheduler answered at "
                       r"'tcp://127.0.0.1:\d+' within 1 s"):
        with PopulationEvaluator(problem, 2, "dask", hand_cluster.address):
            pass


def test_balanced_problem_weighs_each_class_equally_in_fitness_and_minibatches():
    rng = np.random.default_rng(5)
    spec = SPECS["binary"]
    X = rng.normal(size=(90, spec.n_inputs))
    y = np.r_[np.zeros(70, dtype=int), np.ones(20, dtype=int)]
    plain = FitnessProblem(spec, X, y, l2=0.0)
    balanced = FitnessProblem(spec, X, y, l2=0.0, class_weight="balanced")
    weights = population(spec, 3)
    per_class = [FitnessProblem(spec, X[y == c], y[y == c]).loss(weights) for c in (0, 1)]
    np.testing.assert_allclose(balanced(weights), (per_class[0] + per_class[1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(plain(weights), (70 * per_class[0] + 20 * per_class[1]) / 90, rtol=1e-12)
    rows = np.array([0, 1, 80, 85])  # a minibatch: its rows keep their full-data weights
    pair_losses = [FitnessProblem(spec, X[r], y[r]).loss(weights) for r in ([0, 1], [80, 85])]
    w0, w1 = 90 / (2 * 70), 90 / (2 * 20)
    np.testing.assert_allclose(balanced.loss(weights, rows),
                               (2 * w0 * pair_losses[0] + 2 * w1 * pair_losses[1]) / (2 * w0 + 2 * w1), rtol=1e-12)
    loss, _ = balanced.loss_and_accuracy(weights)
    np.testing.assert_allclose(loss, balanced.loss(weights), rtol=0)


def test_class_weight_is_checked():
    spec = SPECS["regression"]
    with pytest.raises(EvomlpError, match="train.class_weight"):
        FitnessProblem(spec, np.zeros((4, spec.n_inputs)), np.zeros((4, 2)), class_weight="balanced")
    with pytest.raises(EvomlpError, match="train.class_weight: expected one of"):
        FitnessProblem(SPECS["binary"], np.zeros((4, 6)), np.zeros(4, dtype=int), class_weight="equal")
