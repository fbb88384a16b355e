"""The compiled loops give numpy's bits: trials of every strategy, crossover and repair; bias + ReLU."""

import os
import subprocess
import sys

import numpy as np
import pytest

from evomlp import kernels
from evomlp.de import ALGORITHMS, make_optimizer
from evomlp.de.trials import BOUNDS_HANDLING
from evomlp.network import MLPSpec, forward_population

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as bit patterns (so -0.0 != 0.0 and NaN == NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def proposed(algorithm, bounds_handling, generations=4, lower=-1.0, upper=1.0, dim=13, size=21, seed=0):
    """A plan a few generations into a run (adaptive archives filled), with trials outside the box."""
    rng = np.random.default_rng(seed)
    low, high = np.full(dim, lower), np.full(dim, upper)
    optimizer = make_optimizer(algorithm, low, high, bounds_handling=bounds_handling, max_evaluations=4000,
                               mutation=(0.6, 1.6), crossover_rate=0.5)
    population = rng.uniform(lower, upper, (size, dim))
    state = optimizer.init(population, (population**2).sum(axis=1), rng)
    for _ in range(generations):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, ((trials - 0.4) ** 2).sum(axis=1))
    return optimizer.propose(state)


@pytest.mark.parametrize("bounds_handling", BOUNDS_HANDLING)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_compiled_trials_equal_numpy_trials(algorithm, bounds_handling):
    plan = proposed(algorithm, bounds_handling)
    expected = plan.build_with_numpy()
    assert same_bits(plan.build(), expected)
    assert same_bits(plan.build(4, 17), expected[4:17])
    repaired = plan.crossover.apply(0, plan.n_trials, plan.parents, plan.mutation.rows(0, plan.n_trials))
    assert np.any(np.abs(repaired) > 1), "the case must exercise the repair"


@pytest.mark.parametrize("algorithm", ["rand1bin", "jade", "best2exp"])
def test_compiled_trials_built_in_small_row_blocks_equal_numpy_trials(algorithm, monkeypatch):
    import evomlp.de.trials as trials

    plan = proposed(algorithm, "reinitialize")
    monkeypatch.setattr(trials, "BUILD_BLOCK_BYTES", 8 * plan.parents.shape[1] * 3)  # 3 rows per block
    expected = plan.build_with_numpy()
    assert same_bits(plan.build(), expected)
    out = np.full((9, plan.parents.shape[1]), np.nan)
    assert plan.build(5, 14, out=out) is out and same_bits(out, expected[5:14])


@pytest.mark.parametrize("bounds_handling, zeros_signed", [("clip", False), ("reflect", True)])
def test_compiled_repair_keeps_numpys_sign_of_zero_at_a_zero_bound(bounds_handling, zeros_signed):
    # Parents at -0.0 and 0.0 under a [0, 1] box, crossover rate 0: parents pass through (but for
    # j_rand) and meet the bound 0.0 exactly. clip takes numpy's maximum(v, 0.0), which returns
    # the bound, +0.0; reflect leaves what is inside the box alone, -0.0 included.
    dim, size = 8, 6
    optimizer = make_optimizer("rand1bin", np.zeros(dim), np.ones(dim), bounds_handling=bounds_handling,
                               crossover_rate=0.0)
    population = np.where(np.arange(size * dim).reshape(size, dim) % 2 == 0, -0.0, 0.0)
    state = optimizer.init(population, np.zeros(size), np.random.default_rng(1))
    plan = optimizer.propose(state)
    expected = plan.build_with_numpy()
    assert same_bits(plan.build(), expected)
    assert np.signbit(expected).any() == zeros_signed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_bias_relu_equals_numpy_on_special_values(dtype):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 5, 7)).astype(dtype)
    z.flat[:6] = [-0.0, 0.0, np.nan, -np.inf, np.inf, -0.0]
    bias_source = rng.normal(size=(3, 40)).astype(dtype)
    bias_source[:, 10:17] = [-0.0, -0.0, 1.0, 1.0, -1.0, 0.0, -0.0]
    bias = bias_source[:, 10:17].reshape(3, 1, 7)  # a strided view, as the forward pass passes it
    expected = np.maximum(z + bias, np.zeros(z.shape, dtype))
    compiled = kernels.bias_relu(z.copy(), bias)
    assert same_bits(compiled, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_pass_is_the_same_with_and_without_the_compiled_relu(dtype, monkeypatch):
    spec = MLPSpec(9, (16, 8), ("relu", "tanh"), 3, "multiclass")
    rng = np.random.default_rng(3)
    population = rng.normal(size=(11, spec.n_weights)).astype(dtype)
    X = rng.normal(size=(40, 9))
    compiled = forward_population(spec, population, X)
    monkeypatch.setattr(kernels, "available", lambda: False)
    assert same_bits(forward_population(spec, population, X), compiled)


def test_evomlp_numba_0_switches_the_compiled_loops_off():
    code = "from evomlp import kernels; print(kernels.available())"
    environment = dict(os.environ, EVOMLP_NUMBA="0")
    shown = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"
