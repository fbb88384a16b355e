"""Evolution strategies as ask/tell optimizers (protocol and shared rules: :mod:`evomlp.es.base`).

- :mod:`evomlp.es.snes` (``snes``): SNES, Schaul, Glasmachers & Schmidhuber 2011.
- :mod:`evomlp.es.sepcmaes` (``sepcmaes``): sep-CMA-ES, Ros & Hansen 2008.
- :mod:`evomlp.es.pgpe` (``pgpe``): PGPE (Sehnke et al. 2010) with ClipUp (Toklu et al. 2020).
- :mod:`evomlp.es.openaies` (``openaies``): OpenAI-ES, Salimans et al. 2017.

:data:`ES_ALGORITHMS` maps each name to its class, built as ``cls(lower, upper, initial_scale,
**settings)``; :data:`SETTINGS` maps each name to its settings, ``name -> (default, help, (low,
high))`` with ``None`` for an unbounded side (low exclusive, high inclusive; the constructors
check the few settings with a narrower rule, such as a momentum below 1).
"""

from __future__ import annotations

from evomlp.es import openaies, pgpe, sepcmaes, snes
from evomlp.es.base import ESPlan, ESState, centred_ranks, nes_utilities, state_from_arrays, state_to_arrays
from evomlp.es.openaies import OpenAIES
from evomlp.es.pgpe import PGPE
from evomlp.es.sepcmaes import SepCMAES
from evomlp.es.snes import SNES

ES_ALGORITHMS: dict[str, type] = {"snes": SNES, "sepcmaes": SepCMAES, "pgpe": PGPE, "openaies": OpenAIES}
SETTINGS: dict[str, dict] = {
    "snes": snes.SETTINGS,
    "sepcmaes": sepcmaes.SETTINGS,
    "pgpe": pgpe.SETTINGS,
    "openaies": openaies.SETTINGS,
}

__all__ = [
    "ES_ALGORITHMS",
    "ESPlan",
    "ESState",
    "OpenAIES",
    "PGPE",
    "SETTINGS",
    "SNES",
    "SepCMAES",
    "centred_ranks",
    "nes_utilities",
    "state_from_arrays",
    "state_to_arrays",
]
