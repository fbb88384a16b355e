import numpy as np
import pytest

from evomlp.de import ALGORITHMS, make_optimizer, state_from_arrays, state_to_arrays
from evomlp.de.base import (
    greedy_selection,
    sample_distinct,
    sanitize_fitness,
    uniform_population,
    DEState,
)
from evomlp.de.classic import STRATEGIES
from evomlp.de.trials import BinomialCrossover, BoundsRepair, ExponentialCrossover
from evomlp.errors import EvomlpError


def binomial_crossover(rng, parents, mutants, crossover_rate):
    n, dim = parents.shape
    return BinomialCrossover(rng, n, dim, crossover_rate).apply(0, n, parents, mutants)


def exponential_crossover(rng, parents, mutants, crossover_rate):
    n, dim = parents.shape
    return ExponentialCrossover(rng, n, dim, crossover_rate).apply(0, n, parents, mutants)


def repair_bounds(rng, trials, parents, lower, upper, method):
    return BoundsRepair(rng, method, lower, upper, trials.shape).apply(0, trials.shape[0], trials, parents)


def sphere(population):
    return np.sum(population**2, axis=1)


def rosenbrock(population):
    x = population
    return np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=1)


def minimise(function, strategy, dim, generations, seed=0, size=30, **settings):
    lower, upper = np.full(dim, -5.0), np.full(dim, 5.0)
    rng = np.random.default_rng(seed)
    optimizer = make_optimizer(strategy, lower, upper, **settings)
    population = uniform_population(rng, size, lower, upper)
    state = optimizer.init(population, function(population), rng)
    for _ in range(generations):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, function(trials))
    return state


# -- index sampling ---------------------------------------------------------------------------
def test_sample_distinct_excludes_and_never_repeats():
    rng = np.random.default_rng(0)
    exclude = np.column_stack([np.arange(7), (np.arange(7) + 3) % 7])
    picks = sample_distinct(rng, 7, 5, exclude)  # 7 - 2 excluded = exactly 5 left
    for row, excluded in zip(picks, exclude):
        assert sorted(row) == sorted(set(range(7)) - set(excluded))


def test_sample_distinct_is_uniform_over_the_allowed_values():
    rng = np.random.default_rng(1)
    picks = sample_distinct(rng, 6, 1, np.full((60_000, 1), 2))[:, 0]
    counts = np.bincount(picks, minlength=6)
    assert counts[2] == 0
    allowed = np.delete(counts, 2)
    assert np.all(np.abs(allowed / 60_000 - 0.2) < 0.01)


def test_sample_distinct_refuses_impossible_draws():
    with pytest.raises(EvomlpError, match="cannot draw"):
        sample_distinct(np.random.default_rng(0), 4, 4, np.zeros((3, 1), dtype=int))


# -- crossover ----------------------------------------------------------------------------------
def test_binomial_crossover_always_takes_one_mutant_coordinate():
    rng = np.random.default_rng(2)
    parents, mutants = np.zeros((200, 10)), np.ones((200, 10))
    trials = binomial_crossover(rng, parents, mutants, 0.0)
    assert np.all(trials.sum(axis=1) == 1)  # j_rand only
    assert np.all(binomial_crossover(rng, parents, mutants, 1.0) == 1)
    half = binomial_crossover(rng, parents, mutants, np.full(200, 0.5))
    assert abs(half.mean() - (0.5 + 0.5 / 10)) < 0.03


def test_exponential_crossover_copies_one_cyclic_run_of_geometric_length():
    rng = np.random.default_rng(3)
    dim = 12
    parents, mutants = np.zeros((5000, dim)), np.ones((5000, dim))
    trials = exponential_crossover(rng, parents, mutants, 0.5)
    lengths = trials.sum(axis=1)
    assert lengths.min() >= 1
    # one run: around the circle the row switches between 0 and 1 at most twice
    switches = (trials != np.roll(trials, 1, axis=1)).sum(axis=1)
    assert np.all(switches <= 2)
    expected = sum(0.5 ** (k - 1) for k in range(1, dim + 1))  # E[min(Geometric(0.5), D)]
    assert abs(lengths.mean() - expected) < 0.05
    assert np.all(exponential_crossover(rng, parents[:10], mutants[:10], 0.0).sum(axis=1) == 1)
    assert np.all(exponential_crossover(rng, parents[:10], mutants[:10], 1.0) == 1)


# -- bounds and selection ------------------------------------------------------------------------
def test_repair_bounds_methods():
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    parents = np.array([[0.5, -0.5]])
    trials = lambda: np.array([[3.0, -1.5]])
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(repair_bounds(rng, trials(), parents, lower, upper, "clip"), [[1.0, -1.0]])
    np.testing.assert_allclose(repair_bounds(rng, trials(), parents, lower, upper, "midpoint"), [[0.75, -0.75]])
    np.testing.assert_allclose(repair_bounds(rng, trials(), parents, lower, upper, "reflect"), [[-1.0, -0.5]])
    fresh = repair_bounds(rng, trials(), parents, lower, upper, "reinitialize")
    assert np.all(np.abs(fresh) <= 1)
    inside = np.array([[0.2, 0.3]])
    np.testing.assert_array_equal(repair_bounds(rng, inside.copy(), parents, lower, upper, "reinitialize"), inside)


def test_selection_accepts_ties_and_nonfinite_fitness_is_worst():
    state = DEState(np.zeros((3, 2)), np.array([1.0, 1.0, 1.0]), np.random.default_rng(0))
    trials = np.ones((3, 2))
    replaced = greedy_selection(state, trials, sanitize_fitness(np.array([1.0, np.nan, 0.5])))
    np.testing.assert_array_equal(replaced, [True, False, True])
    np.testing.assert_array_equal(state.fitness, [1.0, 1.0, 0.5])
    np.testing.assert_array_equal(state.population[1], [0.0, 0.0])
    assert np.all(np.isinf(sanitize_fitness(np.array([np.inf, -np.inf, np.nan]))))


# -- strategies --------------------------------------------------------------------------------
def test_every_scipy_strategy_name_is_offered():
    for name in ("best1bin", "best1exp", "rand1bin", "rand1exp", "randtobest1bin", "randtobest1exp",
                 "currenttobest1bin", "currenttobest1exp", "best2bin", "best2exp", "rand2bin", "rand2exp"):
        assert name in ALGORITHMS


@pytest.mark.parametrize("strategy", ["best1bin", "rand1bin", "currenttobest1bin", "best2bin", "rand2bin", "randtobest1bin"])
def test_mutants_are_built_from_distinct_other_individuals(strategy):
    """With CR = 1 a trial is the mutant: check it against the strategy's formula over all index choices."""
    from itertools import permutations

    dim, size, f = 3, 7, 0.7
    rng = np.random.default_rng(5)
    population = rng.normal(size=(size, dim))
    fitness = np.arange(size, dtype=float)[::-1]  # the best is the last one
    optimizer = make_optimizer(strategy, np.full(dim, -1e9), np.full(dim, 1e9), mutation=f, crossover_rate=1.0)
    state = optimizer.init(population, fitness, rng)
    trials = optimizer.ask(state)
    x, best = population, population[-1]
    formulas = {
        "best1bin": (2, lambda i, r: best + f * (x[r[0]] - x[r[1]])),
        "rand1bin": (3, lambda i, r: x[r[0]] + f * (x[r[1]] - x[r[2]])),
        "currenttobest1bin": (2, lambda i, r: x[i] + f * (best - x[i]) + f * (x[r[0]] - x[r[1]])),
        "best2bin": (4, lambda i, r: best + f * (x[r[0]] + x[r[1]] - x[r[2]] - x[r[3]])),
        "rand2bin": (5, lambda i, r: x[r[0]] + f * (x[r[1]] + x[r[2]] - x[r[3]] - x[r[4]])),
        "randtobest1bin": (3, lambda i, r: x[r[0]] + f * (best - x[r[0]]) + f * (x[r[1]] - x[r[2]])),
    }
    n_picks, formula = formulas[strategy]
    for i in range(size):
        others = [j for j in range(size) if j != i]
        assert any(
            np.allclose(trials[i], formula(i, r)) for r in permutations(others, n_picks)
        ), f"trial {i} is not built by the {strategy} formula from distinct individuals other than {i}"


def test_currenttopbest1_takes_pbest_from_the_top_fraction():
    dim, size = 2, 20
    rng = np.random.default_rng(6)
    population = rng.normal(size=(size, dim))
    fitness = np.arange(size, dtype=float)  # 0 and 1 are the top 10 %
    optimizer = make_optimizer("currenttopbest1bin", np.full(dim, -1e9), np.full(dim, 1e9),
                               mutation=1.0, crossover_rate=1.0, p_best=0.1)
    state = optimizer.init(population, fitness, rng)
    trials = optimizer.ask(state)
    # with F = 1: trial = pbest + x_r0 - x_r1, so trial - x_r0 + x_r1 must be individual 0 or 1
    for i in range(size):
        assert any(
            np.allclose(trials[i] - population[a] + population[b], population[top])
            for top in (0, 1) for a in range(size) for b in range(size) if len({i, a, b}) == 3
        )


def test_dither_draws_f_in_its_range_each_generation():
    state = minimise(sphere, "rand1bin", 4, 0, mutation=[0.5, 1.0])
    optimizer = make_optimizer("rand1bin", np.full(4, -5.0), np.full(4, 5.0), mutation=[0.5, 1.0])
    values = set()
    for _ in range(20):
        optimizer.ask(state)
        assert np.all(state.trial_f == state.trial_f[0])
        values.add(float(state.trial_f[0]))
    assert len(values) == 20 and min(values) >= 0.5 and max(values) <= 1.0


@pytest.mark.parametrize(
    "strategy", ["rand1bin", "best1bin", "currenttobest1bin", "currenttopbest1bin", "rand1exp", "randtobest1bin", "best2bin"]
)
def test_converges_on_sphere(strategy):
    # Dithered F: with a fixed F = 0.5 the greedy strategies (best1 and kin) can collapse early
    # when the whole generation is replaced at once (scipy's updating='deferred' does the same).
    state = minimise(sphere, strategy, 10, 600, size=40, mutation=[0.5, 1.0], crossover_rate=0.9)
    assert state.best_fitness < 1e-8


def test_converges_on_rosenbrock():
    state = minimise(rosenbrock, "rand1bin", 5, 2500, size=40, mutation=[0.5, 1.0], crossover_rate=0.9)
    assert state.best_fitness < 1e-4
    np.testing.assert_allclose(state.best, np.ones(5), atol=1e-2)


def test_same_seed_same_run_other_seed_other_run():
    one = minimise(rosenbrock, "rand1bin", 5, 50, seed=3)
    two = minimise(rosenbrock, "rand1bin", 5, 50, seed=3)
    other = minimise(rosenbrock, "rand1bin", 5, 50, seed=4)
    assert np.array_equal(one.population, two.population) and np.array_equal(one.fitness, two.fitness)
    assert not np.array_equal(one.population, other.population)


def test_state_round_trip_continues_identically():
    lower, upper = np.full(4, -5.0), np.full(4, 5.0)
    optimizer = make_optimizer("rand1bin", lower, upper, mutation=[0.4, 0.9])
    state = minimise(sphere, "rand1bin", 4, 10, mutation=[0.4, 0.9])
    copy = state_from_arrays({k: np.array(v) for k, v in state_to_arrays(state).items()})
    for _ in range(5):
        for s in (state, copy):
            trials = optimizer.ask(s)
            optimizer.tell(s, trials, sphere(trials))
    assert np.array_equal(state.population, copy.population)
    assert copy.generation == state.generation == 15


def test_too_small_population_and_unknown_strategy_are_rejected():
    optimizer = make_optimizer("rand2bin", np.zeros(2), np.ones(2))
    with pytest.raises(EvomlpError, match="at least 6"):
        optimizer.init(np.zeros((5, 2)), np.zeros(5), np.random.default_rng(0))
    with pytest.raises(EvomlpError, match="strategy"):
        make_optimizer("rand3bin", np.zeros(2), np.ones(2))
    assert set(STRATEGIES) <= set(ALGORITHMS)
