"""The peer comparison (benchmarks/peers.py) without its environment: no jax here.

peers.py runs evosax in .venv-peers, where evomlp is not installed, so its fitness is its own code.
These tests hold its numpy reference to evomlp's :class:`~evomlp.evaluation.FitnessProblem` on
problems written by benchmarks/peer_problem.py (the file the peers read), check that peers.py
imports jax only where it needs it, and that without jax it says so in one line and fails.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evomlp.evaluation import FitnessProblem
from evomlp.network import MLPSpec

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers.py"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers():
    """benchmarks/peers.py loaded with jax and evosax unimportable: loading it must not need them."""
    blocked = {name: sys.modules.get(name, False) for name in ("jax", "evosax")}
    sys.modules.update(jax=None, evosax=None)  # `import jax` now raises ImportError
    try:
        module = load_module("peers_under_test", PEERS)
        yield module
    finally:
        for name, previous in blocked.items():
            if previous is False:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


@pytest.fixture(scope="module")
def peer_problem():
    return load_module("peer_problem_under_test", ROOT / "benchmarks" / "peer_problem.py")


class Problem:  # what write_peer_problem reads of benchmarks.throughput.Problem
    def __init__(self, name, spec, X, y):
        self.name, self.spec, self.X, self.y = name, spec, X, y


def small_problem(seed=0):
    rng = np.random.default_rng(seed)
    spec = MLPSpec(5, (7, 4), ("relu", "relu"), 1, "binary")
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(np.int64)
    population = rng.normal(0.0, 0.8, size=(9, spec.n_weights))
    population[3] *= 40  # logits in the hundreds: the stable form must hold for both
    return Problem("small", spec, X, y), population


def test_numpy_fitness_matches_evomlp_on_the_written_problem(peers, peer_problem, tmp_path):
    problem, population = small_problem()
    path = peer_problem.write_peer_problem(problem, population, tmp_path / "small.npz", l2=0.03, bound=2.5)
    loaded = peers.load_problem(path)

    assert loaded.layer_sizes == (5, 7, 4, 1)
    assert (loaded.l2, loaded.bound, loaded.name) == (0.03, 2.5, "small")
    np.testing.assert_array_equal(loaded.X, problem.X.astype(np.float32))
    np.testing.assert_array_equal(loaded.y, problem.y)
    np.testing.assert_array_equal(loaded.population0, population.astype(np.float32))

    got = peers.fitness_numpy(loaded.population0, loaded.X, loaded.y, loaded.layer_sizes, loaded.l2)
    # evomlp on the same (float32-rounded) numbers, in float64
    want = FitnessProblem(problem.spec, loaded.X, loaded.y, l2=0.03, dtype="float64")(loaded.population0)
    assert np.all(np.isfinite(got)) and got[3] > 10 * np.median(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # the penalty is in: without it, the same losses as evomlp's l2 = 0
    no_penalty = FitnessProblem(problem.spec, loaded.X, loaded.y, l2=0.0, dtype="float64")(loaded.population0)
    np.testing.assert_allclose(peers.fitness_numpy(loaded.population0, loaded.X, loaded.y, loaded.layer_sizes, 0.0),
                               no_penalty, rtol=1e-12, atol=0)
    assert np.all(got > no_penalty)


def test_numpy_fitness_in_float32_is_close_to_float64(peers):
    problem, population = small_problem(1)
    sizes = problem.spec.layer_sizes
    f64 = peers.fitness_numpy(population, problem.X, problem.y, sizes, 0.01)
    f32 = peers.fitness_numpy(population, problem.X, problem.y, sizes, 0.01, dtype="float32")
    assert f32.dtype == np.float64
    np.testing.assert_allclose(f32, f64, rtol=1e-5)
    assert not np.array_equal(f32, f64)  # it did compute in float32


def test_the_penalty_counts_weight_matrices_not_biases(peers):
    """Zero weight matrices and nonzero biases: the logit is the last bias everywhere, no penalty."""
    spec = MLPSpec(3, (4,), ("relu",), 1, "binary")
    individual = np.zeros(spec.n_weights)
    for _, b in spec.layer_offsets():
        individual[b] = 1.5
    individual[spec.layer_offsets()[-1][1]] = -2.0  # the output bias
    X = np.random.default_rng(2).normal(size=(10, 3))
    y = np.array([0, 1] * 5)
    got = peers.fitness_numpy(individual[None, :], X, y, spec.layer_sizes, l2=10.0)
    z = -2.0
    want = np.mean(np.log1p(np.exp(-abs(z))) + max(z, 0) - z * y)
    np.testing.assert_allclose(got, [want], rtol=1e-14)
    # one weight of the first matrix, W[0, 1] (row-major: index 1), is penalised
    individual[1] = 0.5
    shifted = peers.fitness_numpy(individual[None, :], X, y, spec.layer_sizes, l2=10.0)
    np.testing.assert_allclose(shifted - got, [10.0 * 0.25], rtol=1e-12)


def test_numpy_fitness_matches_evomlp_on_the_default_problem(peers, peer_problem, tmp_path):
    from benchmarks.throughput import BOUND, make_problems, start_population  # peer_problem put ROOT on sys.path

    problem = make_problems(("bc",))["bc"]
    population, lower, upper = start_population(problem, 12)
    path = peer_problem.write_peer_problem(problem, population, tmp_path / "bc.npz", l2=0.011, bound=BOUND)
    loaded = peers.load_problem(path)
    assert loaded.layer_sizes == (30, 64, 32, 1) and loaded.n_rows == 318 and loaded.bound == BOUND
    assert np.all(upper == BOUND) and np.all(lower == -BOUND)
    got = peers.fitness_numpy(loaded.population0, loaded.X, loaded.y, loaded.layer_sizes, loaded.l2)
    want = FitnessProblem(problem.spec, loaded.X, loaded.y, l2=0.011, dtype="float64")(loaded.population0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # peers.py takes the first P rows of population0 as the population of P
    np.testing.assert_array_equal(start_population(problem, 5)[0], population[:5])


def test_write_peer_problem_refuses_what_peers_do_not_implement(peer_problem, tmp_path):
    X, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    tanh = MLPSpec(3, (4,), ("tanh",), 1, "binary")
    with pytest.raises(ValueError, match="ReLU"):
        peer_problem.write_peer_problem(Problem("t", tanh, X, y), np.zeros((2, tanh.n_weights)), tmp_path / "t.npz", 0.0)
    multiclass = MLPSpec(3, (4,), ("relu",), 3, "multiclass")
    with pytest.raises(ValueError, match="binary"):
        peer_problem.write_peer_problem(Problem("m", multiclass, X, y), np.zeros((2, multiclass.n_weights)),
                                        tmp_path / "m.npz", 0.0)
    relu = MLPSpec(3, (4,), ("relu",), 1, "binary")
    with pytest.raises(ValueError, match="population"):
        peer_problem.write_peer_problem(Problem("r", relu, X, y), np.zeros((2, relu.n_weights + 1)), tmp_path / "r.npz", 0.0)
    assert list(tmp_path.iterdir()) == []


def test_load_problem_refuses_a_population_of_another_network(peers, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, X=np.zeros((4, 3), np.float32), y=np.array([0, 1, 0, 1]), layer_sizes=np.array([3, 4, 1]),
             l2=0.0, bound=5.0, population0=np.zeros((2, 21), np.float32))  # 3-4-1 has 21 weights
    assert peers.load_problem(path).n_weights == 21
    np.savez(path, X=np.zeros((4, 3), np.float32), y=np.array([0, 1, 0, 1]), layer_sizes=np.array([3, 4, 1]),
             l2=0.0, bound=5.0, population0=np.zeros((2, 20), np.float32))
    with pytest.raises(ValueError, match="population0"):
        peers.load_problem(path)


def test_populations_and_generations_pair_up(peers):
    assert peers.pair([50, 1000], [100, 5]) == [(50, 100), (1000, 5)]
    assert peers.pair([50, 200], [10]) == [(50, 10), (200, 10)]
    with pytest.raises(SystemExit):
        peers.pair([50, 200, 1000], [10, 5])


BLOCKED_RUN = """
import runpy, sys
sys.modules.update(jax=None, evosax=None)
sys.argv = [{peers!r}, "--problem", {problem!r}, "--population", "8", "--generations", "1"]
runpy.run_path({peers!r}, run_name="__main__")
"""


@pytest.mark.parametrize("how", ["jax blocked", "this environment"])
def test_without_jax_peers_says_so_in_one_line_and_fails(how, peer_problem, tmp_path):
    if how == "this environment" and importlib.util.find_spec("jax") is not None:
        pytest.skip("jax is importable in this environment")
    problem, population = small_problem()
    path = peer_problem.write_peer_problem(problem, population, tmp_path / "p.npz", l2=0.0)
    if how == "jax blocked":
        command = [sys.executable, "-c", BLOCKED_RUN.format(peers=str(PEERS), problem=str(path))]
    else:
        command = [sys.executable, str(PEERS), "--problem", str(path), "--population", "8", "--generations", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("peers.py: cannot import jax") and "scripts/setup-peers" in lines[0]
    assert "Traceback" not in result.stderr
