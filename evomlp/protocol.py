"""The ask/tell protocol every optimizer family implements, and the pieces they share.

An optimizer holds only frozen settings; everything that changes during a run lives in its
*state*, plain numpy arrays and numbers plus one :class:`numpy.random.Generator` (as evosax's
``Params`` / ``State`` split). The trainer, the evaluator and the checkpoints use nothing else:

- ``init(population (P, D), fitness (P,), rng) -> state``: the evaluated initial population;
- ``propose(state) -> plan``: draws every random number of the generation from ``state.rng`` (main
  process only) and returns a *plan* with ``n_trials``, ``shape == (P, D)`` and
  ``build(start, stop, out) -> trials[start:stop]``, callable from several threads on disjoint
  rows with the same bits for any split (the evaluator's threads build what they evaluate);
- ``ask(state) -> trials``: ``propose(state).build()``;
- ``tell(state, trials, fitness) -> state``: selection or the distribution update;
- ``candidates(state) -> (C, D)``: the networks the trainer scores on the validation rows this
  generation (DE: the best individual; an evolution strategy: its best sample and its mean);
- ``state_to_arrays(state) -> dict`` and ``state_from_arrays(arrays) -> state``: a checkpoint,
  bit-exact (the bit generator as its JSON state).

Every state has ``population (P, D)`` and ``fitness (P,)`` (the last evaluated individuals),
``rng``, ``generation``, ``n_evaluations`` and the properties ``best``, ``best_index``,
``best_fitness`` and ``population_size``. The registry of names is :mod:`evomlp.optimizers`.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Protocol

import numpy as np


class Optimizer(Protocol):
    def init(self, population: np.ndarray, fitness: np.ndarray, rng: np.random.Generator) -> Any: ...
    def propose(self, state: Any) -> Any: ...
    def ask(self, state: Any) -> np.ndarray: ...
    def tell(self, state: Any, trials: np.ndarray, fitness: np.ndarray) -> Any: ...
    def candidates(self, state: Any) -> np.ndarray: ...
    def state_to_arrays(self, state: Any) -> dict[str, np.ndarray]: ...
    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> Any: ...


def sanitize_fitness(fitness: np.ndarray) -> np.ndarray:
    """NaN and -inf/+inf fitness (an overflowing network) count as the worst possible: +inf."""
    fitness = np.asarray(fitness, dtype=np.float64)
    return np.where(np.isfinite(fitness), fitness, np.inf)


def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    """A generator's bit-generator state as a JSON string array (no pickle)."""
    return np.array(json.dumps(rng.bit_generator.state))


def rng_from_array(value: np.ndarray) -> np.random.Generator:
    """Inverse of :func:`rng_to_array`."""
    bit_state = json.loads(str(value))
    bit_generator = getattr(np.random, bit_state["bit_generator"])()
    bit_generator.state = bit_state
    return np.random.Generator(bit_generator)


class PopulationState:
    """The properties every state has, from its ``population (P, D)`` and ``fitness (P,)``."""

    population: np.ndarray
    fitness: np.ndarray

    @property
    def best_index(self) -> int:
        """Index of the lowest fitness (the first one on ties)."""
        return int(np.argmin(self.fitness))

    @property
    def best(self) -> np.ndarray:
        return self.population[self.best_index]

    @property
    def best_fitness(self) -> float:
        return float(self.fitness[self.best_index])

    @property
    def population_size(self) -> int:
        return int(self.population.shape[0])


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    """A state dataclass as named arrays (for an ``.npz`` checkpoint); the RNG as its JSON state."""
    return {item.name: rng_to_array(getattr(state, item.name)) if item.name == "rng" else np.array(getattr(state, item.name))
            for item in fields(state)}


def state_from_arrays(state_class: type, arrays: dict[str, np.ndarray], integer_fields: tuple[str, ...]) -> Any:
    """Inverse of :func:`state_to_arrays` for ``state_class``; ``integer_fields`` become ints."""
    from evomlp.errors import EvomlpError

    values = {}
    for item in fields(state_class):
        if item.name not in arrays:
            raise EvomlpError(f"optimizer state: missing field {item.name!r}")
        value = arrays[item.name]
        if item.name == "rng":
            values["rng"] = rng_from_array(value)
        elif item.name in integer_fields:
            values[item.name] = int(value)
        else:
            values[item.name] = np.array(value)
    return state_class(**values)
