"""Rules of the adaptive DE variants (JADE, SHADE, L-SHADE, jSO), each on hand-made inputs."""

import numpy as np
import pytest

import evomlp.de.adaptive as adaptive
from evomlp.de import ADAPTIVE, ALGORITHMS, make_optimizer, minimum_population, state_from_arrays, state_to_arrays
from evomlp.de.adaptive import (
    TERMINAL_CR,
    archive_insert,
    archive_trim_random,
    current_to_pbest_1,
    draw_mutation_indices,
    improvement_weights,
    linear_population_size,
    p_best_count,
    sample_crossover_rates,
    sample_scale_factors,
    weighted_lehmer_mean,
)
from evomlp.de.base import uniform_population
from evomlp.de.jade import JADE
from evomlp.de.jso import JSO
from evomlp.de.lshade import LSHADE
from evomlp.de.shade import SHADE
from evomlp.errors import EvomlpError

VARIANTS = {"jade": JADE, "shade": SHADE, "lshade": LSHADE, "jso": JSO}


def sphere(population):
    return np.sum(population**2, axis=1)


def box(dim, half_width=5.0):
    return np.full(dim, -half_width), np.full(dim, half_width)


def started(cls, population, fitness, seed=0, **settings):
    lower, upper = box(population.shape[1], 100.0)
    optimizer = cls(lower, upper, **settings)
    state = optimizer.init(population, np.asarray(fitness, float), np.random.default_rng(seed))
    return optimizer, state


def run(name, dim=10, size=40, budget=20_000, seed=0, **settings):
    lower, upper = box(dim)
    rng = np.random.default_rng(seed)
    optimizer = make_optimizer(name, lower, upper, bounds_handling="midpoint", max_evaluations=budget, **settings)
    population = uniform_population(rng, size, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    while state.n_evaluations + state.population_size <= budget:
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, sphere(trials))
    return optimizer, state


# -- registry ---------------------------------------------------------------------------------------
def test_adaptive_names_are_registered_and_built_by_make_optimizer():
    for name, cls in VARIANTS.items():
        assert name in ALGORITHMS
        assert ADAPTIVE[name] is cls
        optimizer = make_optimizer(name, *box(3), max_evaluations=100, min_population=6)
        assert isinstance(optimizer, cls)
        assert optimizer.max_evaluations == 100 and optimizer.min_population == 6
        assert minimum_population(name) == cls.MINIMUM_POPULATION == 4


def test_population_below_minimum_is_refused():
    with pytest.raises(EvomlpError, match="at least 4"):
        LSHADE(*box(2)).init(np.zeros((3, 2)), np.zeros(3), np.random.default_rng(0))


# -- parameter sampling -----------------------------------------------------------------------------
def test_f_is_cauchy_around_the_mean_within_0_and_1():
    rng = np.random.default_rng(0)
    f = sample_scale_factors(rng, np.full(200_000, 0.5))
    assert np.all(f > 0) and np.all(f <= 1)
    # Cauchy(0.5, 0.1) has quartiles 0.4 and 0.6 (a normal with sd 0.1 would put 68% there);
    # conditioned on F > 0 (the redraw), P(0.4 < F < 0.6) = 0.5 / P(F > 0).
    positive = 0.5 + np.arctan(5.0) / np.pi
    assert abs(np.mean((f > 0.4) & (f < 0.6)) - 0.5 / positive) < 0.005
    assert abs(np.mean(f <= 0.5) - (0.5 - (1 - positive)) / positive) < 0.005


def test_f_at_or_above_one_is_truncated_to_one_never_zero():
    rng = np.random.default_rng(1)
    f = sample_scale_factors(rng, np.full(10_000, 1.5))
    # P(Cauchy(1.5, 0.1) < 1) = 0.5 - atan(5)/pi ~ 0.063: the rest is exactly 1.
    assert np.all(f > 0)
    assert 0.9 < np.mean(f == 1.0) < 0.97
    assert np.all((f == 1.0) | (f < 1.0))


def test_f_at_or_below_zero_is_drawn_again():
    rng = np.random.default_rng(2)
    f = sample_scale_factors(rng, np.full(10_000, 0.01))  # about half the first draws are <= 0
    assert np.all(f > 0) and np.all(f <= 1)
    # redrawn, not clipped: no pile-up at a tiny value
    assert np.mean(f < 1e-6) < 0.001


def test_cr_is_normal_clipped_to_unit_interval_and_zero_when_terminal():
    rng = np.random.default_rng(3)
    cr = sample_crossover_rates(rng, np.full(100_000, 0.5))
    assert abs(cr.mean() - 0.5) < 0.002 and abs(cr.std() - 0.1) < 0.002
    high = sample_crossover_rates(rng, np.full(100_000, 0.95))
    assert high.max() == 1.0 and 0.25 < np.mean(high == 1.0) < 0.37  # P(N(.95,.1) >= 1) ~ .31
    low = sample_crossover_rates(rng, np.full(100_000, 0.02))
    assert low.min() == 0.0 and np.all(low >= 0)
    mixed = sample_crossover_rates(rng, np.array([TERMINAL_CR, 0.5, -0.3, 0.5]))
    assert mixed[0] == 0.0 and mixed[2] == 0.0 and mixed[1] > 0 and mixed[3] > 0


# -- means ------------------------------------------------------------------------------------------
def test_improvement_weights_and_weighted_lehmer_mean_by_hand():
    weights = improvement_weights(np.array([5.0, 10.0]), np.array([4.0, 7.0]))
    assert np.allclose(weights, [0.25, 0.75])
    assert weighted_lehmer_mean([0.5, 1.0], weights) == pytest.approx(0.8125 / 0.875)
    # an infinite improvement (NaN parent) takes all the weight instead of poisoning the mean
    assert np.allclose(improvement_weights(np.array([np.inf, 3.0]), np.array([1.0, 2.0])), [1.0, 0.0])


# Hand-made generation for the memory updates: 4 parents, trials 0 and 1 strictly better by 1 and
# 3 (weights 1/4, 3/4), trial 2 ties, trial 3 is worse. S_F = [0.5, 1.0], S_CR = [0.2, 0.6].
PARENTS = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
PARENT_FITNESS = np.array([5.0, 10.0, 6.0, 1.0])
TRIALS = PARENTS + 0.5
TRIAL_FITNESS = np.array([4.0, 7.0, 6.0, 2.0])
TRIAL_F = np.array([0.5, 1.0, 0.9, 0.9])
TRIAL_CR = np.array([0.2, 0.6, 0.9, 0.9])
LEHMER_F = (0.25 * 0.25 + 0.75 * 1.0) / (0.25 * 0.5 + 0.75 * 1.0)  # 0.928571...
LEHMER_CR = (0.25 * 0.04 + 0.75 * 0.36) / (0.25 * 0.2 + 0.75 * 0.6)  # 0.56
MEAN_CR = 0.25 * 0.2 + 0.75 * 0.6  # 0.5


def hand_made_generation(cls, **settings):
    optimizer, state = started(cls, PARENTS.copy(), PARENT_FITNESS.copy(), **settings)
    state.trial_f, state.trial_cr = TRIAL_F.copy(), TRIAL_CR.copy()
    return optimizer, optimizer.tell(state, TRIALS.copy(), TRIAL_FITNESS.copy())


def test_shade_memory_update_weighted_lehmer_f_and_weighted_arithmetic_cr():
    _, state = hand_made_generation(SHADE, memory_size=3)
    assert state.memory_f[0] == pytest.approx(LEHMER_F)
    assert state.memory_cr[0] == pytest.approx(MEAN_CR)
    assert np.all(state.memory_f[1:] == 0.5) and np.all(state.memory_cr[1:] == 0.5)
    assert state.memory_index == 1


def test_lshade_memory_update_weighted_lehmer_for_both():
    _, state = hand_made_generation(LSHADE)
    assert state.memory_f[0] == pytest.approx(LEHMER_F)
    assert state.memory_cr[0] == pytest.approx(LEHMER_CR)
    assert state.memory_f.shape == (6,) and state.memory_index == 1


def test_jso_memory_update_is_smoothed_with_the_old_value():
    _, state = hand_made_generation(JSO)
    assert state.memory_f[0] == pytest.approx((LEHMER_F + 0.3) / 2)
    assert state.memory_cr[0] == pytest.approx((LEHMER_CR + 0.8) / 2)
    assert np.all(state.memory_f[1:4] == 0.3) and np.all(state.memory_cr[1:4] == 0.8)


def test_jade_update_with_learning_rate_c_and_unweighted_means():
    _, state = hand_made_generation(JADE)
    lehmer = (0.25 + 1.0) / (0.5 + 1.0)
    assert state.memory_f[0] == pytest.approx(0.9 * 0.5 + 0.1 * lehmer)
    assert state.memory_cr[0] == pytest.approx(0.9 * 0.5 + 0.1 * 0.4)


# -- selection and archive --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", list(VARIANTS.values()))
def test_ties_replace_but_only_strict_improvements_are_successes(cls):
    _, state = hand_made_generation(cls)
    assert np.array_equal(state.population[:3], TRIALS[:3])  # 0, 1 better, 2 tie: replaced
    assert np.array_equal(state.population[3], PARENTS[3])  # worse: kept
    assert np.array_equal(state.fitness, [4.0, 7.0, 6.0, 1.0])
    # the archive holds the replaced parents of the two successes, not the children, not the tie
    assert sorted(map(tuple, state.archive)) == [tuple(PARENTS[0]), tuple(PARENTS[1])]
    assert state.generation == 1 and state.n_evaluations == 8


@pytest.mark.parametrize("cls", list(VARIANTS.values()))
def test_a_generation_of_ties_only_changes_no_memory(cls):
    optimizer, state = started(cls, PARENTS.copy(), PARENT_FITNESS.copy())
    memory_f, memory_cr = state.memory_f.copy(), state.memory_cr.copy()
    state.trial_f, state.trial_cr = TRIAL_F.copy(), TRIAL_CR.copy()
    state = optimizer.tell(state, TRIALS.copy(), PARENT_FITNESS.copy())
    assert np.array_equal(state.population, TRIALS)
    assert np.array_equal(state.memory_f, memory_f) and np.array_equal(state.memory_cr, memory_cr)
    assert state.memory_index == 0 and state.archive.shape[0] == 0


def test_archive_insert_fills_then_overwrites_random_members_within_capacity():
    rng = np.random.default_rng(4)
    parents = np.arange(10.0).reshape(5, 2)
    archive = archive_insert(rng, np.empty((0, 2)), parents, capacity=3)
    assert archive.shape == (3, 2)
    rows = set(map(tuple, archive))
    assert rows <= set(map(tuple, parents))
    assert tuple(parents[-1]) in rows  # the last insertion is never overwritten
    assert archive_insert(rng, archive, parents[:1], capacity=0).shape == (0, 2)
    # over many draws, each slot gets overwritten: not always the same one
    hits = np.zeros(3)
    for _ in range(300):
        hits += np.all(archive_insert(rng, parents[:3].copy(), parents[3:4], 3) == parents[3], axis=1)
    assert np.all(hits > 60)


def test_jade_trims_its_archive_at_random_to_the_population_size():
    rng = np.random.default_rng(5)
    archive = np.arange(20.0).reshape(10, 2)
    trimmed = archive_trim_random(rng, archive, 4)
    assert trimmed.shape == (4, 2) and set(map(tuple, trimmed)) <= set(map(tuple, archive))
    _, state = run("jade", size=12, budget=3000)
    assert 0 < state.archive.shape[0] <= 12


@pytest.mark.parametrize("name", list(VARIANTS))
def test_archive_stays_bounded_and_holds_only_replaced_parents(name):
    lower, upper = box(4)
    rng = np.random.default_rng(6)
    optimizer = make_optimizer(name, lower, upper, bounds_handling="midpoint", max_evaluations=3000)
    population = uniform_population(rng, 20, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    replaced_parents = set()
    while state.n_evaluations + state.population_size <= 3000:
        before, before_fitness = state.population.copy(), state.fitness.copy()
        trials = optimizer.ask(state)
        fitness = sphere(trials)
        better = fitness < before_fitness
        replaced_parents |= set(map(tuple, before[better]))
        state = optimizer.tell(state, trials, fitness)
        assert state.archive.shape[0] <= optimizer.archive_capacity(state)
        archived = set(map(tuple, state.archive))
        assert archived <= replaced_parents
    assert state.archive.shape[0] > 0


# -- mutation ---------------------------------------------------------------------------------------
def test_mutation_indices_respect_pbest_r1_r2_rules():
    rng = np.random.default_rng(7)
    fitness = np.array([5.0, 1.0, 4.0, 0.0, 3.0, 2.0])  # best two: 3 then 1
    for _ in range(200):
        pbest, r1, r2 = draw_mutation_indices(rng, fitness, np.full(6, 2), archive_size=3)
        current = np.arange(6)
        assert set(pbest) <= {3, 1}
        assert np.all(r1 != current) and np.all(r1 < 6)
        assert np.all(r2 != current) and np.all(r2 != r1) and np.all(r2 < 9)
    pbest, _, r2 = draw_mutation_indices(rng, fitness, np.full(6, 2), archive_size=3)
    many = np.concatenate([draw_mutation_indices(rng, fitness, 2, 3)[2] for _ in range(100)])
    assert many.max() >= 6  # the archive is drawn from
    for _ in range(200):
        pbest, _, _ = draw_mutation_indices(rng, fitness, 2, 0, avoid_self_as_pbest=True)
        assert pbest[3] == 1 and pbest[1] == 3 and set(pbest) <= {1, 3}


def test_current_to_pbest_formula_by_hand():
    population = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 5.0], [10.0, 20.0]])
    archive = np.array([[100.0, 100.0]])
    mutants = current_to_pbest_1(
        population, archive, np.array([1, 1, 1, 1]), np.array([2, 0, 3, 1]), np.array([4, 4, 0, 0]),
        f=np.full(4, 0.5), f_pbest=np.full(4, 0.25),
    ).rows(0, 4)
    x = population
    assert np.allclose(mutants[0], x[0] + 0.25 * (x[1] - x[0]) + 0.5 * (x[2] - archive[0]))
    assert np.allclose(mutants[3], x[3] + 0.25 * (x[1] - x[3]) + 0.5 * (x[1] - x[0]))


def test_p_best_count_is_at_least_two():
    assert p_best_count(0.05, 100) == 5 and p_best_count(0.05, 20) == 2 and p_best_count(0.11, 180) == 20


def test_shade_draws_p_per_individual_between_2_over_np_and_0_2():
    optimizer, state = started(SHADE, np.random.default_rng(0).random((100, 2)), np.arange(100.0))
    counts = optimizer.p_best_counts(state, np.random.default_rng(1))
    assert counts.min() == 2 and counts.max() == 20 and len(set(counts)) > 10


def test_j_rand_changes_one_coordinate_when_cr_is_zero():
    rng = np.random.default_rng(8)
    lower, upper = box(6)
    optimizer = LSHADE(lower, upper)
    population = uniform_population(rng, 12, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    state.memory_cr[:] = TERMINAL_CR
    trials = optimizer.ask(state)
    assert np.all(state.trial_cr == 0)
    assert np.all(np.sum(trials != population, axis=1) == 1)


@pytest.mark.parametrize("cls", list(VARIANTS.values()))
def test_default_bounds_handling_is_midpoint(cls):
    lower, upper = box(3, 1.0)
    rng = np.random.default_rng(9)
    optimizer = cls(lower, upper)
    population = uniform_population(rng, 10, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    plan = optimizer.propose(state)
    assert plan.repair.method == "midpoint"
    trials = plan.build()
    assert np.all(trials >= lower) and np.all(trials <= upper)


# -- L-SHADE ----------------------------------------------------------------------------------------
def test_linear_population_size_by_hand():
    assert linear_population_size(180, 4, 180, 100_000) == 180  # round(179.68)
    assert linear_population_size(180, 4, 50_000, 100_000) == 92
    assert linear_population_size(180, 4, 100_000, 100_000) == 4
    assert linear_population_size(180, 4, 150_000, 100_000) == 4  # past the budget: never below
    assert linear_population_size(180, 10, 100_000, 100_000) == 10
    assert linear_population_size(180, 4, 99_000, 0) == 180  # unknown budget: no reduction


def test_lshade_reduces_by_the_schedule_removing_the_worst_never_below_min_population():
    lower, upper = box(5)
    rng = np.random.default_rng(10)
    optimizer = LSHADE(lower, upper, max_evaluations=4000, min_population=7)
    population = uniform_population(rng, 60, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    sizes = [60]
    while state.n_evaluations + state.population_size <= 4000:
        trials = optimizer.ask(state)
        fitness = sphere(trials)
        selected = np.where(fitness <= state.fitness, fitness, state.fitness)
        state = optimizer.tell(state, trials, fitness)
        expected = max(7, min(60, int(np.floor((7 - 60) / 4000 * state.n_evaluations + 60 + 0.5))))
        assert state.population_size == expected
        # survivors are the best of the selected population
        assert np.array_equal(np.sort(state.fitness), np.sort(selected)[: state.population_size])
        assert state.archive.shape[0] <= int(2.6 * state.population_size) + 1
        sizes.append(state.population_size)
    assert sizes[-1] == 7 and min(sizes) == 7
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))


def test_no_reduction_without_a_budget():
    lower, upper = box(3)
    rng = np.random.default_rng(11)
    optimizer = LSHADE(lower, upper)  # max_evaluations = 0
    population = uniform_population(rng, 20, lower, upper)
    state = optimizer.init(population, sphere(population), rng)
    for _ in range(30):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, sphere(trials))
    assert state.population_size == 20


def test_lshade_terminal_cr_when_all_successful_crs_are_zero():
    optimizer, state = started(LSHADE, PARENTS.copy(), PARENT_FITNESS.copy())
    state.trial_f, state.trial_cr = TRIAL_F.copy(), np.zeros(4)
    state = optimizer.tell(state, TRIALS.copy(), TRIAL_FITNESS.copy())
    assert state.memory_cr[0] == TERMINAL_CR
    assert state.memory_f[0] == pytest.approx(LEHMER_F)  # F is updated as usual
    state.memory_cr[:] = TERMINAL_CR
    _, cr = optimizer.draw_parameters(state, np.random.default_rng(0))
    assert np.all(cr == 0)


def test_lshade_terminal_slot_recovers_by_default_and_sticks_on_request():
    for sticky, expected in [(False, pytest.approx(LEHMER_CR)), (True, TERMINAL_CR)]:
        optimizer, state = started(LSHADE, PARENTS.copy(), PARENT_FITNESS.copy(), sticky_terminal=sticky)
        state.memory_cr[0] = TERMINAL_CR
        state.trial_f, state.trial_cr = TRIAL_F.copy(), TRIAL_CR.copy()
        state = optimizer.tell(state, TRIALS.copy(), TRIAL_FITNESS.copy())
        assert state.memory_cr[0] == expected


# -- jSO --------------------------------------------------------------------------------------------
def jso_at(progress, low_cr=0.1, high_f=0.95, size=4000):
    optimizer, state = started(JSO, np.random.default_rng(0).random((size, 2)), np.zeros(size), max_evaluations=1000)
    state.memory_cr[:-1] = low_cr
    state.memory_f[:-1] = high_f
    state.n_evaluations = int(progress * 1000)
    f, cr = optimizer.draw_parameters(state, np.random.default_rng(1))
    return optimizer, state, f, cr


def test_jso_cr_floors_by_stage():
    _, _, _, cr = jso_at(0.1)
    assert cr.min() == 0.7
    _, _, _, cr = jso_at(0.3)
    assert cr.min() == 0.6 and np.any(cr < 0.7)
    _, _, _, cr = jso_at(0.6)
    assert cr.min() < 0.3


def test_jso_f_cap_until_60_percent():
    for progress in (0.1, 0.59):
        _, _, f, _ = jso_at(progress)
        assert f.max() == 0.7
    _, _, f, _ = jso_at(0.6)
    assert f.max() == 1.0 and np.mean(f > 0.7) > 0.5


def test_jso_weighted_mutation_schedule(monkeypatch):
    seen = []
    real = adaptive.current_to_pbest_1

    def spy(population, archive, pbest, r1, r2, f, f_pbest=None):
        seen.append((np.asarray(f), np.asarray(f_pbest)))
        return real(population, archive, pbest, r1, r2, f, f_pbest)

    monkeypatch.setattr(adaptive, "current_to_pbest_1", spy)
    for progress, factor in [(0.1, 0.7), (0.3, 0.8), (0.5, 1.2), (0.9, 1.2)]:
        optimizer, state = started(JSO, np.random.default_rng(2).random((20, 3)), np.arange(20.0), max_evaluations=1000)
        state.n_evaluations = int(progress * 1000)
        optimizer.ask(state)
        f, f_pbest = seen[-1]
        assert np.allclose(f_pbest, factor * f)
        assert np.array_equal(f, state.trial_f)


def test_jso_last_memory_slot_stays_at_0_9():
    _, state = run("jso", size=30, budget=6000, seed=3)
    assert state.memory_f[-1] == 0.9 and state.memory_cr[-1] == 0.9
    assert np.all(state.memory_f[:-1] != 0.3)  # the other slots were updated
    # all other slots terminal: only the last slot's individuals (1 in 5) get CR > 0
    _, _, _, cr = jso_at(0.9, low_cr=TERMINAL_CR)
    assert abs(np.mean(cr > 0) - 0.2) < 0.03
    assert abs(np.mean(cr[cr > 0]) - 0.9) < 0.02


def test_jso_p_shrinks_from_p_max_to_half_and_pbest_avoids_self_early():
    optimizer, state = started(JSO, np.random.default_rng(3).random((100, 2)), np.arange(100.0), max_evaluations=1000)
    rng = np.random.default_rng(0)
    state.n_evaluations = 0
    assert optimizer.p_best_counts(state, rng) == 25 and optimizer.avoid_self_as_pbest(state)
    state.n_evaluations = 1000
    assert optimizer.p_best_counts(state, rng) == 13 and not optimizer.avoid_self_as_pbest(state)


def test_jso_initial_memory():
    _, state = started(JSO, np.zeros((5, 2)), np.zeros(5))
    assert np.array_equal(state.memory_f, [0.3, 0.3, 0.3, 0.3, 0.9])
    assert np.array_equal(state.memory_cr, [0.8, 0.8, 0.8, 0.8, 0.9])


# -- whole runs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VARIANTS))
def test_converges_on_sphere_10d(name):
    _, state = run(name, dim=10, size=40, budget=20_000)
    assert state.best_fitness < 1e-6


@pytest.mark.parametrize("name", list(VARIANTS))
def test_same_seed_gives_bitwise_identical_runs(name):
    _, a = run(name, dim=5, size=20, budget=2000, seed=12)
    _, b = run(name, dim=5, size=20, budget=2000, seed=12)
    assert a.population.tobytes() == b.population.tobytes()
    assert a.fitness.tobytes() == b.fitness.tobytes()
    assert a.archive.tobytes() == b.archive.tobytes()
    assert a.memory_f.tobytes() == b.memory_f.tobytes() and a.memory_cr.tobytes() == b.memory_cr.tobytes()
    _, c = run(name, dim=5, size=20, budget=2000, seed=13)
    assert c.population.tobytes() != a.population.tobytes()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_checkpoint_round_trip_continues_identically(name):
    lower, upper = box(4)

    def start():
        rng = np.random.default_rng(14)
        optimizer = make_optimizer(name, lower, upper, bounds_handling="midpoint", max_evaluations=1500)
        population = uniform_population(rng, 16, lower, upper)
        return optimizer, optimizer.init(population, sphere(population), rng)

    def steps(optimizer, state, n):
        for _ in range(n):
            trials = optimizer.ask(state)
            state = optimizer.tell(state, trials, sphere(trials))
        return state

    optimizer, straight = start()
    straight = steps(optimizer, straight, 40)
    optimizer, halfway = start()
    halfway = steps(optimizer, halfway, 20)
    restored = state_from_arrays(state_to_arrays(halfway))
    restored = steps(optimizer, restored, 20)
    assert restored.population.tobytes() == straight.population.tobytes()
    assert restored.memory_cr.tobytes() == straight.memory_cr.tobytes()
