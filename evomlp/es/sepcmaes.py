"""sep-CMA-ES: CMA-ES with a diagonal covariance matrix, linear time and space in the dimension.

Ros, R. & Hansen, N. (2008). A simple modification in CMA-ES achieving linear time and space
complexity. PPSN X, LNCS 5199, 296-305. The CMA-ES rules and constants are those of Hansen, N.
(2016, revised 2023), The CMA evolution strategy: a tutorial, arXiv:1604.00772 (eqs. 38-47 and
Table 1), with positive recombination weights only.

Sampling (one noise row per sample, not mirrored): ``z_k ~ N(0, I)``, ``y_k = sqrt(C) z_k``,
``x_k = clip(m + sigma y_k)``. With ``n = D``, ``lambda = P``, ``mu = floor(lambda / 2)``:

- weights ``w_i = ln((lambda + 1) / 2) - ln i`` for ``i <= mu``, normalised to sum 1 (the tutorial's
  negative weights for the other half, active CMA, are not used: Ros & Hansen recombine the
  ``mu`` best only); ``mu_eff = 1 / sum w_i**2``;
- ``c_sigma = (mu_eff + 2) / (n + mu_eff + 5)``,
  ``d_sigma = 1 + 2 max(0, sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma``,
  ``c_c = (4 + mu_eff / n) / (n + 4 + 2 mu_eff / n)``;
- ``c_1 = 2 / ((n + 1.3)**2 + mu_eff)``,
  ``c_mu = min(1 - c_1, 2 (1/4 + mu_eff + 1/mu_eff - 2) / ((n + 2)**2 + mu_eff))`` (the tutorial's
  revised eq. 57, as pycma; the 2016 text has no ``1/4``);
- sep-CMA-ES: ``c_1' = c_1 (n + 2) / 3`` and ``c_mu' = min(1 - c_1', c_mu (n + 2) / 3)`` (the
  ``min`` keeps ``c_1' + c_mu' <= 1``; it binds only for tiny ``n``);
- ``E||N(0, I)|| ~ sqrt(n) (1 - 1/(4n) + 1/(21 n**2))``.

Update, ``k:lambda`` the k-th best, ``g`` the generation (0 at the first ``tell``):

- ``y_w = sum_i w_i y_{i:lambda}``; ``m <- m + sigma y_w`` (``c_m = 1``);
- ``p_sigma <- (1 - c_sigma) p_sigma + sqrt(c_sigma (2 - c_sigma) mu_eff) C^{-1/2} y_w``;
- ``sigma <- sigma exp(c_sigma / d_sigma (||p_sigma|| / E||N(0,I)|| - 1))``;
- the stall ``h_sigma = 1`` iff ``||p_sigma|| / sqrt(1 - (1 - c_sigma)**(2 (g + 1))) < (1.4 + 2/(n + 1)) E||N(0,I)||``;
- ``p_c <- (1 - c_c) p_c + h_sigma sqrt(c_c (2 - c_c) mu_eff) y_w``;
- ``C <- (1 + c_1' delta(h_sigma) - c_1' - c_mu' sum w) C + c_1' p_c**2 + c_mu' sum_i w_i y_{i:lambda}**2``
  (element-wise: C is its diagonal), ``delta(h_sigma) = (1 - h_sigma) c_c (2 - c_c)``.

Samples outside the box are clipped onto it, and, unlike the other strategies here, sep-CMA-ES
learns from the clipped (evaluated) samples: ``z_k`` is the drawn noise in the coordinates where
the sample is inside the box and ``(x_k - m) / (sigma sqrt(C))`` where it was clipped (the
tutorial's repair, section B.3, with the repaired solution used in the update; a clipped step is
shorter, so no Mahalanobis-length limit is needed). Learning from the drawn noise instead lets
cumulative step-size adaptation diverge when the optimum lies on the box, as it does for a
separable classification loss without L2: the selected steps keep pointing outwards, the clipped
samples cannot follow, and ``sigma`` grew without bound (measured: the median step reached 23 in a
box of +-5 within 150 generations on a 2-blob problem, and the mean's loss rose from 0.45 to 2.2).

The initial distribution: ``sigma = settings["sigma"]`` (scalar) and ``C = diag(initial_scale**2)``,
so the samples start with per-weight deviation ``sigma * initial_scale`` as the other strategies.
The paper's default ``lambda = 4 + floor(3 ln n)`` is small for network training and is not
imposed: ``train.population_size`` is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evomlp.es.base import DistributionES, ESState, norm, ranking, weighted_row_sum

SETTINGS = {
    "sigma": (0.1, "initial global step size; C starts at the initial population's per-weight variance", (0, None)),
}


@dataclass(frozen=True)
class CMAConstants:
    """The strategy parameters of sep-CMA-ES for dimension ``dim`` and population ``size``."""

    dim: int
    size: int
    mu: int
    weights: np.ndarray
    mu_eff: float
    c_sigma: float
    d_sigma: float
    c_c: float
    c_1_full: float
    c_mu_full: float
    c_1: float  # sep-CMA-ES's, scaled by (n + 2) / 3
    c_mu: float
    chi_n: float

    @classmethod
    def make(cls, dim: int, size: int) -> "CMAConstants":
        n = float(dim)
        mu = size // 2
        raw = math.log((size + 1) / 2) - np.log(np.arange(1, mu + 1, dtype=np.float64))
        weights = raw / np.sum(raw)
        mu_eff = float(1.0 / np.sum(weights**2))
        c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
        d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma
        c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
        c_1_full = 2 / ((n + 1.3) ** 2 + mu_eff)
        c_mu_full = min(1 - c_1_full, 2 * (0.25 + mu_eff + 1 / mu_eff - 2) / ((n + 2) ** 2 + mu_eff))
        scale = (n + 2) / 3
        c_1 = c_1_full * scale
        c_mu = min(1 - c_1, c_mu_full * scale)
        chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
        return cls(dim, size, mu, weights, mu_eff, c_sigma, d_sigma, c_c, c_1_full, c_mu_full, c_1, c_mu, chi_n)

    def h_sigma(self, path_sigma_norm: float, generation: int) -> float:
        """1.0 unless ``||p_sigma||`` is too long for generation ``generation`` (0 = first update)."""
        correction = math.sqrt(1 - (1 - self.c_sigma) ** (2 * (generation + 1)))
        return 1.0 if path_sigma_norm / correction < (1.4 + 2 / (self.dim + 1)) * self.chi_n else 0.0


class SepCMAES(DistributionES):
    """sep-CMA-ES (Ros & Hansen 2008): CMA-ES with a diagonal covariance matrix."""

    NAME = "sepcmaes"
    SETTINGS = SETTINGS
    MIRRORED = False
    MINIMUM_POPULATION = 2

    def constants(self, size: int) -> CMAConstants:
        return CMAConstants.make(self.dim, size)

    def initial_fields(self, mean: np.ndarray, size: int) -> dict:
        return {
            "sigma": np.array(self.sigma),
            "cov": self.initial_scale**2,
            "path_sigma": np.zeros(self.dim),
            "path_c": np.zeros(self.dim),
        }

    def step(self, state: ESState) -> np.ndarray:
        return float(state.sigma) * np.sqrt(state.cov)

    def repaired_noise(self, state: ESState, noise: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """``C^{-1/2} (x - m) / sigma`` of the evaluated samples: the drawn noise where the sample
        is inside the box, the clipped step where it was clipped (see the module docstring)."""
        inside = (trials > self.lower) & (trials < self.upper)
        if inside.all():
            return noise
        return np.where(inside, noise, (trials - state.mean) / self.step(state))

    def update(self, state: ESState, noise: np.ndarray, fitness: np.ndarray, trials: np.ndarray) -> None:
        k = self.constants(state.population_size)
        order = ranking(fitness)[: k.mu]
        best = self.repaired_noise(state, noise[order], trials[order])  # z of the mu best, best first
        sigma = float(state.sigma)
        sqrt_cov = np.sqrt(state.cov)
        z_w = weighted_row_sum(k.weights, best)  # C^{-1/2} y_w
        y_w = sqrt_cov * z_w
        state.mean = state.mean + sigma * y_w
        state.path_sigma = (1 - k.c_sigma) * state.path_sigma + math.sqrt(k.c_sigma * (2 - k.c_sigma) * k.mu_eff) * z_w
        path_norm = norm(state.path_sigma)
        h_sigma = k.h_sigma(path_norm, state.generation)
        state.path_c = (1 - k.c_c) * state.path_c + h_sigma * math.sqrt(k.c_c * (2 - k.c_c) * k.mu_eff) * y_w
        delta = (1 - h_sigma) * k.c_c * (2 - k.c_c)
        rank_mu = state.cov * weighted_row_sum(k.weights, best * best)  # sum w_i y_i**2
        decay = 1 + k.c_1 * delta - k.c_1 - k.c_mu * float(np.sum(k.weights))
        state.cov = decay * state.cov + k.c_1 * state.path_c**2 + k.c_mu * rank_mu
        state.sigma = np.array(sigma * math.exp(k.c_sigma / k.d_sigma * (path_norm / k.chi_n - 1)))
