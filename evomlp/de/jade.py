"""JADE: adaptive DE with an optional external archive.

Zhang, J. & Sanderson, A. C. (2009). JADE: Adaptive differential evolution with optional external
archive. IEEE Transactions on Evolutionary Computation 13(5), 945-958.

Rules implemented (defaults in brackets):

- current-to-pbest/1 with archive; ``pbest`` among the ``max(2, round(p P))`` best [p = 0.05];
- ``CR_i ~ N(mu_CR, 0.1)`` clipped to [0, 1]; ``F_i ~ Cauchy(mu_F, 0.1)``, drawn again if <= 0,
  truncated to 1 if >= 1; ``mu_CR = mu_F = 0.5`` at the start;
- after each generation with at least one success:
  ``mu_CR <- (1 - c) mu_CR + c mean(S_CR)`` and ``mu_F <- (1 - c) mu_F + c Lehmer(S_F)``,
  ``Lehmer = sum F^2 / sum F``, both *unweighted* [c = 0.1];
- archive [on]: the parents replaced by better trials are added after the generation, then random
  members are removed until ``|A| <= round(archive_rate * P)`` [archive_rate = 1, i.e. ``|A| <= NP``].
  This is the paper's rule, not the random overwrite of SHADE's successors;
- midpoint repair of out-of-bound coordinates (the paper's rule).

State: ``memory_f = [mu_F]``, ``memory_cr = [mu_CR]`` (one slot), ``memory_index`` stays 0.

Departures from the paper, both deliberate: the trial also replaces its parent on a tie
(``f(u) <= f(x)``, the project-wide rule that lets the population drift over the plateaus of a
classification loss; the paper replaces only on strict improvement, which is also what counts as
a success here); and a generation without any success leaves ``mu_CR, mu_F`` unchanged (the
paper's update takes the mean of an empty set, which is undefined).
"""

from __future__ import annotations

import numpy as np

from evomlp.de.adaptive import (
    AdaptiveDE,
    archive_trim_random,
    check_fraction,
    p_best_count,
    round_half_up,
    sample_crossover_rates,
    sample_scale_factors,
)
from evomlp.de.base import DEState
from evomlp.errors import EvomlpError


class JADE(AdaptiveDE):
    """JADE (Zhang & Sanderson 2009); see the module docstring."""

    def __init__(
        self,
        lower,
        upper,
        *,
        bounds_handling: str = "midpoint",
        max_evaluations: int = 0,
        min_population: int = 4,
        c: float = 0.1,
        p_best: float = 0.05,
        archive: bool = True,
        archive_rate: float = 1.0,
        initial_mu_f: float = 0.5,
        initial_mu_cr: float = 0.5,
    ):
        super().__init__(
            lower,
            upper,
            bounds_handling=bounds_handling,
            max_evaluations=max_evaluations,
            min_population=min_population,
            initial_memory_f=initial_mu_f,
            initial_memory_cr=initial_mu_cr,
        )
        if not 0 <= c <= 1:
            raise EvomlpError(f"c: expected a value in [0, 1], got {c}")
        self.c = float(c)
        self.p_best = check_fraction("p_best", p_best)
        self.archive = bool(archive)
        self.archive_rate = float(archive_rate)

    def draw_parameters(self, state: DEState, rng: np.random.Generator):
        size = state.population_size
        cr = sample_crossover_rates(rng, np.full(size, state.memory_cr[0]))
        f = sample_scale_factors(rng, np.full(size, state.memory_f[0]))
        return f, cr

    def p_best_counts(self, state: DEState, rng: np.random.Generator) -> np.ndarray:
        return p_best_count(self.p_best, state.population_size)

    def archive_capacity(self, state: DEState) -> int:
        return round_half_up(self.archive_rate * state.population_size) if self.archive else 0

    def store_parents(self, state: DEState, parents: np.ndarray) -> None:
        grown = np.concatenate([state.archive, parents])
        state.archive = archive_trim_random(state.rng, grown, self.archive_capacity(state))

    def memory_values(self, state: DEState, slot: int, s_f, s_cr, weights):
        # JADE's means are unweighted: the weights of the successors are not used.
        lehmer_f = float(np.sum(s_f**2) / np.sum(s_f))
        mu_f = (1 - self.c) * state.memory_f[slot] + self.c * lehmer_f
        mu_cr = (1 - self.c) * state.memory_cr[slot] + self.c * float(np.mean(s_cr))
        return mu_f, mu_cr
