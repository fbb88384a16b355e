"""Trial plans: the same trials, bit for bit, whatever the row blocks and threads that build them."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from evomlp.de import ALGORITHMS, make_optimizer
from evomlp.de.base import sample_distinct
from evomlp.de.trials import BOUNDS_HANDLING, DeferredBits, DeferredUniforms

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def generator(name: str, seed: int = 3) -> np.random.Generator:
    return np.random.Generator(getattr(np.random, name)(seed))


def random_blocks(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, size=3)]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_deferred_uniforms_are_the_draws_of_the_stream_and_the_generator_moves_past_them(name):
    rng = generator(name)
    rng.integers(0, 10, size=3)  # leaves a buffered 32-bit half in PCG64 (3 x 32-bit draws)
    twin = copy.deepcopy(rng)
    deferred = DeferredUniforms(rng, (7, 13))
    expected = twin.random((7, 13))
    # What both draw next (32-bit integers use the buffered half, then normals) is the same.
    assert np.array_equal(rng.integers(0, 1000, size=5), twin.integers(0, 1000, size=5))
    assert np.array_equal(rng.standard_normal(4), twin.standard_normal(4))
    blocks = random_blocks(np.random.default_rng(0), 7)
    assert np.array_equal(np.concatenate([deferred.rows(a, b) for a, b in reversed(blocks)]),
                          np.concatenate([expected[a:b] for a, b in reversed(blocks)]))
    assert np.array_equal(deferred.rows(2, 5), expected[2:5])


def started(algorithm: str, bounds_handling: str, bit_generator: str = "PCG64", generations: int = 4):
    """An optimizer and a state a few generations in (so adaptive archives and memories are filled)."""
    dim, size = 11, 24
    lower, upper = -np.ones(dim), np.ones(dim)
    rng = generator(bit_generator)
    optimizer = make_optimizer(algorithm, lower, upper, bounds_handling=bounds_handling, max_evaluations=5000,
                               mutation=(0.6, 1.4))  # dithered F above 1 sends trials outside the box
    population = rng.uniform(-1, 1, (size, dim))
    state = optimizer.init(population, (population**2).sum(axis=1), rng)
    for _ in range(generations):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, ((trials - 0.5) ** 2).sum(axis=1))
    return optimizer, state


@pytest.mark.parametrize("bounds_handling", BOUNDS_HANDLING)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_plan_built_by_blocks_in_threads_equals_the_whole_build(algorithm, bounds_handling):
    optimizer, state = started(algorithm, bounds_handling)
    plan = optimizer.propose(state)
    expected = plan.build()
    blocks = random_blocks(np.random.default_rng(len(algorithm)), plan.n_trials)
    with ThreadPoolExecutor(3) as pool:
        parts = list(pool.map(lambda block: plan.build(*block), reversed(blocks)))
    assert np.array_equal(np.concatenate(parts[::-1]), expected)


def one_shot_trials(state, strategy, crossover_rate, bounds_handling, lower, upper, f=0.5, p_best=0.1):
    """Classic DE drawn and computed in one go, the textbook way (what ask did before plans):
    indices, pbest, the whole crossover mask (from 32-bit integers), j_rand (or start and run length), the repair's
    uniforms; then every formula on the whole population."""
    rng, x = state.rng, state.population
    size, dim = x.shape
    picks = sample_distinct(rng, size, 2 if strategy.startswith("currenttopbest1") else 3, np.arange(size)[:, None])
    if strategy.startswith("currenttopbest1"):
        top = max(2, int(np.ceil(p_best * size)))
        pbest = x[np.argsort(state.fitness, kind="stable")[:top][rng.integers(0, top, size=size)]]
        mutants = x + f * (pbest - x) + f * (x[picks[:, 0]] - x[picks[:, 1]])
    else:
        mutants = x[picks[:, 0]] + f * (x[picks[:, 1]] - x[picks[:, 2]])
    if strategy.endswith("bin"):
        # 32-bit halves of the raw outputs, each row starting on an output, against round(CR 2^32)
        raw = rng.bit_generator.random_raw(size * ((dim + 1) // 2)).reshape(size, -1)
        bits = np.stack([raw & 0xFFFFFFFF, raw >> 32], axis=2).reshape(size, -1)[:, :dim]
        take = bits < round(crossover_rate * 2**32)
        take[np.arange(size), rng.integers(0, dim, size=size)] = True
    else:
        start = rng.integers(0, dim, size=size)
        length = np.minimum(rng.geometric(1 - crossover_rate, size=size), dim)
        take = (np.arange(dim)[None, :] - start[:, None]) % dim < length[:, None]
    trials = np.where(take, mutants, x)
    if bounds_handling == "reinitialize":
        fresh = lower + rng.random((size, dim)) * (upper - lower)
        outside = (trials < lower) | (trials > upper)
        trials[outside] = fresh[outside]
    else:
        trials = np.clip(trials, lower, upper)
    return trials


@pytest.mark.parametrize("bounds_handling", ["clip", "reinitialize"])
@pytest.mark.parametrize("strategy", ["rand1bin", "rand1exp", "currenttopbest1bin"])
def test_a_plan_draws_and_builds_what_a_one_shot_generation_would(strategy, bounds_handling):
    lower, upper = -np.ones(11), np.ones(11)
    optimizer = make_optimizer(strategy, lower, upper, mutation=0.5, crossover_rate=0.6, bounds_handling=bounds_handling)
    rng = generator("PCG64")
    rng.integers(0, 10, size=3)  # a buffered 32-bit half, which the skipped uniforms must leave alone
    population = rng.uniform(-1, 1, (24, 11))
    state = optimizer.init(population, (population**2).sum(axis=1), rng)
    twin = copy.deepcopy(state)
    expected = one_shot_trials(twin, strategy, 0.6, bounds_handling, lower, upper)
    plan = optimizer.propose(state)
    assert state.rng.bit_generator.state == twin.rng.bit_generator.state
    assert np.array_equal(np.concatenate([plan.build(13, 24), plan.build(0, 13)])[[*range(11, 24), *range(11)]],
                          expected)


def test_a_plan_refuses_rows_it_does_not_have():
    optimizer, state = started("rand1bin", "clip", generations=0)
    plan = optimizer.propose(state)
    for start, stop in [(20, 30), (-1, 3), (5, 2)]:
        with pytest.raises(ValueError, match="outside"):
            plan.build(start, stop)
    with pytest.raises(ValueError, match="out"):
        plan.build(0, 4, out=np.empty((4, 3)))


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS)
def test_plans_match_for_every_bit_generator(bit_generator):
    optimizer, state = started("rand1bin", "reinitialize", bit_generator)
    twin = copy.deepcopy(state)
    expected = optimizer.ask(twin)
    plan = optimizer.propose(state)
    assert np.array_equal(np.concatenate([plan.build(0, 5), plan.build(5, 24)]), expected)
    assert np.array_equal(state.rng.random(3), twin.rng.random(3))


def test_reinitialize_draws_inside_the_box_and_only_where_a_coordinate_was_outside():
    optimizer, state = started("rand1bin", "reinitialize", generations=0)
    plan = optimizer.propose(state)
    unrepaired = plan.crossover.apply(0, plan.n_trials, plan.parents, plan.mutation.rows(0, plan.n_trials))
    trials = plan.build()
    outside = (unrepaired < -1) | (unrepaired > 1)
    assert outside.any() and not outside.all()
    assert np.array_equal(trials[~outside], unrepaired[~outside])
    assert np.all(np.abs(trials) <= 1)
    assert np.array_equal(trials[outside], (-1 + plan.repair.uniforms.rows(0, plan.n_trials) * 2)[outside])


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_deferred_bits_are_the_halves_of_the_raw_stream_and_the_generator_moves_past_them(name):
    rng = generator(name)
    rng.integers(0, 10, size=3)  # leaves a buffered 32-bit half in PCG64
    twin = copy.deepcopy(rng)
    deferred = DeferredBits(rng, (7, 13))  # 13 columns: 7 raw outputs per row, the last half unused
    raw = twin.bit_generator.random_raw(7 * 7).reshape(7, 7)
    expected = np.stack([raw & 0xFFFFFFFF, raw >> 32], axis=2).reshape(7, 14)[:, :13].astype(np.uint32)
    assert np.array_equal(rng.integers(0, 1000, size=5), twin.integers(0, 1000, size=5))
    assert np.array_equal(rng.standard_normal(4), twin.standard_normal(4))
    blocks = random_blocks(np.random.default_rng(1), 7)
    assert np.array_equal(np.concatenate([deferred.rows(a, b) for a, b in reversed(blocks)]),
                          np.concatenate([expected[a:b] for a, b in reversed(blocks)]))
    assert deferred.rows(2, 5).dtype == np.uint32 and np.array_equal(deferred.rows(2, 5), expected[2:5])


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.9, 1.0])
def test_binomial_crossover_takes_a_coordinate_with_probability_cr(rate):
    from evomlp.de.trials import BinomialCrossover

    size, dim = 40, 2001
    crossover = BinomialCrossover(np.random.default_rng(5), size, dim, rate)
    take = crossover.apply(0, size, np.zeros((size, dim)), np.ones((size, dim)))
    assert np.all(take[np.arange(size), crossover.j_rand] == 1)  # j_rand always from the mutant
    others = np.ones((size, dim), dtype=bool)
    others[np.arange(size), crossover.j_rand] = False
    fraction = take[others].mean()
    assert abs(fraction - rate) < 4 * np.sqrt(rate * (1 - rate) / others.sum()) + 1e-12, fraction
