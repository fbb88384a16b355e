"""SHADE: success-history based parameter adaptation for DE.

Tanabe, R. & Fukunaga, A. (2013). Success-history based parameter adaptation for differential
evolution. Proc. IEEE Congress on Evolutionary Computation (CEC 2013), 71-78.

Rules implemented (defaults in brackets):

- memories ``M_F[1..H]``, ``M_CR[1..H]`` all 0.5 at the start [H = 100, ``memory_size``];
- each individual picks a uniform slot ``r_i``: ``CR_i ~ N(M_CR[r_i], 0.1)`` clipped to [0, 1],
  ``F_i ~ Cauchy(M_F[r_i], 0.1)`` drawn again if <= 0, truncated to 1 if >= 1;
- its own ``p_i ~ U[2/NP, p_max]``, ``pbest`` among the ``max(2, round(p_i NP))`` best
  [p_max = 0.2]; current-to-pbest/1 with archive;
- archive of the parents replaced by better trials, ``|A| = round(archive_rate * NP)``, a random
  member overwritten when full [archive_rate = 1, i.e. ``|A| = NP``];
- after a generation with successes, slot ``k`` (cyclic) gets ``M_F[k] = weighted Lehmer mean of
  S_F`` and ``M_CR[k] = weighted arithmetic mean of S_CR``, weights proportional to the fitness
  improvements (the 2013 paper; L-SHADE changed the CR mean to Lehmer too);
- ``f(u) <= f(x)`` replaces, only ``f(u) < f(x)`` is a success; midpoint repair of bounds.

No terminal CR (that is L-SHADE's) and no population reduction.
"""

from __future__ import annotations

import numpy as np

from evomlp.de.adaptive import (
    AdaptiveDE,
    check_fraction,
    p_best_count,
    round_half_up,
    weighted_lehmer_mean,
    weighted_mean,
)
from evomlp.de.base import DEState


class SHADE(AdaptiveDE):
    """SHADE (Tanabe & Fukunaga 2013); see the module docstring."""

    def __init__(
        self,
        lower,
        upper,
        *,
        bounds_handling: str = "midpoint",
        max_evaluations: int = 0,
        min_population: int = 4,
        memory_size: int = 100,
        p_max: float = 0.2,
        archive_rate: float = 1.0,
        initial_memory: float = 0.5,
    ):
        super().__init__(
            lower,
            upper,
            bounds_handling=bounds_handling,
            max_evaluations=max_evaluations,
            min_population=min_population,
            memory_size=memory_size,
            initial_memory_f=initial_memory,
            initial_memory_cr=initial_memory,
        )
        self.p_max = check_fraction("p_max", p_max)
        self.archive_rate = float(archive_rate)

    def p_best_counts(self, state: DEState, rng: np.random.Generator) -> np.ndarray:
        size = state.population_size
        p = rng.uniform(2.0 / size, self.p_max, size=size)
        return p_best_count(p, size)

    def archive_capacity(self, state: DEState) -> int:
        return round_half_up(self.archive_rate * state.population_size)

    def memory_values(self, state: DEState, slot: int, s_f, s_cr, weights):
        return weighted_lehmer_mean(s_f, weights), weighted_mean(s_cr, weights)
