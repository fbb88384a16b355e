"""Scaling of backend ``dask``: evaluations/s on 1, 2 and 4 workers, and the bytes a generation sends.

    python benchmarks/dask_scaling.py [--quick] [--repeats R]

Problem: the breast-cancer training rows (as stage ``prepare`` makes them, standardised) tiled
x126 to 40,068 rows, each copy perturbed by N(0, 0.05) noise (``benchmarks/throughput.py``'s
``bc-x100`` with 26 more copies), on the default 30-64-32-1 ReLU network in float32; classic DE
``rand1bin`` (F 0.5, CR 0.9), P 50, 100 generations (``--quick``: 2,544 rows, P 20, 5
generations, one repeat), run as :mod:`benchmarks.throughput` runs ``evomlp``: the real propose ->
build and evaluate -> tell loop around a :class:`evomlp.evaluation.PopulationEvaluator`.

Settings, each timed ``R`` times (default 3) interleaved with the others, best kept (the machine
may be shared):

- ``n_jobs 1``: in-process, no workers (the reference for every ratio);
- ``threads 2``: backend ``threading``, n_jobs 2 (the default backend, for comparison);
- ``dask W``: backend ``dask`` on a ``distributed.LocalCluster`` of W single-threaded worker
  processes (W = 1, 2, 4; started before any timing and kept), reached through
  ``runtime.scheduler_address`` with ``n_jobs: -1``, so the evaluator counts the cluster's worker
  threads and sends one chunk to each. The timed part is the whole run from entering the
  evaluator (connecting, sending the problem to every worker) to its last generation; the
  workers have run one small evaluation before (imports, numba's compiled loops).

The ratio to watch is ``dask 2 / dask 1`` (target >= 1.8 on 2 cores); ``dask 4`` on 2 cores shows
what oversubscribing costs.

Bytes: after the timings, one more run per cluster with counters in dask's TCP comms
(``distributed.comm.tcp``): what the client writes to the scheduler, and what the workers read
and write, all divided by the number of generations. Counted in the comm layer, so it includes
dask's own messages (task metadata, heartbeats), not only our arrays; ``problem`` is what the
workers read while the evaluator starts (the training data, scattered to every worker once); the
generations are counted after the initial population's, in the same evaluator.
The CPU and the kernels (BLAS, numpy SIMD) of this process and of the workers are printed first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evomlp import numerics  # noqa: E402  isort: skip  (pinned kernels, before numpy)

import numpy as np  # noqa: E402

from benchmarks.throughput import CROSSOVER, MUTATION, cpu_name, start_population, training_rows  # noqa: E402
from evomlp.de import make_optimizer  # noqa: E402
from evomlp.evaluation import FitnessProblem, PopulationEvaluator  # noqa: E402
from evomlp.network import MLPSpec  # noqa: E402


def make_problem(copies: int) -> FitnessProblem:
    X, y = training_rows("breast_cancer")
    big = np.tile(X, (copies, 1))
    big += np.random.default_rng(0).normal(0.0, 0.05, size=big.shape)
    spec = MLPSpec(X.shape[1], (64, 32), ("relu", "relu"), 1, "binary")
    return FitnessProblem(spec, big, np.tile(y, copies), l2=0.011, dtype="float32")


def run(problem: FitnessProblem, size: int, generations: int, n_jobs, backend: str, address: str | None = None):
    """``(seconds, n_jobs used, fitness of the last generation)``."""
    population, lower, upper = start_population(problem, size)
    optimizer = make_optimizer("rand1bin", lower, upper, mutation=MUTATION, crossover_rate=CROSSOVER)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    with PopulationEvaluator(problem, n_jobs, backend, address, population_size=size) as evaluate:
        state = optimizer.init(population, evaluate(population), rng)
        for _ in range(generations):
            trials, fitness = evaluate.evaluate_plan(optimizer.propose(state))
            state = optimizer.tell(state, trials, fitness)
        n_jobs = evaluate.n_jobs
    return time.perf_counter() - started, n_jobs, state.fitness.copy()


# -- byte counters in dask's TCP comms (installed in this process and, by client.run, in workers) --
def install_counters() -> dict:
    import distributed.comm.tcp as tcp

    if getattr(tcp, "_evomlp_counts", None) is None:
        counts = tcp._evomlp_counts = {"read": 0, "written": 0, "to_scheduler": 0}
        read_bytes_rw, write = tcp.read_bytes_rw, tcp.TCP.write

        async def counting_read(stream, n):
            counts["read"] += n
            return await read_bytes_rw(stream, n)

        async def counting_write(self, msg, serializers=None, on_error="message"):
            n = await write(self, msg, serializers, on_error)
            counts["written"] += n
            if self.peer_address == getattr(tcp, "_evomlp_scheduler", None):
                counts["to_scheduler"] += n
            return n

        tcp.read_bytes_rw, tcp.TCP.write = counting_read, counting_write
    return dict(tcp._evomlp_counts)


def set_scheduler(address: str) -> None:
    import distributed.comm.tcp as tcp

    tcp._evomlp_scheduler = address


def worker_counts(client) -> dict:
    totals = {"read": 0, "written": 0}
    for counts in client.run(install_counters).values():
        for key in totals:
            totals[key] += counts[key]
    return totals


def measure_bytes(problem, size, generations, address, client) -> dict:
    """Bytes through dask's comms: the start (problem sent), then per generation (one evaluator)."""
    import distributed.comm.tcp as tcp

    set_scheduler(address)
    install_counters()
    worker_counts(client)  # installs them in every worker

    def snapshot():
        return dict(worker_counts(client), to_scheduler=tcp._evomlp_counts["to_scheduler"])

    population, lower, upper = start_population(problem, size)
    optimizer = make_optimizer("rand1bin", lower, upper, mutation=MUTATION, crossover_rate=CROSSOVER)
    before = snapshot()
    with PopulationEvaluator(problem, -1, "dask", address, population_size=size) as evaluate:
        started = snapshot()
        state = optimizer.init(population, evaluate(population), np.random.default_rng(1))
        first = snapshot()
        for _ in range(generations):
            trials, fitness = evaluate.evaluate_plan(optimizer.propose(state))
            state = optimizer.tell(state, trials, fitness)
        last = snapshot()
    per_generation = {key: (last[key] - first[key]) / generations for key in last}
    return {"problem": started["read"] - before["read"], **per_generation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small problem and one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 3, quick 1)")
    args = parser.parse_args()
    copies, size, generations = (8, 20, 5) if args.quick else (126, 50, 100)
    repeats = args.repeats or (1 if args.quick else 3)
    cluster_sizes = (1, 2) if args.quick else (1, 2, 4)

    from distributed import Client, LocalCluster

    problem = make_problem(copies)
    status = numerics.status()
    print(f"CPU: {cpu_name()}; cores available: {len(os.sched_getaffinity(0))}; "
          f"load average at the start {os.getloadavg()[0]:.2f}")
    print(f"this process: BLAS {', '.join(sorted(set(status.blas)))}, numpy SIMD {status.numpy_simd}, "
          f"pinned: {status.pinned}")
    print(f"problem: {problem.n_rows} rows, 30-64-32-1 float32, P {size}, {generations} generations, "
          f"{problem.flops_per_evaluation * size / 1e9:.2f} GFLOP per generation; best of {repeats}")

    logging.getLogger("distributed").setLevel(logging.WARNING)  # no INFO lines as clusters close
    clusters = {}
    for workers in cluster_sizes:
        with warnings.catch_warnings():  # the scheduler's HTTP server takes another port if 8787 is taken
            warnings.filterwarnings("ignore", "Port .* is already in use")
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        clusters[workers] = (cluster, Client(cluster, set_as_default=False))
        run(problem, 4 * workers, 1, -1, "dask", cluster.scheduler_address)  # workers import and compile first
    kernels = {repr(fingerprint) for _, client in clusters.values()
               for fingerprint in client.run(lambda: numerics.status().fingerprint).values()}
    print(f"dask workers' kernels: {', '.join(sorted(kernels))} "
          f"({'the same as' if kernels == {repr(status.fingerprint)} else 'DIFFERENT from'} this process)")

    settings = [("n_jobs 1", 1, "threading", None), ("threads 2", 2, "threading", None)]
    settings += [(f"dask {w}", -1, "dask", clusters[w][0].scheduler_address) for w in cluster_sizes]
    run(problem, 8, 1, 1, "threading")  # numba's loops compiled (or loaded) before timing
    best: dict[str, float] = {}
    used: dict[str, int] = {}
    reference = None
    for _ in range(repeats):
        for name, n_jobs, backend, address in settings:
            seconds, used[name], fitness = run(problem, size, generations, n_jobs, backend, address)
            if reference is None:
                reference = fitness
            assert np.array_equal(fitness, reference), f"{name}: other bits than n_jobs 1"
            best[name] = min(best.get(name, np.inf), seconds)
            print(f"  {name:<10} {seconds:7.2f} s", file=sys.stderr)

    evaluations = size * (generations + 1)
    print(f"\n{'setting':<10} {'chunks':>6} {'evals/s':>9} {'vs n_jobs 1':>11}")
    for name, *_ in settings:
        print(f"{name:<10} {used[name]:>6} {evaluations / best[name]:>9,.0f} {best['n_jobs 1'] / best[name]:>10.2f}x")
    print(f"dask 2 workers / 1 worker: {best['dask 1'] / best['dask 2']:.2f}x (target >= 1.8x); "
          f"every setting gave the same bytes as n_jobs 1; load average at the end {os.getloadavg()[0]:.2f} "
          "(other processes' load makes every ratio smaller)")

    chunk_bytes = size * problem.spec.n_weights * 4
    print(f"\nbytes per generation (dask's TCP comms; the population's weights in float32 = {chunk_bytes:,}):")
    print(f"{'cluster':<10} {'client->scheduler':>17} {'workers read':>13} {'workers wrote':>13} {'problem, once':>14}")
    for workers in cluster_sizes:
        cluster, client = clusters[workers]
        counts = measure_bytes(problem, size, max(generations, 5), cluster.scheduler_address, client)
        print(f"dask {workers:<5} {counts['to_scheduler']:>17,.0f} {counts['read']:>13,.0f} {counts['written']:>13,.0f} "
              f"{counts['problem']:>14,}")
    print(f"(the training data: X {problem.X.nbytes:,} + y {problem.y.nbytes:,} bytes per worker)")
    for cluster, client in clusters.values():
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
