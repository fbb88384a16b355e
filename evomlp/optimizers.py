"""The registry: every optimizer name of ``train.optimizer``, its family and its own settings.

Each entry says what the optimizer reads (its settings, with defaults, checks and help: the block
``optimizer.<name>`` of ``params.yaml``), the smallest population it runs with, and how to build
it. Families (all implement :mod:`evomlp.protocol`):

- classic DE, :mod:`evomlp.de.classic`: ``rand1bin`` ... ``currenttopbest1exp`` (scipy's names);
- adaptive DE, :mod:`evomlp.de`: ``jade``, ``shade``, ``lshade``, ``jso``;
- evolution strategies, :mod:`evomlp.es`: ``snes``, ``sepcmaes``, ``pgpe``, ``openaies``.

:func:`make` builds one from its validated settings; the trainer and the stages know nothing else
of the families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from evomlp.errors import EvomlpError
from evomlp.params import Field, choice, mutation, number


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    family: str  # "de", "adaptive-de" or "es"
    summary: str
    settings: dict[str, Field]
    minimum_population: int
    build: Callable[..., Any]  # (settings, lower, upper, initial_scale, max_evaluations) -> optimizer
    even_population: bool = False  # mirrored sampling: samples come in +- pairs


BOUNDS_HANDLING_CHOICES = ("clip", "reinitialize", "midpoint", "reflect")


def _classic_entries() -> dict[str, OptimizerEntry]:
    from evomlp.de.classic import STRATEGIES, DEParams, DifferentialEvolution, minimum_population

    entries = {}
    for name in STRATEGIES:
        settings = {
            "mutation": Field(0.5, mutation, "F, or a range [low, high] drawn anew each generation (dither)"),
            "crossover_rate": Field(0.1, number(0, 1), "CR: probability of taking a mutant coordinate"),
        }
        if name.startswith("currenttopbest1"):
            settings["p_best"] = Field(0.1, number(0, 1, open_low=True), "top fraction the p-best is drawn from")
        settings["bounds_handling"] = Field("clip", choice(*BOUNDS_HANDLING_CHOICES), "repair of trials outside train.bounds")

        def build(values, lower, upper, initial_scale, max_evaluations, name=name):
            params = DEParams(strategy=name, mutation=_as_mutation(values["mutation"]),
                              crossover_rate=values["crossover_rate"], p_best=values.get("p_best", 0.1),
                              bounds_handling=values["bounds_handling"])
            return DifferentialEvolution(params, lower, upper)

        entries[name] = OptimizerEntry(name, "de", f"classic DE, scipy's {name!r}", settings,
                                       minimum_population(name), build)
    return entries


def _as_mutation(value):
    return (value[0], value[1]) if isinstance(value, list) else value


def _adaptive_entries() -> dict[str, OptimizerEntry]:
    from evomlp.de import ADAPTIVE

    summaries = {"jade": "JADE (Zhang & Sanderson 2009)", "shade": "SHADE (Tanabe & Fukunaga 2013)",
                 "lshade": "L-SHADE (Tanabe & Fukunaga 2014)", "jso": "jSO (Brest et al. 2017)"}
    entries = {}
    for name, cls in ADAPTIVE.items():
        settings = {"bounds_handling": Field("midpoint", choice(*BOUNDS_HANDLING_CHOICES),
                                             "repair of trials outside train.bounds (the papers: midpoint)")}

        def build(values, lower, upper, initial_scale, max_evaluations, cls=cls):
            return cls(lower, upper, bounds_handling=values["bounds_handling"], max_evaluations=max_evaluations)

        entries[name] = OptimizerEntry(name, "adaptive-de", summaries[name], settings, cls.MINIMUM_POPULATION, build)
    return entries


def _es_entries() -> dict[str, OptimizerEntry]:
    from evomlp import es
    from evomlp.es.base import interval

    entries = {}
    for name, cls in es.ES_ALGORITHMS.items():
        settings = {}
        for key, (default, text, bounds) in es.SETTINGS[name].items():
            low, high, low_open, high_open = interval(bounds)
            settings[key] = Field(default, number(low, high, open_low=low_open, open_high=high_open), text)

        def build(values, lower, upper, initial_scale, max_evaluations, cls=cls):
            return cls(lower, upper, initial_scale, **values)

        entries[name] = OptimizerEntry(name, "es", (cls.__doc__ or name).strip().splitlines()[0], settings,
                                       cls.MINIMUM_POPULATION, build, even_population=getattr(cls, "MIRRORED", False))
    return entries


_REGISTRY: dict[str, OptimizerEntry] = {}


def registry() -> dict[str, OptimizerEntry]:
    """Every optimizer by name, in the order the docs list them."""
    if not _REGISTRY:
        _REGISTRY.update(_classic_entries())
        _REGISTRY.update(_adaptive_entries())
        _REGISTRY.update(_es_entries())
    return _REGISTRY


def names() -> tuple[str, ...]:
    return tuple(registry())


def entry(name: str) -> OptimizerEntry:
    try:
        return registry()[name]
    except KeyError:
        raise EvomlpError(f"optimizer: expected one of {list(registry())}, got {name!r}") from None


def default_settings(name: str) -> dict[str, Any]:
    return {key: field.default for key, field in entry(name).settings.items()}


def make(name: str, settings: dict[str, Any], lower: np.ndarray, upper: np.ndarray, *,
         initial_scale: np.ndarray, max_evaluations: int):
    """The optimizer ``name`` with its (validated) ``settings``; ``lower``/``upper`` the box
    (``train.bounds``), ``initial_scale`` the initial population's per-weight deviation (evolution
    strategies scale their step sizes by it), ``max_evaluations`` the budget (adaptive DE's
    schedules)."""
    found = entry(name)
    values = dict(default_settings(name), **settings)
    unknown = sorted(set(values) - set(found.settings))
    if unknown:
        raise EvomlpError(f"optimizer.{name}.{unknown[0]}: {name} has no such setting; it reads {list(found.settings)}")
    return found.build(values, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float),
                       np.asarray(initial_scale, dtype=float), int(max_evaluations))
