"""The pieces every DE variant shares: state, index sampling, selection (trials: :mod:`evomlp.de.trials`).

An optimizer is an object with these methods, all vectorised over the population (no Python loop
over individuals):

- ``init(population, fitness, rng) -> DEState``: the evaluated initial population becomes the state;
- ``propose(state) -> TrialPlan``: draws everything random from ``state.rng`` and remembers what
  ``tell`` needs (per-individual F and CR) in the state; the plan builds the trials by rows
  (:mod:`evomlp.de.trials`), so that workers can build the chunks they evaluate;
- ``ask(state) -> trials (P, D)``: ``propose(state).build()``;
- ``tell(state, trials, trial_fitness) -> DEState``: selection and adaptation.

All randomness comes from ``state.rng``, a :class:`numpy.random.Generator` that lives in the main
process, so what is done elsewhere (fitness evaluation, building trials from a plan) cannot
change the results. The state holds plain numpy arrays and scalars, so a checkpoint is a dump of
its fields plus the bit generator's state (see :func:`state_to_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evomlp.errors import EvomlpError
from evomlp import protocol
from evomlp.protocol import PopulationState, sanitize_fitness  # noqa: F401  (re-exported)


@dataclass
class DEState(PopulationState):
    """Everything a DE run needs to continue. Shapes: ``population (P, D)``, ``fitness (P,)``.

    Fields beyond the population are used by some variants only and stay empty otherwise:
    ``archive (A, D)`` holds replaced parents (JADE and successors), ``memory_f``/``memory_cr``
    the success-history memories (SHADE and successors), ``trial_f``/``trial_cr`` the parameters
    ``ask`` drew for the trials awaiting ``tell``, ``initial_population_size`` the size a
    shrinking population (L-SHADE, jSO) started from.
    """

    population: np.ndarray
    fitness: np.ndarray
    rng: np.random.Generator
    generation: int = 0
    n_evaluations: int = 0
    archive: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    memory_f: np.ndarray = field(default_factory=lambda: np.empty(0))
    memory_cr: np.ndarray = field(default_factory=lambda: np.empty(0))
    memory_index: int = 0
    trial_f: np.ndarray = field(default_factory=lambda: np.empty(0))
    trial_cr: np.ndarray = field(default_factory=lambda: np.empty(0))
    initial_population_size: int = 0


def state_to_arrays(state: DEState) -> dict[str, np.ndarray]:
    """The state as named arrays (for an ``.npz`` checkpoint); the RNG as its JSON bit-generator state."""
    return protocol.state_to_arrays(state)


def state_from_arrays(arrays: dict[str, np.ndarray]) -> DEState:
    """Inverse of :func:`state_to_arrays`."""
    return protocol.state_from_arrays(DEState, arrays, ("generation", "n_evaluations", "memory_index", "initial_population_size"))


class DEProtocol:
    """What every DE variant adds to ``init``/``propose``/``tell`` for the shared protocol
    (:mod:`evomlp.protocol`): the validation candidate is the best individual, and the state is
    checkpointed by :func:`state_to_arrays`."""

    def candidates(self, state: DEState) -> np.ndarray:
        return state.best[None, :]

    def state_to_arrays(self, state: DEState) -> dict[str, np.ndarray]:
        return state_to_arrays(state)

    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> DEState:
        return state_from_arrays(arrays)


def sample_distinct(
    rng: np.random.Generator, pool_size: int, n_draws: int, exclude: np.ndarray
) -> np.ndarray:
    """For every row, ``n_draws`` distinct indices from ``range(pool_size)`` not in that row of ``exclude``.

    ``exclude: (R, E)`` integer array, each row's values distinct and below ``pool_size``.
    Returns ``(R, n_draws)``. Each pick is uniform over what remains, drawn without rejection: a
    draw ``u`` from the ``pool_size - len(excluded)`` free values is mapped to the ``u``-th free
    index by stepping over the excluded ones in increasing order.
    """
    exclude = np.asarray(exclude, dtype=np.int64)
    n_rows, n_excluded = exclude.shape
    if pool_size - n_excluded < n_draws:
        raise EvomlpError(
            f"cannot draw {n_draws} distinct indices from {pool_size} with {n_excluded} excluded"
        )
    taken = np.sort(exclude, axis=1)
    picks = np.empty((n_rows, n_draws), dtype=np.int64)
    for draw in range(n_draws):
        u = rng.integers(0, pool_size - taken.shape[1], size=n_rows)
        for column in range(taken.shape[1]):
            u += u >= taken[:, column]
        picks[:, draw] = u
        taken = np.sort(np.concatenate([taken, u[:, None]], axis=1), axis=1)
    return picks


def greedy_selection(state: DEState, trials: np.ndarray, trial_fitness: np.ndarray) -> np.ndarray:
    """Replace each parent by its trial where ``f(trial) <= f(parent)``, in place.

    Returns the boolean mask of replaced parents. Accepting ties lets the population drift across
    plateaus, which the flat regions of a classification loss are full of.
    """
    replaced = trial_fitness <= state.fitness
    state.population[replaced] = trials[replaced]
    state.fitness[replaced] = trial_fitness[replaced]
    return replaced


def uniform_population(
    rng: np.random.Generator, size: int, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """``size`` points uniform in the box ``[lower, upper]``, ``(size, D)``."""
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    return lower + rng.random((size, lower.shape[0])) * (upper - lower)
