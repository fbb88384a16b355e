"""The population evaluator: fitness of a whole population, in-process or over joblib workers.

:class:`FitnessProblem` is the pure function that is shipped to workers: fitness of each row of a
population on the training data (optionally on a minibatch of row indices chosen by the main
process). :class:`PopulationEvaluator` splits a population into one contiguous chunk per worker,
runs the chunks with joblib (``loky`` processes, ``threading``, or ``dask`` for a
``dask.distributed`` cluster) and puts the results back in order. Because an individual's fitness
depends only on its own weights, the data and the rows (see
:func:`evomlp.network.forward_population`), the results are the same for any ``n_jobs``, chunking
or backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from evomlp.errors import EvomlpError
from evomlp.losses import accuracy, l2_penalty, task_loss
from evomlp.network import MLPSpec, forward_population

BACKENDS = ("loky", "threading", "dask")


@dataclass
class FitnessProblem:
    """Fitness = task loss on the training rows + ``l2 * sum(W^2)`` over weight matrices (not biases).

    ``X: (N, F)``, ``y: (N,)`` (class indices) or ``(N, K)`` (regression targets). ``dtype`` is the
    floating type of the forward pass; the population itself stays float64 in the optimizer.
    """

    spec: MLPSpec
    X: np.ndarray
    y: np.ndarray
    l2: float = 0.0
    dtype: str = "float64"
    _weight_mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=self.dtype)
        self._weight_mask = _weight_mask(self.spec)

    def __call__(self, population: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Fitness ``(P,)`` of ``population (P, D)``; ``rows`` selects a minibatch of training rows."""
        X, y = (self.X, self.y) if rows is None else (self.X[rows], self.y[rows])
        weights = population.astype(self.dtype, copy=False)
        outputs = forward_population(self.spec, weights, X)
        fitness = task_loss(self.spec.task, outputs, y).astype(np.float64)
        if self.l2:
            fitness += l2_penalty(population, self._weight_mask, self.l2)
        return fitness

    def loss_and_accuracy(self, population: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Loss without penalty and accuracy (``None`` for regression) on all rows, ``(P,)`` each."""
        outputs = forward_population(self.spec, population.astype(self.dtype, copy=False), self.X)
        loss = task_loss(self.spec.task, outputs, self.y).astype(np.float64)
        if self.spec.task == "regression":
            return loss, None
        return loss, accuracy(outputs, self.y).astype(np.float64)


def _weight_mask(spec: MLPSpec) -> np.ndarray:
    mask = np.zeros(spec.n_weights, dtype=bool)
    for w, _ in spec.layer_offsets():
        mask[w] = True
    return mask


def _evaluate_chunk(problem: FitnessProblem, chunk: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return problem(chunk, rows)


def effective_n_jobs(n_jobs: int) -> int:
    """``-1`` means all cores (``-2`` all but one, as joblib); otherwise ``n_jobs`` itself."""
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if n_jobs == 0:
        raise EvomlpError("runtime.n_jobs: expected a positive integer or -1, got 0")
    return n_jobs


class PopulationEvaluator:
    """Evaluates populations with a :class:`FitnessProblem`, one chunk per worker.

    Use as a context manager so that the workers are started once per run and reused by every
    generation: ``with PopulationEvaluator(problem, n_jobs=2) as evaluate: fitness = evaluate(pop)``.
    ``n_jobs == 1`` runs in the calling process, with no joblib at all.
    """

    def __init__(
        self,
        problem: FitnessProblem,
        n_jobs: int = 1,
        backend: str = "loky",
        scheduler_address: str | None = None,
    ):
        if backend not in BACKENDS:
            raise EvomlpError(f"runtime.backend: expected one of {list(BACKENDS)}, got {backend!r}")
        self.problem = problem
        self.n_jobs = effective_n_jobs(n_jobs)
        self.backend = backend
        self.scheduler_address = scheduler_address
        self._parallel = None
        self._exit_stack = None

    def __enter__(self) -> "PopulationEvaluator":
        if self.n_jobs > 1:
            from contextlib import ExitStack

            import joblib

            stack = ExitStack()
            if self.backend == "dask":
                stack.enter_context(_dask_backend(self.scheduler_address, self.n_jobs))
                self._parallel = stack.enter_context(joblib.Parallel(n_jobs=self.n_jobs))
            else:
                if self.backend == "threading":
                    from threadpoolctl import threadpool_limits

                    # numpy's BLAS threads x joblib threads <= cores
                    per_thread = max(1, (os.cpu_count() or 1) // self.n_jobs)
                    stack.enter_context(threadpool_limits(limits=per_thread, user_api="blas"))
                self._parallel = stack.enter_context(
                    joblib.Parallel(n_jobs=self.n_jobs, backend=self.backend)
                )
            self._exit_stack = stack
        return self

    def __exit__(self, *exc_info) -> None:
        if self._exit_stack is not None:
            self._exit_stack.close()
        self._exit_stack = None
        self._parallel = None

    def __call__(self, population: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Fitness ``(P,)`` of ``population (P, D)``, in the order of its rows."""
        if self._parallel is None or population.shape[0] < 2:
            return self.problem(population, rows)
        from joblib import delayed

        chunks = np.array_split(population, min(self.n_jobs, population.shape[0]))
        results = self._parallel(delayed(_evaluate_chunk)(self.problem, chunk, rows) for chunk in chunks)
        return np.concatenate(results)


def _dask_backend(scheduler_address: str | None, n_workers: int):
    """joblib's ``dask`` backend on a ``dask.distributed`` client (a local cluster if no address)."""
    from contextlib import ExitStack

    try:
        import joblib
        from distributed import Client, LocalCluster
    except ImportError:
        raise EvomlpError(
            "runtime.backend: 'dask' needs dask.distributed: pip install 'evomlp[dask]'"
        ) from None
    stack = ExitStack()
    if scheduler_address:
        client = stack.enter_context(Client(scheduler_address))
    else:
        cluster = stack.enter_context(
            LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        client = stack.enter_context(Client(cluster))
    stack.enter_context(joblib.parallel_backend("dask", client=client))
    return stack
