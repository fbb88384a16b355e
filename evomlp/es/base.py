"""What every evolution strategy here shares: state, the sampling plan, fitness shaping, checkpoints.

An evolution strategy keeps a Gaussian search distribution ``N(mean, diag(step**2))`` over the
weight vector and implements the optimizer protocol of the trainer (as the DE family,
:mod:`evomlp.de.base`):

- ``init(population, fitness, rng) -> ESState``: the evaluated initial population; the mean
  starts at its best individual (lowest fitness, the first one on ties; NaN counts as worst);
- ``propose(state) -> ESPlan``: draws this generation's noise in the main process and records it
  in ``state.noise`` for ``tell``: ``n`` offsets ``state.rng.integers(0, T - D + 1, n)`` into the
  shared noise table (``n`` samples, or ``n`` mirrored pairs whose second rows reuse the first
  rows' noise), row ``k``'s noise ``z_k = table[offset_k : offset_k + D]``; the generator advances
  by the same amount whoever builds the samples and however the rows are split;
- ``ESPlan.build(start, stop, out)``: sample rows ``start:stop``, ``clip(mean + sign * step * z,
  lower, upper)`` from the recorded noise. It draws nothing, and each row depends only on its own
  noise, so any split into row ranges, built in any order by any threads, gives the same bits;
- ``ask(state)``: ``propose(state).build()``;
- ``tell(state, trials, fitness) -> ESState``: fitness shaping (ranks; NaN and inf fitness
  count as worst, :func:`evomlp.de.base.sanitize_fitness`) and the distribution update;
- ``candidates(state)``: ``[best sample of the last population, mean]`` for the trainer's
  validation-based model selection (the mean is never evaluated by the population);
- ``state_to_arrays``/``state_from_arrays``: a bit-exact checkpoint (the RNG as the JSON of its
  bit generator's state).

Conventions shared by every module here:

- Samples outside the box ``[lower, upper]`` are clipped onto it for evaluation. SNES, PGPE and
  OpenAI-ES learn from the drawn noise ``z``, not from the clipped sample (a simplification:
  clipping repairs what is evaluated, the gradient estimate ignores it, and mirrored pairs stay
  exact negatives); sep-CMA-ES learns from the clipped samples, since its step-size control
  diverges otherwise when the optimum lies on the box (see :mod:`evomlp.es.sepcmaes`). After each update the mean is clipped into the box,
  so the distribution stays centred on feasible points.
- Step sizes start at ``settings["sigma"] * initial_scale`` per weight, ``initial_scale`` being the
  per-weight standard deviation of the initial population (sep-CMA-ES: scalar ``sigma`` and
  ``C = diag(initial_scale**2)``, the same initial distribution).
- The ``sigma`` defaults (0.1 for every strategy) were measured on the default problem (breast
  cancer, 30-64-32-1 ReLU, L2 0.03, population 50, 1,500 generations, He initialisation): every
  strategy reached a training accuracy of 1 with sigma 0.03 to 1; the final fitness (loss plus
  penalty) of the mean was lowest at sigma 0.05 to 0.1 and about 3 to 4 times higher at 0.5
  (SNES 0.0025 at 0.1, 0.027 at 0.5; sep-CMA-ES 0.0032 / 0.008; PGPE 0.0023 / 0.0059;
  OpenAI-ES 0.0031 at 0.1, 0.0057 at 0.3).
- Fitness is minimised; ties in the ranking are broken by index (the earlier sample ranks better).
- The updates use no BLAS call (no ``@``, ``dot`` or ``linalg.norm``): sums are numpy reductions,
  whose bits do not depend on how many BLAS threads the process runs with (the evaluator pins one
  BLAS thread while it runs, so a BLAS product in ``tell`` could change with ``n_jobs``).
- All randomness comes from ``state.rng`` in the main process, and the noise from a shared noise
  table (Salimans, Ho, Chen, Sidor & Sutskever 2017, "Evolution strategies as a scalable
  alternative to reinforcement learning", section 2.1): ``T`` standard normals drawn once per
  process from a fixed seed (:func:`noise_table`; ``T = max(2**22, 64 D)`` rounded up to a power
  of two, float64, 32 MB for networks up to 65,536 weights), a sample's noise a slice at an
  offset drawn from ``state.rng``. Copying a slice costs well under a nanosecond per number;
  drawing fresh normals costs about 10 (on the default problem, 205,000 numbers a generation:
  3.7 of SNES's 13 s, measured with cProfile), and a generator seeded per row, an earlier design,
  about 50 us a row. Slices at nearby offsets share values in shifted positions, so two samples'
  noise vectors are nearly orthogonal but not independent; the paper found this harmless, and the
  table is much longer than one sample.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from evomlp import protocol
from evomlp.protocol import PopulationState, sanitize_fitness
from evomlp.errors import EvomlpError

def _empty_vector() -> np.ndarray:
    return np.empty(0)


@dataclass
class ESState(PopulationState):
    """Everything an evolution strategy needs to continue.

    Shapes: ``mean (D,)``; ``sigma (D,)`` the per-weight step sizes (SNES, PGPE, OpenAI-ES) or
    ``()`` the global step size (sep-CMA-ES, whose per-weight scales are ``sqrt(cov)``);
    ``population (P, D)`` and ``fitness (P,)`` the last evaluated samples (sanitised fitness);
    ``noise (P, D)`` the standard-normal noise of the samples proposed and not yet told
    (``(0, D)`` otherwise). Family fields, empty when unused: ``cov (D,)`` the diagonal of C,
    ``path_sigma``/``path_c (D,)`` the evolution paths (sep-CMA-ES); ``velocity (D,)`` ClipUp's
    (PGPE); ``moment1``/``moment2 (D,)`` Adam's (OpenAI-ES).
    """

    mean: np.ndarray
    sigma: np.ndarray
    population: np.ndarray
    fitness: np.ndarray
    rng: np.random.Generator
    generation: int = 0
    n_evaluations: int = 0
    noise: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    cov: np.ndarray = field(default_factory=_empty_vector)
    path_sigma: np.ndarray = field(default_factory=_empty_vector)
    path_c: np.ndarray = field(default_factory=_empty_vector)
    velocity: np.ndarray = field(default_factory=_empty_vector)
    moment1: np.ndarray = field(default_factory=_empty_vector)
    moment2: np.ndarray = field(default_factory=_empty_vector)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


_INTEGER_FIELDS = ("generation", "n_evaluations")


def state_to_arrays(state: ESState) -> dict[str, np.ndarray]:
    """The state as named arrays (for an ``.npz`` checkpoint); the RNG as its JSON bit-generator state."""
    return protocol.state_to_arrays(state)


def state_from_arrays(arrays: dict[str, np.ndarray]) -> ESState:
    """Inverse of :func:`state_to_arrays`."""
    return protocol.state_from_arrays(ESState, arrays, _INTEGER_FIELDS)


# -- fitness shaping ----------------------------------------------------------------------------
def ranking(fitness: np.ndarray) -> np.ndarray:
    """Row indices from best (lowest fitness) to worst; NaN/inf last; ties by index."""
    return np.argsort(sanitize_fitness(fitness), kind="stable")


def nes_utilities(size: int) -> np.ndarray:
    """NES utilities ``u_k`` for ranks ``k = 1..size`` (best first), Wierstra et al. 2014:

    ``u_k = max(0, ln(size/2 + 1) - ln k) / sum_j max(0, ln(size/2 + 1) - ln j) - 1/size``;
    they sum to 0, the best gets the largest.
    """
    k = np.arange(1, size + 1, dtype=np.float64)
    raw = np.maximum(0.0, math.log(size / 2 + 1) - np.log(k))
    return raw / np.sum(raw) - 1.0 / size


def nes_utilities_by_row(fitness: np.ndarray) -> np.ndarray:
    """:func:`nes_utilities` assigned to the rows of ``fitness`` by their rank, ``(P,)``."""
    size = fitness.shape[0]
    utilities = np.empty(size)
    utilities[ranking(fitness)] = nes_utilities(size)
    return utilities


def centred_ranks(fitness: np.ndarray) -> np.ndarray:
    """Centred ranks (Salimans et al. 2017) per row, ``rank / (P - 1) - 0.5`` in ``[-0.5, 0.5]``;
    minimisation: the lowest fitness gets 0.5, the highest (or NaN) -0.5."""
    size = fitness.shape[0]
    ranks = np.empty(size)
    ranks[ranking(fitness)] = np.arange(size - 1, -1, -1, dtype=np.float64)
    return ranks / (size - 1) - 0.5


def norm(vector: np.ndarray) -> float:
    """Euclidean norm without BLAS (see the module docstring)."""
    return float(np.sqrt(np.sum(vector * vector)))


def weighted_row_sum(weights: np.ndarray, rows: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """``sum_k weights[k] * rows[k]``, ``(D,)``, without BLAS. ``scratch``, an array of the shape
    and dtype of the products that ``rows`` may be, receives them (no new megabytes a generation:
    the same operations, so the same bits)."""
    if scratch is None:
        return np.sum(weights[:, None] * rows, axis=0)
    np.multiply(weights[:, None], rows, out=scratch)
    return np.sum(scratch, axis=0)


# -- the noise table ---------------------------------------------------------------------------
NOISE_TABLE_SEED = 20170310  # fixed: the table is part of the algorithm, the same in every process
NOISE_TABLE_MIN = 2**22


def noise_table_size(dim: int) -> int:
    """``max(2**22, 64 * dim)`` rounded up to a power of two."""
    return max(NOISE_TABLE_MIN, 1 << max(64 * int(dim) - 1, 1).bit_length())


@functools.lru_cache(maxsize=2)
def noise_table(size: int) -> np.ndarray:
    """``size`` standard normals (float64, read-only) from ``PCG64(NOISE_TABLE_SEED)``."""
    table = np.random.Generator(np.random.PCG64(NOISE_TABLE_SEED)).standard_normal(size)
    table.flags.writeable = False
    return table


# -- the plan -----------------------------------------------------------------------------------
class ESPlan:
    """One generation's samples, built by rows (see the module docstring).

    ``noise (P, D)`` is the state's pending noise, already drawn; with ``mirrored``, rows ``k`` and
    ``k + P/2`` hold the same ``z`` and are sampled with signs + and -.
    """

    def __init__(self, mean, step, noise, mirrored, lower, upper):
        self.mean = np.array(mean, dtype=np.float64)
        self.step = np.array(step, dtype=np.float64)
        self.mirrored = bool(mirrored)
        self.lower = lower
        self.upper = upper
        self.noise = noise
        self.shape = (int(noise.shape[0]), int(noise.shape[1]))
        if self.mirrored and self.shape[0] % 2:
            raise EvomlpError(f"ESPlan: mirrored sampling needs an even number of rows, got {self.shape[0]}")

    @property
    def n_trials(self) -> int:
        return self.shape[0]

    def build(self, start: int = 0, stop: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Sample rows ``start:stop`` (all by default), float64 ``(stop - start, D)``, written
        into ``out`` if given (C-contiguous)."""
        stop = self.n_trials if stop is None else int(stop)
        start = int(start)
        dim = self.shape[1]
        if not 0 <= start <= stop <= self.n_trials:
            raise ValueError(f"rows {start}:{stop} outside the plan's {self.n_trials} samples")
        if out is None:
            out = np.empty((stop - start, dim))
        elif out.shape != (stop - start, dim) or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"out: expected a C-contiguous float64 array of shape {(stop - start, dim)}")
        np.multiply(self.step, self.noise[start:stop], out=out)
        if self.mirrored:
            negative = max(start, self.shape[0] // 2)
            if negative < stop:
                np.negative(out[negative - start:], out=out[negative - start:])
        out += self.mean
        np.maximum(out, self.lower, out=out)
        np.minimum(out, self.upper, out=out)
        return out


# -- settings -----------------------------------------------------------------------------------
def check_setting(algorithm: str, name: str, value, low=None, high=None, *, low_open=True, high_open=False) -> float:
    """``value`` as a float, or an :class:`EvomlpError` naming ``optimizer.<algorithm>.<name>``.

    ``low``/``high`` bound it (None: unbounded); by default ``low < value <= high``.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        where = (" " + " and ".join(bounds)) if bounds else ""
        raise EvomlpError(f"optimizer.{algorithm}.{name}: expected a finite number{where}, got {value!r}")
    return float(value)


def interval(bounds: tuple) -> tuple[float | None, float | None, bool, bool]:
    """``(low, high, low_open, high_open)`` of a setting's range: ``(low, high)`` is ``(low, high]``,
    ``(low, high, "[)")`` names its brackets (``None``: unbounded on that side)."""
    low, high, *brackets = bounds
    shape = brackets[0] if brackets else "(]"
    if shape not in ("()", "(]", "[)", "[]"):
        raise ValueError(f"range brackets: expected one of (), (], [), [], got {shape!r}")
    return low, high, shape[0] == "(", shape[1] == ")"


def checked_settings(algorithm: str, table: dict, given: dict) -> dict[str, float]:
    """Every setting of ``table`` (``name -> (default, help, range)``, range as :func:`interval`
    reads it), defaults filled in, each checked against its range; unknown names refused."""
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise EvomlpError(f"optimizer.{algorithm}.{unknown[0]}: no such setting; it reads {list(table)}")
    values = {}
    for name, (default, _help, bounds) in table.items():
        low, high, low_open, high_open = interval(bounds)
        values[name] = check_setting(algorithm, name, given.get(name, default), low, high,
                                     low_open=low_open, high_open=high_open)
    return values


# -- the shared optimizer -----------------------------------------------------------------------
class DistributionES:
    """The protocol around a family's update rule. Subclasses set ``NAME``, ``SETTINGS``,
    ``MIRRORED`` and implement :meth:`initial_fields`, :meth:`step` and :meth:`update`."""

    NAME = "es"
    SETTINGS: dict = {}
    MIRRORED = False
    MINIMUM_POPULATION = 2

    def __init__(self, lower, upper, initial_scale, **settings):
        self.lower = np.array(lower, dtype=np.float64)
        self.upper = np.array(upper, dtype=np.float64)
        self.initial_scale = np.array(initial_scale, dtype=np.float64)
        dim = self.lower.shape
        if self.lower.ndim != 1 or self.upper.shape != dim or self.initial_scale.shape != dim:
            raise EvomlpError(
                f"{type(self).__name__}: lower, upper and initial_scale must be (D,) arrays, got "
                f"{self.lower.shape}, {self.upper.shape}, {self.initial_scale.shape}"
            )
        if np.any(self.lower > self.upper):
            raise EvomlpError(f"{type(self).__name__}: lower bound above upper bound")
        if not (np.all(np.isfinite(self.initial_scale)) and np.all(self.initial_scale > 0)):
            raise EvomlpError(f"{type(self).__name__}: initial_scale must be finite and > 0")
        self.settings = checked_settings(self.NAME, self.SETTINGS, settings)
        for name, value in self.settings.items():
            setattr(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    # -- hooks ------------------------------------------------------------------------------------
    def initial_fields(self, mean: np.ndarray, size: int) -> dict:
        """``sigma`` and the family fields of a new state."""
        raise NotImplementedError

    def step(self, state: ESState) -> np.ndarray:
        """Per-weight standard deviation ``(D,)`` of this generation's samples."""
        return state.sigma

    def update(self, state: ESState, noise: np.ndarray, fitness: np.ndarray, trials: np.ndarray) -> None:
        """The distribution update from the noise ``(P, D)``, the sanitised fitness ``(P,)`` and the
        evaluated (clipped) samples ``(P, D)``, in place."""
        raise NotImplementedError

    # -- protocol ---------------------------------------------------------------------------------
    def check_population_size(self, size: int) -> None:
        if size < self.MINIMUM_POPULATION:
            raise EvomlpError(
                f"train.population_size: {self.NAME} needs at least {self.MINIMUM_POPULATION} individuals, got {size}"
            )
        if self.MIRRORED and size % 2:
            raise EvomlpError(
                f"train.population_size: {self.NAME} samples in mirrored pairs and needs an even population, got {size}"
            )

    def init(self, population: np.ndarray, fitness: np.ndarray, rng: np.random.Generator) -> ESState:
        population = np.array(population, dtype=np.float64)
        if population.ndim != 2 or population.shape[1] != self.dim:
            raise EvomlpError(f"{type(self).__name__}: population must be (P, {self.dim}), got {population.shape}")
        size = population.shape[0]
        self.check_population_size(size)
        fitness = sanitize_fitness(fitness)
        if fitness.shape != (size,):
            raise EvomlpError(f"{type(self).__name__}: fitness must be ({size},), got {fitness.shape}")
        mean = population[int(np.argmin(fitness))].copy()
        state = ESState(
            mean=mean,
            population=population,
            fitness=fitness,
            rng=rng,
            n_evaluations=size,
            noise=np.empty((0, self.dim)),
            **self.initial_fields(mean, size),
        )
        return state

    def propose(self, state: ESState) -> ESPlan:
        """Draw the generation's noise (offsets into the noise table); the plan builds the samples by rows."""
        size = state.population_size
        n_draws = size // 2 if self.MIRRORED else size
        table = noise_table(noise_table_size(self.dim))
        offsets = state.rng.integers(0, table.shape[0] - self.dim + 1, size=n_draws)
        state.noise = np.empty((size, self.dim))
        for row, offset in enumerate(offsets.tolist()):  # a copy per row: 10x faster than fancy indexing a window view
            state.noise[row] = table[offset : offset + self.dim]
        if self.MIRRORED:
            state.noise[n_draws:] = state.noise[:n_draws]
        return ESPlan(state.mean, self.step(state), state.noise, self.MIRRORED, self.lower, self.upper)

    def ask(self, state: ESState) -> np.ndarray:
        return self.propose(state).build()

    def tell(self, state: ESState, trials: np.ndarray, fitness: np.ndarray) -> ESState:
        trials = np.asarray(trials, dtype=np.float64)
        fitness = sanitize_fitness(fitness)
        size = state.population_size
        if trials.shape != (size, self.dim) or fitness.shape != (size,):
            raise EvomlpError(
                f"{type(self).__name__}.tell: expected samples {(size, self.dim)} and fitness ({size},), "
                f"got {trials.shape} and {fitness.shape}"
            )
        if state.noise.shape != trials.shape:
            raise EvomlpError(f"{type(self).__name__}.tell: no proposed samples to learn from (call propose first)")
        self.update(state, state.noise, fitness, trials)
        state.mean = np.clip(state.mean, self.lower, self.upper)
        state.population = trials.copy()
        state.fitness = fitness
        state.noise = np.empty((0, self.dim))
        state.generation += 1
        state.n_evaluations += size
        return state

    def candidates(self, state: ESState) -> np.ndarray:
        """``[best sample of the last population, mean]`` ``(2, D)``, the mean clipped to the box."""
        return np.stack([state.best, np.clip(state.mean, self.lower, self.upper)])

    def state_to_arrays(self, state: ESState) -> dict[str, np.ndarray]:
        return state_to_arrays(state)

    def state_from_arrays(self, arrays: dict[str, np.ndarray]) -> ESState:
        return state_from_arrays(arrays)
