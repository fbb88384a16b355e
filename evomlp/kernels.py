"""Compiled loops (numba) for the two hot spots where numpy needs several passes over memory.

- :func:`build_trials`: mutation, crossover and bounds repair of a block of trial rows in one pass
  over the weights (numpy: a gather per term, three arithmetic passes, a mask, ``where``, the
  repair);
- :func:`bias_relu`: a hidden layer's bias and ReLU, in place, in one pass instead of two.

Both repeat numpy's operations in numpy's order, element by element, without fast-math (no
reassociation, no fused multiply-add), so they give the same bits as the numpy code they stand in
for (but for the sign bit of a NaN made from two NaNs, which fitness maps to +inf anyway):
:meth:`evomlp.de.trials.TrialPlan.build_with_numpy` and the numpy branch of
:func:`evomlp.network.forward_population` stay, and ``tests/test_kernels.py`` compares the two on
every strategy, crossover and repair. Both release the GIL, so the threads of the threading
backend run them at the same time.

numba is imported and a loop compiled on first use (a few seconds once, then cached on disk next
to this file: importing numba and loading the loops takes about 0.35 s per process).
Without numba, or with ``EVOMLP_NUMBA=0`` in the environment, :func:`available` is false and the
numpy code runs: the same results, slower.
"""

from __future__ import annotations

import os
import threading

import numpy as np

_LOCK = threading.Lock()
_STATE: dict = {}


def available() -> bool:
    """Whether the compiled loops can be used (numba importable and not disabled)."""
    if "numba" not in _STATE:
        with _LOCK:
            if "numba" not in _STATE:
                _STATE["numba"] = _import_numba()
    return _STATE["numba"] is not None


def _import_numba():
    if os.environ.get("EVOMLP_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def build_trials(
    population: np.ndarray,
    archive: np.ndarray,
    form: int,
    terms: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    start: int,
    out: np.ndarray,
    *,
    bits: np.ndarray | None,
    threshold: np.ndarray | None,
    j_rand: np.ndarray | None,
    first: np.ndarray | None,
    length: np.ndarray | None,
    repair: int,
    lower: np.ndarray,
    upper: np.ndarray,
    fresh: np.ndarray | None,
) -> np.ndarray:
    """Trial rows ``start:start + len(out)`` of a :class:`evomlp.de.trials.TrialPlan` (which
    documents the arguments) into ``out`` (float64, C-contiguous): binomial crossover when
    ``bits`` (those rows, uint32), ``threshold`` and ``j_rand`` are given, exponential with ``first`` and
    ``length``; ``repair`` is 0 clip, 1 reinitialize, 2 midpoint, 3 reflect (the order of
    :data:`evomlp.de.trials.BOUNDS_HANDLING`) and ``fresh`` (those rows) the uniforms of
    reinitialize."""
    no_matrix = np.empty((0, 0))
    no_bits = np.empty((0, 0), dtype=np.uint32)
    no_index = np.empty(0, dtype=np.int64)
    binomial = bits is not None

    def contiguous(array, empty):
        return empty if array is None else np.ascontiguousarray(array, dtype=empty.dtype)

    _build_kernel()(
        population, archive, form, terms, s1, s2, start, binomial, contiguous(bits, no_bits),
        contiguous(threshold, no_index), contiguous(j_rand, no_index), contiguous(first, no_index),
        contiguous(length, no_index), repair, np.ascontiguousarray(lower, dtype=np.float64),
        np.ascontiguousarray(upper, dtype=np.float64), contiguous(fresh, no_matrix), out,
    )
    return out


def bias_relu(z: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``z = maximum(z + bias, 0)`` in place (``z (B, R, F)`` C-contiguous, ``bias (B, 1, F)``)."""
    if "bias_relu" not in _STATE:
        with _LOCK:
            if "bias_relu" not in _STATE:
                _STATE["bias_relu"] = _compile_bias_relu()
    _STATE["bias_relu"](z, bias)
    return z


def _compile_bias_relu():
    from numba import njit

    @njit(nogil=True, cache=True)
    def kernel_bias_relu(z, bias):
        n_blocks, n_rows, width = z.shape
        zero = np.zeros(1, z.dtype)[0]
        for i in range(n_blocks):
            b = np.ascontiguousarray(bias[i, 0])
            for r in range(n_rows):
                zr = z[i, r]
                for k in range(width):
                    v = zr[k] + b[k]
                    # numpy's maximum(v, 0): NaN stays NaN; on a tie (-0.0) it returns the second
                    # operand, +0.0; numba's max(a, b) keeps a on ties, hence max(zero, v)
                    zr[k] = max(zero, v) if v == v else v

    return kernel_bias_relu


def _build_kernel():
    if "build_trials" not in _STATE:
        with _LOCK:
            if "build_trials" not in _STATE:
                _STATE["build_trials"] = _compile_build_trials()
    return _STATE["build_trials"]


def _compile_build_trials():
    """The loop of :func:`build_trials`. Each trial row is done in three passes over the row (in
    L1 cache): the mutant, the crossover (parent values back where the mutant is not taken), the
    repair; each pass picks its case once per row, so the loops over coordinates carry no branch
    for the other cases and compile to vector code."""
    from numba import njit

    @njit(nogil=True, cache=True)
    def kernel_build_trials(population, archive, form, terms, s1, s2, start, binomial, bits, threshold, j_rand,
                            first, length, repair, lower, upper, fresh, out):
        n_rows, dim = out.shape
        size, n_terms = population.shape[0], terms.shape[1]
        for row in range(n_rows):
            i = start + row
            # the rows of a..e: the population followed by the archive (views, taken once per trial)
            t = terms[i, 0]
            ra = population[t] if t < size else archive[t - size]
            t = terms[i, 1]
            rb = population[t] if t < size else archive[t - size]
            t = terms[i, 2]
            rc = population[t] if t < size else archive[t - size]
            t = terms[i, 3] if n_terms > 3 else terms[i, 0]
            rd = population[t] if t < size else archive[t - size]
            t = terms[i, 4] if n_terms > 4 else terms[i, 0]
            re = population[t] if t < size else archive[t - size]
            scale1, scale2 = s1[i], s2[i]
            parent, trial = population[i], out[row]
            if form == 0:  # a + s1 (b - c)
                for k in range(dim):
                    trial[k] = ra[k] + scale1 * (rb[k] - rc[k])
            elif form == 1:  # a + s1 (b - a) + s2 (c - d)
                for k in range(dim):
                    trial[k] = ra[k] + scale1 * (rb[k] - ra[k]) + scale2 * (rc[k] - rd[k])
            else:  # a + s1 (b + c - d - e)
                for k in range(dim):
                    trial[k] = ra[k] + scale1 * (rb[k] + rc[k] - rd[k] - re[k])
            if binomial:
                draws, cut, j = bits[row], threshold[i], j_rand[i]
                for k in range(dim):
                    if not (np.int64(draws[k]) < cut or k == j):
                        trial[k] = parent[k]
            else:
                run_start, run_length = first[i], length[i]
                for k in range(dim):
                    if not ((k - run_start) % dim < run_length):
                        trial[k] = parent[k]
            # numpy's maximum(v, low) and minimum(v, high) return the bound on ties (signed zeros)
            if repair == 0:  # clip
                for k in range(dim):
                    v = trial[k]
                    v = lower[k] if v <= lower[k] else v
                    trial[k] = upper[k] if v >= upper[k] else v
            elif repair == 1:  # reinitialize
                for k in range(dim):
                    if trial[k] < lower[k] or trial[k] > upper[k]:
                        trial[k] = lower[k] + fresh[row, k] * (upper[k] - lower[k])
            elif repair == 2:  # midpoint
                for k in range(dim):
                    if trial[k] < lower[k]:
                        trial[k] = (lower[k] + parent[k]) / 2
                    elif trial[k] > upper[k]:
                        trial[k] = (upper[k] + parent[k]) / 2
            else:  # reflect, then clip what the reflection left outside
                for k in range(dim):
                    v, low, high = trial[k], lower[k], upper[k]
                    if v < low or v > high:
                        v = 2 * low - v if v < low else 2 * high - v
                        v = low if v <= low else v
                        trial[k] = high if v >= high else v

    return kernel_build_trials
