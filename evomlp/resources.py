"""Sizes checked before they are allocated, and runs that would take hours said so before they start.

:func:`check_resources` runs before the initial population exists. It estimates the run's peak
memory from the population, the weights and the rows, and refuses a run that would not fit in the
memory available now (``MemAvailable`` of ``/proc/meminfo``) with one line naming the keys, the
estimate and the limit. The estimate counts what the evaluator and the optimizers hold at once:

- the population and its trials or samples, a few ``(P, D)`` float64 arrays (:data:`POPULATION_COPIES`);
- a generation's forward pass, the activations of the two widest layers for every individual and
  row in the float type of ``train.dtype``;
- the evolution strategies' shared noise table (float32, :func:`evomlp.es.base.noise_table_size`).

It is an estimate (within a factor of about two of the measured peak on the default problem), so
the limit keeps a margin: a run is refused above :data:`MEMORY_SHARE` of the available memory.

It also measures this machine's float32 matrix product speed (a few milliseconds) and, when the
run's forward-pass FLOPs at that speed come to more than an hour, says so in one line. That is a
lower bound: a wide network also costs the optimizer's passes over its ``(P, D)`` arrays.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from evomlp.errors import EvomlpError
from evomlp.network import MLPSpec

POPULATION_COPIES = 4
MEMORY_SHARE = 0.8
LONG_RUN_S = 3600.0


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def peak_memory(spec: MLPSpec, population_size: int, n_rows: int, dtype: str, evolution_strategy: bool) -> int:
    """Estimated peak bytes of a run (see the module docstring)."""
    itemsize = np.dtype(dtype).itemsize
    widths = sorted(spec.layer_sizes[1:], reverse=True)
    population = POPULATION_COPIES * population_size * spec.n_weights * 8
    activations = population_size * n_rows * sum(widths[:2]) * itemsize
    noise = 0
    if evolution_strategy:
        from evomlp.es.base import noise_table_size

        noise = noise_table_size(spec.n_weights) * 4
    return population + activations + noise


def forward_flops(spec: MLPSpec, population_size: int, n_rows: int) -> float:
    """Multiply-adds x 2 of one generation's forward pass over the training rows."""
    sizes = spec.layer_sizes
    return 2.0 * population_size * n_rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def measured_flops_per_second() -> float:
    """This machine's float32 matrix product speed, from a few small products (one thread)."""
    a = np.ones((256, 256), dtype=np.float32)
    a @ a  # warm up
    started, repeats = time.perf_counter(), 8
    for _ in range(repeats):
        a @ a
    return repeats * 2.0 * 256**3 / max(time.perf_counter() - started, 1e-9)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def check_resources(spec: MLPSpec, train: dict, n_rows: int, evolution_strategy: bool, progress: bool) -> None:
    """Refuse a run that would not fit in memory; say so when it would take hours."""
    size = train["population_size"]
    needed = peak_memory(spec, size, n_rows, train["dtype"], evolution_strategy)
    available = available_memory()
    if available is not None and needed > MEMORY_SHARE * available:
        raise EvomlpError(
            f"train.population_size, model.hidden_layers: the run needs about {_gib(needed)} "
            f"(population {size} x {spec.n_weights} weights, {n_rows} rows), more than "
            f"{MEMORY_SHARE:.0%} of the {_gib(available)} available; expected a smaller population or network"
        )
    generations = train["max_generations"]
    if train["max_evaluations"]:
        generations = min(generations, train["max_evaluations"] // size)
    flops = forward_flops(spec, size, n_rows) * (generations + 1)
    seconds = flops / measured_flops_per_second()
    if seconds > LONG_RUN_S and progress:
        print(f"train: this run will take at least {seconds / 3600:.1f} hours ({flops / 1e12:.0f} TFLOP of forward "
              f"passes at this machine's one-core float32 speed); Ctrl-C saves it, dvc repro resumes",
              file=sys.stderr)
