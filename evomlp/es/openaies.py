"""OpenAI-ES: mirrored Gaussian perturbations of fixed size, centred ranks, Adam with weight decay.

Salimans, T., Ho, J., Chen, X., Sidor, S. & Sutskever, I. (2017). Evolution strategies as a
scalable alternative to reinforcement learning. arXiv:1703.03864. Adam: Kingma & Ba (2015).

One generation, ``n = P / 2`` pairs (``P`` even), ``theta`` the mean:

1. ``z_k ~ N(0, I)`` (one noise row per pair); rows ``k`` and ``k + n`` are ``clip(theta + sigma z_k)``
   and ``clip(theta - sigma z_k)``, ``sigma = settings["sigma"] * initial_scale`` per weight,
   fixed for the whole run;
2. shaped fitness ``F`` = centred ranks (better: larger);
3. ``g = sum_i F_i eps_i / (P sigma)`` over all ``P`` samples, ``eps = +z_k`` or ``-z_k``, i.e.
   ``sum_k (F+_k - F-_k) z_k / (P sigma)`` (element-wise division by the per-weight ``sigma``);
4. Adam on the loss gradient ``-g + weight_decay * theta`` (their ``l2coeff``, 0.005, added to the
   gradient as in their code, not decoupled): ``m <- b1 m + (1 - b1) grad``,
   ``v <- b2 v + (1 - b2) grad**2``, ``theta <- theta - lr sqrt(1 - b2**t) / (1 - b1**t) m / (sqrt(v) + 1e-8)``,
   ``t`` the generation counted from 1.

The paper's shared noise table (workers exchange only seeds) is replaced by the generation's
noise block drawn in the main process (:mod:`evomlp.es.base`): the same-bytes guarantee for any
``n_jobs`` comes first, and the worker threads read their rows from it.
"""

from __future__ import annotations

import math

import numpy as np

from evomlp.es.base import DistributionES, ESState, centred_ranks, weighted_row_sum

ADAM_EPSILON = 1e-8

SETTINGS = {
    "sigma": (0.1, "fixed noise size, times the initial population's per-weight deviation", (0, None)),
    "learning_rate": (0.01, "Adam's step size (the paper's 0.01)", (0, None)),
    "weight_decay": (0.005, "L2 coefficient added to the gradient (the paper's l2coeff)", (0, None, "[)")),
    "beta1": (0.9, "Adam's first-moment decay", (0, 1, "[)")),
    "beta2": (0.999, "Adam's second-moment decay", (0, 1, "[)")),
}


def openai_gradient(noise: np.ndarray, sigma: np.ndarray, shaped: np.ndarray) -> np.ndarray:
    """``g = sum_k (F+_k - F-_k) z_k / (P sigma)`` from the pairs' noise ``(n, D)`` and the shaped
    fitness ``(2n,)`` of the rows ``[+ pairs, - pairs]`` (an ascent direction of ``F``)."""
    pairs = noise.shape[0]
    return weighted_row_sum(shaped[:pairs] - shaped[pairs:], noise) / (2 * pairs * sigma)


class OpenAIES(DistributionES):
    """OpenAI-ES (Salimans et al. 2017): mirrored sampling, centred ranks, Adam."""

    NAME = "openaies"
    SETTINGS = SETTINGS
    MIRRORED = True
    MINIMUM_POPULATION = 2

    def initial_fields(self, mean: np.ndarray, size: int) -> dict:
        return {
            "sigma": self.sigma * self.initial_scale,
            "moment1": np.zeros(self.dim),
            "moment2": np.zeros(self.dim),
        }

    def update(self, state: ESState, noise: np.ndarray, fitness: np.ndarray, trials: np.ndarray) -> None:
        pairs = state.population_size // 2
        g = openai_gradient(noise[:pairs], state.sigma, centred_ranks(fitness))
        gradient = -g + self.weight_decay * state.mean
        t = state.generation + 1
        state.moment1 = self.beta1 * state.moment1 + (1 - self.beta1) * gradient
        state.moment2 = self.beta2 * state.moment2 + (1 - self.beta2) * gradient * gradient
        rate = self.learning_rate * math.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        state.mean = state.mean - rate * state.moment1 / (np.sqrt(state.moment2) + ADAM_EPSILON)
