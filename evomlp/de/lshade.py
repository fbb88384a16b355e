"""L-SHADE: SHADE with linear population size reduction.

Tanabe, R. & Fukunaga, A. S. (2014). Improving the search performance of SHADE using linear
population size reduction. Proc. IEEE Congress on Evolutionary Computation (CEC 2014), 1658-1665.
Checked against the authors' C++ code, L-SHADE 1.0.1 (the release that archives the replaced
parent, not the child, fixing 1.0.0).

Rules implemented (defaults in brackets):

- memories ``M_F, M_CR`` of ``H`` slots, all 0.5 at the start [H = 6, ``memory_size``]; a uniform
  slot per individual; ``CR_i ~ N(M_CR, 0.1)`` clipped to [0, 1], ``F_i ~ Cauchy(M_F, 0.1)`` drawn
  again if <= 0, truncated to 1 if >= 1;
- current-to-pbest/1 with archive, ``pbest`` among the ``max(2, round(p N))`` best [p = 0.11];
- archive of the parents replaced by better trials, capacity ``round(r_arc N_init)`` and, after
  each reduction, ``int(r_arc N)`` (the code's truncation), a random member overwritten when full,
  the first members kept when it shrinks [r_arc = 2.6];
- memory update at slot ``k`` (cyclic) after a generation with successes: ``M_F[k]`` and
  ``M_CR[k]`` = weighted Lehmer means of ``S_F`` and ``S_CR`` (weights proportional to the
  fitness improvements);
- terminal CR: if ``max(S_CR) == 0`` the slot becomes terminal, stored as -1
  (:data:`evomlp.de.adaptive.TERMINAL_CR`), and every CR drawn from it is 0;
- linear population size reduction after each generation:
  ``N = round((N_min - N_init) / MAX_NFE * NFE + N_init)`` removing the worst [N_min = 4];
  here the end point is ``max(N_min, min_population)`` so the population never goes below the
  number of parallel workers. ``N_init`` is the size of the population given to ``init``
  (the paper: ``round(18 D)``). With ``max_evaluations = 0`` (unknown budget) there is no reduction;
- ``f(u) <= f(x)`` replaces, only ``f(u) < f(x)`` is a success; midpoint repair of bounds.

Paper and code differ on whether a terminal slot stays terminal. The paper's Algorithm 1 keeps it
(``M_CR = terminal if M_CR was terminal or max(S_CR) = 0``); the released code resets the slot to 0
before it tests for -1, so the test is dead and a slot recovers at its next update with a non-zero
mean. This module follows the code by default (it is what produced the published results, jSO's
code behaves the same, and a slot locked at CR = 0 would hurt non-separable problems such as
network weights for the rest of the run); ``sticky_terminal=True`` gives the paper's rule.
"""

from __future__ import annotations

import numpy as np

from evomlp.de.adaptive import (
    TERMINAL_CR,
    ReducingDE,
    check_fraction,
    p_best_count,
    weighted_lehmer_mean,
)
from evomlp.de.base import DEState


class LSHADE(ReducingDE):
    """L-SHADE (Tanabe & Fukunaga 2014); see the module docstring."""

    def __init__(
        self,
        lower,
        upper,
        *,
        bounds_handling: str = "midpoint",
        max_evaluations: int = 0,
        min_population: int = 4,
        memory_size: int = 6,
        p_best: float = 0.11,
        archive_rate: float = 2.6,
        n_min: int = 4,
        initial_memory: float = 0.5,
        sticky_terminal: bool = False,
    ):
        super().__init__(
            lower,
            upper,
            n_min=n_min,
            archive_rate=archive_rate,
            bounds_handling=bounds_handling,
            max_evaluations=max_evaluations,
            min_population=min_population,
            memory_size=memory_size,
            initial_memory_f=initial_memory,
            initial_memory_cr=initial_memory,
        )
        self.p_best = check_fraction("p_best", p_best)
        self.sticky_terminal = bool(sticky_terminal)

    def p_best_counts(self, state: DEState, rng: np.random.Generator) -> np.ndarray:
        return p_best_count(self.p_best, state.population_size)

    def memory_values(self, state: DEState, slot: int, s_f, s_cr, weights):
        was_terminal = state.memory_cr[slot] < 0
        # The mean is NaN exactly when sum(w CR) = 0, i.e. max(S_CR) = 0 (the code's test).
        mean_cr = weighted_lehmer_mean(s_cr, weights)
        if np.isnan(mean_cr) or (self.sticky_terminal and was_terminal):
            mean_cr = TERMINAL_CR
        return weighted_lehmer_mean(s_f, weights), mean_cr
