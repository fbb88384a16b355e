"""jSO: an improved iL-SHADE (L-SHADE with weighted mutation and staged parameter limits).

Brest, J., Maucec, M. S. & Boskovic, B. (2017). Single objective real-parameter optimization:
algorithm jSO. Proc. IEEE Congress on Evolutionary Computation (CEC 2017), 1311-1318.
Checked against the authors' C++ code for CEC 2017 (built on L-SHADE's).

Everything of L-SHADE (:mod:`evomlp.de.lshade`: linear population size reduction to
``max(N_min, min_population)`` removing the worst, archive of replaced parents with random
overwrite, weighted Lehmer memory update, terminal CR), with these changes (defaults in brackets):

- ``H = 5`` slots; ``M_F`` starts at 0.3 and ``M_CR`` at 0.8; the last slot is fixed at 0.9 for
  both (its updates are skipped, the cyclic index still passes over it, as in the code);
- archive rate 1.0; ``N_init`` is the size given to ``init`` (the paper: ``round(25 ln(D) sqrt(D))``);
- ``p = p_max - (p_max - p_min) NFE / MAX_NFE`` [p_max = 0.25, p_min = p_max / 2];
- CR floors: ``CR >= 0.7`` while ``NFE < 0.25 MAX_NFE``, ``CR >= 0.6`` while ``NFE < 0.5 MAX_NFE``
  (applied after the terminal rule, as in the code, so a terminal slot gives 0.7 or 0.6 early on);
- F cap: ``F <= 0.7`` while ``NFE < 0.6 MAX_NFE``;
- weighted mutation ``v = x + F_w (x_pbest - x) + F (x_r1 - x~_r2)`` with ``F_w = 0.7 F`` while
  ``NFE < 0.2 MAX_NFE``, ``0.8 F`` while ``NFE < 0.4 MAX_NFE``, then ``1.2 F``;
- smoothed memory update ``M[k] <- (weighted Lehmer mean + M[k]) / 2`` for F and CR; where
  ``max(S_CR) = 0`` the mean is the terminal -1 before smoothing, and any negative ``M_CR`` reads
  as terminal (the code's ``mu_cr < 0`` test);
- from the authors' code (iL-SHADE), not listed in the checklist: while ``NFE < 0.5 MAX_NFE``,
  ``pbest`` is never the individual itself.

``NFE`` counts the evaluations done before the generation, the initial population included.
With ``max_evaluations = 0`` (unknown budget) every stage stays at its start: p = p_max,
``CR >= 0.7``, ``F <= 0.7``, ``F_w = 0.7 F``, ``pbest != i``, and no population reduction.
"""

from __future__ import annotations

import numpy as np

from evomlp.de.adaptive import TERMINAL_CR, ReducingDE, p_best_count, weighted_lehmer_mean
from evomlp.de.base import DEState
from evomlp.errors import EvomlpError

FIXED_SLOT_VALUE = 0.9


class JSO(ReducingDE):
    """jSO (Brest, Maucec & Boskovic 2017); see the module docstring."""

    MINIMUM_MEMORY_SIZE = 2
    MEMORY_SIZE_RULE = "jSO needs >= 2 (one slot is fixed)"

    def __init__(
        self,
        lower,
        upper,
        *,
        bounds_handling: str = "midpoint",
        max_evaluations: int = 0,
        min_population: int = 4,
        memory_size: int = 5,
        p_max: float = 0.25,
        p_min: float | None = None,
        archive_rate: float = 1.0,
        n_min: int = 4,
        initial_memory_f: float = 0.3,
        initial_memory_cr: float = 0.8,
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
            initial_memory_f=initial_memory_f,
            initial_memory_cr=initial_memory_cr,
        )
        p_min = p_max / 2 if p_min is None else p_min
        if not 0 < p_min <= p_max <= 1:
            raise EvomlpError(f"p_min, p_max: expected 0 < p_min <= p_max <= 1, got {p_min}, {p_max}")
        self.p_max = float(p_max)
        self.p_min = float(p_min)

    def initial_memory(self):
        memory_f, memory_cr = super().initial_memory()
        memory_f[-1] = memory_cr[-1] = FIXED_SLOT_VALUE
        return memory_f, memory_cr

    def draw_parameters(self, state: DEState, rng: np.random.Generator):
        f, cr = super().draw_parameters(state, rng)
        progress = self.progress(state)
        if progress < 0.25:
            cr = np.maximum(cr, 0.7)
        elif progress < 0.5:
            cr = np.maximum(cr, 0.6)
        if progress < 0.6:
            f = np.minimum(f, 0.7)
        return f, cr

    def p_best_counts(self, state: DEState, rng: np.random.Generator) -> np.ndarray:
        p = self.p_max - (self.p_max - self.p_min) * min(self.progress(state), 1.0)
        return p_best_count(p, state.population_size)

    def avoid_self_as_pbest(self, state: DEState) -> bool:
        return self.progress(state) < 0.5

    def pbest_scale(self, state: DEState, f: np.ndarray) -> np.ndarray:
        progress = self.progress(state)
        if progress < 0.2:
            return 0.7 * f
        if progress < 0.4:
            return 0.8 * f
        return 1.2 * f

    def memory_values(self, state: DEState, slot: int, s_f, s_cr, weights):
        if slot == state.memory_f.shape[0] - 1:  # the last slot stays at 0.9
            return None
        mean_f = weighted_lehmer_mean(s_f, weights)
        mean_cr = weighted_lehmer_mean(s_cr, weights)  # NaN when max(S_CR) = 0
        mean_cr = TERMINAL_CR if np.isnan(mean_cr) else mean_cr
        return (mean_f + state.memory_f[slot]) / 2, (mean_cr + state.memory_cr[slot]) / 2
