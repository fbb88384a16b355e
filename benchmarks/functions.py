"""Benchmark every evomlp DE strategy and scipy's DE on classic test functions.

Functions (standard bounds, as in Yao, Liu & Lin, IEEE TEVC 3(2), 1999), error = f(x) - f(x*):

=========== ================ ======================================================
sphere      [-100, 100]^D    sum x^2
rosenbrock  [-30, 30]^D      sum 100 (x_{j+1} - x_j^2)^2 + (1 - x_j)^2
rastrigin   [-5.12, 5.12]^D  10 D + sum x^2 - 10 cos(2 pi x)
ackley      [-32, 32]^D      -20 exp(-0.2 sqrt(mean x^2)) - exp(mean cos(2 pi x)) + 20 + e
griewank    [-600, 600]^D    1 + sum x^2 / 4000 - prod cos(x_j / sqrt(j))
schwefel    [-500, 500]^D    418.9828872724339 D - sum x sin(sqrt|x|)   (2.26; error floor ~1e-12 D)
=========== ================ ======================================================

Every run gets ``10,000 * D`` evaluations (``--budget-per-dim``) and its own seed (run ``r`` uses
seed ``--seed + r`` for every strategy, so the strategies see the same seeds). The error is that of
the best point found (the final population's best: all strategies are elitist).

evomlp strategies run the plain ask/tell loop: ``uniform_population -> init -> (ask, evaluate,
tell)`` while a whole generation still fits in the budget (so up to P - 1 evaluations go unused).

- classic strategies (:data:`evomlp.de.ALGORITHMS` minus the adaptive ones): population 50 for all,
  F = 0.5, CR = 0.9, bounds ``clip`` (:func:`evomlp.de.make_optimizer`'s defaults);
- adaptive ones, ``max_evaluations`` = the budget, bounds ``midpoint``, the papers' initial sizes:
  ``jade`` and ``shade`` 100, ``lshade`` round(18 D), ``jso`` round(25 ln(D) sqrt(D)).

scipy columns: :func:`scipy.optimize.differential_evolution` with its default strategy
(``best1bin``) and with ``rand1bin``, everything else at scipy's defaults (popsize 15 -> 15 D
individuals, mutation (0.5, 1) dithered, recombination 0.7, Latin hypercube init, immediate
updating), ``polish=False``, ``tol=0`` and ``atol=0`` (so it only stops early if the population's
energies become exactly equal), ``maxiter = budget // (15 D) - 1`` so that its evaluations,
``15 D (maxiter + 1)``, fill the budget as closely as whole generations allow.

Usage::

    python benchmarks/functions.py --runs 3
    nice -n 19 python benchmarks/functions.py --dims 30 --strategies lshade jso scipy_default \\
        scipy_rand1bin --runs 25 --jobs 2 --json results.json

The table has one row per function and D and one column per strategy: mean and std (over runs,
ddof = 0) of the final error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evomlp.de import ADAPTIVE, ALGORITHMS, make_optimizer  # noqa: E402
from evomlp.de.base import uniform_population  # noqa: E402

SCHWEFEL_OPTIMUM = 418.9828872724339  # -min of x sin(sqrt|x|) per coordinate, at x = 420.9687...


# -- functions: x (..., D) -> (...) --------------------------------------------------------------
def sphere(x):
    return np.sum(x**2, axis=-1)


def rosenbrock(x):
    return np.sum(100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1.0 - x[..., :-1]) ** 2, axis=-1)


def rastrigin(x):
    return 10.0 * x.shape[-1] + np.sum(x**2 - 10.0 * np.cos(2 * np.pi * x), axis=-1)


def ackley(x):
    return (
        -20.0 * np.exp(-0.2 * np.sqrt(np.mean(x**2, axis=-1)))
        - np.exp(np.mean(np.cos(2 * np.pi * x), axis=-1))
        + 20.0
        + np.e
    )


def griewank(x):
    j = np.arange(1, x.shape[-1] + 1)
    return 1.0 + np.sum(x**2, axis=-1) / 4000.0 - np.prod(np.cos(x / np.sqrt(j)), axis=-1)


def schwefel(x):
    return SCHWEFEL_OPTIMUM * x.shape[-1] - np.sum(x * np.sin(np.sqrt(np.abs(x))), axis=-1)


# name -> (function, half width of the box, f(x*)); every error is f(x) - f(x*)
FUNCTIONS = {
    "sphere": (sphere, 100.0, 0.0),
    "rosenbrock": (rosenbrock, 30.0, 0.0),
    "rastrigin": (rastrigin, 5.12, 0.0),
    "ackley": (ackley, 32.0, 0.0),
    "griewank": (griewank, 600.0, 0.0),
    "schwefel": (schwefel, 500.0, 0.0),
}

SCIPY = {"scipy_default": "best1bin", "scipy_rand1bin": "rand1bin"}
CLASSIC_POPULATION = 50


def initial_population_size(strategy: str, dim: int) -> int:
    if strategy == "lshade":
        return int(round(18 * dim))
    if strategy == "jso":
        return int(round(25 * math.log(dim) * math.sqrt(dim)))
    if strategy in ADAPTIVE:
        return 100
    return CLASSIC_POPULATION


def run_evomlp(strategy: str, function_name: str, dim: int, budget: int, seed: int) -> dict:
    function, half_width, optimum = FUNCTIONS[function_name]
    lower, upper = np.full(dim, -half_width), np.full(dim, half_width)
    if strategy in ADAPTIVE:
        optimizer = make_optimizer(strategy, lower, upper, bounds_handling="midpoint", max_evaluations=budget)
    else:
        optimizer = make_optimizer(strategy, lower, upper)
    rng = np.random.default_rng(seed)
    population = uniform_population(rng, initial_population_size(strategy, dim), lower, upper)
    state = optimizer.init(population, function(population), rng)
    while state.n_evaluations + state.population_size <= budget:
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, function(trials))
    return {"error": state.best_fitness - optimum, "evaluations": state.n_evaluations}


def run_scipy(strategy: str, function_name: str, dim: int, budget: int, seed: int) -> dict:
    from scipy.optimize import differential_evolution

    function, half_width, optimum = FUNCTIONS[function_name]
    size = 15 * dim  # scipy's default popsize=15 multiplies the dimension
    result = differential_evolution(
        lambda x: float(function(x)),
        [(-half_width, half_width)] * dim,
        strategy=SCIPY[strategy],
        maxiter=budget // size - 1,
        tol=0,
        atol=0,
        polish=False,
        rng=np.random.default_rng(seed),
    )
    return {"error": float(result.fun) - optimum, "evaluations": int(result.nfev)}


def one_run(job: tuple[str, str, int, int, int]) -> tuple[tuple[str, str, int, int, int], dict, float]:
    strategy, function_name, dim, budget, seed = job
    started = time.perf_counter()
    runner = run_scipy if strategy in SCIPY else run_evomlp
    return job, runner(strategy, function_name, dim, budget, seed), time.perf_counter() - started


def format_cell(errors: list[float]) -> str:
    values = np.asarray(errors, dtype=float)
    return f"{values.mean():.2e}±{values.std():.1e}"


def main(argv: list[str] | None = None) -> int:
    strategies_all = list(ALGORITHMS) + list(SCIPY)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--strategies", nargs="+", default=strategies_all, choices=strategies_all)
    parser.add_argument("--budget-per-dim", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="run r uses seed SEED + r")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write every run's result here")
    args = parser.parse_args(argv)

    jobs = [
        (strategy, function_name, dim, args.budget_per_dim * dim, args.seed + run)
        for function_name in args.functions
        for dim in args.dims
        for strategy in args.strategies
        for run in range(args.runs)
    ]
    results: dict[tuple[str, str, int], list[dict]] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            outcomes = pool.map(one_run, jobs, chunksize=1)
            done = _collect(outcomes, results, seconds, len(jobs))
    else:
        done = _collect(map(one_run, jobs), results, seconds, len(jobs))
    assert done == len(jobs)

    print(
        f"Final error f(best) - f(x*): mean±std over {args.runs} runs (seeds {args.seed}..{args.seed + args.runs - 1}), "
        f"{args.budget_per_dim} * D evaluations per run."
    )
    print(
        "evomlp classic: population 50, F=0.5, CR=0.9, clip; adaptive: midpoint, max_evaluations=budget, "
        "N_init jade/shade 100, lshade round(18 D), jso round(25 ln D sqrt D)."
    )
    print(
        "scipy differential_evolution: default strategy best1bin (scipy_default) and rand1bin, popsize 15 "
        "(15 D individuals), maxiter = budget // (15 D) - 1 so evaluations match the budget, "
        "polish=False, tol=0, atol=0, other settings scipy's defaults."
    )
    header = ["function", "D"] + args.strategies
    rows = []
    for function_name in args.functions:
        for dim in args.dims:
            rows.append(
                [function_name, str(dim)]
                + [format_cell([r["error"] for r in results[(s, function_name, dim)]]) for s in args.strategies]
            )
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    evaluations = {
        s: sorted({r["evaluations"] for key, runs in results.items() if key[0] == s for r in runs})
        for s in args.strategies
    }
    print("evaluations used per run (min..max over runs): " + ", ".join(
        f"{s} {min(v)}..{max(v)}" for s, v in evaluations.items()
    ))
    print("CPU seconds per strategy: " + ", ".join(f"{s} {seconds[s]:.0f}" for s in args.strategies))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        payload = {
            "settings": vars(args),
            "results": [
                {
                    "strategy": s,
                    "function": f,
                    "dim": d,
                    "errors": [r["error"] for r in runs],
                    "evaluations": [r["evaluations"] for r in runs],
                    "mean": float(np.mean([r["error"] for r in runs])),
                    "std": float(np.std([r["error"] for r in runs])),
                }
                for (s, f, d), runs in results.items()
            ],
        }
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
    return 0


def _collect(outcomes, results, seconds, total) -> int:
    done = 0
    for (strategy, function_name, dim, _budget, _seed), result, elapsed in outcomes:
        results.setdefault((strategy, function_name, dim), []).append(result)
        seconds[strategy] = seconds.get(strategy, 0.0) + elapsed
        done += 1
        if done % 10 == 0 or done == total:
            print(f"  {done}/{total} runs", file=sys.stderr, flush=True)
    return done


if __name__ == "__main__":
    sys.exit(main())
