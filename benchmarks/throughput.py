"""Population-evaluation throughput of evomlp, side by side with scipy's DE, against this machine's ceiling.

    python benchmarks/throughput.py [--quick] [--json PATH] [--no-memory] [--kernels]

Runs with the kernels the stages use (pinned by :mod:`evomlp.numerics`) and ends with the cost of
that pin: the default configuration with the pinned kernels against this CPU's own
(``EVOMLP_NATIVE_KERNELS=1``), each in a fresh process (``--kernels``: only that part).

Problems: the default one (the 318 training rows of breast cancer, split and standardised as stage
``prepare`` does with the default params, on the 30-64-32-1 ReLU network), the same rows tiled x10
and x100 (each copy perturbed by N(0, 0.05) noise), and digits (1,005 training rows, 64-64-32-10).

Systems, all running whole optimisation runs of the same length (``G`` generations after the
initial population, so ``P (G + 1)`` evaluations), with the initial population drawn the same way
(``he`` initialisation, bounds +-5):

- ``evomlp``: the real propose -> build and evaluate -> tell loop of the trainer (classic
  ``rand1bin``, F 0.5, CR 0.9, built with :func:`evomlp.de.make_optimizer`) around a
  :class:`evomlp.evaluation.PopulationEvaluator`, ``n_jobs`` 1 (in-process) and 2 (backend
  ``loky``: the calling process and one worker process), in float32 and float64. The optimizer's
  own time is included: column ``opt%`` is the share of ``propose`` and ``tell``; building the
  trials (mutation, crossover, repair) happens in the evaluator, in the threads that evaluate them
  with backend ``threading``, and counts as evaluation.
- ``evomlp-threading``: the same with backend ``threading`` (n_jobs 2, float32).
- ``evomlp-auto``, ``evomlp-threading-auto``: ``runtime.n_jobs: auto`` under ``loky`` and
  ``threading`` (float32).
- ``evomlp-joblib``: n_jobs 2 float32 dispatched through ``joblib.Parallel`` instead of the executor (the design it replaced):
  ``joblib.Parallel(backend="loky")``, the problem pickled with every chunk of every generation
  (with the new forward pass, so the difference is the dispatch).
- ``evomlp-resend``: the new process pool, but sending the problem's data with every chunk of
  every generation (rows x10 and x100, P 50: isolates what sending the data once saves).
- ``scipy``: :func:`scipy.optimize.differential_evolution` (``rand1bin``, mutation 0.5,
  recombination 0.9, ``polish=False``, ``tol=atol=0``, ``maxiter=G``, ``init`` = our initial
  population, so its population is ours; scipy's ``popsize`` multiplies the dimension, 4,097
  here), calling a per-individual objective (scipy's default ``updating='immediate'``);
- ``scipy-vectorized``: the same with ``vectorized=True`` (hence ``updating='deferred'``) and an
  objective that evaluates the whole population in one batched forward pass.
  Both scipy objectives are evomlp's float64 :class:`~evomlp.evaluation.FitnessProblem`, so the
  ratios measure the optimizer loop and the batching, not a different forward pass.
- ``keras``: the article's approach (a Keras model whose weights are set per individual), only if
  tensorflow is importable.

FLOPs per evaluation = ``2 N sum(fan_in fan_out)``: the multiply-adds of the weight matrices on the
``N`` rows. Bias additions, activations, the loss and the optimizer are not counted (for 30-64-32-1
they would add ~3%). ``ceiling`` is a 2048 x 2048 float32 ``np.matmul``, best of 7, with numpy's
default BLAS threads (all cores) or one thread, whichever is faster (on a shared machine one
thread can be), timed at the start, the middle and the end of the run, the best of the three;
``%ceil`` = achieved GFLOP/s / ceiling. The table is printed at the end, with that ceiling.

Every configuration is timed ``repeats`` times, interleaved with the other systems of the same
problem, and the best is kept (the machine may be shared). Worker pools are started before timing;
the first evaluation (which sends the data to the workers) is timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# evomlp before numpy, as in the stages: the default kernels are the pinned ones (evomlp.numerics);
# EVOMLP_NATIVE_KERNELS=1 measures this CPU's own.
from evomlp import numerics  # noqa: E402  isort: skip

import numpy as np  # noqa: E402

from evomlp.de import make_optimizer  # noqa: E402
from evomlp.evaluation import FitnessProblem, PopulationEvaluator, _cached_chunk_loss, _process_pool, resolve_n_jobs  # noqa: E402
from evomlp.network import MLPSpec, initial_population, per_weight  # noqa: E402

BOUND = 5.0
MUTATION = 0.5
CROSSOVER = 0.9


# -- problems --------------------------------------------------------------------------------
@dataclass
class Problem:
    name: str
    spec: MLPSpec
    X: np.ndarray
    y: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    @property
    def flops_per_evaluation(self) -> int:
        return 2 * self.n_rows * sum(a * b for a, b in self.spec.layer_shapes)


def training_rows(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Training rows as stage ``prepare`` makes them with the default params (test 0.3, validation
    0.2 stratified, seed 42), standardised with the training rows' mean and deviation."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = getattr(datasets, f"load_{dataset}")()
    X, y = bunch.data.astype(float), bunch.target.astype(np.int64)
    rows = np.arange(len(y))
    rest, _ = train_test_split(rows, test_size=0.3, random_state=42)
    train, _ = train_test_split(rest, test_size=0.2, random_state=42, stratify=y[rest])
    train = np.sort(train)
    X, y = X[train], y[train]
    scale = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    return X, y


def make_problems(names: tuple[str, ...] = ("bc", "bc-x10", "bc-x100", "digits")) -> dict[str, Problem]:
    X, y = training_rows("breast_cancer")
    spec = MLPSpec(X.shape[1], (64, 32), ("relu", "relu"), 1, "binary")
    problems = {"bc": Problem("bc", spec, X, y)}
    rng = np.random.default_rng(0)
    for times in (10, 100):
        if f"bc-x{times}" not in names:
            continue
        big = np.tile(X, (times, 1))
        big += rng.normal(0.0, 0.05, size=big.shape)
        problems[f"bc-x{times}"] = Problem(f"bc-x{times}", spec, big, np.tile(y, times))
    if "digits" in names:
        Xd, yd = training_rows("digits")
        digits_spec = MLPSpec(Xd.shape[1], (64, 32), ("relu", "relu"), 10, "multiclass")
        problems["digits"] = Problem("digits", digits_spec, Xd, yd)
    return problems


# -- the ceiling -----------------------------------------------------------------------------
def matmul_gflops(dtype: str, size: int = 2048, repeats: int = 7, threads: int | None = None) -> float:
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    b = a.T.copy()
    out = np.empty_like(a)
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)
        best = np.inf
        for _ in range(repeats):
            started = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# -- the systems -----------------------------------------------------------------------------
def start_population(problem: Problem, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bound = per_weight(problem.spec, BOUND)
    rng = np.random.default_rng(seed)
    population = initial_population(problem.spec, rng, size, "he", 1.0, -bound, bound)
    return population, -bound, bound


class ResendingEvaluator(PopulationEvaluator):
    """This evaluator, but sending the problem (its X and y) with every chunk of every generation."""

    def _run_in_processes(self, population, bounds, rows):
        problem = self.problem
        weights = population.astype(problem.dtype, copy=False)
        futures = [
            self._processes.submit(_cached_chunk_loss, problem.token, problem, weights[start:stop], rows)
            for start, stop in bounds[1:]
        ]
        self.n_problem_sends += len(futures)
        start, stop = bounds[0]
        return [problem.loss(weights[start:stop], rows)] + [future.result() for future in futures]


def _whole_fitness(problem: FitnessProblem, chunk: np.ndarray, rows) -> np.ndarray:
    return problem(chunk, rows)


class JoblibEvaluator(PopulationEvaluator):
    """The alternative dispatch: ``joblib.Parallel(backend="loky")``, one chunk per worker,
    the problem pickled with every chunk of every generation (the forward pass is the new one)."""

    def __enter__(self):
        import joblib

        self._parallel_cm = joblib.Parallel(n_jobs=self.n_jobs, backend="loky")
        self._joblib = self._parallel_cm.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._parallel_cm.__exit__(*exc_info)

    def __call__(self, population, rows=None):
        from joblib import delayed

        chunks = np.array_split(population, min(self.n_jobs, population.shape[0]))
        return np.concatenate(self._joblib(delayed(_whole_fitness)(self.problem, c, rows) for c in chunks))


def warm_pool(n_jobs: int, joblib_pool: bool) -> None:
    """Start the worker processes (both pools keep them) so that timings do not include start-up."""
    if joblib_pool:
        from joblib import Parallel, delayed

        Parallel(n_jobs=n_jobs, backend="loky")(delayed(os.getpid)() for _ in range(2 * n_jobs))
    else:
        pool = _process_pool(n_jobs - 1)
        [f.result() for f in [pool.submit(os.getpid) for _ in range(2 * n_jobs)]]


def run_evomlp(problem: Problem, size: int, generations: int, dtype: str, n_jobs: int, backend: str = "loky",
               evaluator_class: type = PopulationEvaluator) -> tuple[float, float]:
    """``(seconds, optimizer seconds)`` of a run: evaluate the initial population, then G generations."""
    population, lower, upper = start_population(problem, size)
    optimizer = make_optimizer("rand1bin", lower, upper, mutation=MUTATION, crossover_rate=CROSSOVER)
    fitness_problem = FitnessProblem(problem.spec, problem.X, problem.y, dtype=dtype)
    if n_jobs == "auto":
        n_jobs = resolve_n_jobs("auto", fitness_problem, size, backend)  # what runtime.n_jobs: auto picks
    if n_jobs > 1 and backend == "loky":
        warm_pool(n_jobs, evaluator_class is JoblibEvaluator)
    rng = np.random.default_rng(1)
    with evaluator_class(fitness_problem, n_jobs, backend) as evaluate:
        started = time.perf_counter()
        state = optimizer.init(population, evaluate(population), rng)
        optimizer_s = 0.0
        for _ in range(generations):
            t0 = time.perf_counter()
            plan = optimizer.propose(state)
            t1 = time.perf_counter()
            trials, trial_fitness = evaluate.evaluate_plan(plan)
            t2 = time.perf_counter()
            state = optimizer.tell(state, trials, trial_fitness)
            optimizer_s += (t1 - t0) + (time.perf_counter() - t2)
        elapsed = time.perf_counter() - started
    return elapsed, optimizer_s


def run_scipy(problem: Problem, size: int, generations: int, vectorized: bool) -> tuple[float, float]:
    import warnings

    from scipy.optimize import Bounds, differential_evolution

    population, lower, upper = start_population(problem, size)
    fitness_problem = FitnessProblem(problem.spec, problem.X, problem.y, dtype="float64")
    count = [0]
    if vectorized:
        def objective(x):  # x: (D, S)
            count[0] += x.shape[1]
            return fitness_problem(np.ascontiguousarray(x.T))
    else:
        def objective(x):  # x: (D,)
            count[0] += 1
            return float(fitness_problem(x[None, :])[0])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = differential_evolution(
            objective,
            Bounds(lower, upper),
            strategy="rand1bin",
            maxiter=generations,
            init=population,
            mutation=MUTATION,
            recombination=CROSSOVER,
            tol=0,
            atol=0,
            polish=False,
            rng=np.random.default_rng(1),
            updating="deferred" if vectorized else "immediate",
            vectorized=vectorized,
        )
    elapsed = time.perf_counter() - started
    expected = size * (generations + 1)
    if count[0] != expected:  # (result.nfev counts calls, not individuals, when vectorized)
        print(f"  note: scipy made {count[0]} evaluations, expected {expected} ({result.message})", file=sys.stderr)
    return elapsed, float("nan")


def run_keras(problem: Problem, size: int, generations: int) -> tuple[float, float]:  # pragma: no cover
    """The article's approach: one Keras model, weights set from each individual, evaluated one by one."""
    import tensorflow as tf

    spec = problem.spec
    model = tf.keras.Sequential(
        [tf.keras.Input((spec.n_inputs,))]
        + [tf.keras.layers.Dense(h, activation=a) for h, a in zip(spec.hidden_layers, spec.activations)]
        + [tf.keras.layers.Dense(spec.n_outputs)]
    )
    loss = (tf.keras.losses.BinaryCrossentropy(from_logits=True) if spec.task == "binary"
            else tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    population, lower, upper = start_population(problem, size)
    optimizer = make_optimizer("rand1bin", lower, upper, mutation=MUTATION, crossover_rate=CROSSOVER)
    X = tf.constant(problem.X, dtype=tf.float32)
    y = tf.constant(problem.y)

    def evaluate(pop):
        out = np.empty(pop.shape[0])
        for i, vector in enumerate(pop):
            model.set_weights([a.astype(np.float32) for layer in spec.unpack(vector) for a in layer])
            out[i] = float(loss(y, model(X, training=False)))
        return out

    started = time.perf_counter()
    state = optimizer.init(population, evaluate(population), np.random.default_rng(1))
    for _ in range(generations):
        trials = optimizer.ask(state)
        state = optimizer.tell(state, trials, evaluate(trials))
    return time.perf_counter() - started, float("nan")


# -- the plan --------------------------------------------------------------------------------
def plan(quick: bool) -> list[tuple[str, int, int, list[tuple[str, int, str]], int]]:
    """``(problem, population, generations, systems, repeats)``; a system is ``(system, n_jobs, dtype)``."""
    evomlp = [("evomlp", j, d) for d in ("float32", "float64") for j in (1, 2)] + [
        ("evomlp-auto", "auto", "float32"), ("evomlp-threading-auto", "auto", "float32")]
    others = [("evomlp-threading", 2, "float32"), ("evomlp-joblib", 2, "float32")]
    resend = [("evomlp-resend", 2, "float32")]
    scipy_both = [("scipy", 1, "float64"), ("scipy-vectorized", 1, "float64")]
    scipy_vec = [("scipy-vectorized", 1, "float64")]
    if quick:
        return [
            ("bc", 50, 5, evomlp + others + scipy_both, 1),
            ("bc-x10", 50, 2, [("evomlp", 1, "float32"), ("evomlp", 2, "float32")] + resend, 1),
        ]
    return [
        ("bc", 50, 100, evomlp + others + scipy_both, 3),
        ("bc", 200, 30, evomlp + others + scipy_both, 3),
        ("bc", 1000, 6, evomlp + others + scipy_both, 2),
        ("bc-x10", 50, 20, evomlp + others + resend + scipy_vec, 2),
        ("bc-x10", 200, 6, evomlp + others + scipy_vec, 2),
        ("bc-x10", 1000, 2, evomlp + others + scipy_vec, 2),
        ("bc-x100", 50, 3, evomlp + others + resend + scipy_vec, 2),
        ("bc-x100", 200, 2, evomlp + others + scipy_vec, 1),
        ("bc-x100", 1000, 1, [("evomlp", 1, "float32"), ("evomlp", 2, "float32"), ("evomlp-auto", "auto", "float32"),
                              ("evomlp-threading", 2, "float32"), ("evomlp-threading-auto", "auto", "float32")], 1),
        ("digits", 50, 30, evomlp + others + scipy_both, 2),
        ("digits", 200, 10, evomlp + others + scipy_both, 2),
        ("digits", 1000, 2, evomlp + others + scipy_vec, 2),
    ]


def measure(problem: Problem, size: int, generations: int, system: str, n_jobs: int, dtype: str):
    if system == "evomlp":
        return run_evomlp(problem, size, generations, dtype, n_jobs)
    if system == "evomlp-auto":
        return run_evomlp(problem, size, generations, dtype, n_jobs)
    if system in ("evomlp-threading", "evomlp-threading-auto"):
        return run_evomlp(problem, size, generations, dtype, n_jobs, backend="threading")
    if system == "evomlp-resend":
        return run_evomlp(problem, size, generations, dtype, n_jobs, evaluator_class=ResendingEvaluator)
    if system == "evomlp-joblib":
        return run_evomlp(problem, size, generations, dtype, n_jobs, evaluator_class=JoblibEvaluator)
    if system == "scipy":
        return run_scipy(problem, size, generations, vectorized=False)
    if system == "scipy-vectorized":
        return run_scipy(problem, size, generations, vectorized=True)
    if system == "keras":
        return run_keras(problem, size, generations)
    raise ValueError(system)


# -- peak memory -----------------------------------------------------------------------------
MEMORY_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, {root!r})
from benchmarks.throughput import make_problems, start_population
from evomlp.de import make_optimizer
from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.trainer import TrainConfig, Trainer

def status(field):  # kB -> MB, of this process only (ru_maxrss would include the parent's, kept across exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

p = make_problems(("bc",))["bc"]
population, lower, upper = start_population(p, 1000)
optimizer = make_optimizer("rand1bin", lower, upper, mutation=0.5, crossover_rate=0.9)
problem = FitnessProblem(p.spec, p.X, p.y, dtype={dtype!r})
scoring = FitnessProblem(p.spec, p.X, p.y, dtype={dtype!r})
before = status("VmHWM")
with PopulationEvaluator(problem, 1) as evaluate:
    trainer = Trainer(optimizer, evaluate, scoring, scoring, TrainConfig(max_generations={generations}))
    trainer.run(trainer.start(population, np.random.default_rng(0)))
print(before, status("VmHWM"))
"""


def peak_memory_mb(dtype: str, generations: int = 10) -> tuple[float, float]:
    """``(peak MB before the run, peak MB)`` of a population-1,000 training run (``generations``
    generations, n_jobs 1, the real :class:`~evomlp.trainer.Trainer`) on the default problem, in a
    fresh subprocess (``VmHWM`` of ``/proc/self/status``; Linux only)."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT.format(root=root, dtype=dtype, generations=generations)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return float(out[-2]), float(out[-1])


# -- the cost of the same-bytes rule ---------------------------------------------------------
KERNEL_CASES = (("bc", 50, 400), ("bc-x100", 50, 4))
KERNEL_SETTINGS = ("pinned (default)", "native")


def kernel_child(problem_name: str, size: int, generations: int) -> None:
    """In a fresh process (the kernels are chosen when numpy loads): one default-configuration run
    (threading, n_jobs auto, float32) after a warm-up; prints a JSON line."""
    problem = make_problems((problem_name,))[problem_name]
    run_evomlp(problem, 8, 2, "float32", "auto", backend="threading")  # numba loops, BLAS warm
    elapsed, _ = run_evomlp(problem, size, generations, "float32", "auto", backend="threading")
    status = numerics.status()
    print(json.dumps({"evals_per_s": size * (generations + 1) / elapsed, "blas": list(status.blas),
                      "numpy_simd": status.numpy_simd, "ceiling": matmul_gflops("float32", threads=1)}))


def kernel_cost(repeats: int) -> list[dict]:
    """Default configuration with the pinned kernels against this CPU's own, each in its own
    process, interleaved ``repeats`` times; the best of each is kept."""
    best: dict[tuple, dict] = {}
    for _ in range(repeats):
        for name, size, generations in KERNEL_CASES:
            for setting in KERNEL_SETTINGS:
                env = numerics.native_environment() if setting == "native" else numerics.pinned_environment()
                out = subprocess.run(
                    [sys.executable, __file__, "--kernel-child", name, str(size), str(generations)],
                    env=env, capture_output=True, text=True, check=True,
                ).stdout.splitlines()[-1]
                row = json.loads(out)
                key = (name, size, setting)
                if key not in best or row["evals_per_s"] > best[key]["evals_per_s"]:
                    best[key] = dict(row, problem=name, population=size, setting=setting)
    rows = list(best.values())
    print(f"cost of the same-bytes rule (default configuration: threading, n_jobs auto, float32; "
          f"best of {repeats}, interleaved, each in its own process; CPU: {cpu_name()}):")
    print(f"  {'problem':<8} {'P':>4}  {'kernels':<17} {'evals/s':>9}  {'BLAS':<16} {'numpy SIMD':<11} "
          f"{'1-core sgemm GFLOP/s':>20}")
    for row in rows:
        print(f"  {row['problem']:<8} {row['population']:>4}  {row['setting']:<17} {row['evals_per_s']:>9,.0f}  "
              f"{', '.join(sorted(set(row['blas']))):<16} {row['numpy_simd']:<11} {row['ceiling']:>20.1f}")
    for name, size, _ in KERNEL_CASES:
        pinned, native = best[(name, size, "pinned (default)")], best[(name, size, "native")]
        print(f"  {name} P={size}: pinned / native = {pinned['evals_per_s'] / native['evals_per_s']:.3f}")
    return rows


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# -- main ------------------------------------------------------------------------------------
def ceiling_gflops() -> tuple[float, float]:
    """``(numpy's default BLAS threads, 1 thread)`` float32 GFLOP/s of a 2048 x 2048 matmul, with
    this process's kernels (the pinned ones) and with this CPU's own (OpenBLAS's kernel for it,
    AVX-512 where there is some), in a fresh process: the higher of the two is the ceiling, since
    the fused forward pass does not go through BLAS and may use the whole CPU."""
    pinned = (matmul_gflops("float32"), matmul_gflops("float32", threads=1))
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            "from benchmarks.throughput import matmul_gflops; "
            "print(matmul_gflops('float32'), matmul_gflops('float32', threads=1))")
    out = subprocess.run([sys.executable, "-c", code], env=numerics.native_environment(), capture_output=True,
                         text=True, check=True).stdout.split()
    native = (float(out[-2]), float(out[-1]))
    return max(pinned[0], native[0]), max(pinned[1], native[1])


# -- the targets of the README: fraction of the ceiling, default configuration, both cores ------
TARGETS = (("bc", 50, 200, 0.50), ("bc-x10", 1000, 3, 0.60))


def measure_targets(repeats: int) -> list[dict]:
    """The default configuration (threads, ``n_jobs: auto``, float32) on the target problems, best
    of ``repeats`` interleaved with the ceiling, as a fraction of the ceiling."""
    problems = make_problems(tuple(sorted({name for name, *_ in TARGETS})))
    run_evomlp(problems["bc"], 8, 2, "float32", "auto", backend="threading")  # compiled loops loaded
    best: dict[tuple, float] = {}
    ceilings = [ceiling_gflops()]
    for _ in range(repeats):
        for name, size, generations, _ in TARGETS:
            elapsed, _ = run_evomlp(problems[name], size, generations, "float32", "auto", backend="threading")
            best[(name, size)] = min(best.get((name, size), float("inf")), elapsed)
        ceilings.append(ceiling_gflops())
    ceiling = max(c[0] for c in ceilings)
    rows = []
    for name, size, generations, target in TARGETS:
        problem = problems[name]
        evals_per_s = size * (generations + 1) / best[(name, size)]
        fraction = evals_per_s * problem.flops_per_evaluation / 1e9 / ceiling
        rows.append({"problem": name, "n_rows": problem.n_rows, "population": size, "system": "evomlp-threading-auto",
                     "evals_per_s": evals_per_s, "ceiling_fraction": fraction, "target": target,
                     "met": fraction >= target})
    return rows, ceiling


def print_targets(rows: list[dict], ceiling: float) -> None:
    from evomlp import forward_kernel

    status = numerics.status()
    blocking = forward_kernel.blocking()
    print(f"targets (default configuration: threading, n_jobs auto, float32, both cores; CPU: {cpu_name()}, "
          f"{len(os.sched_getaffinity(0))} cores; fused forward pass compiled for {forward_kernel._machine().cpu if forward_kernel.compiled_available() else 'numpy'}, "
          f"{blocking.lanes}-lane vectors; BLAS {', '.join(sorted(set(status.blas)))}; ceiling {ceiling:.1f} GFLOP/s, "
          "the better of the pinned and the native sgemm):")
    for row in rows:
        print(f"  {row['problem']:<7} N={row['n_rows']:<6} P={row['population']:<5} {row['evals_per_s']:>9,.0f} evals/s "
              f"= {100 * row['ceiling_fraction']:5.1f}% of the ceiling (target {100 * row['target']:.0f}%: "
              f"{'met' if row['met'] else 'NOT met'})")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}" if a and b else f"{'-':>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset, for smoke testing")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--kernels", action="store_true",
                        help="only the cost of the same-bytes rule: pinned against native kernels")
    parser.add_argument("--targets", action="store_true",
                        help="only the README's targets: fraction of the ceiling on the default and rows x10 problems")
    parser.add_argument("--kernel-child", nargs=3, metavar=("PROBLEM", "P", "G"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.targets:
        print(numerics.describe())
        target_rows, ceiling = measure_targets(repeats=3)
        print_targets(target_rows, ceiling)
        if args.json:
            args.json.write_text(json.dumps({"ceiling_gflops": ceiling, "rows": target_rows}, indent=2) + "\n")
        return
    if args.kernel_child:
        kernel_child(args.kernel_child[0], int(args.kernel_child[1]), int(args.kernel_child[2]))
        return
    if args.kernels:
        kernel_cost(repeats=3)
        return
    print(numerics.describe())

    total_started = time.perf_counter()
    ceilings = [ceiling_gflops()]
    f64 = matmul_gflops("float64")
    have_tf = importlib.util.find_spec("tensorflow") is not None
    if not have_tf:
        print("keras: skipped (tensorflow is not importable)")

    problems = make_problems()
    # Compile (or load) the numba loops and start the worker processes before timing anything.
    for dtype in ("float32", "float64"):
        run_evomlp(problems["bc"], 8, 2, dtype, 2)
    measured = []
    groups = plan(args.quick)
    for number, (name, size, generations, systems, repeats) in enumerate(groups):
        problem = problems[name]
        if have_tf and size <= 200 and problem.n_rows <= 3180:
            systems = systems + [("keras", 1, "float32")]
        print(f"  measuring {name} P={size} G={generations} ({len(systems)} systems x {repeats})", file=sys.stderr)
        best: dict[tuple, tuple[float, float]] = {}
        for _ in range(repeats):
            for key in systems:
                elapsed, optimizer_s = measure(problem, size, generations, *key)
                if key not in best or elapsed < best[key][0]:
                    best[key] = (elapsed, optimizer_s)
        measured.append((problem, size, generations, systems, best))
        if number == len(groups) // 2:
            ceilings.append(ceiling_gflops())
    ceilings.append(ceiling_gflops())
    ceiling = max(max(c) for c in ceilings)

    print(f"ceiling: {ceiling:.1f} GFLOP/s = 2048x2048 float32 np.matmul, best of 7, best of 3 times in the run "
          f"(default BLAS threads / 1 thread: " + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in ceilings)
          + f"; float64 default threads {f64:.1f}); cores available {len(os.sched_getaffinity(0))}")
    print("FLOPs per evaluation = 2 * N_rows * sum(fan_in*fan_out): the weight products only (no bias, "
          "activation, loss or optimizer work)")
    header = (f"{'problem':<8} {'N':>6} {'P':>5} {'G':>4}  {'system':<17} {'jobs':>4} {'dtype':<7} {'evals/s':>10} "
              f"{'GFLOP/s':>8} {'%ceil':>6} {'opt%':>5}")
    print(header)
    print("-" * len(header))
    rows: list[dict] = []
    for problem, size, generations, systems, best in measured:
        for key in systems:
            system, n_jobs, dtype = key
            elapsed, optimizer_s = best[key]
            evals_per_s = size * (generations + 1) / elapsed
            gflops = evals_per_s * problem.flops_per_evaluation / 1e9
            opt = "" if np.isnan(optimizer_s) else f"{100 * optimizer_s / elapsed:4.0f}%"
            print(f"{problem.name:<8} {problem.n_rows:>6} {size:>5} {generations:>4}  {system:<17} {n_jobs:>4} "
                  f"{dtype:<7} {evals_per_s:>10,.0f} {gflops:>8.1f} {100 * gflops / ceiling:>5.1f}% {opt:>5}")
            rows.append({
                "problem": problem.name, "system": system, "n_jobs": n_jobs, "dtype": dtype, "population": size,
                "n_rows": problem.n_rows, "evals_per_s": evals_per_s, "ceiling_fraction": gflops / ceiling,
                "generations": generations, "gflops": gflops,
            })
        print()

    index = {(r["problem"], r["population"], r["system"], r["n_jobs"], r["dtype"]): r["evals_per_s"] for r in rows}
    print("ratios of evals/s (same problem, population and generations):")
    print("  A = evomlp n_jobs 1 float64 / scipy per-individual   B = evomlp n_jobs 1 float64 / scipy vectorized")
    print("  C = best evomlp / best scipy   D, E = evomlp n_jobs 2 / n_jobs 1 (float32, float64)   F = float32 / float64 "
          "(n_jobs 1)")
    print("  G = executor dispatch / joblib.Parallel dispatch (n_jobs 2 float32)   H = threading / loky (n_jobs 2 float32)"
          "   I = data sent once / with every chunk (n_jobs 2 float32)")
    print("  J, K = n_jobs auto / the better of n_jobs 1 and 2, under loky (J) and threading (K) (float32; below "
          "0.90 means auto chose badly)")
    print(f"  {'problem':<8} {'P':>5} " + " ".join(f"{c:>6}" for c in "ABCDEFGHIJK"))
    for problem, size, _, _, _ in measured:
        def get(system, n_jobs, dtype, name=problem.name, size=size):
            return index.get((name, size, system, n_jobs, dtype))

        evomlp_best = max((v for k, v in index.items() if k[:2] == (problem.name, size) and k[2].startswith("evomlp")),
                          default=None)
        scipy_best = max((v for k, v in index.items() if k[:2] == (problem.name, size) and k[2].startswith("scipy")),
                         default=None)
        cells = [
            ratio(get("evomlp", 1, "float64"), get("scipy", 1, "float64")),
            ratio(get("evomlp", 1, "float64"), get("scipy-vectorized", 1, "float64")),
            ratio(evomlp_best, scipy_best),
            ratio(get("evomlp", 2, "float32"), get("evomlp", 1, "float32")),
            ratio(get("evomlp", 2, "float64"), get("evomlp", 1, "float64")),
            ratio(get("evomlp", 1, "float32"), get("evomlp", 1, "float64")),
            ratio(get("evomlp", 2, "float32"), get("evomlp-joblib", 2, "float32")),
            ratio(get("evomlp-threading", 2, "float32"), get("evomlp", 2, "float32")),
            ratio(get("evomlp", 2, "float32"), get("evomlp-resend", 2, "float32")),
            ratio(get("evomlp-auto", "auto", "float32"),
                  max(get("evomlp", 1, "float32") or 0, get("evomlp", 2, "float32") or 0) or None),
            ratio(get("evomlp-threading-auto", "auto", "float32"),
                  max(get("evomlp", 1, "float32") or 0, get("evomlp-threading", 2, "float32") or 0) or None),
        ]
        print(f"  {problem.name:<8} {size:>5} " + " ".join(cells))

    memory = {}
    if not args.no_memory and not args.quick and os.path.exists("/proc/self/status"):
        for dtype in ("float64", "float32"):
            memory[dtype] = peak_memory_mb(dtype)
            print(f"peak memory (VmHWM), population 1,000 training run, 10 generations (bc, n_jobs 1, {dtype}): "
                  f"{memory[dtype][1]:.0f} MB (peak before the run, imports + data + population: "
                  f"{memory[dtype][0]:.0f} MB)")
    print()
    target_rows, target_ceiling = measure_targets(repeats=1 if args.quick else 3)
    print_targets(target_rows, target_ceiling)
    print()
    kernel_rows = kernel_cost(repeats=1 if args.quick else 3)
    print(f"total time {time.perf_counter() - total_started:.0f} s")
    if args.json:
        payload = {"ceiling_gflops": ceiling, "rows": rows, "kernels": kernel_rows, "targets": target_rows}
        if memory:
            payload["peak_memory_mb"] = {d: m[1] for d, m in memory.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
