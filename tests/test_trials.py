"""Trial plans: the same trials, bit for bit, whatever the row blocks and threads that build them."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from evomlp.de import ALGORITHMS, make_optimizer
from evomlp.de.trials import BOUNDS_HANDLING, DeferredUniforms

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
def test_plan_built_by_blocks_in_threads_equals_the_one_shot_ask(algorithm, bounds_handling):
    optimizer, state = started(algorithm, bounds_handling)
    twin = copy.deepcopy(state)
    expected = optimizer.ask(twin)
    plan = optimizer.propose(state)
    # The plan drew everything: the generator is where the one-shot ask left it.
    assert state.rng.bit_generator.state == twin.rng.bit_generator.state
    assert np.array_equal(state.trial_f, twin.trial_f) and np.array_equal(state.trial_cr, twin.trial_cr)
    blocks = random_blocks(np.random.default_rng(len(algorithm)), plan.n_trials)
    with ThreadPoolExecutor(3) as pool:
        parts = list(pool.map(lambda block: plan.build(*block), reversed(blocks)))
    assert np.array_equal(np.concatenate(parts[::-1]), expected)


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
