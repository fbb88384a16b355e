"""SNES: the separable natural evolution strategy.

Schaul, T., Glasmachers, T. & Schmidhuber, J. (2011). High dimensions and heavy tails for natural
evolution strategies. GECCO 2011, 845-852. Utilities: Wierstra, D., Schaul, T., Glasmachers, T.,
Sun, Y., Peters, J. & Schmidhuber, J. (2014). Natural evolution strategies. JMLR 15, 949-980.

One generation, as in the paper (the distribution ``N(mu, diag(sigma**2))``, minimisation):

1. draw ``s_k ~ N(0, I)`` (one noise row per sample, :mod:`evomlp.es.base`; not mirrored: the paper
   is not) and evaluate ``z_k = clip(mu + sigma * s_k)``;
2. sort; NES utilities ``u_k = max(0, ln(P/2 + 1) - ln k) / sum_j max(0, ln(P/2 + 1) - ln j) - 1/P``
   (``k = 1`` the best; they sum to 0);
3. ``grad_mu = sum_k u_k s_k``, ``grad_sigma = sum_k u_k (s_k**2 - 1)``;
4. ``mu <- mu + eta_mu * sigma * grad_mu``, ``sigma <- sigma * exp(eta_sigma / 2 * grad_sigma)``.

Settings (defaults in :data:`SETTINGS`): ``eta_mu = 1`` and
``eta_sigma = learning_rate_sigma_factor * (3 + ln d) / (5 sqrt d)``, the paper's rates with
factor 1; ``sigma0 = sigma * initial_scale``. The paper's population ``4 + floor(3 ln d)`` is not
imposed: ``train.population_size`` is used (the utilities adapt to any ``P >= 2``). Not
implemented: the paper's adaptation sampling of ``eta_sigma`` (optional there; evosax has it off
by default).
"""

from __future__ import annotations

import math

import numpy as np

from evomlp.es.base import DistributionES, ESState, nes_utilities_by_row, weighted_row_sum

SETTINGS = {
    "sigma": (0.1, "initial step size, times the initial population's per-weight deviation", (0, None)),
    "learning_rate_mean": (1.0, "eta_mu, the mean's learning rate (the paper's 1)", (0, None)),
    "learning_rate_sigma_factor": (
        1.0,
        "multiplies the paper's step-size learning rate eta_sigma = (3 + ln d) / (5 sqrt d)",
        (0, None),
    ),
}


def paper_learning_rate_sigma(dim: int) -> float:
    """``(3 + ln d) / (5 sqrt d)`` (Schaul et al. 2011)."""
    return (3 + math.log(dim)) / (5 * math.sqrt(dim))


class SNES(DistributionES):
    """SNES (Schaul, Glasmachers & Schmidhuber 2011), separable NES with NES utilities."""

    NAME = "snes"
    SETTINGS = SETTINGS
    MIRRORED = False
    MINIMUM_POPULATION = 2

    def __init__(self, lower, upper, initial_scale, **settings):
        super().__init__(lower, upper, initial_scale, **settings)
        self.eta_mu = self.learning_rate_mean
        self.eta_sigma = self.learning_rate_sigma_factor * paper_learning_rate_sigma(self.dim)

    def initial_fields(self, mean: np.ndarray, size: int) -> dict:
        return {"sigma": self.sigma * self.initial_scale}

    def update(self, state: ESState, noise: np.ndarray, fitness: np.ndarray, trials: np.ndarray) -> None:
        utilities = nes_utilities_by_row(fitness)
        grad_mu = weighted_row_sum(utilities, noise)
        squares = noise * noise
        np.subtract(squares, 1.0, out=squares)  # noise * noise - 1.0, and its products, in one buffer
        grad_sigma = weighted_row_sum(utilities, squares, scratch=squares)
        state.mean = state.mean + self.eta_mu * state.sigma * grad_mu
        state.sigma = state.sigma * np.exp(self.eta_sigma / 2 * grad_sigma)
