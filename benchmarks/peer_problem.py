"""A problem of benchmarks/throughput.py as an ``.npz`` file for the peer comparison (benchmarks/peers.py).

The peers run in their own environment (``.venv-peers``: jax, evosax, numpy, no evomlp), so this
side, in the project's ``.venv``, writes what they need::

    .venv/bin/python benchmarks/peer_problem.py [--problem bc] [--population 1000] [--l2 0] [--out PATH]

(default ``build/peers/bc.npz``, the file ``peers.py`` reads by default). The file holds

- ``X (N, F)`` float32 and ``y (N,)`` int8 in {0, 1}: the problem's training rows;
- ``layer_sizes`` int64, e.g. ``[30, 64, 32, 1]``: ReLU hidden layers and one logit;
- ``l2`` (float64 scalar): the factor of ``sum(W^2)`` over the weight matrices (not the biases);
- ``bound`` (float64 scalar): the box ``[-bound, bound]`` of every weight;
- ``population0 (P, D)`` float32: the initial population, from ``throughput.start_population``;
- ``problem`` (a string): the problem's name.

``start_population`` draws the population row by row from one generator, so the first ``P``
rows of a population of 1,000 are the population of ``P`` it would draw: peers.py takes the first
``--population`` rows, and one file serves every population up to its size.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# evomlp before numpy, as in throughput.py: the rows are standardised with the pinned kernels
from evomlp import numerics  # noqa: E402,F401  isort: skip

import numpy as np  # noqa: E402
DEFAULT_PATH = ROOT / "build" / "peers" / "bc.npz"


def write_peer_problem(problem, population: np.ndarray, path, l2: float, bound: float = 5.0) -> Path:
    """Write ``problem`` (a :class:`benchmarks.throughput.Problem`: ``name``, ``spec``, ``X``, ``y``)
    and its initial ``population (P, D)`` to ``path`` (``.npz``, written atomically) for
    benchmarks/peers.py; ``l2`` is the fitness's penalty factor (``FitnessProblem(l2=...)``) and
    ``bound`` the half-width of the box (``throughput.BOUND``). Returns the path.

    Only what peers.py implements is accepted: a binary task (one logit) with ReLU hidden layers.
    """
    spec = problem.spec
    if spec.task != "binary" or spec.n_outputs != 1:
        raise ValueError(f"peer problems are binary with one logit, got task {spec.task!r} with {spec.n_outputs} outputs")
    if any(a != "relu" for a in spec.activations):
        raise ValueError(f"peer problems have ReLU hidden layers, got {list(spec.activations)}")
    population = np.asarray(population)
    if population.ndim != 2 or population.shape[1] != spec.n_weights:
        raise ValueError(f"population: expected (P, {spec.n_weights}), got {population.shape}")
    if not np.isfinite(population).all():
        raise ValueError("population: not finite")
    X = np.asarray(problem.X)
    y = np.asarray(problem.y)
    if X.shape != (y.shape[0], spec.n_inputs) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"X {X.shape} and y {y.shape}: expected (N, {spec.n_inputs}) and (N,) in {{0, 1}}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as out:
            np.savez(
                out,
                X=np.ascontiguousarray(X, dtype=np.float32),
                y=y.astype(np.int8),
                layer_sizes=np.asarray(spec.layer_sizes, dtype=np.int64),
                l2=np.float64(l2),
                bound=np.float64(bound),
                population0=np.ascontiguousarray(population, dtype=np.float32),
                problem=np.str_(getattr(problem, "name", "")),
            )
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> None:
    from benchmarks.throughput import BOUND, make_problems, start_population

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="bc", choices=("bc", "bc-x10", "bc-x100"))
    parser.add_argument("--population", type=int, default=1000, help="rows of population0 (default 1000)")
    parser.add_argument("--l2", type=float, default=0.0,
                        help="penalty factor (default 0: the FitnessProblem of throughput.py's evomlp rows)")
    parser.add_argument("--out", type=Path, default=None, help="default build/peers/PROBLEM.npz")
    args = parser.parse_args(argv)
    problem = make_problems((args.problem,))[args.problem]
    population, lower, upper = start_population(problem, args.population)
    if not (np.all(upper == BOUND) and np.all(lower == -BOUND)):
        raise SystemExit("peer_problem: the bounds are not +-BOUND everywhere; peers.py has one bound")
    out = args.out or DEFAULT_PATH.with_name(f"{args.problem}.npz")
    write_peer_problem(problem, population, out, args.l2, bound=BOUND)
    print(f"wrote {out}: {args.problem}, {problem.n_rows} rows, population {population.shape}, l2 {args.l2}")


if __name__ == "__main__":
    main()
