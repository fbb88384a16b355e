"""Evolution strategies (evomlp.es): each rule against its formula, the sampling plan, checkpoints,
and convergence on small problems. Formulas are recomputed here independently (plain loops) on
tiny dimensions; no result bytes are hard-coded and nothing depends on wall-clock time."""

import io
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from evomlp.errors import EvomlpError
from evomlp.es import ES_ALGORITHMS, SETTINGS, OpenAIES, PGPE, SepCMAES, SNES
from evomlp.es.base import (
    ESPlan,
    centred_ranks,
    interval,
    noise_table,
    noise_table_size,
    nes_utilities,
    nes_utilities_by_row,
)
from evomlp.es.openaies import openai_gradient
from evomlp.es.pgpe import clipup_step, pgpe_gradients
from evomlp.es.sepcmaes import CMAConstants
from evomlp.es.snes import paper_learning_rate_sigma
from evomlp.evaluation import FitnessProblem
from evomlp.network import initial_scales

ALL = list(ES_ALGORITHMS)
MIRRORED = {"pgpe", "openaies"}


def box(dim, half_width=5.0):
    return np.full(dim, -half_width), np.full(dim, half_width)


def sphere(population):
    return np.sum(population**2, axis=1)


def started(name, dim=4, size=6, seed=0, half_width=100.0, scale=1.0, **settings):
    """An optimizer on a wide box (no sample is clipped) and its state after ``init``."""
    lower, upper = box(dim, half_width)
    optimizer = ES_ALGORITHMS[name](lower, upper, np.full(dim, scale), **settings)
    rng = np.random.default_rng(seed)
    population = rng.normal(size=(size, dim))
    return optimizer, optimizer.init(population, sphere(population), rng)


def copy_state(optimizer, state):
    return optimizer.state_from_arrays(optimizer.state_to_arrays(state))


def hand_ranks(fitness):
    """Rows from best to worst, ties by index, NaN worst (independent of the library)."""
    keyed = [(math.inf if not math.isfinite(f) else f, i) for i, f in enumerate(fitness)]
    return [i for _, i in sorted(keyed)]


# -- registry and settings --------------------------------------------------------------------
def test_registry_lists_the_four_strategies_with_well_formed_settings():
    assert ES_ALGORITHMS == {"snes": SNES, "sepcmaes": SepCMAES, "pgpe": PGPE, "openaies": OpenAIES}
    assert set(SETTINGS) == set(ES_ALGORITHMS)
    for name, cls in ES_ALGORITHMS.items():
        assert cls.SETTINGS is SETTINGS[name] and "sigma" in SETTINGS[name]
        assert cls.MIRRORED == (name in MIRRORED)
        assert cls.MINIMUM_POPULATION == 2
        for key, (default, text, bounds) in SETTINGS[name].items():
            low, high, low_open, high_open = interval(bounds)
            assert isinstance(text, str) and text
            assert low is None or (default > low if low_open else default >= low), (name, key)
            assert high is None or (default < high if high_open else default <= high), (name, key)
        optimizer = cls(*box(3), np.ones(3))  # every default is accepted
        assert optimizer.settings == {key: float(value[0]) for key, value in SETTINGS[name].items()}


@pytest.mark.parametrize("name", ALL)
def test_settings_out_of_range_or_unknown_are_refused_by_name(name):
    with pytest.raises(EvomlpError, match=f"optimizer.{name}.sigma"):
        ES_ALGORITHMS[name](*box(3), np.ones(3), sigma=0.0)
    with pytest.raises(EvomlpError, match=f"optimizer.{name}.nonsense"):
        ES_ALGORITHMS[name](*box(3), np.ones(3), nonsense=1.0)
    with pytest.raises(EvomlpError, match="initial_scale"):
        ES_ALGORITHMS[name](*box(3), np.array([1.0, 0.0, 1.0]))


def test_narrower_rules_momentum_below_one_and_weight_decay_may_be_zero():
    with pytest.raises(EvomlpError, match="optimizer.pgpe.momentum"):
        PGPE(*box(3), np.ones(3), momentum=1.0)
    with pytest.raises(EvomlpError, match="optimizer.openaies.weight_decay"):
        OpenAIES(*box(3), np.ones(3), weight_decay=-0.1)
    assert OpenAIES(*box(3), np.ones(3), weight_decay=0).weight_decay == 0.0


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_mirrored_strategies_refuse_an_odd_population_naming_the_setting(name):
    optimizer = ES_ALGORITHMS[name](*box(2), np.ones(2))
    with pytest.raises(EvomlpError, match="train.population_size.*even"):
        optimizer.init(np.zeros((5, 2)), np.zeros(5), np.random.default_rng(0))
    optimizer.init(np.zeros((4, 2)), np.zeros(4), np.random.default_rng(0))


@pytest.mark.parametrize("name", ALL)
def test_population_below_the_minimum_is_refused(name):
    optimizer = ES_ALGORITHMS[name](*box(2), np.ones(2))
    with pytest.raises(EvomlpError, match="train.population_size.*at least 2"):
        optimizer.init(np.zeros((1, 2)), np.zeros(1), np.random.default_rng(0))


# -- fitness shaping ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [2, 3, 7, 10, 50])
def test_nes_utilities_match_the_formula_and_sum_to_zero(size):
    utilities = nes_utilities(size)
    raw = [max(0.0, math.log(size / 2 + 1) - math.log(k)) for k in range(1, size + 1)]
    expected = [r / sum(raw) - 1 / size for r in raw]
    np.testing.assert_allclose(utilities, expected, rtol=0, atol=1e-15)
    assert abs(np.sum(utilities)) < 1e-14
    assert np.all(np.diff(utilities) <= 0) and utilities[0] > utilities[-1]


def test_nes_utilities_go_to_the_rows_by_rank_best_first():
    fitness = np.array([3.0, 1.0, np.nan, 2.0, 1.0])
    by_row = nes_utilities_by_row(fitness)
    u = nes_utilities(5)
    # best to worst: row 1, row 4 (tie with 1, later), row 3, row 0, row 2 (NaN)
    np.testing.assert_array_equal(by_row, [u[3], u[0], u[4], u[2], u[1]])


def test_centred_ranks_lie_in_half_interval_and_better_is_larger():
    fitness = np.array([5.0, -1.0, np.inf, 2.0, 2.0, np.nan, 0.0, -np.inf])
    ranks = centred_ranks(fitness)
    order = hand_ranks(fitness)
    size = len(fitness)
    expected = np.empty(size)
    for position, row in enumerate(order):  # the best gets rank size - 1
        expected[row] = (size - 1 - position) / (size - 1) - 0.5
    np.testing.assert_allclose(ranks, expected, rtol=0, atol=1e-15)
    assert ranks.max() == 0.5 and ranks.min() == -0.5 and abs(ranks.sum()) < 1e-14
    assert ranks[1] == 0.5  # the lowest fitness
    assert ranks[3] > ranks[4]  # tie: the earlier row ranks better
    # inf, NaN and -inf (an overflow, not a great network) are the worst three, by index
    assert ranks[7] == -0.5 and ranks[5] == -0.5 + 1 / 7 and ranks[2] == -0.5 + 2 / 7


# -- SNES ---------------------------------------------------------------------------------------
def test_snes_defaults_are_the_papers_learning_rates():
    optimizer = SNES(*box(37), np.full(37, 0.4), sigma=0.5)
    assert optimizer.eta_mu == 1.0
    assert optimizer.eta_sigma == pytest.approx((3 + math.log(37)) / (5 * math.sqrt(37)), rel=1e-15)
    assert paper_learning_rate_sigma(4097) == pytest.approx((3 + math.log(4097)) / (5 * math.sqrt(4097)))
    state = optimizer.init(np.zeros((4, 37)), np.zeros(4), np.random.default_rng(0))
    np.testing.assert_array_equal(state.sigma, 0.5 * np.full(37, 0.4))
    assert SNES(*box(37), np.ones(37), learning_rate_sigma_factor=2.0).eta_sigma == pytest.approx(
        2 * optimizer.eta_sigma
    )


def test_snes_one_step_update_equals_the_papers_formulas():
    optimizer, state = started("snes", dim=3, size=6, scale=0.7, learning_rate_mean=0.8)
    mean, sigma = state.mean.copy(), state.sigma.copy()
    trials = optimizer.ask(state)
    s = state.noise.copy()
    fitness = sphere(trials)
    fitness[2] = np.nan
    state = optimizer.tell(state, trials, fitness)

    size, eta_sigma = 6, (3 + math.log(3)) / (5 * math.sqrt(3))
    raw = [max(0.0, math.log(size / 2 + 1) - math.log(k)) for k in range(1, size + 1)]
    grad_mu, grad_sigma = np.zeros(3), np.zeros(3)
    for k, row in enumerate(hand_ranks(fitness)):
        u = raw[k] / sum(raw) - 1 / size
        grad_mu += u * s[row]
        grad_sigma += u * (s[row] ** 2 - 1)
    np.testing.assert_allclose(state.mean, mean + 0.8 * sigma * grad_mu, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state.sigma, sigma * np.exp(eta_sigma / 2 * grad_sigma), rtol=1e-13)
    # the samples were mean + sigma * s (the box is wide)
    np.testing.assert_array_equal(trials, mean + sigma * s)


# -- sep-CMA-ES ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n, lam", [(2, 6), (10, 20), (37, 7), (4097, 50), (2, 200)])
def test_sep_cma_constants_follow_the_tutorial_with_the_sep_scaling(n, lam):
    k = CMAConstants.make(n, lam)
    mu = lam // 2
    raw = [math.log((lam + 1) / 2) - math.log(i) for i in range(1, mu + 1)]
    w = [r / sum(raw) for r in raw]
    mu_eff = sum(w) ** 2 / sum(x * x for x in w)
    assert k.mu == mu and len(k.weights) == mu
    np.testing.assert_allclose(k.weights, w, rtol=1e-14)
    assert abs(np.sum(k.weights) - 1) < 1e-14 and np.all(k.weights > 0) and np.all(np.diff(k.weights) < 0)
    assert k.mu_eff == pytest.approx(mu_eff, rel=1e-13)
    assert k.c_sigma == pytest.approx((mu_eff + 2) / (n + mu_eff + 5), rel=1e-13)
    d_sigma = 1 + 2 * max(0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + (mu_eff + 2) / (n + mu_eff + 5)
    assert k.d_sigma == pytest.approx(d_sigma, rel=1e-13)
    assert k.c_c == pytest.approx((4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n), rel=1e-13)
    c1 = 2 / ((n + 1.3) ** 2 + mu_eff)
    cmu = min(1 - c1, 2 * (mu_eff - 2 + 1 / mu_eff + 0.25) / ((n + 2) ** 2 + 2 * mu_eff / 2))
    assert k.c_1_full == pytest.approx(c1, rel=1e-13) and k.c_mu_full == pytest.approx(cmu, rel=1e-13)
    assert k.c_1 == pytest.approx(c1 * (n + 2) / 3, rel=1e-13)
    assert k.c_mu == pytest.approx(min(1 - c1 * (n + 2) / 3, cmu * (n + 2) / 3), rel=1e-13)
    assert k.c_1 + k.c_mu <= 1 + 1e-15
    if (n, lam) == (2, 200):  # a large population in 2-D: the cap 1 - c_1' binds
        assert k.c_mu == pytest.approx(1 - k.c_1, rel=1e-13)
    assert k.chi_n == pytest.approx(math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n)), rel=1e-14)


def test_sep_cma_h_sigma_stalls_when_the_path_is_long_for_its_generation():
    k = CMAConstants.make(10, 20)
    limit = (1.4 + 2 / 11) * k.chi_n
    for generation in (0, 1, 7, 100):
        threshold = limit * math.sqrt(1 - (1 - k.c_sigma) ** (2 * (generation + 1)))
        assert k.h_sigma(threshold * (1 - 1e-9), generation) == 1.0
        assert k.h_sigma(threshold * (1 + 1e-9), generation) == 0.0
    # the correction: a path too long for the first update is fine after many
    assert k.h_sigma(0.9 * limit, 0) == 0.0 and k.h_sigma(0.9 * limit, 100) == 1.0


@pytest.mark.parametrize("force_stall", [False, True])
def test_sep_cma_one_step_update_equals_the_tutorials_rules(force_stall):
    n, lam = 5, 8
    optimizer, state = started("sepcmaes", dim=n, size=lam, scale=1.0, sigma=0.4)
    state.cov = np.array([0.5, 1.0, 2.0, 0.25, 1.5])
    state.path_c = np.array([0.1, -0.2, 0.3, 0.0, 0.05])
    state.path_sigma = np.full(n, 50.0) if force_stall else np.array([0.2, 0.1, -0.3, 0.0, 0.4])
    state.generation = 3
    mean, sigma, cov = state.mean.copy(), float(state.sigma), state.cov.copy()
    ps, pc = state.path_sigma.copy(), state.path_c.copy()
    trials = optimizer.ask(state)
    z = state.noise.copy()
    np.testing.assert_array_equal(trials, mean + (sigma * np.sqrt(cov)) * z)
    fitness = sphere(trials)
    state = optimizer.tell(state, trials, fitness)

    mu = lam // 2
    raw = [math.log((lam + 1) / 2) - math.log(i) for i in range(1, mu + 1)]
    w = [r / sum(raw) for r in raw]
    mu_eff = 1 / sum(x * x for x in w)
    c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
    d_sigma = 1 + 2 * max(0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma
    c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
    c1 = 2 / ((n + 1.3) ** 2 + mu_eff) * (n + 2) / 3
    cmu = min(1 - c1, 2 * (0.25 + mu_eff + 1 / mu_eff - 2) / ((n + 2) ** 2 + mu_eff) * (n + 2) / 3)
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
    ys = [np.sqrt(cov) * z[row] for row in hand_ranks(fitness)[:mu]]
    y_w = sum(wi * yi for wi, yi in zip(w, ys))
    ps_new = (1 - c_sigma) * ps + math.sqrt(c_sigma * (2 - c_sigma) * mu_eff) * y_w / np.sqrt(cov)
    norm_ps = math.sqrt(float(np.sum(ps_new**2)))
    h = 1.0 if norm_ps / math.sqrt(1 - (1 - c_sigma) ** (2 * 4)) < (1.4 + 2 / (n + 1)) * chi_n else 0.0
    assert h == (0.0 if force_stall else 1.0)
    pc_new = (1 - c_c) * pc + h * math.sqrt(c_c * (2 - c_c) * mu_eff) * y_w
    delta = (1 - h) * c_c * (2 - c_c)
    cov_new = (1 + c1 * delta - c1 - cmu) * cov + c1 * pc_new**2 + cmu * sum(wi * yi**2 for wi, yi in zip(w, ys))
    np.testing.assert_allclose(state.mean, mean + sigma * y_w, rtol=1e-13)
    np.testing.assert_allclose(state.path_sigma, ps_new, rtol=1e-13)
    np.testing.assert_allclose(state.path_c, pc_new, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(state.cov, cov_new, rtol=1e-13)
    assert float(state.sigma) == pytest.approx(sigma * math.exp(c_sigma / d_sigma * (norm_ps / chi_n - 1)), rel=1e-13)
    assert state.sigma.shape == ()


def test_sep_cma_learns_from_the_clipped_samples_in_clipped_coordinates():
    n, lam = 4, 8
    lower, upper = box(n, 0.5)
    optimizer = SepCMAES(lower, upper, np.array([1.0, 0.5, 2.0, 1.0]), sigma=0.6)
    rng = np.random.default_rng(11)
    population = rng.uniform(-0.2, 0.2, size=(lam, n))
    state = optimizer.init(population, sphere(population - 3.0), rng)
    mean, step = state.mean.copy(), optimizer.step(state)
    trials = optimizer.ask(state)
    z = state.noise.copy()
    clipped = (trials == 0.5) | (trials == -0.5)
    assert clipped.any() and (~clipped).any()
    fitness = sphere(trials - 3.0)
    k = CMAConstants.make(n, lam)
    order = hand_ranks(fitness)[: k.mu]
    z_used = np.array([[z[r, j] if not clipped[r, j] else (trials[r, j] - mean[j]) / step[j] for j in range(n)]
                       for r in order])
    y_w = np.sqrt(state.cov) * sum(w * zi for w, zi in zip(k.weights, z_used))
    state = optimizer.tell(state, trials, fitness)
    np.testing.assert_allclose(state.mean, np.clip(mean + 0.6 * y_w, -0.5, 0.5), rtol=1e-13)
    np.testing.assert_allclose(
        state.path_sigma, math.sqrt(k.c_sigma * (2 - k.c_sigma) * k.mu_eff) * sum(w * zi for w, zi in zip(k.weights, z_used)),
        rtol=1e-13,
    )
    # with the drawn noise instead, the update would differ
    z_drawn = sum(w * z[r] for w, r in zip(k.weights, order))
    assert not np.allclose(state.path_sigma, math.sqrt(k.c_sigma * (2 - k.c_sigma) * k.mu_eff) * z_drawn)


def test_sep_cma_starts_with_the_initial_populations_variance():
    scale = np.array([0.1, 0.5, 2.0])
    optimizer = SepCMAES(*box(3), scale, sigma=0.3)
    state = optimizer.init(np.zeros((4, 3)), np.zeros(4), np.random.default_rng(0))
    np.testing.assert_array_equal(state.cov, scale**2)
    assert float(state.sigma) == 0.3 and np.all(state.path_c == 0) and np.all(state.path_sigma == 0)
    np.testing.assert_allclose(optimizer.step(state), 0.3 * scale, rtol=1e-15)


# -- PGPE ---------------------------------------------------------------------------------------
def test_pgpe_gradients_match_the_formulas():
    rng = np.random.default_rng(5)
    pairs, dim = 4, 3
    z = rng.normal(size=(pairs, dim))
    sigma = np.array([0.5, 1.0, 2.0])
    shaped = rng.uniform(-0.5, 0.5, size=2 * pairs)
    g_mu, g_sigma = pgpe_gradients(z, sigma, shaped)
    b = sum(shaped) / (2 * pairs)
    expected_mu, expected_sigma = np.zeros(dim), np.zeros(dim)
    for k in range(pairs):
        eps = sigma * z[k]
        plus, minus = shaped[k], shaped[k + pairs]
        expected_mu += eps * (plus - minus) / (2 * pairs)
        expected_sigma += ((plus + minus) / 2 - b) * (eps**2 - sigma**2) / sigma / pairs
    np.testing.assert_allclose(g_mu, expected_mu, rtol=1e-13)
    np.testing.assert_allclose(g_sigma, expected_sigma, rtol=1e-13)


def test_clipup_normalises_the_gradient_and_clips_the_speed():
    g = np.array([3.0, -4.0])  # norm 5
    # from rest: alpha g / ||g||, alpha = v_max / 2, below v_max: not clipped
    np.testing.assert_allclose(clipup_step(np.zeros(2), g, 0.9, 0.2), 0.1 * g / 5, rtol=1e-15)
    # a fast velocity: clipped to exactly v_max, in the direction of m v + alpha g/||g||
    v = np.array([10.0, 0.0])
    new = clipup_step(v, g, 0.9, 0.2)
    raw = 0.9 * v + 0.1 * g / 5
    assert math.hypot(*new) == pytest.approx(0.2, rel=1e-14)
    np.testing.assert_allclose(new, 0.2 * raw / math.hypot(*raw), rtol=1e-14)
    # just above v_max (1.5 v_max): clipped too
    v = np.array([0.0, 0.3 / 0.9])
    raw = 0.9 * v + 0.1 * g / 5
    assert 0.2 < math.hypot(*raw) < 0.4
    np.testing.assert_allclose(clipup_step(v, g, 0.9, 0.2), 0.2 * raw / math.hypot(*raw), rtol=1e-14)
    # all fitness tied (zero gradient): momentum only
    np.testing.assert_array_equal(clipup_step(np.array([0.05, 0.0]), np.zeros(2), 0.9, 0.2), [0.9 * 0.05, 0.0])


def test_pgpe_one_step_update_with_clipup_and_step_size_gradient():
    optimizer, state = started("pgpe", dim=3, size=8, scale=0.5, sigma=0.6, max_speed=0.3,
                               learning_rate_sigma=0.05)
    state.velocity = np.array([0.01, -0.02, 0.03])
    mean, sigma, velocity = state.mean.copy(), state.sigma.copy(), state.velocity.copy()
    trials = optimizer.ask(state)
    z = state.noise[:4].copy()
    fitness = sphere(trials)
    state = optimizer.tell(state, trials, fitness)

    size, pairs = 8, 4
    ranks = np.empty(size)
    for position, row in enumerate(hand_ranks(fitness)):
        ranks[row] = (size - 1 - position) / (size - 1) - 0.5
    g_mu, g_sigma = np.zeros(3), np.zeros(3)
    for k in range(pairs):
        eps = sigma * z[k]
        g_mu += eps * (ranks[k] - ranks[k + pairs]) / (2 * pairs)
        g_sigma += ((ranks[k] + ranks[k + pairs]) / 2 - 0.0) * (eps**2 - sigma**2) / sigma / pairs
    v = 0.9 * velocity + 0.15 * g_mu / math.sqrt(float(np.sum(g_mu**2)))
    speed = math.sqrt(float(np.sum(v**2)))
    if speed > 0.3:
        v = v * 0.3 / speed
    np.testing.assert_allclose(state.velocity, v, rtol=1e-13)
    np.testing.assert_allclose(state.mean, mean + v, rtol=1e-13)
    np.testing.assert_allclose(state.sigma, np.clip(sigma + 0.05 * g_sigma, 0.8 * sigma, 1.2 * sigma), rtol=1e-13)


def test_pgpe_step_size_change_is_capped_at_twenty_percent():
    optimizer, state = started("pgpe", dim=20, size=10, learning_rate_sigma=1e6)
    before = state.sigma.copy()
    trials = optimizer.ask(state)
    # a sphere centred on the mean: the step-size signal (a pair's mean rank) is non-zero; on a
    # sphere far from the mean the ranks follow the sign of the noise and the pairs cancel
    state = optimizer.tell(state, trials, sphere(trials - state.mean))
    ratio = state.sigma / before
    assert np.all((np.isclose(ratio, 0.8, rtol=1e-14)) | (np.isclose(ratio, 1.2, rtol=1e-14)))
    assert np.any(ratio < 1) and np.any(ratio > 1)


# -- OpenAI-ES ----------------------------------------------------------------------------------
def test_openai_es_one_step_adam_update_with_weight_decay():
    optimizer, state = started("openaies", dim=3, size=6, scale=0.5, sigma=0.2, learning_rate=0.03,
                               weight_decay=0.01)
    state.generation = 2
    state.moment1 = np.array([0.1, -0.1, 0.0])
    state.moment2 = np.array([0.01, 0.02, 0.03])
    theta, sigma = state.mean.copy(), state.sigma.copy()
    m, v = state.moment1.copy(), state.moment2.copy()
    trials = optimizer.ask(state)
    z = state.noise[:3].copy()
    np.testing.assert_array_equal(trials[:3], theta + sigma * z)
    np.testing.assert_array_equal(trials[3:], theta - sigma * z)
    fitness = sphere(trials)
    state = optimizer.tell(state, trials, fitness)

    size = 6
    ranks = np.empty(size)
    for position, row in enumerate(hand_ranks(fitness)):
        ranks[row] = (size - 1 - position) / (size - 1) - 0.5
    g = np.zeros(3)
    for i in range(size):  # sum_i F_i eps_i / (n sigma) over all samples, eps_i = +-z
        eps = z[i] if i < 3 else -z[i - 3]
        g += ranks[i] * eps / (size * sigma)
    np.testing.assert_allclose(openai_gradient(z, sigma, ranks), g, rtol=1e-13)
    grad = -g + 0.01 * theta
    m = 0.9 * m + 0.1 * grad
    v = 0.999 * v + 0.001 * grad**2
    t = 3
    step = 0.03 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    np.testing.assert_allclose(state.moment1, m, rtol=1e-13)
    np.testing.assert_allclose(state.moment2, v, rtol=1e-13)
    np.testing.assert_allclose(state.mean, theta - step * m / (np.sqrt(v) + 1e-8), rtol=1e-13)
    np.testing.assert_array_equal(state.sigma, sigma)  # fixed


# -- init, tell bookkeeping, candidates ---------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_init_starts_the_mean_at_the_best_individual_first_on_ties(name):
    optimizer = ES_ALGORITHMS[name](*box(2), np.ones(2))
    population = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    state = optimizer.init(population, np.array([np.nan, 2.0, 2.0, np.inf]), np.random.default_rng(0))
    np.testing.assert_array_equal(state.mean, [2.0, 2.0])
    np.testing.assert_array_equal(state.population, population)
    np.testing.assert_array_equal(state.fitness, [np.inf, 2.0, 2.0, np.inf])
    assert state.generation == 0 and state.n_evaluations == 4 and state.population_size == 4
    assert state.best_index == 1 and state.best_fitness == 2.0


@pytest.mark.parametrize("name", ALL)
def test_initial_step_sizes_are_sigma_times_the_initial_scale(name):
    scale = np.array([0.1, 0.5, 2.0])
    optimizer = ES_ALGORITHMS[name](*box(3), scale, sigma=0.3)
    state = optimizer.init(np.zeros((4, 3)), np.zeros(4), np.random.default_rng(0))
    np.testing.assert_allclose(optimizer.step(state), 0.3 * scale, rtol=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_tell_records_the_samples_and_counts(name):
    optimizer, state = started(name, size=6)
    trials = optimizer.ask(state)
    fitness = sphere(trials)
    fitness[4] = np.nan
    state = optimizer.tell(state, trials, fitness)
    np.testing.assert_array_equal(state.population, trials)
    assert state.fitness[4] == np.inf and np.array_equal(state.fitness[:4], fitness[:4])
    assert state.generation == 1 and state.n_evaluations == 12
    assert state.noise.shape == (0, 4)  # consumed: a second tell needs a new propose
    with pytest.raises(EvomlpError, match="propose"):
        optimizer.tell(state, trials, fitness)


@pytest.mark.parametrize("name", ALL)
def test_candidates_are_the_best_sample_and_the_clipped_mean(name):
    optimizer, state = started(name, size=6)
    trials = optimizer.ask(state)
    state = optimizer.tell(state, trials, sphere(trials))
    state.mean = np.array([500.0, 0.0, -500.0, 1.0])
    candidates = optimizer.candidates(state)
    assert candidates.shape == (2, 4)
    np.testing.assert_array_equal(candidates[0], trials[np.argmin(sphere(trials))])
    np.testing.assert_array_equal(candidates[1], [100.0, 0.0, -100.0, 1.0])


@pytest.mark.parametrize("name", ALL)
def test_the_mean_stays_in_the_box_when_the_optimum_is_outside(name):
    optimizer, state = started(name, dim=4, size=8, half_width=0.5, scale=1.0, sigma=1.0)
    for _ in range(5):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, sphere(trials - 10.0))
        assert np.all(np.abs(state.mean) <= 0.5)
    if name != "sepcmaes":  # its mean is a weighted mean of clipped samples: inside by itself
        assert np.any(state.mean == 0.5)


# -- NaN and inf fitness --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_nan_and_inf_fitness_count_as_worst(name):
    """A generation with NaN/inf fitness updates exactly as if those samples were the worst."""
    optimizer, state = started(name, size=8)
    other = copy_state(optimizer, state)
    trials = optimizer.ask(state)
    assert np.array_equal(optimizer.ask(other), trials)
    fitness = sphere(trials)
    broken, worst = fitness.copy(), fitness.copy()
    broken[[1, 5]] = [np.nan, -np.inf]
    worst[[1, 5]] = fitness.max() + 1.0  # tied worst: ties go by index, as NaN/inf do
    a = optimizer.tell(state, trials, broken)
    b = optimizer.tell(other, trials, worst)
    for key in ("mean", "sigma", "cov", "path_sigma", "path_c", "velocity", "moment1", "moment2"):
        assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), key
    assert np.all(np.isfinite(a.mean)) and np.all(np.isfinite(a.sigma))


# -- the plan: noise, mirroring, clipping, chunking, threads, rng use ----------------------------
@pytest.mark.parametrize("name", ALL)
def test_each_row_is_clip_of_mean_plus_step_times_its_slice_of_the_noise_table(name):
    optimizer, state = started(name, dim=5, size=8, half_width=0.3, scale=1.0)
    shadow = np.random.Generator(type(state.rng.bit_generator)())
    shadow.bit_generator.state = state.rng.bit_generator.state
    plan = optimizer.propose(state)
    assert isinstance(plan, ESPlan) and plan.n_trials == 8 and plan.shape == (8, 5)
    trials = plan.build()
    mirrored = name in MIRRORED
    table = noise_table(noise_table_size(5))
    offsets = shadow.integers(0, table.shape[0] - 5 + 1, size=4 if mirrored else 8)
    block = np.stack([table[o : o + 5] for o in offsets])
    step = optimizer.step(state)
    for row in range(8):
        index, sign = (row % 4, 1.0 if row < 4 else -1.0) if mirrored else (row, 1.0)
        np.testing.assert_array_equal(state.noise[row], block[index])
        np.testing.assert_array_equal(trials[row], np.clip(state.mean + sign * (step * block[index]), -0.3, 0.3))
    assert np.all(np.abs(trials) <= 0.3) and np.any(np.abs(trials) == 0.3)  # the narrow box binds


@pytest.mark.parametrize("name", sorted(MIRRORED))
def test_mirrored_pairs_are_exact_negatives_around_the_mean(name):
    optimizer, state = started(name, dim=6, size=10)
    trials = optimizer.ask(state)
    half = 5
    np.testing.assert_array_equal(state.noise[:half], state.noise[half:])
    offset = optimizer.step(state) * state.noise[:half]
    np.testing.assert_array_equal(trials[:half], state.mean + offset)
    np.testing.assert_array_equal(trials[half:], state.mean - offset)
    np.testing.assert_allclose(trials[:half] - state.mean, -(trials[half:] - state.mean), rtol=1e-12, atol=1e-15)
    assert len({row.tobytes() for row in state.noise[:half]}) == half  # distinct pairs


@pytest.mark.parametrize("name", sorted(set(ALL) - MIRRORED))
def test_unmirrored_strategies_draw_a_noise_per_sample(name):
    optimizer, state = started(name, dim=6, size=10)
    optimizer.ask(state)
    assert len({row.tobytes() for row in state.noise}) == 10


def build_in_chunks(plan, bounds):
    out = np.empty(plan.shape)
    for start, stop in bounds:
        plan.build(start, stop, out=out[start:stop])
    return out


@pytest.mark.parametrize("name", ALL)
def test_build_gives_the_same_bits_for_any_chunking_and_threads(name):
    size = 10
    optimizer, base = started(name, dim=7, size=size, half_width=1.0)
    results = []

    def plan_of_copy():
        state = copy_state(optimizer, base)
        return state, optimizer.propose(state)

    state, plan = plan_of_copy()
    results.append((plan.build(), state.noise.copy()))
    state, plan = plan_of_copy()
    results.append((np.concatenate([plan.build(0, 3), plan.build(3, size)]), state.noise.copy()))
    state, plan = plan_of_copy()
    results.append((build_in_chunks(plan, [(r, r + 1) for r in range(size)][::-1]), state.noise.copy()))
    state, plan = plan_of_copy()
    results.append((build_in_chunks(plan, [(0, 0), (0, 4), (4, 7), (7, size)]), state.noise.copy()))
    state, plan = plan_of_copy()
    out = np.empty(plan.shape)
    barrier = threading.Barrier(2)

    def build(bounds):
        barrier.wait()
        plan.build(*bounds, out=out[bounds[0]:bounds[1]])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build, [(0, 5), (5, size)]))
    results.append((out, state.noise.copy()))
    state = copy_state(optimizer, base)
    results.append((optimizer.ask(state), state.noise.copy()))
    for trials, noise in results[1:]:
        assert trials.tobytes() == results[0][0].tobytes()
        assert noise.tobytes() == results[0][1].tobytes()


@pytest.mark.parametrize("name", ALL)
def test_propose_draws_only_offsets_and_build_draws_nothing(name):
    optimizer, state = started(name, dim=5, size=8)
    shadow = np.random.Generator(type(state.rng.bit_generator)())
    shadow.bit_generator.state = state.rng.bit_generator.state
    plan = optimizer.propose(state)
    shadow.integers(0, noise_table_size(5) - 5 + 1, size=4 if name in MIRRORED else 8)
    assert state.rng.bit_generator.state == shadow.bit_generator.state
    plan.build(0, 3)
    plan.build(3, 8)
    assert state.rng.bit_generator.state == shadow.bit_generator.state
    trials = plan.build()
    state = optimizer.tell(state, trials, sphere(trials))
    assert state.rng.bit_generator.state == shadow.bit_generator.state  # tell draws nothing either


def test_plan_refuses_rows_outside_and_a_wrong_out():
    optimizer, state = started("snes", dim=3, size=4)
    plan = optimizer.propose(state)
    with pytest.raises(ValueError):
        plan.build(2, 5)
    with pytest.raises(ValueError):
        plan.build(0, 2, out=np.empty((3, 3)))


def test_noise_table_is_fixed_standard_normal_read_only_and_long_enough():
    assert noise_table_size(10) == 2**22 and noise_table_size(100_000) == 2**23
    assert noise_table_size(2**16) == 2**22 and noise_table_size(2**16 + 1) == 2**23
    table = noise_table(2**22)
    assert table is noise_table(2**22)  # built once per process
    assert not table.flags.writeable
    head = np.random.Generator(np.random.PCG64(20170310)).standard_normal(2**22)
    assert table.tobytes() == head.tobytes()  # the same bits in every process and on every machine
    assert abs(table.mean()) < 2e-3 and abs(table.std() - 1) < 2e-3


# -- checkpoints --------------------------------------------------------------------------------
def run_generations(optimizer, state, n):
    for _ in range(n):
        trials = optimizer.ask(state)
        fitness = sphere(trials - 0.5)
        state = optimizer.tell(state, trials, fitness)
    return state


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip_resumes_bit_identically(name):
    optimizer, state = started(name, dim=6, size=8, seed=3, half_width=5.0)
    resumed_from = copy_state(optimizer, state)
    straight = run_generations(optimizer, state, 12)

    part = run_generations(optimizer, resumed_from, 5)
    buffer = io.BytesIO()
    np.savez(buffer, **optimizer.state_to_arrays(part))
    buffer.seek(0)
    with np.load(buffer) as loaded:
        restored = optimizer.state_from_arrays(dict(loaded))
    resumed = run_generations(optimizer, restored, 7)

    for key, value in optimizer.state_to_arrays(straight).items():
        other = optimizer.state_to_arrays(resumed)[key]
        assert value.tobytes() == other.tobytes(), key
    assert resumed.generation == 12 and resumed.n_evaluations == 8 * 13
    assert type(resumed.generation) is int


def test_state_from_arrays_names_a_missing_field():
    optimizer, state = started("pgpe")
    arrays = optimizer.state_to_arrays(state)
    del arrays["velocity"]
    with pytest.raises(EvomlpError, match="velocity"):
        optimizer.state_from_arrays(arrays)


# -- convergence --------------------------------------------------------------------------------
CONVERGENCE = {  # settings for D = 10 in +-5 (the defaults are for network weights), threshold
    "snes": ({}, 1e-8),
    "sepcmaes": ({}, 1e-8),
    "pgpe": ({"sigma": 0.3, "max_speed": 0.1}, 1.0),
    "openaies": ({"sigma": 0.1, "learning_rate": 0.05, "weight_decay": 0.0}, 0.1),
}
SHIFT = 1.5
ELLIPSOID = 10.0 ** (2 * np.arange(10) / 9)  # condition number 100


def shifted_ellipsoid(population):
    return np.sum(ELLIPSOID * (population - SHIFT) ** 2, axis=1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("function", [sphere, shifted_ellipsoid], ids=["sphere", "ellipsoid"])
def test_minimises_sphere_and_shifted_ellipsoid(name, function):
    settings, threshold = CONVERGENCE[name]
    if function is sphere:
        threshold /= 10
    dim, size = 10, 20
    lower, upper = box(dim)
    rng = np.random.default_rng(2024)
    optimizer = ES_ALGORITHMS[name](lower, upper, np.full(dim, 10 / math.sqrt(12)), **settings)
    population = lower + rng.random((size, dim)) * (upper - lower)
    state = optimizer.init(population, function(population), rng)
    start = function(state.mean[None])[0]
    for _ in range(300):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, function(trials))
    final = function(optimizer.candidates(state))
    assert start > 10 and final[1] < threshold, (start, final)
    assert np.max(np.abs(state.mean - (0.0 if function is sphere else SHIFT))) < math.sqrt(threshold)


@pytest.mark.parametrize("name", ALL)
def test_trains_a_small_network_end_to_end(name, small_problem):
    spec, (X, y), _ = small_problem
    problem = FitnessProblem(spec, X, y, l2=0.0, dtype="float64")
    scale = initial_scales(spec, "he") / math.sqrt(3)  # deviation of He's uniform initialisation
    lower, upper = box(spec.n_weights)
    rng = np.random.default_rng(0)
    population = (2 * rng.random((20, spec.n_weights)) - 1) * scale * math.sqrt(3)
    optimizer = ES_ALGORITHMS[name](lower, upper, scale)
    state = optimizer.init(population, problem(population), rng)
    start = problem.loss(optimizer.candidates(state))[1]
    for _ in range(150):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, problem(trials))
    loss, accuracy = problem.loss_and_accuracy(optimizer.candidates(state))
    assert loss[1] < 0.5 * start and loss[1] < 0.3, (start, loss)
    assert accuracy[1] > 0.85


@pytest.mark.parametrize("name", ALL)
def test_the_params_check_and_the_optimizer_accept_the_same_settings(name):
    """The check stage validates with the registry's fields; the optimizer checks again when built:
    at each end of every range, and just beyond, the two must agree."""
    from evomlp import optimizers

    fields = optimizers.entry(name).settings
    for key, (default, _text, bounds) in SETTINGS[name].items():
        low, high, _, _ = interval(bounds)
        probes = [v for end in (low, high) if end is not None for v in (end, np.nextafter(end, -np.inf),
                                                                      np.nextafter(end, np.inf))]
        for value in probes:
            try:
                fields[key].check(float(value))
                by_params = True
            except ValueError:
                by_params = False
            try:
                ES_ALGORITHMS[name](*box(3), np.ones(3), **{key: float(value)})
                by_optimizer = True
            except EvomlpError:
                by_optimizer = False
            assert by_params == by_optimizer, (name, key, value)
