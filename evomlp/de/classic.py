"""Classic differential evolution (Storn & Price, J. Global Optim. 11, 1997) as an ask/tell optimizer.

Strategies carry scipy's names, ``<base><crossover>``: the base vector and difference vectors
(``best1``, ``rand1``, ``randtobest1``, ``currenttobest1``, ``currenttopbest1``, ``best2``,
``rand2``) followed by the crossover (``bin`` or ``exp``). For trial ``i`` with distinct random
indices ``r0, r1, ...`` (all different from ``i``):

============== ====================================================
best1          best + F (x_r0 - x_r1)
rand1          x_r0 + F (x_r1 - x_r2)
randtobest1    x_r0 + F (best - x_r0) + F (x_r1 - x_r2)
currenttobest1 x_i + F (best - x_i) + F (x_r0 - x_r1)
currenttopbest1 x_i + F (x_pbest - x_i) + F (x_r0 - x_r1), pbest one of the best ceil(p P)
best2          best + F (x_r0 + x_r1 - x_r2 - x_r3)
rand2          x_r0 + F (x_r1 + x_r2 - x_r3 - x_r4)
============== ====================================================

Unlike scipy, the population size is absolute (scipy's ``popsize`` multiplies the dimension, which
for a 4,097-weight network means 61,455 individuals) and fitness arrives for the whole population
at once, from whatever evaluates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomlp.de.base import DEProtocol, DEState, greedy_selection, sample_distinct, sanitize_fitness
from evomlp.de.trials import (
    BOUNDS_HANDLING,
    CROSSOVERS,
    FOUR_TERMS,
    LINEAR,
    TWO_DIFFERENCES,
    BoundsRepair,
    Mutation,
    TrialPlan,
)
from evomlp.errors import EvomlpError

# base name -> number of random individuals it draws (besides i)
MUTATIONS = {
    "best1": 2,
    "rand1": 3,
    "randtobest1": 3,
    "currenttobest1": 2,
    "currenttopbest1": 2,
    "best2": 4,
    "rand2": 5,
}
STRATEGIES = tuple(base + crossover for base in MUTATIONS for crossover in CROSSOVERS)


def split_strategy(strategy: str) -> tuple[str, str]:
    """``'rand1bin'`` -> ``('rand1', 'bin')``; a clear error for an unknown name."""
    if strategy not in STRATEGIES:
        raise EvomlpError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
    return strategy[:-3], strategy[-3:]


def minimum_population(strategy: str) -> int:
    """The smallest population a classic strategy can draw its distinct indices from."""
    base, _ = split_strategy(strategy)
    return MUTATIONS[base] + 1


@dataclass(frozen=True)
class DEParams:
    """Settings of classic DE.

    ``mutation`` is F, or a ``(low, high)`` range from which F is drawn anew each generation
    (dithering, as scipy does). ``p_best`` is the top fraction ``currenttopbest1`` picks from.
    """

    strategy: str = "rand1bin"
    mutation: float | tuple[float, float] = 0.5
    crossover_rate: float = 0.9
    p_best: float = 0.1
    bounds_handling: str = "clip"

    def __post_init__(self) -> None:
        split_strategy(self.strategy)
        if self.bounds_handling not in BOUNDS_HANDLING:
            raise EvomlpError(
                f"bounds_handling: expected one of {list(BOUNDS_HANDLING)}, got {self.bounds_handling!r}"
            )


class DifferentialEvolution(DEProtocol):
    """Classic DE over the box ``[lower, upper]``; see the module docstring for the strategies."""

    def __init__(self, params: DEParams, lower: np.ndarray, upper: np.ndarray):
        self.params = params
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self._base, self._crossover = split_strategy(params.strategy)

    def minimum_population(self) -> int:
        return minimum_population(self.params.strategy)

    def init(self, population: np.ndarray, fitness: np.ndarray, rng: np.random.Generator) -> DEState:
        size = population.shape[0]
        if size < self.minimum_population():
            raise EvomlpError(
                f"population_size: strategy {self.params.strategy!r} needs at least "
                f"{self.minimum_population()} individuals, got {size}"
            )
        return DEState(
            population=np.array(population, dtype=float),
            fitness=sanitize_fitness(fitness),
            rng=rng,
            n_evaluations=size,
        )

    def _draw_f(self, rng: np.random.Generator, size: int) -> np.ndarray:
        mutation = self.params.mutation
        if isinstance(mutation, (tuple, list)):
            value = rng.uniform(mutation[0], mutation[1])
        else:
            value = float(mutation)
        return np.full(size, value)

    def propose(self, state: DEState) -> TrialPlan:
        """Draw this generation's randomness; the plan computes the trials by rows."""
        rng = state.rng
        population = state.population
        size = population.shape[0]
        current = np.arange(size)
        f = self._draw_f(rng, size)
        picks = sample_distinct(rng, size, MUTATIONS[self._base], current[:, None])
        base = self._base
        best = np.full(size, state.best_index)
        if base == "currenttopbest1":
            top = max(2, int(np.ceil(self.params.p_best * size)))
            ranked = np.argsort(state.fitness, kind="stable")[:top]
            pbest = ranked[rng.integers(0, top, size=size)]
        x = [picks[:, column] for column in range(picks.shape[1])]
        if base in ("best1", "rand1"):
            form, terms = LINEAR, ([best] if base == "best1" else []) + x
        elif base in ("best2", "rand2"):
            form, terms = FOUR_TERMS, ([best] if base == "best2" else []) + x
        elif base == "randtobest1":  # x0 + F (best - x0) + F (x1 - x2)
            form, terms = TWO_DIFFERENCES, [x[0], best, x[1], x[2]]
        else:  # x_i + F (best or pbest - x_i) + F (x0 - x1)
            target = best if base == "currenttobest1" else pbest
            form, terms = TWO_DIFFERENCES, [current, target, x[0], x[1]]
        mutation = Mutation(form, np.column_stack(terms), f, f, population, np.empty((0, population.shape[1])))
        cr = np.full(size, float(self.params.crossover_rate))
        crossover = CROSSOVERS[self._crossover](rng, size, population.shape[1], cr)
        repair = BoundsRepair(rng, self.params.bounds_handling, self.lower, self.upper, population.shape)
        state.trial_f, state.trial_cr = f, cr
        return TrialPlan(mutation, crossover, repair)

    def ask(self, state: DEState) -> np.ndarray:
        return self.propose(state).build()

    def tell(self, state: DEState, trials: np.ndarray, trial_fitness: np.ndarray) -> DEState:
        greedy_selection(state, trials, sanitize_fitness(trial_fitness))
        state.generation += 1
        state.n_evaluations += trials.shape[0]
        return state
