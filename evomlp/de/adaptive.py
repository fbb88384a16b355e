"""The shared core of the adaptive DE variants: JADE, SHADE, L-SHADE and jSO.

All four use the same generation, vectorised over the population:

1. parameters: every individual ``i`` gets its own ``CR_i ~ N(mu_CR, 0.1)`` clipped to ``[0, 1]``
   and ``F_i ~ Cauchy(mu_F, 0.1)``, drawn again while ``F_i <= 0`` and truncated to 1 if
   ``F_i >= 1`` (:func:`sample_crossover_rates`, :func:`sample_scale_factors`). Where the means
   come from (one pair in JADE, a memory of ``H`` slots in the others) is the variant's business;
2. mutation current-to-pbest/1 with archive (:func:`draw_mutation_indices`,
   :func:`current_to_pbest_1`): ``v_i = x_i + F_i (x_pbest - x_i) + F_i (x_r1 - x~_r2)`` where
   ``pbest`` is one of the ``max(2, round(p P))`` best, ``r1 != i`` is from the population and
   ``r2 not in {i, r1}`` from the population followed by the archive;
3. binomial crossover with ``j_rand`` (:class:`evomlp.de.trials.BinomialCrossover`), then the
   midpoint repair ``(bound + x_i) / 2`` of coordinates outside the box (the papers' rule; any
   :data:`evomlp.de.trials.BOUNDS_HANDLING` method may be chosen instead);
4. selection: the trial replaces its parent when ``f(u) <= f(x)``; it is a *success* only when
   ``f(u) < f(x)``: then its ``F_i, CR_i`` enter ``S_F, S_CR`` with weight proportional to
   ``f(x) - f(u)`` (:func:`improvement_weights`) and the replaced parent enters the archive
   (:func:`archive_insert`: appended while there is room, otherwise over a random member).

State conventions (all plain numpy, so :func:`evomlp.de.base.state_to_arrays` round-trips them):
``memory_f``/``memory_cr`` hold the means (JADE: one slot), ``memory_index`` the next slot to
update, ``trial_f``/``trial_cr`` the parameters the last ``ask`` used (the CR *after* any floor),
``archive`` the replaced parents ``(A, D)``. A negative ``memory_cr`` slot is the *terminal* value
of L-SHADE (the authors' code stores -1; jSO's smoothing can leave another negative number there,
which its code also reads as terminal): every CR drawn from it is 0.

A ``max_evaluations`` of 0 means the budget is unknown: every schedule that needs it (L-SHADE's
and jSO's population reduction, jSO's p, CR floors, F cap and F_w) stays at its start value.

Rounding follows the authors' C++ code (``round`` = half away from zero, :func:`round_half_up`).

Where the project's checklist (shared/reference/adaptive-de.md) and the sources differ, or the
checklist is silent, these modules follow the papers or the authors' code (details in each module):

- L-SHADE terminal CR: the paper keeps a terminal slot terminal, the authors' code lets it recover
  (its check for -1 is dead); the code's behaviour is the default (``sticky_terminal=False``);
- L-SHADE/jSO archive after a reduction: capacity ``int(N r_arc)`` (the code truncates; the
  checklist says round) and the first members are kept;
- jSO: ``pbest != i`` while ``NFE < 0.5 MAX_NFE`` (the code, absent from the checklist); CR floors
  applied after the terminal rule; the memory index still passes over the fixed last slot; any
  negative smoothed ``M_CR`` is terminal;
- JADE: the archive is trimmed at random after the generation (the paper), not overwritten at
  random when full. One deliberate departure from JADE's paper: ties replace the parent, as in
  all variants here (the project-wide ``f(u) <= f(x)`` rule); they are never successes.
"""

from __future__ import annotations

import numpy as np

from evomlp.de.base import DEProtocol, DEState, greedy_selection, sample_distinct, sanitize_fitness
from evomlp.de.trials import BOUNDS_HANDLING, TWO_DIFFERENCES, BinomialCrossover, BoundsRepair, Mutation, TrialPlan
from evomlp.errors import EvomlpError

TERMINAL_CR = -1.0
"""What L-SHADE stores in a ``memory_cr`` slot whose successful CRs were all 0 (any value < 0 reads
as terminal)."""

PARAMETER_SPREAD = 0.1  # the scale of N(mu_CR, .) and Cauchy(mu_F, .) in all four papers


def round_half_up(value: float) -> int:
    """C's ``round`` for the non-negative values it is used on (Python's rounds half to even)."""
    return int(np.floor(value + 0.5))


# -- parameters -----------------------------------------------------------------------------------
def sample_crossover_rates(rng: np.random.Generator, mu_cr: np.ndarray) -> np.ndarray:
    """``CR_i ~ N(mu_cr[i], 0.1)`` clipped to ``[0, 1]``; exactly 0 where ``mu_cr[i] < 0`` (terminal).

    One normal draw per individual whatever the means, so the RNG advances the same way always.
    """
    mu = np.asarray(mu_cr, dtype=float)
    drawn = np.clip(rng.normal(mu, PARAMETER_SPREAD), 0.0, 1.0)
    return np.where(mu < 0, 0.0, drawn)


def sample_scale_factors(rng: np.random.Generator, mu_f: np.ndarray) -> np.ndarray:
    """``F_i ~ Cauchy(mu_f[i], 0.1)``, drawn again (only where needed) while ``F_i <= 0``, then
    truncated to 1 where ``F_i >= 1``: never 0, never above 1."""
    mu = np.asarray(mu_f, dtype=float)
    if not np.all(np.isfinite(mu)):
        raise EvomlpError(f"adaptive DE: scale-factor means must be finite, got {mu}")
    f = mu + PARAMETER_SPREAD * rng.standard_cauchy(mu.shape)
    redraw = ~(f > 0)
    while redraw.any():
        f[redraw] = mu[redraw] + PARAMETER_SPREAD * rng.standard_cauchy(int(redraw.sum()))
        redraw = ~(f > 0)
    return np.minimum(f, 1.0)


# -- success statistics ---------------------------------------------------------------------------
def improvement_weights(parent_fitness: np.ndarray, trial_fitness: np.ndarray) -> np.ndarray:
    """``w_k = |f(x_k) - f(u_k)| / sum |f(x) - f(u)|`` over the successes.

    An infinite improvement (a parent whose fitness was NaN/inf, sanitised to +inf) would make every
    weight NaN; then the infinite improvements share the weight equally and the others get 0.
    """
    gain = np.abs(np.asarray(parent_fitness, float) - np.asarray(trial_fitness, float))
    infinite = np.isinf(gain)
    if infinite.any():
        return infinite / infinite.sum()
    total = gain.sum()
    if total <= 0:  # only reachable through underflow; then all count the same
        return np.full(gain.shape, 1.0 / gain.size)
    return gain / total


def weighted_lehmer_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """``sum w v^2 / sum w v`` (NaN when the denominator is 0, e.g. all values 0)."""
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    denominator = float(np.sum(weights * values))
    if denominator == 0:
        return float("nan")
    return float(np.sum(weights * values**2)) / denominator


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """``sum w v / sum w``."""
    weights = np.asarray(weights, dtype=float)
    return float(np.sum(weights * np.asarray(values, dtype=float)) / np.sum(weights))


# -- archive --------------------------------------------------------------------------------------
def archive_insert(
    rng: np.random.Generator, archive: np.ndarray, parents: np.ndarray, capacity: int
) -> np.ndarray:
    """Add ``parents`` (in order) to ``archive``: appended while it holds fewer than ``capacity``,
    then each one overwrites a uniformly random member (L-SHADE's code). Returns the new archive.

    Equivalent to inserting one at a time: when two parents land on the same slot, the later wins.
    """
    capacity = max(int(capacity), 0)
    archive = archive[:capacity]
    room = capacity - archive.shape[0]
    archive = np.concatenate([archive, parents[:room]])
    rest = parents[room:]
    if rest.shape[0] and capacity:
        slots = rng.integers(0, capacity, size=rest.shape[0])
        # numpy does not promise which of repeated indices wins an assignment: keep the last.
        unique_slots, first_from_end = np.unique(slots[::-1], return_index=True)
        archive[unique_slots] = rest[rest.shape[0] - 1 - first_from_end]
    return archive


def archive_trim_random(rng: np.random.Generator, archive: np.ndarray, capacity: int) -> np.ndarray:
    """Remove uniformly random members until at most ``capacity`` remain (JADE's rule)."""
    excess = archive.shape[0] - max(int(capacity), 0)
    if excess <= 0:
        return archive
    return np.delete(archive, rng.choice(archive.shape[0], size=excess, replace=False), axis=0)


# -- settings -------------------------------------------------------------------------------------
def check_fraction(name: str, value: float) -> float:
    """``value`` as a float; an error unless it is in ``(0, 1]`` (the ``p`` settings)."""
    if not 0 < value <= 1:
        raise EvomlpError(f"{name}: expected a value in (0, 1], got {value}")
    return float(value)


# -- mutation -------------------------------------------------------------------------------------
def p_best_count(fraction: float | np.ndarray, size: int) -> np.ndarray:
    """How many of the best ``pbest`` is drawn from: ``max(2, round(fraction * size))``."""
    count = np.floor(np.asarray(fraction, dtype=float) * size + 0.5).astype(np.int64)
    return np.minimum(np.maximum(count, 2), size)


def draw_mutation_indices(
    rng: np.random.Generator,
    fitness: np.ndarray,
    p_count: np.ndarray,
    archive_size: int,
    avoid_self_as_pbest: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pbest, r1, r2)`` for every individual.

    ``pbest[i]`` is uniform among the ``p_count[i]`` best (ties in fitness by index), and not ``i``
    itself if ``avoid_self_as_pbest`` (jSO's code, first half of the run); ``r1[i] != i`` is
    uniform over the population; ``r2[i]`` uniform over population + archive, ``not in {i, r1[i]}``
    (an index ``>= P`` means archive row ``r2 - P``).
    """
    size = fitness.shape[0]
    p_count = np.broadcast_to(np.asarray(p_count, dtype=np.int64), (size,))
    order = np.argsort(fitness, kind="stable")
    if avoid_self_as_pbest:
        rank = np.empty(size, dtype=np.int64)
        rank[order] = np.arange(size)
        self_in_top = rank < p_count
        pick = rng.integers(0, p_count - self_in_top)
        pick += self_in_top & (pick >= rank)  # step over i's own rank
    else:
        pick = rng.integers(0, p_count)
    pbest = order[pick]
    current = np.arange(size)
    r1 = sample_distinct(rng, size, 1, current[:, None])[:, 0]
    r2 = sample_distinct(rng, size + archive_size, 1, np.column_stack([current, r1]))[:, 0]
    return pbest, r1, r2


def current_to_pbest_1(
    population: np.ndarray,
    archive: np.ndarray,
    pbest: np.ndarray,
    r1: np.ndarray,
    r2: np.ndarray,
    f: np.ndarray,
    f_pbest: np.ndarray | None = None,
) -> Mutation:
    """``v = x + F_pbest (x_pbest - x) + F (x_r1 - x~_r2)``, ``x~`` = population then archive.

    ``f_pbest`` defaults to ``f`` (JADE, SHADE, L-SHADE); jSO weights the first difference.
    ``.rows(start, stop)`` of the result computes the mutants.
    """
    current = np.arange(population.shape[0])
    terms = np.column_stack([current, pbest, r1, r2])
    return Mutation(TWO_DIFFERENCES, terms, f if f_pbest is None else f_pbest, f, population, archive)


# -- population size ------------------------------------------------------------------------------
def linear_population_size(initial: int, minimum: int, n_evaluations: int, max_evaluations: int) -> int:
    """L-SHADE's ``round((N_min - N_init) / MAX_NFE * NFE + N_init)``, never below ``minimum``
    (nor above ``initial``); ``initial`` when ``max_evaluations`` is 0 (unknown budget)."""
    if max_evaluations <= 0:
        return initial
    planned = round_half_up((minimum - initial) / max_evaluations * n_evaluations + initial)
    return int(min(max(planned, minimum), initial))


def remove_worst(state: DEState, keep: int) -> None:
    """Shrink the population to its ``keep`` best, in place, keeping the survivors' order.

    Ties among the worst are removed lowest index first, as the authors' one-by-one loop does.
    """
    excess = state.population_size - keep
    if excess <= 0:
        return
    worst = np.argsort(-state.fitness, kind="stable")[:excess]
    survivors = np.setdiff1d(np.arange(state.population_size), worst)
    state.population = state.population[survivors]
    state.fitness = state.fitness[survivors]


# -- the optimizer skeleton -----------------------------------------------------------------------
class AdaptiveDE(DEProtocol):
    """Ask/tell skeleton of the four variants; subclasses fill in the hooks below.

    ``lower``/``upper``: the box; ``bounds_handling``: ``midpoint`` as in the papers;
    ``max_evaluations``: the budget the schedules run on (0 = unknown: schedules keep their start
    values); ``min_population``: the population is never reduced below this (e.g. the number of
    parallel workers) nor below the variant's own ``N_min``; ``memory_size``: the slots ``H`` of
    ``memory_f``/``memory_cr`` (JADE: 1), which start at ``initial_memory_f``/``initial_memory_cr``.
    """

    MINIMUM_POPULATION = 4  # pbest among >= 2, r1 != i, r2 not in {i, r1}
    MINIMUM_MEMORY_SIZE = 1
    MEMORY_SIZE_RULE = "expected >= 1"  # what the error for a smaller memory_size says

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        *,
        bounds_handling: str = "midpoint",
        max_evaluations: int = 0,
        min_population: int = 4,
        memory_size: int = 1,
        initial_memory_f: float = 0.5,
        initial_memory_cr: float = 0.5,
    ):
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        if self.lower.shape != self.upper.shape or self.lower.ndim != 1:
            raise EvomlpError("adaptive DE: lower and upper must be 1-d arrays of the same length")
        if bounds_handling not in BOUNDS_HANDLING:
            raise EvomlpError(
                f"bounds_handling: expected one of {list(BOUNDS_HANDLING)}, got {bounds_handling!r}"
            )
        if int(max_evaluations) < 0:
            raise EvomlpError(f"max_evaluations: expected >= 0, got {max_evaluations}")
        if int(min_population) < 1:
            raise EvomlpError(f"min_population: expected >= 1, got {min_population}")
        self.bounds_handling = bounds_handling
        self.max_evaluations = int(max_evaluations)
        self.min_population = int(min_population)
        if int(memory_size) < self.MINIMUM_MEMORY_SIZE:
            raise EvomlpError(f"memory_size: {self.MEMORY_SIZE_RULE}, got {memory_size}")
        self.memory_size = int(memory_size)
        self.initial_memory_f = float(initial_memory_f)
        self.initial_memory_cr = float(initial_memory_cr)

    def minimum_population(self) -> int:
        return self.MINIMUM_POPULATION

    # -- hooks (overridden by the variants) --------------------------------------------------------
    def initial_memory(self) -> tuple[np.ndarray, np.ndarray]:
        """``(memory_f, memory_cr)`` at the start: ``memory_size`` slots of the initial values."""
        return np.full(self.memory_size, self.initial_memory_f), np.full(self.memory_size, self.initial_memory_cr)

    def draw_parameters(self, state: DEState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(F, CR)`` per individual. Default: a uniform memory slot each, CR then F from it."""
        size = state.population_size
        slots = rng.integers(0, state.memory_f.shape[0], size=size)
        cr = sample_crossover_rates(rng, state.memory_cr[slots])
        f = sample_scale_factors(rng, state.memory_f[slots])
        return f, cr

    def p_best_counts(self, state: DEState, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def avoid_self_as_pbest(self, state: DEState) -> bool:
        return False

    def pbest_scale(self, state: DEState, f: np.ndarray) -> np.ndarray:
        return f

    def archive_capacity(self, state: DEState) -> int:
        raise NotImplementedError

    def store_parents(self, state: DEState, parents: np.ndarray) -> None:
        state.archive = archive_insert(state.rng, state.archive, parents, self.archive_capacity(state))

    def memory_values(
        self, state: DEState, slot: int, s_f: np.ndarray, s_cr: np.ndarray, weights: np.ndarray
    ) -> tuple[float, float] | None:
        """The new ``(memory_f[slot], memory_cr[slot])`` from the successes, or None to leave the
        slot as it is (the index still moves on)."""
        raise NotImplementedError

    def update_memory(self, state: DEState, s_f: np.ndarray, s_cr: np.ndarray, weights: np.ndarray) -> None:
        """Write :meth:`memory_values` at slot ``k = memory_index``, then advance the index
        cyclically (with JADE's single slot it stays 0)."""
        k = state.memory_index
        values = self.memory_values(state, k, s_f, s_cr, weights)
        if values is not None:
            state.memory_f[k], state.memory_cr[k] = values
        state.memory_index = (k + 1) % state.memory_f.shape[0]

    def end_generation(self, state: DEState) -> None:
        """After selection, archive and memory updates and the counters (population reduction)."""

    # -- progress ---------------------------------------------------------------------------------
    def progress(self, state: DEState) -> float:
        """``NFE / MAX_NFE`` (evaluations so far, initial population included); 0 when unknown."""
        if self.max_evaluations <= 0:
            return 0.0
        return state.n_evaluations / self.max_evaluations

    def initial_population_size(self, state: DEState) -> int:
        """``N_init``, recorded in the state by :meth:`init` (so a checkpoint carries it)."""
        if not state.initial_population_size:
            raise EvomlpError(f"{type(self).__name__}: the state has no initial population size (not made by init)")
        return state.initial_population_size

    # -- ask / tell -------------------------------------------------------------------------------
    def init(self, population: np.ndarray, fitness: np.ndarray, rng: np.random.Generator) -> DEState:
        population = np.array(population, dtype=float)
        if population.ndim != 2 or population.shape[1] != self.lower.shape[0]:
            raise EvomlpError(
                f"{type(self).__name__}: population must be (P, {self.lower.shape[0]}), got {population.shape}"
            )
        size = population.shape[0]
        if size < self.MINIMUM_POPULATION:
            raise EvomlpError(
                f"population_size: {type(self).__name__} needs at least {self.MINIMUM_POPULATION} "
                f"individuals, got {size}"
            )
        fitness = sanitize_fitness(fitness)
        if fitness.shape != (size,):
            raise EvomlpError(f"{type(self).__name__}: fitness must be ({size},), got {fitness.shape}")
        memory_f, memory_cr = self.initial_memory()
        state = DEState(
            population=population,
            fitness=fitness,
            rng=rng,
            n_evaluations=size,
            archive=np.empty((0, population.shape[1])),
            memory_f=np.array(memory_f, dtype=float),
            memory_cr=np.array(memory_cr, dtype=float),
            memory_index=0,
            trial_f=np.empty(0),
            trial_cr=np.empty(0),
        )
        # Kept in the state too, so that a DEState with this field round-trips it.
        state.initial_population_size = size
        return state

    def propose(self, state: DEState) -> TrialPlan:
        """Draw this generation's parameters and indices; the plan computes the trials by rows."""
        rng = state.rng
        population = state.population
        if state.archive.shape[0] == 0:
            state.archive = np.empty((0, population.shape[1]))
        archive = state.archive
        f, cr = self.draw_parameters(state, rng)
        p_count = self.p_best_counts(state, rng)
        pbest, r1, r2 = draw_mutation_indices(
            rng, state.fitness, p_count, archive.shape[0], self.avoid_self_as_pbest(state)
        )
        mutation = current_to_pbest_1(population, archive, pbest, r1, r2, f, self.pbest_scale(state, f))

        crossover = BinomialCrossover(rng, population.shape[0], population.shape[1], cr)
        repair = BoundsRepair(rng, self.bounds_handling, self.lower, self.upper, population.shape)
        state.trial_f, state.trial_cr = f, cr
        return TrialPlan(mutation, crossover, repair)

    def ask(self, state: DEState) -> np.ndarray:
        return self.propose(state).build()

    def tell(self, state: DEState, trials: np.ndarray, trial_fitness: np.ndarray) -> DEState:
        trial_fitness = sanitize_fitness(trial_fitness)
        size = state.population_size
        if trials.shape != state.population.shape or trial_fitness.shape != (size,):
            raise EvomlpError(
                f"{type(self).__name__}.tell: expected trials {state.population.shape} and fitness "
                f"({size},), got {trials.shape} and {trial_fitness.shape}"
            )
        if state.trial_f.shape != (size,) or state.trial_cr.shape != (size,):
            raise EvomlpError(f"{type(self).__name__}.tell: no parameters from ask for these trials")
        parent_fitness = state.fitness.copy()
        success = trial_fitness < parent_fitness
        replaced_parents = state.population[success].copy()
        greedy_selection(state, trials, trial_fitness)  # f(u) <= f(x) replaces
        self.store_parents(state, replaced_parents)
        if success.any():
            weights = improvement_weights(parent_fitness[success], trial_fitness[success])
            self.update_memory(state, state.trial_f[success], state.trial_cr[success], weights)
        state.generation += 1
        state.n_evaluations += size
        self.end_generation(state)
        return state


class ReducingDE(AdaptiveDE):
    """L-SHADE's linear population size reduction and archive resizing (used by L-SHADE and jSO)."""

    def __init__(self, lower, upper, *, n_min: int, archive_rate: float, **settings):
        super().__init__(lower, upper, **settings)
        if int(n_min) < self.MINIMUM_POPULATION:
            raise EvomlpError(f"n_min: expected >= {self.MINIMUM_POPULATION}, got {n_min}")
        if archive_rate < 0:
            raise EvomlpError(f"archive_rate: expected >= 0, got {archive_rate}")
        self.n_min = int(n_min)
        self.archive_rate = float(archive_rate)

    def smallest_population(self) -> int:
        """Where the reduction ends: ``max(N_min, min_population)``."""
        return max(self.n_min, self.min_population)

    def archive_capacity(self, state: DEState) -> int:
        # The authors' code: round(N_init * r_arc) at first, int(N * r_arc) after each reduction.
        size = state.population_size
        if size >= self.initial_population_size(state):
            return round_half_up(size * self.archive_rate)
        return int(size * self.archive_rate)

    def end_generation(self, state: DEState) -> None:
        target = linear_population_size(
            self.initial_population_size(state),
            self.smallest_population(),
            state.n_evaluations,
            self.max_evaluations,
        )
        if target < state.population_size:
            remove_worst(state, target)
            # The code keeps the first members when the archive shrinks.
            state.archive = state.archive[: self.archive_capacity(state)]
