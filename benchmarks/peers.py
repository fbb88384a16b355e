"""Peer comparison: evosax (JAX) DE and SNES on a problem of benchmarks/throughput.py, in its own environment.

    ./scripts/setup-peers                                  # .venv-peers: jax (CPU), evosax, numpy, pinned
    .venv/bin/python benchmarks/peer_problem.py            # build/peers/bc.npz (the project's side)
    .venv-peers/bin/python benchmarks/peers.py [--problem PATH.npz] [--population P ...]
        [--generations G ...] [--repeats R] [--systems evosax-de evosax-snes] [--cores N] [--json OUT]

Defaults: ``build/peers/bc.npz`` (the default problem: 318 training rows of breast cancer,
30-64-32-1), populations 50 and 1000 with 100 and 5 generations (the lists pair up; one value
applies to all), best of 3, both systems, every core this process may use.

The problem file (:mod:`benchmarks.peer_problem` writes it) holds ``X (N, F)`` float32, ``y (N,)``
in {0, 1}, ``layer_sizes`` (e.g. ``[30, 64, 32, 1]``), ``l2``, ``bound`` and ``population0 (P0, D)``
float32; a run of population ``P`` starts from its first ``P`` rows (which are what
``throughput.start_population(problem, P)`` draws).

The network and the fitness are evomlp's (:class:`evomlp.evaluation.FitnessProblem` of a binary
task): ReLU hidden layers and one logit; the flat weight vector holds, layer after layer, ``W
(fan_in, fan_out)`` row-major then ``b (fan_out,)``; fitness = mean binary cross-entropy from the
logits in the stable form ``log1p(exp(-|z|)) + max(z, 0) - z y``, plus ``l2 * sum(W^2)`` over the
weight matrices (not the biases). :func:`fitness_numpy` computes it with numpy alone (the
reference that tests/test_peers.py checks against evomlp, without jax); :func:`fitness_jax` is the
same in JAX, for one individual, vmapped over the population. Before timing, this script checks the
JAX fitness (float32) of ``population0`` against the numpy reference (float64).

Systems (evosax's ``evosax.algorithms`` API: ``init``/``ask``/``tell`` with ``Params`` and
``State``), each a whole run jit-compiled as one function: evaluate the initial population, then
``G`` generations of ask -> evaluate -> tell in a ``jax.lax.scan``; float32 (JAX's default), so
``P (G + 1)`` evaluations a run, as in throughput.py:

- ``evosax-de``: ``DifferentialEvolution`` with ``num_diff=1``, ``elitism=False`` (a random base
  vector: rand/1; evosax's default is elitism, best/1), ``differential_weight`` 0.5 without
  dithering (min = max = 0.5), ``crossover_rate`` 0.9 (binomial, one coordinate always from the
  mutant), and evosax's selection (a trial replaces its parent if ``f(trial) <= f(parent)``: the
  same rule as evomlp's). ``init`` takes the evaluated ``population0``. evosax's DE has no bounds:
  the trials are clipped onto ``[-bound, bound]`` before evaluation and told as clipped (evomlp's
  ``bounds_handling: clip``). Its indices are drawn per member with ``jax.random.choice`` over the
  population (weights ``p``), O(P) each, so O(P^2) random numbers a generation.
- ``evosax-snes``: ``SNES`` (evosax's defaults: utility weights, mean learning rate 1 through
  ``optax.sgd``, ``lr_std = (3 + ln D) / (5 sqrt D)``). evosax's SNES starts from a mean, not a
  population, so, as evomlp's ES: ``population0`` is evaluated (counted), the mean starts at its
  best individual and ``std_init`` is 0.1 times ``population0``'s per-weight standard deviation.
  Samples are clipped onto the box for evaluation, told as drawn (evomlp's convention: learn from
  the drawn noise), and the mean is clipped onto the box after each update.
- ``jax-fitness`` (only when asked for with ``--systems``): the same ``P (G + 1)`` evaluations in
  the same kind of scan, without an optimizer: the difference to the others is evosax's own work
  (for DE mostly its random numbers: JAX's default threefry generator, computed on the CPU).

Timing: the run is compiled ahead of time (``jax.jit(run).lower(...).compile()``, reported as
``compile s``), then whole runs are timed ``R`` times (inputs already on the device, until
``block_until_ready``) and the best is kept; ``evals/s = P (G + 1) / best``. XLA on CPU runs one
device; its intra-op parallelism (the Eigen thread pool behind matrix products and large fused
loops) takes every core in the process's affinity mask: ``--cores N`` restricts the mask to N
cores before jax is imported, to measure that threading.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROBLEM = ROOT / "build" / "peers" / "bc.npz"
SYSTEMS = ("evosax-de", "evosax-snes")
REFERENCE_SYSTEMS = ("jax-fitness",)  # opt-in (--systems): the same evaluations without an optimizer
MUTATION = 0.5
CROSSOVER = 0.9
SNES_SIGMA = 0.1  # evomlp's ES default: step sizes = 0.1 x the initial population's per-weight deviation
SEED = 1
CHECK_TOLERANCE = 1e-4  # relative: float32 JAX fitness against the float64 numpy reference


# -- the problem ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerProblem:
    X: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) in {0, 1}
    layer_sizes: tuple[int, ...]
    l2: float
    bound: float
    population0: np.ndarray  # (P0, D) float32
    name: str = ""

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_weights(self) -> int:
        return n_weights(self.layer_sizes)


def n_weights(layer_sizes) -> int:
    return sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


def layer_slices(layer_sizes) -> list[tuple[slice, slice, int, int]]:
    """``[(W slice, b slice, fan_in, fan_out), ...]`` of the flat weight vector, layer by layer."""
    out = []
    start = 0
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        w_end = start + fan_in * fan_out
        out.append((slice(start, w_end), slice(w_end, w_end + fan_out), int(fan_in), int(fan_out)))
        start = w_end + fan_out
    return out


def load_problem(path) -> PeerProblem:
    with np.load(path, allow_pickle=False) as data:
        missing = {"X", "y", "layer_sizes", "l2", "bound", "population0"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing {sorted(missing)}")
        problem = PeerProblem(
            X=np.ascontiguousarray(data["X"], dtype=np.float32),
            y=np.asarray(data["y"]),
            layer_sizes=tuple(int(s) for s in data["layer_sizes"]),
            l2=float(data["l2"]),
            bound=float(data["bound"]),
            population0=np.ascontiguousarray(data["population0"], dtype=np.float32),
            name=str(data["problem"]) if "problem" in data.files else Path(path).stem,
        )
    sizes = problem.layer_sizes
    if len(sizes) < 2 or sizes[-1] != 1 or problem.X.ndim != 2 or problem.X.shape[1] != sizes[0]:
        raise ValueError(f"{path}: layer_sizes {list(sizes)} and X {problem.X.shape} do not fit a binary network")
    if problem.y.shape != (problem.n_rows,) or not np.isin(problem.y, (0, 1)).all():
        raise ValueError(f"{path}: y must be ({problem.n_rows},) in {{0, 1}}, got {problem.y.shape}")
    if problem.population0.ndim != 2 or problem.population0.shape[1] != problem.n_weights:
        raise ValueError(f"{path}: population0 must be (P, {problem.n_weights}), got {problem.population0.shape}")
    return problem


# -- the fitness: numpy reference and JAX -----------------------------------------------------
def fitness_numpy(population, X, y, layer_sizes, l2: float, dtype=np.float64) -> np.ndarray:
    """Fitness ``(P,)`` (float64) of ``population (P, D)``, computed in ``dtype`` with numpy only."""
    dtype = np.dtype(dtype)
    population = np.asarray(population, dtype=dtype)
    if population.ndim != 2 or population.shape[1] != n_weights(layer_sizes):
        raise ValueError(f"population: expected (P, {n_weights(layer_sizes)}), got {population.shape}")
    size = population.shape[0]
    hidden = np.asarray(X, dtype=dtype)
    penalty = np.zeros(size, dtype=dtype)
    layers = layer_slices(layer_sizes)
    for index, (w, b, fan_in, fan_out) in enumerate(layers):
        W = population[:, w].reshape(size, fan_in, fan_out)
        hidden = hidden @ W + population[:, None, b]
        if index < len(layers) - 1:
            hidden = np.maximum(hidden, 0)
        penalty += (W * W).sum(axis=(1, 2))
    z = hidden[..., 0]
    loss = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - z * np.asarray(y, dtype=dtype)
    return (loss.mean(axis=1) + dtype.type(l2) * penalty).astype(np.float64)


def fitness_jax(layer_sizes):
    """``f(population (P, D), X (N, F), y (N,), l2) -> (P,)``: the fitness in JAX, written for one
    individual and vmapped over the population (the dtype is the inputs')."""
    import jax
    import jax.numpy as jnp

    layers = layer_slices(layer_sizes)

    def one(weights, X, y, l2):
        hidden = X
        penalty = 0.0
        for index, (w, b, fan_in, fan_out) in enumerate(layers):
            W = weights[w].reshape(fan_in, fan_out)
            hidden = hidden @ W + weights[b]
            if index < len(layers) - 1:
                hidden = jnp.maximum(hidden, 0)
            penalty = penalty + jnp.sum(W * W)
        z = hidden[:, 0]
        loss = jnp.log1p(jnp.exp(-jnp.abs(z))) + jnp.maximum(z, 0) - z * y
        return jnp.mean(loss) + l2 * penalty

    return jax.vmap(one, in_axes=(0, None, None, None))


# -- the systems ------------------------------------------------------------------------------
def build_run(system: str, problem: PeerProblem, size: int, generations: int):
    """``(run, initial std)``: ``run(key, population0, X, y, l2) -> (best fitness at the end, best
    fitness of population0)``, to be jitted; a whole run of ``generations`` generations."""
    import jax
    import jax.numpy as jnp
    from evosax.algorithms import SNES, DifferentialEvolution

    fitness = fitness_jax(problem.layer_sizes)
    bound = problem.bound
    solution = jnp.zeros(problem.n_weights, dtype=jnp.float32)

    if system == "evosax-de":
        algorithm = DifferentialEvolution(population_size=size, solution=solution, num_diff=1)
        params = algorithm.default_params.replace(
            elitism=False, crossover_rate=CROSSOVER, differential_weight=MUTATION,
            differential_weight_min=MUTATION, differential_weight_max=MUTATION,
        )

        def run(key, population0, X, y, l2):
            key_init, key_loop = jax.random.split(key)
            fitness0 = fitness(population0, X, y, l2)
            state = algorithm.init(key_init, population0, fitness0, params)

            def step(carry, _):
                state, key = carry
                key, key_ask, key_tell = jax.random.split(key, 3)
                trials, state = algorithm.ask(key_ask, state, params)
                trials = jnp.clip(trials, -bound, bound)
                state, _ = algorithm.tell(key_tell, trials, fitness(trials, X, y, l2), state, params)
                return (state, key), None

            (state, _), _ = jax.lax.scan(step, (state, key_loop), length=generations)
            return jnp.min(state.fitness), jnp.min(fitness0)

        return run

    if system == "evosax-snes":
        algorithm = SNES(population_size=size, solution=solution)
        std_init = SNES_SIGMA * problem.population0[:size].astype(np.float64).std(axis=0)
        params = algorithm.default_params.replace(std_init=jnp.asarray(std_init, dtype=jnp.float32))

        def run(key, population0, X, y, l2):
            key_init, key_loop = jax.random.split(key)
            fitness0 = fitness(population0, X, y, l2)
            state = algorithm.init(key_init, population0[jnp.argmin(fitness0)], params)

            def step(carry, _):
                state, key = carry
                key, key_ask, key_tell = jax.random.split(key, 3)
                samples, state = algorithm.ask(key_ask, state, params)
                sample_fitness = fitness(jnp.clip(samples, -bound, bound), X, y, l2)
                state, _ = algorithm.tell(key_tell, samples, sample_fitness, state, params)
                state = state.replace(mean=jnp.clip(state.mean, -bound, bound))
                return (state, key), None

            (state, _), _ = jax.lax.scan(step, (state, key_loop), length=generations)
            return state.best_fitness, jnp.min(fitness0)

        return run

    if system == "jax-fitness":
        # the P (G + 1) evaluations alone: what the optimizer's own work adds is the difference.
        # Each population is the last one shifted by a tiny multiple of its mean fitness, so that
        # XLA cannot hoist the evaluation out of the loop.
        def run(key, population0, X, y, l2):
            fitness0 = fitness(population0, X, y, l2)

            def step(carry, _):
                population, best = carry
                population = population + 1e-9 * jnp.mean(best)
                return (population, jnp.minimum(best, jnp.min(fitness(population, X, y, l2)))), None

            (_, best), _ = jax.lax.scan(step, (population0, jnp.min(fitness0)), length=generations)
            return best, jnp.min(fitness0)

        return run

    raise ValueError(f"unknown system {system!r}; expected one of {list(SYSTEMS + REFERENCE_SYSTEMS)}")


def check_fitness(problem: PeerProblem, rows: int = 64) -> float:
    """Largest relative difference of the JAX fitness (float32, jitted) from the numpy reference
    (float64) on the first ``rows`` individuals of ``population0``; raises past the tolerance."""
    import jax
    import jax.numpy as jnp

    population = problem.population0[:rows]
    y = problem.y.astype(np.float32)
    got = np.asarray(jax.jit(fitness_jax(problem.layer_sizes))(
        jnp.asarray(population), jnp.asarray(problem.X), jnp.asarray(y), jnp.float32(problem.l2)), dtype=np.float64)
    want = fitness_numpy(population, problem.X, problem.y, problem.layer_sizes, problem.l2)
    relative = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-12)))
    if not relative <= CHECK_TOLERANCE:
        raise SystemExit(f"peers.py: the JAX fitness differs from the numpy reference by {relative:.3g} (relative)")
    return relative


def measure(system: str, problem: PeerProblem, size: int, generations: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    if size > problem.population0.shape[0]:
        raise SystemExit(f"peers.py: population {size} > the {problem.population0.shape[0]} rows of population0")
    if size < 4:
        raise SystemExit("peers.py: evosax's DE needs a population of at least 4")
    args = jax.device_put((
        jax.random.key(SEED),
        jnp.asarray(problem.population0[:size]),
        jnp.asarray(problem.X),
        jnp.asarray(problem.y.astype(np.float32)),
        jnp.float32(problem.l2),
    ))
    load_before = os.getloadavg()
    started = time.perf_counter()
    compiled = jax.jit(build_run(system, problem, size, generations)).lower(*args).compile()
    compile_s = time.perf_counter() - started
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        result = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - started)
    final_best, initial_best = (float(v) for v in result)
    return {
        "system": system, "problem": problem.name, "population": size, "n_rows": problem.n_rows,
        "generations": generations, "evaluations": size * (generations + 1),
        "evals_per_s": size * (generations + 1) / best, "run_s": best, "compile_s": compile_s,
        "repeats": repeats, "initial_best_fitness": initial_best, "final_best_fitness": final_best,
        "load_avg": [round(v, 2) for v in load_before] + [round(v, 2) for v in os.getloadavg()],
    }


# -- the environment --------------------------------------------------------------------------
def require_peers() -> None:
    """Exit with one line on stderr (status 2) unless jax and evosax import."""
    missing = []
    for name in ("jax", "evosax"):
        try:
            importlib.import_module(name)
        except Exception as error:  # an ImportError, or a broken install
            missing.append(f"{name} ({type(error).__name__}: {' '.join(str(error).split())})")
    if missing:
        print(f"peers.py: cannot import {', '.join(missing)} with {sys.executable}; "
              f"create the peer environment with ./scripts/setup-peers and run .venv-peers/bin/python "
              f"benchmarks/peers.py", file=sys.stderr)
        sys.exit(2)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "evosax", "numpy", "flax", "optax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def pair(populations: list[int], generations: list[int]) -> list[tuple[int, int]]:
    if len(populations) == 1:
        populations = populations * len(generations)
    if len(generations) == 1:
        generations = generations * len(populations)
    if len(populations) != len(generations):
        raise SystemExit("peers.py: --population and --generations pair up: give as many of each (or one)")
    return list(zip(populations, generations))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", type=Path, default=DEFAULT_PROBLEM, help="the .npz (default build/peers/bc.npz)")
    parser.add_argument("--population", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--generations", type=int, nargs="+", default=[100, 5])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; the best is kept")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS + REFERENCE_SYSTEMS, default=list(SYSTEMS),
                        help="default: the evosax ones; jax-fitness: the evaluations alone, no optimizer")
    parser.add_argument("--cores", type=int, default=None,
                        help="restrict this process to its first N allowed cores before jax loads (default: all)")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    args = parser.parse_args(argv)
    if args.cores is not None:
        allowed = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cores <= len(allowed):
            raise SystemExit(f"peers.py: --cores must be 1..{len(allowed)}")
        os.sched_setaffinity(0, allowed[: args.cores])
    require_peers()
    if not args.problem.exists():
        raise SystemExit(f"peers.py: no problem file {args.problem}; write it with the project's environment: "
                         f".venv/bin/python benchmarks/peer_problem.py --problem bc --out {args.problem}")
    import jax

    problem = load_problem(args.problem)
    cores = len(os.sched_getaffinity(0))
    environment = {"versions": versions(), "cpu": cpu_name(), "cores": cores,
                   "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": [str(d) for d in jax.devices()]}
    print(f"peers: {problem.name} ({problem.n_rows} rows, {'-'.join(map(str, problem.layer_sizes))}, "
          f"D {problem.n_weights}, l2 {problem.l2:g}, bound {problem.bound:g}); {environment['cpu']}, "
          f"{cores} cores; " + ", ".join(f"{k} {v}" for k, v in environment["versions"].items()))
    print(f"check: JAX float32 fitness vs numpy float64 reference, largest relative difference "
          f"{check_fitness(problem):.2g}")
    rows = []
    for size, generations in pair(args.population, args.generations):
        for system in args.systems:
            print(f"  measuring {system} P={size} G={generations} (x{args.repeats})", file=sys.stderr, flush=True)
            rows.append(dict(measure(system, problem, size, generations, args.repeats), **environment))
    header = f"{'system':<12} {'problem':<8} {'N':>6} {'P':>5} {'G':>4} {'evals/s':>10} {'compile s':>9} " \
             f"{'run s':>8}  {'best f: start -> end':<22} {'load 1 min':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['system']:<12} {row['problem']:<8} {row['n_rows']:>6} {row['population']:>5} "
              f"{row['generations']:>4} {row['evals_per_s']:>10,.0f} {row['compile_s']:>9.2f} {row['run_s']:>8.3f}  "
              f"{row['initial_best_fitness']:>9.4f} -> {row['final_best_fitness']:<9.4f} "
              f"{row['load_avg'][0]:>5.2f}/{row['load_avg'][3]:<4.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
