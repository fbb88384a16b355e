"""Differential evolution as ask/tell optimizers (see :mod:`evomlp.de.base` for the protocol).

- :mod:`evomlp.de.classic`: Storn & Price DE with scipy's strategy names (``rand1bin``, ...).
- :mod:`evomlp.de.jade` (``jade``): JADE, Zhang & Sanderson 2009.
- :mod:`evomlp.de.shade` (``shade``): SHADE, Tanabe & Fukunaga 2013.
- :mod:`evomlp.de.lshade` (``lshade``): L-SHADE, Tanabe & Fukunaga 2014.
- :mod:`evomlp.de.jso` (``jso``): jSO, Brest, Maucec & Boskovic 2017.
  (The four share :mod:`evomlp.de.adaptive`.)

:func:`make_optimizer` builds any of them from plain settings; :data:`ALGORITHMS` lists the names.
"""

from __future__ import annotations

import numpy as np

from evomlp.de.base import DEState, state_from_arrays, state_to_arrays
from evomlp.de.classic import STRATEGIES, DEParams, DifferentialEvolution
from evomlp.de.classic import minimum_population as _classic_minimum
from evomlp.de.jade import JADE
from evomlp.de.jso import JSO
from evomlp.de.lshade import LSHADE
from evomlp.de.shade import SHADE
from evomlp.errors import EvomlpError

ADAPTIVE: dict[str, type] = {"jade": JADE, "shade": SHADE, "lshade": LSHADE, "jso": JSO}
ALGORITHMS: tuple[str, ...] = STRATEGIES + tuple(ADAPTIVE)


def minimum_population(algorithm: str) -> int:
    """The smallest population ``algorithm`` can run with."""
    if algorithm in ADAPTIVE:
        return ADAPTIVE[algorithm].MINIMUM_POPULATION
    return _classic_minimum(algorithm)


def make_optimizer(
    algorithm: str,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    mutation: float | tuple[float, float] = 0.5,
    crossover_rate: float = 0.9,
    p_best: float = 0.1,
    bounds_handling: str = "clip",
    max_evaluations: int = 0,
    min_population: int = 4,
):
    """An optimizer by name. Classic strategies use ``mutation``, ``crossover_rate`` and ``p_best``;
    adaptive ones adapt F and CR themselves and use ``max_evaluations`` for their schedules."""
    if algorithm in ADAPTIVE:
        return ADAPTIVE[algorithm](
            lower,
            upper,
            bounds_handling=bounds_handling,
            max_evaluations=max_evaluations,
            min_population=min_population,
        )
    if algorithm not in STRATEGIES:
        raise EvomlpError(f"strategy: expected one of {list(ALGORITHMS)}, got {algorithm!r}")
    if isinstance(mutation, list):
        mutation = (mutation[0], mutation[1])
    params = DEParams(
        strategy=algorithm,
        mutation=mutation,
        crossover_rate=crossover_rate,
        p_best=p_best,
        bounds_handling=bounds_handling,
    )
    return DifferentialEvolution(params, lower, upper)


__all__ = [
    "ALGORITHMS",
    "DEParams",
    "DEState",
    "DifferentialEvolution",
    "make_optimizer",
    "minimum_population",
    "state_from_arrays",
    "state_to_arrays",
]
