"""The population evaluator: fitness of a whole population, in-process or over workers.

:class:`FitnessProblem` is the pure function that is shipped to workers: fitness of each row of a
population on the training data (optionally on a minibatch of row indices chosen by the main
process). :class:`PopulationEvaluator` splits a population into one contiguous chunk per worker:
the calling process evaluates the first chunk itself while ``n_jobs - 1`` loky worker processes
(``loky``) or threads (``threading``) evaluate the others; ``dask`` sends every chunk to the
workers of a ``dask.distributed`` cluster through its client (:class:`_DaskCluster`: the data
goes to each worker once per run, a generation sends only its chunks of weights; a lost worker
costs a retry of the generation, with the same bits; docs/scale-out.md). The results are put back
in order.
:meth:`PopulationEvaluator.evaluate_plan` takes a generation's plan (:mod:`evomlp.protocol`: DE's
trials, an evolution strategy's samples) instead of its trials: with threads, each thread builds the
chunk of trials it then evaluates.

Results are bit-identical for any ``n_jobs``, chunking or backend, because

- an individual's outputs depend only on its own weights, the data and the rows, never on the
  other individuals of its chunk (see :func:`evomlp.network.forward_population`);
- every forward pass runs with **one** BLAS thread (:func:`single_threaded_blas`): OpenBLAS
  computes a small matrix product with different kernels, hence different last bits, depending on
  its thread count (measured: ``(318, 30) @ (30, 64)`` differs between 1 and 2 threads in float32
  and float64), so "n_jobs 1 with 2 BLAS threads" could not match "2 workers x 1 thread".
  Parallelism comes from workers (``n_jobs``), one BLAS thread each. (It is also much faster for
  these small products: with OpenBLAS's 2 threads on a shared 2-core machine, a 300-generation
  default run took 6 to 247 s instead of 1.4 s, the threads waiting for each other.)
- the L2 penalty is added in float64, summed so that an individual's penalty does not depend on
  the other rows (:func:`weight_square_sums`): in the calling process on the whole population,
  or per chunk in each thread of :meth:`PopulationEvaluator.evaluate_plan`, with the same values.

Process workers receive the training data once per run, not once per generation: a task carries
the problem's :attr:`FitnessProblem.token` and a chunk; a worker keeps the problems it has seen in
a small per-process cache and answers "missing" when it does not know the token, and only then is
the problem itself (its ``X`` and ``y``) sent, to that worker. :attr:`PopulationEvaluator.n_problem_sends`
counts those sends (once per worker process per run, unless a worker is restarted). Chunks of
1 MB or more go through a shared file (``/dev/shm``) instead of a pipe; the file is unlinked as
soon as it is made and the workers open it through ``/proc/<pid>/fd/<fd>``, so its memory is freed
when the training process and its workers are gone, however they end (a kill leaves nothing in
``/dev/shm``).

Worker processes never outlive the training process and never see a Ctrl-C
(:mod:`evomlp.lifeline`): they are started with SIGINT held back and ignore it, so the trainer
finishes its generation and saves it; each exits within a fraction of a second of its parent's
death. (loky's semaphores, ``/dev/shm/sem.loky-<pid>-*``, are unlinked by loky's resource
tracker, which exits when the last worker has. joblib's own memmapping of big arguments is not in
play: ``loky`` drives loky's executor directly, and ``dask`` goes through dask's client, not joblib.)
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from evomlp import forward_kernel, lifeline, numerics
from evomlp.allocator import keep_freed_memory
from evomlp.errors import EvomlpError
from evomlp.losses import accuracy, class_weights, row_mean, task_loss
from evomlp.network import MLPSpec, forward_population

if TYPE_CHECKING:  # any optimizer's plan (evomlp.protocol): n_trials, shape, build(start, stop, out)
    from evomlp.de.trials import TrialPlan

BACKENDS = ("loky", "threading", "dask")
DTYPES = ("float32", "float64")


# -- one BLAS thread per forward pass --------------------------------------------------------
_CONTROLLER = None
_CONTROLLER_LOCK = threading.Lock()


def _blas_controller():
    """A per-process :class:`threadpoolctl.ThreadpoolController` (building one takes ~0.4 ms;
    limiting through it ~6 us)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        with _CONTROLLER_LOCK:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


# Set while the whole process runs with one BLAS thread (a worker process; a threading evaluator
# between __enter__ and __exit__): forward passes then skip their own limit, which costs 11 us per
# call alone and 35 us when two threads take threadpoolctl's and OpenBLAS's locks at once.
_PINNED_PID: int | None = None
_PINNED_RUNS = 0


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with one BLAS thread, then restore the previous setting."""
    if _PINNED_PID == os.getpid() or _PINNED_RUNS:
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


_PIN_LOCK = threading.Lock()
_PIN_LIMITER = None


@contextmanager
def _blas_pinned_for_run() -> Iterator[None]:
    """One BLAS thread for the whole process while any threading run is on: the first run to
    enter sets it, the last to leave restores the previous setting (in whatever order runs end)."""
    global _PINNED_RUNS, _PIN_LIMITER
    from threadpoolctl import ThreadpoolController

    with _PIN_LOCK:
        if _PINNED_RUNS == 0:
            # A fresh controller (0.4 ms once per run) also reaches BLAS libraries loaded since
            # the cached one was built (scipy's, once numba or scipy code has loaded it).
            _PIN_LIMITER = ThreadpoolController().limit(limits=1, user_api="blas")
        _PINNED_RUNS += 1
    try:
        yield
    finally:
        with _PIN_LOCK:
            _PINNED_RUNS -= 1
            if _PINNED_RUNS == 0:
                _PIN_LIMITER.restore_original_limits()
                _PIN_LIMITER = None


def _start_worker(parent_pid: int) -> None:
    """A loky worker's initializer: one BLAS thread, SIGINT ignored, exit with the parent."""
    lifeline.ignore_interrupts()
    lifeline.exit_with_parent(parent_pid)
    _pin_process_blas()


def _pin_process_blas() -> None:
    """In a worker process: one BLAS thread for good (so workers x threads <= cores), freed memory
    kept (:mod:`evomlp.allocator`), and loky told that this memory is no leak."""
    global _PINNED_PID
    if _PINNED_PID != os.getpid():
        _blas_controller().limit(limits=1, user_api="blas")
        keep_freed_memory()
        _expect_worker_memory()
        _PINNED_PID = os.getpid()


WORKER_MEMORY_GROWTH = 16 << 30


def _expect_worker_memory() -> None:
    """loky restarts a worker whose memory grew by 300 MB since its first task, taking that for a
    leak. Ours keep freed memory on purpose and hold the problems they were sent, so that growth is
    expected (a population of 1,000 on rows x100 measured restarts, a resend of the data and a
    warning each time): raise loky's limit in this worker (a private loky constant; nothing
    happens if a later loky drops it)."""
    try:
        from joblib.externals.loky import process_executor
    except ImportError:  # pragma: no cover
        return
    if isinstance(getattr(process_executor, "_MAX_MEMORY_LEAK_SIZE", None), int):
        process_executor._MAX_MEMORY_LEAK_SIZE = max(process_executor._MAX_MEMORY_LEAK_SIZE, WORKER_MEMORY_GROWTH)


CLASS_WEIGHTS = ("none", "balanced")


# -- the problem ---------------------------------------------------------------------------
@dataclass(eq=False)
class FitnessProblem:
    """Fitness = task loss on the training rows + ``l2 * sum(W^2)`` over weight matrices (not biases).

    The penalty's factor does not depend on the number of rows. scikit-learn's ``alpha / (2 N)``
    was tried and measured (``benchmarks/accuracy.py``, SNES, seeds 0..4): no one ``alpha`` fitted
    both iris (84 training rows, test accuracy 1.000 at alpha 2, 0.978 at 12) and the synthetic
    ``many_features`` set (840 rows, 0.41 at alpha 2 and 6, 0.54 at 19), because dividing by ``N``
    made the same alpha ten times stronger on iris. A factor of about 0.011 on the raw sum fits
    every set measured (the README's accuracy table). The penalty is large against the loss at the
    start (He initialisation gives ``sum(W^2)`` of about twice the number of hidden and output
    units, about 200 here): the search first shrinks weights, which costs no accuracy in these
    measurements.

    ``class_weight``: ``"none"`` (every row weighs the same) or ``"balanced"`` (the task loss is the
    mean weighted by :func:`evomlp.losses.class_weights` of ``y``: every class weighs the same in
    total, as scikit-learn's ``class_weight="balanced"``; a minibatch uses its rows' weights).

    ``X: (N, F)``, ``y: (N,)`` (class indices) or ``(N, K)`` (regression targets). ``dtype`` is the
    floating type of the forward pass and of the task loss (``float32`` is about twice as fast as
    ``float64``); the population itself stays float64 in the optimizer, fitness is returned as
    float64 and the L2 penalty is always computed in float64.

    A problem is treated as immutable once built: its :attr:`token` (random, made at construction
    and kept through pickling) is how worker processes recognise data they already hold.
    """

    spec: MLPSpec
    X: np.ndarray
    y: np.ndarray
    l2: float = 0.0
    dtype: str = "float64"
    class_weight: str = "none"
    token: str = field(init=False, repr=False)
    row_weights: np.ndarray | None = field(init=False, repr=False)
    numerics: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if str(self.dtype) not in DTYPES:
            raise EvomlpError(f"train.dtype: expected one of {list(DTYPES)}, got {self.dtype!r}")
        self.dtype = str(self.dtype)
        self.X = np.ascontiguousarray(self.X, dtype=self.dtype)
        self.y = np.ascontiguousarray(self.y)
        if self.class_weight not in CLASS_WEIGHTS:
            raise EvomlpError(f"train.class_weight: expected one of {list(CLASS_WEIGHTS)}, got {self.class_weight!r}")
        self.row_weights = None
        if self.class_weight == "balanced":
            if self.spec.task == "regression":
                raise EvomlpError("train.class_weight: 'balanced' needs classes; use none for regression")
            self.row_weights = class_weights(self.y, max(self.spec.n_outputs, 2))
        self.token = uuid.uuid4().hex
        # the kernels of the process that built the problem: a worker with others refuses it
        self.numerics = numerics.status().fingerprint

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def penalty_per_square(self) -> float:
        """The factor of ``sum(W^2)`` in the fitness: ``l2``."""
        return float(self.l2)

    @property
    def flops_per_evaluation(self) -> int:
        """Multiply-adds x 2 of one forward pass on all rows: ``2 N sum(fan_in fan_out)``."""
        return 2 * self.n_rows * sum(fan_in * fan_out for fan_in, fan_out in self.spec.layer_shapes)

    def _outputs(self, population: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Network outputs ``(P, N, K)`` in ``dtype``, with one BLAS thread (the fused pass, where
        it applies, gets the training rows prepared once per process)."""
        weights = np.asarray(population).astype(self.dtype, copy=False)
        prepared = self._fused_rows() if X is self.X and forward_kernel.supports(self.spec, self.dtype) else None
        with single_threaded_blas():
            return forward_population(self.spec, weights, X, prepared)

    def _fused_rows(self):
        """The training rows prepared once per process for the fused pass, with their labels for a
        binary task (the folded loss)."""
        prepared = self.__dict__.get("_fused")
        if prepared is None:
            labels = self.y if self.spec.task == "binary" else None
            prepared = self.__dict__["_fused"] = forward_kernel.FusedRows(self.X, y=labels)
        return prepared

    def __getstate__(self) -> dict:
        # the prepared rows depend on the CPU of the process that uses them: rebuilt there
        state = dict(self.__dict__)
        state.pop("_fused", None)
        return state

    def loss(self, population: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Task loss ``(P,)`` (float64, no penalty) of ``population (P, D)``, any float dtype.

        A binary task on the fused pass gets each row's cross-entropy from the compiled loop
        (:func:`evomlp.forward_kernel.row_losses`: the logits never leave the registers) and
        averages it here; any other task, its outputs and :func:`evomlp.losses.task_loss`."""
        X, y, weights = self.X, self.y, self.row_weights
        if rows is not None:
            X, y = X[rows], y[rows]
            weights = None if weights is None else weights[rows]
        if self.spec.task == "binary" and forward_kernel.supports(self.spec, self.dtype):
            prepared = self._fused_rows() if rows is None else forward_kernel.FusedRows(X, y=y)
            weights32 = np.asarray(population).astype(np.float32, copy=False)
            return row_mean(forward_kernel.row_losses(self.spec, weights32, prepared), weights).astype(np.float64)
        return task_loss(self.spec.task, self._outputs(population, X), y, weights).astype(np.float64)

    def add_penalty(self, loss: np.ndarray, population: np.ndarray) -> np.ndarray:
        """``loss + l2 * sum(W^2)`` in place (float64 ``population``); unchanged if ``l2 == 0``."""
        if self.l2:
            loss += self.penalty_per_square * weight_square_sums(self.spec, population)
        return loss

    def __call__(self, population: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Fitness ``(P,)`` of ``population (P, D)``; ``rows`` selects a minibatch of training rows."""
        return self.add_penalty(self.loss(population, rows), population)

    def loss_and_accuracy(self, population: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Loss without penalty (class-weighted as the fitness is) and accuracy (``None`` for
        regression; never weighted) on all rows, ``(P,)`` each."""
        outputs = self._outputs(population, self.X)
        if self.spec.task == "binary" and forward_kernel.supports(self.spec, self.dtype):
            loss = self.loss(population)  # the fitness's own definition, folded into the pass
        else:
            loss = task_loss(self.spec.task, outputs, self.y, self.row_weights).astype(np.float64)
        if self.spec.task == "regression":
            return loss, None
        return loss, accuracy(outputs, self.y).astype(np.float64)


def weight_square_sums(spec: MLPSpec, population: np.ndarray) -> np.ndarray:
    """``sum(W^2)`` over the weight matrices (not biases) of each individual, ``(P,)`` float64.

    Summed layer by layer over row views of ``population``, each a contiguous run of the row, so
    an individual's sum does not depend on the other rows. (Summing ``population[:, mask]`` would:
    boolean indexing returns a Fortran-ordered copy for ``P > 1`` but a contiguous one for
    ``P == 1``, and einsum sums the two layouts in different orders.)
    """
    population = np.ascontiguousarray(population, dtype=np.float64)
    total = np.zeros(population.shape[0])
    for w, _ in spec.layer_offsets():
        block = population[:, w]
        total += np.einsum("pd,pd->p", block, block)
    return total


# -- what runs in a worker -------------------------------------------------------------------
WORKER_CACHE_SIZE = 4
_WORKER_PROBLEMS: OrderedDict[str, FitnessProblem] = OrderedDict()
_WORKER_BUFFERS: OrderedDict[str, np.ndarray] = OrderedDict()
_WORKER_LOCK = threading.Lock()


@dataclass(frozen=True)
class _SharedChunk:
    """Rows ``start:stop`` of a population written by the calling process into a shared file
    (``token`` names the file: its ``path`` in ``/proc`` may be another file's later)."""

    token: str
    path: str
    dtype: str
    shape: tuple[int, int]
    start: int
    stop: int


def _chunk_array(chunk: np.ndarray | _SharedChunk) -> np.ndarray:
    if isinstance(chunk, np.ndarray):
        return chunk
    with _WORKER_LOCK:
        buffer = _WORKER_BUFFERS.get(chunk.token)
        if buffer is None or buffer.shape != chunk.shape:
            buffer = np.memmap(chunk.path, dtype=chunk.dtype, mode="r", shape=chunk.shape)
            _WORKER_BUFFERS[chunk.token] = buffer
            while len(_WORKER_BUFFERS) > 2:
                _WORKER_BUFFERS.popitem(last=False)
    return np.asarray(buffer[chunk.start : chunk.stop])


def _cached_chunk_loss(
    token: str, problem: FitnessProblem | None, chunk: np.ndarray | _SharedChunk, rows: np.ndarray | None
) -> np.ndarray | None:
    """Task loss of ``chunk`` in a worker process; ``None`` if ``problem`` was not sent and this
    process has not seen ``token`` yet (the caller then sends it)."""
    _pin_process_blas()
    with _WORKER_LOCK:
        if problem is None:
            problem = _WORKER_PROBLEMS.get(token)
            if problem is None:
                return None
            _WORKER_PROBLEMS.move_to_end(token)
        else:
            numerics.require_same(problem.numerics, f"worker process {os.getpid()}")
            _WORKER_PROBLEMS[token] = problem
            _WORKER_PROBLEMS.move_to_end(token)
            while len(_WORKER_PROBLEMS) > WORKER_CACHE_SIZE:
                _WORKER_PROBLEMS.popitem(last=False)
    return problem.loss(_chunk_array(chunk), rows)


def worker_cache_tokens() -> list[str]:
    """Tokens of the problems this process holds (for tests and diagnostics)."""
    with _WORKER_LOCK:
        return list(_WORKER_PROBLEMS)


# -- how many workers ------------------------------------------------------------------------
def effective_n_jobs(n_jobs: int, cores: int | None = None) -> int:
    """``-1`` means all cores (``-2`` all but one, as joblib); otherwise ``n_jobs`` itself.
    ``cores``: this machine's (``os.cpu_count()``) unless given (a dask cluster's worker threads)."""
    if n_jobs < 0:
        return max(1, (os.cpu_count() if cores is None else cores) + 1 + n_jobs)
    if n_jobs == 0:
        raise EvomlpError("runtime.n_jobs: expected a positive integer or -1, got 0")
    return n_jobs


# n_jobs "auto": see choose_n_jobs for the measurements behind these. Per backend: float64-
# equivalent FLOPs per generation to go parallel at all, and never less work than the second
# number per worker...
AUTO_MIN_FLOPS = {"loky": (0.2e9, 0.1e9), "dask": (0.2e9, 0.1e9), "threading": (0.01e9, 0.005e9)}
AUTO_MIN_INDIVIDUALS_PER_WORKER = 8  # ...nor fewer individuals


def choose_n_jobs(
    problem: FitnessProblem, population_size: int, cores: int | None = None, backend: str = "loky"
) -> int:
    """``runtime.n_jobs: auto``: 1 (in-process) or a number of workers, by the work per generation.

    Rule, with ``work = population_size x problem.flops_per_evaluation`` (``2 N sum(fan_in
    fan_out)`` per individual), halved for float32 (whose forward pass runs about twice as fast),
    and ``(first, per_worker)`` = :data:`AUTO_MIN_FLOPS` of the backend:

    - ``work < first``, or a single core: 1, in-process;
    - otherwise ``min(cores, work // per_worker, population_size // 8)`` (at least 1).

    ``cores`` defaults to :func:`joblib.cpu_count` (CPU affinity and cgroup quotas).

    Process workers (``loky``, ``dask``): 0.2 and 0.1 GFLOP. Going parallel costs about 0.45 ms
    per generation for a loky round trip plus sending the chunks (P = 1,000 x 4,097 weights: +2 ms
    through the shared file), and the trials are built in the calling process. Measured with
    ``python benchmarks/throughput.py`` on a quiet 2-core machine, n_jobs 2 vs 1 (float32): 0.93x
    at 0.06 GFLOP per generation (the default problem, P = 50), 1.25x at 0.32 (P = 200), 1.5x for
    digits at P = 50 (0.32), 1.7-2.3x from 0.8 GFLOP up (rows x10 and x100).

    Threads (``threading``): 0.01 and 0.005 GFLOP. A generation costs about 0.1 ms more in two
    threads (handing a chunk over and back), and each thread builds the trials it evaluates.
    Measured on the same machine, 30-64-32-1 and 30-16-1 networks on 20 to 318 rows, P = 20 and 50
    (in-process time per generation -> two threads): 0.064 GFLOP-equivalent 1.50x (the default
    problem, 1.96 -> 1.30 ms), 0.013 1.09x (0.58 -> 0.54 ms), 0.008 0.91x (30-16-1, 0.43 -> 0.47 ms),
    0.006 0.91x, 0.002 0.5-0.6x (0.2 ms generations, where the hand-over doubles the time).

    When another process keeps the second core busy, n_jobs 2 measured 0.74-0.94x below 1 GFLOP:
    ``auto`` cannot see that load, and a shared machine may do better with ``n_jobs: 1``.
    """
    if population_size < 2:
        return 1
    if cores is None:
        from joblib import cpu_count

        cores = cpu_count()
    cores = max(1, int(cores))
    first, per_worker = AUTO_MIN_FLOPS[backend]
    work = float(population_size) * problem.flops_per_evaluation
    if problem.dtype == "float32":
        work /= 2
    if cores < 2 or work < first:
        return 1
    workers = min(cores, int(work // per_worker), population_size // AUTO_MIN_INDIVIDUALS_PER_WORKER)
    return max(1, workers)


def resolve_n_jobs(
    n_jobs: int | str, problem: FitnessProblem, population_size: int | None, backend: str = "loky",
    cores: int | None = None,
) -> int:
    """An integer ``n_jobs`` from a setting that may be ``"auto"`` (needs ``population_size``).

    ``cores`` is what ``-1`` and ``auto`` count: this machine's cores unless given; for backend
    ``dask`` on a scheduler's address, the cluster's worker threads (:class:`PopulationEvaluator`
    passes them once connected)."""
    if n_jobs == "auto":
        if population_size is None:
            raise EvomlpError("runtime.n_jobs: 'auto' needs the population size")
        return choose_n_jobs(problem, population_size, cores=cores, backend=backend)
    if isinstance(n_jobs, str) or isinstance(n_jobs, bool):
        raise EvomlpError(f"runtime.n_jobs: expected a positive integer, -1 or 'auto', got {n_jobs!r}")
    return effective_n_jobs(int(n_jobs), cores)


def _counts_cores(n_jobs: int | str) -> bool:
    """Is the setting relative to the number of cores (``-1``, ``auto``)?"""
    return n_jobs == "auto" or (isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and n_jobs < 0)


# -- the evaluator ---------------------------------------------------------------------------
# Population chunks of at least this many bytes go to process workers through a shared file
# (written once per generation, mapped by the workers) instead of being pickled through a pipe:
# a loky round trip costs 0.2 ms empty, 0.5 ms with 1 MB, 6.5 ms with 8 MB, 27 ms with 16 MB.
SHARED_CHUNK_BYTES = 1 << 20
# Idle process workers exit after this many seconds (they are started again when needed).
WORKER_IDLE_TIMEOUT = 300

_PROCESS_POOL = None
_PROCESS_POOL_KEY: tuple[int, int] | None = None
_PROCESS_POOL_LOCK = threading.Lock()


def _process_pool(n_workers: int):
    """A loky process pool of ``n_workers`` (one BLAS thread each), kept for the next evaluator.

    Not joblib's ``Parallel``: its result loop polls every 10 ms (``time.sleep(0.01)`` in
    ``Parallel._retrieve``), which measured as a 10 ms floor per generation, longer than a whole
    in-process generation of the default problem (1.6 ms in float32). Not loky's reusable
    executor either: joblib owns that singleton and breaks when it is resized under it.
    """
    global _PROCESS_POOL, _PROCESS_POOL_KEY
    from joblib.externals.loky import ProcessPoolExecutor

    key = (os.getpid(), n_workers)
    with _PROCESS_POOL_LOCK:
        pool = _PROCESS_POOL
        broken = pool is not None and getattr(pool, "_flags", None) is not None and pool._flags.broken
        if pool is None or _PROCESS_POOL_KEY != key or broken:
            if pool is not None and _PROCESS_POOL_KEY is not None and _PROCESS_POOL_KEY[0] == os.getpid():
                pool.shutdown(wait=False)
            one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            with lifeline.children_ignore_interrupts():  # loky's resource tracker starts here
                pool = ProcessPoolExecutor(
                    max_workers=n_workers, timeout=WORKER_IDLE_TIMEOUT, initializer=_start_worker,
                    initargs=(os.getpid(),), env=one_thread,
                )
            _PROCESS_POOL, _PROCESS_POOL_KEY = pool, key
        return pool


def _may_start_workers(pool):
    """Around a submit to ``pool``: if it may start worker processes (loky starts them all at a
    submit that finds fewer than its size), they start ignoring SIGINT
    (:func:`evomlp.lifeline.children_ignore_interrupts`); otherwise nothing is done."""
    processes, size = getattr(pool, "_processes", None), getattr(pool, "_max_workers", None)
    if processes is not None and size is not None and len(processes) >= size:
        return nullcontext()
    return lifeline.children_ignore_interrupts()


def shutdown_workers() -> None:
    """Stop the process workers kept for reuse (they also stop when idle or at exit)."""
    global _PROCESS_POOL, _PROCESS_POOL_KEY
    with _PROCESS_POOL_LOCK:
        if _PROCESS_POOL is not None and _PROCESS_POOL_KEY is not None and _PROCESS_POOL_KEY[0] == os.getpid():
            _PROCESS_POOL.shutdown(wait=True)
        _PROCESS_POOL = _PROCESS_POOL_KEY = None


class _SharedPopulation:
    """A file in ``/dev/shm`` (or the temp dir) holding the population sent to process workers.

    Where ``/proc`` is available the file is unlinked at once and :attr:`path` is
    ``/proc/<pid>/fd/<fd>``, which the workers open while this process holds the descriptor: no
    name is left behind by a kill. Elsewhere the named file is removed on :meth:`close`."""

    def __init__(self, rows: int, dim: int, dtype: str):
        import mmap
        import tempfile
        import weakref

        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        handle, name = tempfile.mkstemp(prefix=f"evomlp-{os.getpid()}-", suffix=".population", dir=folder)
        self.token = os.path.basename(name)
        self.path = f"/proc/{os.getpid()}/fd/{handle}"
        if os.path.exists(self.path):
            os.unlink(name)
            name = None
        else:  # pragma: no cover - no /proc
            self.path = name
        self.shape = (rows, dim)
        self.dtype = dtype
        nbytes = rows * dim * np.dtype(dtype).itemsize
        os.ftruncate(handle, nbytes)
        self._map = mmap.mmap(handle, nbytes)
        self.array = np.ndarray(self.shape, dtype=dtype, buffer=self._map)
        self._finalizer = weakref.finalize(self, _release, handle, self._map, name)

    def fits(self, rows: int, dim: int, dtype: str) -> bool:
        return rows <= self.shape[0] and dim == self.shape[1] and dtype == self.dtype

    def close(self) -> None:
        self.array = None
        self._finalizer()


def _release(handle: int, mapping, name: str | None) -> None:
    for release in (mapping.close, lambda: os.close(handle), lambda: name and os.remove(name)):
        try:
            release()
        except (OSError, BufferError):
            pass


class PopulationEvaluator:
    """Evaluates populations with a :class:`FitnessProblem`, one chunk per worker.

    Use as a context manager so that the workers are started once per run and reused by every
    generation: ``with PopulationEvaluator(problem, n_jobs=2) as evaluate: fitness = evaluate(pop)``.
    ``n_jobs == 1`` runs in the calling process, with no workers at all; ``n_jobs="auto"`` picks
    with :func:`choose_n_jobs` (pass ``population_size``).

    With ``loky`` and ``threading``, the calling process evaluates the first chunk itself while
    ``n_jobs - 1`` workers (processes or threads) evaluate the others; with ``dask``, all
    ``n_jobs`` chunks run on the cluster's workers, even ``n_jobs == 1`` (:class:`_DaskCluster`);
    on a scheduler's address, ``n_jobs`` ``-1`` and ``"auto"`` count the cluster's worker threads
    once connected (``n_jobs`` is ``None`` until then). Every backend also keeps ``n_jobs - 1``
    threads in the calling process (no more than its other cores, for ``loky`` and ``dask``) to
    build trials from a plan (:meth:`build`, :meth:`evaluate_plan`).
    """

    def __init__(
        self,
        problem: FitnessProblem,
        n_jobs: int | str = 1,
        backend: str = "loky",
        scheduler_address: str | None = None,
        population_size: int | None = None,
    ):
        if backend not in BACKENDS:
            raise EvomlpError(f"runtime.backend: expected one of {list(BACKENDS)}, got {backend!r}")
        self.problem = problem
        self.backend = backend
        self.scheduler_address = scheduler_address
        self._n_jobs_setting, self._population_size = n_jobs, population_size
        if backend == "dask" and scheduler_address and _counts_cores(n_jobs):
            # -1 and auto count the cluster's worker threads, known once connected (__enter__)
            resolve_n_jobs(n_jobs, problem, population_size, backend, cores=1)  # the setting's errors now
            self.n_jobs: int | None = None
        else:
            self.n_jobs = resolve_n_jobs(n_jobs, problem, population_size, backend)
        self.n_problem_sends = 0  # tasks that carried the problem (its X and y) to a worker process
        self.n_calls = 0
        self._exit_stack = None
        self._threads = None
        self._processes = None
        self._dask: _DaskCluster | None = None
        self._shared: _SharedPopulation | None = None
        self._sent_once = False

    @property
    def parallel(self) -> bool:
        return self._threads is not None or self._processes is not None or self._dask is not None

    def __enter__(self) -> "PopulationEvaluator":
        keep_freed_memory()  # a run allocates and frees MB-sized arrays every generation
        if self.backend == "dask" or self.n_jobs > 1:
            from contextlib import ExitStack

            stack = ExitStack()
            if self.backend == "dask":
                # Every chunk runs on the cluster, even with one worker (n_jobs 1: one chunk).
                self._dask = stack.enter_context(_DaskCluster(self.scheduler_address, self.n_jobs))
                try:
                    if self.n_jobs is None:
                        self.n_jobs = resolve_n_jobs(self._n_jobs_setting, self.problem, self._population_size,
                                                     "dask", cores=self._dask.threads())
                    self._dask.start(self.problem)
                except BaseException:
                    stack.close()
                    self._dask = None
                    raise
            elif self.backend == "threading":
                # One BLAS thread for the whole run, set before the threads start; the forward
                # passes then skip their own limits (single_threaded_blas).
                stack.enter_context(_blas_pinned_for_run())
            else:
                self._processes = _process_pool(self.n_jobs - 1)
            from concurrent.futures import ThreadPoolExecutor

            # Threads of the calling process: they evaluate chunks (backend threading) and build
            # trial chunks from a plan (all backends; the process workers wait meanwhile). A dask
            # cluster may have more workers than this machine has cores: build on the local ones.
            threads = self.n_jobs - 1
            if self.backend != "threading":
                from joblib import cpu_count

                threads = min(threads, cpu_count() - 1)
            if threads > 0:
                self._threads = stack.enter_context(
                    ThreadPoolExecutor(threads, thread_name_prefix="evomlp-evaluate")
                )
            self._exit_stack = stack
            self._sent_once = False
        return self

    def __exit__(self, *exc_info) -> None:
        if self._exit_stack is not None:
            self._exit_stack.close()
        if self._shared is not None:
            self._shared.close()
        if self._dask is not None:
            self.n_problem_sends = self._dask.n_problem_sends
        self._exit_stack = self._threads = self._processes = self._dask = self._shared = None

    def _bounds(self, size: int) -> list[tuple[int, int]]:
        """One contiguous chunk ``(start, stop)`` of rows per worker."""
        n_chunks = min(self.n_jobs, size)
        bounds = np.linspace(0, size, n_chunks + 1).round().astype(int)
        return [(int(bounds[i]), int(bounds[i + 1])) for i in range(n_chunks)]

    def build(self, plan: TrialPlan) -> np.ndarray:
        """The trials of ``plan`` ``(P, D)``, one chunk per thread of the calling process."""
        size = plan.n_trials
        if self._threads is None or size < 2:
            return plan.build()
        trials = np.empty(plan.shape)

        def build_chunk(start: int, stop: int) -> None:
            plan.build(start, stop, out=trials[start:stop])

        self._in_threads(build_chunk, self._bounds(size))
        return trials

    def evaluate_plan(self, plan: TrialPlan, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(trials, fitness)`` of a plan: the same as ``trials = plan.build(); fitness = self(trials, rows)``.

        With backend ``threading``, each thread builds the chunk it then evaluates, so building the
        trials is spread over the threads with the evaluation. Otherwise the trials are built
        (:meth:`build`) and then evaluated (:meth:`__call__`).
        """
        size = plan.n_trials
        if self._threads is None or size < 2 or self._processes is not None or self._dask is not None:
            trials = self.build(plan)
            return trials, self(trials, rows)
        self.n_calls += 1
        trials = np.empty(plan.shape)
        problem = self.problem

        def build_and_evaluate(start: int, stop: int) -> np.ndarray:
            chunk = plan.build(start, stop, out=trials[start:stop])
            # The penalty is a sum within each row: adding it per chunk gives the same values.
            return problem(chunk, rows)

        return trials, np.concatenate(self._in_threads(build_and_evaluate, self._bounds(size)))

    def _in_threads(self, task, bounds) -> list:
        """``[task(start, stop) for each chunk]``: the first chunk in the calling thread, the others
        in the pool."""
        futures = [self._threads.submit(task, start, stop) for start, stop in bounds[1:]]
        first = task(*bounds[0])
        return [first] + [future.result() for future in futures]

    def __call__(self, population: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Fitness ``(P,)`` of ``population (P, D)``, in the order of its rows."""
        self.n_calls += 1
        problem = self.problem
        population = np.asarray(population)
        size = population.shape[0]
        if not self.parallel or (size < 2 and self._dask is None):
            return problem(population, rows)
        bounds = self._bounds(size)
        if self._dask is not None:
            weights = population.astype(problem.dtype, copy=False)  # half the bytes to send in float32
            losses = self._dask.losses(problem, [weights[start:stop] for start, stop in bounds], rows)
            self.n_problem_sends = self._dask.n_problem_sends
        elif self._processes is None:
            losses = self._run_in_threads(population, bounds, rows)
        else:
            try:
                losses = self._run_in_processes(population, bounds, rows)
            except _worker_failures() as error:
                shutdown_workers()  # a broken pool cannot be reused; the next run starts afresh
                reason = " ".join(str(error).split())[:200] or type(error).__name__
                raise EvomlpError(
                    f"runtime: a worker process died while evaluating the population "
                    f"({type(error).__name__}: {reason}); nothing was written: run again to resume "
                    "from the last checkpoint"
                ) from None
        return problem.add_penalty(np.concatenate(losses), population)

    def _run_in_threads(self, population, bounds, rows) -> list[np.ndarray]:
        loss = self.problem.loss
        return self._in_threads(lambda start, stop: loss(population[start:stop], rows), bounds)

    def _chunks_for_workers(self, population: np.ndarray, bounds) -> list[np.ndarray | _SharedChunk]:
        """The worker chunks: arrays, or slices of the shared file when they are big."""
        dtype = self.problem.dtype
        size, dim = population.shape
        itemsize = np.dtype(dtype).itemsize
        largest = max(stop - start for start, stop in bounds)
        if largest * dim * itemsize < SHARED_CHUNK_BYTES:
            weights = population.astype(dtype, copy=False)  # half the bytes to send in float32
            return [weights[start:stop] for start, stop in bounds]
        shared = self._shared
        if shared is None or not shared.fits(size, dim, dtype):
            if shared is not None:
                shared.close()
            shared = self._shared = _SharedPopulation(size, dim, dtype)
        # One pass: cast (float32) and write; the same values as astype in the calling process.
        np.copyto(shared.array[:size], population, casting="same_kind")
        return [_SharedChunk(shared.token, shared.path, dtype, shared.shape, start, stop) for start, stop in bounds]

    def _run_in_processes(self, population, bounds, rows) -> list[np.ndarray]:
        problem = self.problem
        token = problem.token
        chunks = self._chunks_for_workers(population, bounds[1:])
        # The first call of a run sends the problem with every chunk; later calls send only the
        # token, and a worker that does not know it (one that got no chunk yet, or one started
        # again after an idle timeout) answers None and then gets the problem, once.
        send = not self._sent_once
        with _may_start_workers(self._processes):
            futures = [
                self._processes.submit(_cached_chunk_loss, token, problem if send else None, chunk, rows)
                for chunk in chunks
            ]
        if send:
            self.n_problem_sends += len(chunks)
            self._sent_once = True
        start, stop = bounds[0]
        first = problem.loss(population[start:stop], rows)
        results = [future.result() for future in futures]
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            with _may_start_workers(self._processes):
                resent = [
                    self._processes.submit(_cached_chunk_loss, token, problem, chunks[index], rows)
                    for index in missing
                ]
            self.n_problem_sends += len(missing)
            for index, future in zip(missing, resent):
                results[index] = future.result()
        return [first] + results


def _worker_failures() -> tuple[type[BaseException], ...]:
    """The exceptions by which loky reports a worker process that died (dask's: :class:`_DaskCluster`)."""
    from concurrent.futures.process import BrokenProcessPool

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return (BrokenProcessPool, TerminatedWorkerError)


# -- dask.distributed ------------------------------------------------------------------------
# Named bounds of the dask path (seconds). Connecting to the scheduler, and how long a lost
# scheduler connection may take to come back (the client's own reconnect window).
SCHEDULER_TIMEOUT_S = 10
# How long a run waits for a first worker, or for any worker once all are gone.
WORKER_TIMEOUT_S = 10
# Generations resubmitted in a row after the cluster lost their data (every worker that held the
# problem gone, or the scheduler restarted); then the run ends with an error.
DASK_RETRIES = 3
# How often a generation that is still running looks at the cluster (workers left, scheduler).
DASK_POLL_S = 1.0

_DASK_CHECKED: set[str] = set()  # in a dask worker: tokens of the problems whose kernels matched


def _dask_chunk_loss(problem: FitnessProblem, chunk: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """Task loss of ``chunk`` in a dask worker; ``problem`` is the worker's own copy of the data
    (scattered to every worker once per run, never sent with the task)."""
    _pin_process_blas()
    with _WORKER_LOCK:
        if problem.token not in _DASK_CHECKED:
            numerics.require_same(problem.numerics, f"dask worker {_dask_worker_name()}")
            _DASK_CHECKED.add(problem.token)
    return problem.loss(chunk, rows)


def _dask_worker_name() -> str:
    try:
        from distributed import get_worker

        return f"{get_worker().address} (pid {os.getpid()})"
    except (ImportError, ValueError):  # pragma: no cover - called outside a worker
        return f"pid {os.getpid()}"


class _DaskLost(Exception):
    """A generation's futures were cancelled: the cluster lost a worker's copy of the problem, or
    the scheduler."""


def _same(value):
    """A dask task that returns its argument: a worker's own copy of the problem (see :meth:`_DaskCluster.share`)."""
    return value


class _DaskCluster:
    """A ``dask.distributed`` client (on a scheduler's address, or on a :class:`LocalCluster` of
    ``n_workers`` single-threaded worker processes) that evaluates population chunks.

    The problem goes to every worker once per run (:meth:`share`) and stays there as one future
    per worker; a generation sends only the chunks of weights (and the minibatch rows), each task
    naming its worker's copy, and gets back the losses. One future per worker, not one broadcast
    future: dask's active memory manager drops the extra replicas of a key that no task is waiting
    for (every 2 s, between generations), and the next generation fetched the data again (measured:
    4.8 MB on a 40,000-row problem, once every few generations). Chunk ``i`` goes to the ``i``-th
    worker thread; a worker that is lost takes its copy with it, the generation's futures are
    cancelled, and the generation is sent again to the workers left (:meth:`losses`).
    """

    def __init__(self, scheduler_address: str | None, n_workers: int | None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EvomlpError("runtime.backend: 'dask' needs dask.distributed: pip install 'evomlp[dask]'") from None
        from contextlib import ExitStack

        self.address = scheduler_address
        self.key = "runtime.scheduler_address" if scheduler_address else "runtime.backend"  # what errors name
        self.n_problem_sends = 0  # copies of the problem made on workers
        self.n_retries = 0  # generations sent again after a loss
        self._problem_token: str | None = None
        self._copies: dict[str, object] = {}  # worker address -> future of its copy of the problem
        self._slots: list[str] = []  # one entry per worker thread
        self._calls = 0
        self._stack = ExitStack()
        try:
            if scheduler_address:
                try:
                    self.client = self._stack.enter_context(
                        Client(scheduler_address, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False)
                    )
                except (OSError, TimeoutError, ValueError) as error:
                    raise EvomlpError(
                        f"runtime.scheduler_address: no dask scheduler answered at {scheduler_address!r} "
                        f"within {SCHEDULER_TIMEOUT_S} s ({_reason(error, 160)})"
                    ) from None
            else:
                import warnings

                # its processes never see a Ctrl-C (the trainer decides); its HTTP server takes
                # another port if 8787 is taken, which needs no warning
                with lifeline.children_ignore_interrupts(), warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Port .* is already in use")
                    cluster = self._stack.enter_context(
                        LocalCluster(n_workers=n_workers or 1, threads_per_worker=1, processes=True,
                                     dashboard_address=None)
                    )
                self.client = self._stack.enter_context(Client(cluster, set_as_default=False))
            self._wait_for_workers()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "_DaskCluster":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        import logging

        if getattr(self, "client", None) is not None and self.client.status != "running":
            # a lost scheduler: the client's own reconnect and close would log tracebacks
            for name in ("distributed.client", "distributed.batched", "distributed.core"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        self._copies = {}
        self._stack.close()

    @property
    def where(self) -> str:
        return f"the dask scheduler at {self.address}" if self.address else "the local dask cluster"

    def threads(self) -> int:
        """Worker threads of the cluster now (``n_jobs: -1`` and ``auto`` count these)."""
        return sum(self.client.nthreads().values())

    def _wait_for_workers(self) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
        except (TimeoutError, OSError):
            hint = f"; start some: python -m evomlp.pinned dask worker {self.address} --nthreads 1" if self.address else ""
            raise EvomlpError(
                f"{self.key}: {self.where} has no worker (none joined within {WORKER_TIMEOUT_S} s){hint}"
            ) from None

    def share(self, problem: FitnessProblem) -> None:
        """A copy of ``problem`` (its ``X`` and ``y``) on every worker that has none: sent once from
        here to one worker, then copied worker to worker by tasks pinned to each."""
        from concurrent.futures import CancelledError

        from distributed import wait

        if problem.token != self._problem_token:
            self._copies, self._problem_token = {}, problem.token
        nthreads = self.client.nthreads()
        self._copies = {w: f for w, f in self._copies.items() if w in nthreads and f.status == "finished"}
        missing = [worker for worker in sorted(nthreads) if worker not in self._copies]
        if missing:
            if self._copies:
                source = next(iter(self._copies.values()))
            else:
                source = self.client.scatter(problem, workers=missing[:1], hash=False)
            copies = {
                worker: self.client.submit(_same, source, key=f"evomlp-problem-{problem.token[:8]}-{worker}",
                                           workers=[worker], allow_other_workers=False, pure=False)
                for worker in missing
            }
            try:
                with self.client.as_current():
                    wait(list(copies.values()), timeout=SCHEDULER_TIMEOUT_S + WORKER_TIMEOUT_S)
            except (TimeoutError, CancelledError):
                pass
            if any(future.status != "finished" for future in copies.values()):
                raise _DaskLost("a copy of the problem was lost while it was made")
            del source  # each worker now holds its own copy, one replica each
            self._copies.update(copies)
            self.n_problem_sends += len(copies)
        self._slots = [worker for worker in sorted(self._copies) for _ in range(nthreads[worker])]

    def start(self, problem: FitnessProblem) -> None:
        """The problem to every worker, before the first generation (:meth:`losses` of nothing)."""
        self.losses(problem, [], None)

    def losses(self, problem: FitnessProblem, chunks: list[np.ndarray], rows: np.ndarray | None) -> list[np.ndarray]:
        """The loss of each chunk, computed on the workers; a generation whose futures the cluster
        lost is sent again (the losses are a pure function of the chunk: the same bits)."""
        self._calls += 1
        for attempt in range(DASK_RETRIES + 1):
            try:
                if problem.token != self._problem_token or not self._slots:
                    self.share(problem)
                return self._run(chunks, rows, attempt)
            except _DaskLost as lost:
                if attempt == DASK_RETRIES:
                    raise EvomlpError(
                        f"{self.key}: {self.where} lost the work of a generation {DASK_RETRIES + 1} times "
                        f"({lost}); nothing was written: run again to resume from the last checkpoint"
                    ) from None
                self.n_retries += 1
                self._recover()
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, chunks, rows, attempt: int) -> list[np.ndarray]:
        from concurrent.futures import CancelledError

        from distributed import wait

        if not chunks:
            return []
        futures = []
        for index, chunk in enumerate(chunks):
            worker = self._slots[index % len(self._slots)]
            futures.append(self.client.submit(
                _dask_chunk_loss, self._copies[worker], chunk, rows, workers=[worker], allow_other_workers=True,
                key=f"evomlp-loss-{self._problem_token[:8]}-{self._calls}.{attempt}-{index}", pure=False,
            ))
        while True:
            try:
                with self.client.as_current():  # wait() uses the current client
                    wait(futures, timeout=DASK_POLL_S)
            except (TimeoutError, CancelledError):  # looked at below
                pass
            statuses = [future.status for future in futures]
            if all(status == "finished" for status in statuses):
                try:
                    return self.client.gather(futures)
                except Exception as error:  # lost between finishing and gathering
                    raise _DaskLost(_reason(error, 120)) from None
            failures = [self._failure(future.exception()) for future in futures if future.status == "error"]
            for failure in failures:
                if isinstance(failure, EvomlpError):
                    raise failure
            # A lost worker takes its copy of the problem: the tasks that need it cannot run.
            workers = self.client.nthreads() if self.client.status == "running" else {}
            if self.client.status != "running" or "cancelled" in statuses or any(
                worker not in workers for worker in self._copies
            ):
                for future in futures:
                    future.cancel()
                raise _DaskLost("the scheduler connection" if self.client.status != "running" else "a worker")
            if failures:
                raise failures[0]  # not a lost worker: a bug, with its traceback

    def _failure(self, error: BaseException) -> BaseException:
        if isinstance(error, EvomlpError):  # raised in a worker (other kernels): its one line
            return EvomlpError(str(error))
        try:
            from distributed.scheduler import KilledWorker
        except ImportError:  # pragma: no cover
            KilledWorker = ()
        if isinstance(error, KilledWorker):
            return EvomlpError(
                f"runtime: dask workers died each time they evaluated a chunk of the population "
                f"({_reason(error, 200)}); see the workers' logs (memory?); nothing was written: run again "
                "to resume from the last checkpoint"
            )
        return error

    def _gone(self) -> EvomlpError:
        return EvomlpError(
            f"{self.key}: every worker of {self.where} is gone (none for {WORKER_TIMEOUT_S} s); "
            "nothing was written: start workers and run again to resume from the last checkpoint"
        )

    def _recover(self) -> None:
        """After lost futures: the scheduler back (within its reconnect window), a worker there;
        :meth:`losses` then copies the problem to the workers that lack it."""
        import time

        deadline = time.monotonic() + SCHEDULER_TIMEOUT_S
        while self.client.status in ("connecting", "newly-created") and time.monotonic() < deadline:
            time.sleep(0.05)  # the client reconnects in its own thread
        if self.client.status != "running":
            raise EvomlpError(
                f"{self.key}: lost {self.where} (no answer for {SCHEDULER_TIMEOUT_S} s); nothing "
                "was written: run again to resume from the last checkpoint"
            )
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise self._gone() from None
        self._slots = []  # share again: copies for the workers there now


def _reason(error: BaseException, length: int) -> str:
    return " ".join(str(error).split())[:length] or type(error).__name__
