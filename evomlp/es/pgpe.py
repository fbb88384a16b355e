"""PGPE with symmetric sampling, centred ranks and the ClipUp optimizer for the mean.

- Sehnke, F., Osendorfer, C., Rueckstiess, T., Graves, A., Peters, J. & Schmidhuber, J. (2010).
  Parameter-exploring policy gradients. Neural Networks 23(4), 551-559 (symmetric sampling).
- Toklu, N. E., Liskowski, P. & Srivastava, R. K. (2020). ClipUp: a simple and powerful optimizer
  for distribution-based policy evolution. PPSN XVI, LNCS 12270, 515-527.
- Centred ranks: Salimans et al. (2017), arXiv:1703.03864, as EvoTorch's PGPE uses by default.

One generation, ``n = P / 2`` pairs (``P`` must be even), the distribution ``N(mu, diag(sigma**2))``:

1. ``eps_k = sigma * z_k``, ``z_k ~ N(0, I)`` (one noise row per pair); rows ``k`` and ``k + n`` are
   ``clip(mu + eps_k)`` and ``clip(mu - eps_k)``;
2. shaped fitness ``r`` = centred ranks of all ``P`` samples (better: larger; in [-0.5, 0.5]),
   ``r+_k``, ``r-_k`` those of the pair's two rows, baseline ``b = mean(r)`` (0 for centred ranks);
3. ``g_mu = sum_k eps_k (r+_k - r-_k) / (2 n)``;
   ``g_sigma = sum_k ((r+_k + r-_k) / 2 - b) (eps_k**2 - sigma**2) / sigma / n``;
4. ClipUp on the mean: ``v <- m v + alpha g_mu / ||g_mu||`` (no gradient term when
   ``g_mu = 0``: all fitness tied), then ``v <- v_max v / ||v||`` if ``||v|| > v_max``;
   ``mu <- mu + v``; ``alpha = v_max / 2`` (ClipUp's recommendation);
5. the step sizes take a plain gradient step, ``sigma <- sigma + eta_sigma g_sigma``, and each
   weight's change is capped at ``sigma_max_change`` (20%) of its old value:
   ``sigma_new`` is clipped to ``[0.8 sigma, 1.2 sigma]``, as EvoTorch's ``stdev_max_change``
   (and evosax's ``std_max_change``) does. The papers do not cap; the cap keeps ``sigma > 0``.

``max_speed`` (``v_max``) is an absolute length in weight space: the L2 norm of one step of the
whole weight vector. Its default 0.1 was picked on the default problem (breast cancer, 4,097
weights of 30-64-32-1, whose He-initialised weight vector has a norm of about 14; population 50,
1,500 generations, sigma 0.1): the mean's final fitness was 0.0041 with v_max 0.03, 0.0023 with
0.1 and 0.0063 with 0.3 (a larger v_max moves fast, then jitters around the optimum by about
``alpha``; a smaller one has not arrived after 1,500 generations). EvoTorch's ``max_speed`` defaults to twice its centre learning rate, i.e. the
same ``alpha = v_max / 2``.
"""

from __future__ import annotations

import numpy as np

from evomlp.es.base import DistributionES, ESState, centred_ranks, norm, weighted_row_sum

SETTINGS = {
    "sigma": (0.1, "initial step size, times the initial population's per-weight deviation", (0, None)),
    "max_speed": (0.1, "ClipUp's v_max: largest L2 norm of one step of the mean (alpha = v_max / 2)", (0, None)),
    "momentum": (0.9, "ClipUp's momentum m (1 would never forget a velocity)", (0, 1, "[)")),
    "learning_rate_sigma": (0.1, "learning rate of the step sizes' plain gradient step", (0, None)),
    "sigma_max_change": (0.2, "largest relative change of a step size in one generation", (0, 1, "()")),
}


def clipup_step(velocity: np.ndarray, gradient: np.ndarray, momentum: float, max_speed: float) -> np.ndarray:
    """ClipUp's new velocity: ``m v + (v_max / 2) g / ||g||``, clipped to norm ``v_max``."""
    gradient_norm = norm(gradient)
    velocity = momentum * velocity
    if gradient_norm > 0:
        velocity = velocity + (max_speed / 2) * (gradient / gradient_norm)
    speed = norm(velocity)
    if speed > max_speed:
        velocity = velocity * (max_speed / speed)
    return velocity


def pgpe_gradients(noise: np.ndarray, sigma: np.ndarray, shaped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g_mu, g_sigma)`` from the pairs' noise ``z (n, D)``, step sizes ``sigma (D,)`` and the
    shaped fitness ``(2n,)`` of the rows ``[+ pairs, - pairs]``."""
    pairs = noise.shape[0]
    plus, minus = shaped[:pairs], shaped[pairs:]
    baseline = float(np.mean(shaped))
    eps = sigma * noise
    g_mu = weighted_row_sum(plus - minus, eps) / (2 * pairs)
    g_sigma = weighted_row_sum((plus + minus) / 2 - baseline, eps * eps - sigma * sigma) / sigma / pairs
    return g_mu, g_sigma


class PGPE(DistributionES):
    """PGPE (Sehnke et al. 2010) with symmetric sampling and ClipUp (Toklu et al. 2020)."""

    NAME = "pgpe"
    SETTINGS = SETTINGS
    MIRRORED = True
    MINIMUM_POPULATION = 2

    def initial_fields(self, mean: np.ndarray, size: int) -> dict:
        return {"sigma": self.sigma * self.initial_scale, "velocity": np.zeros(self.dim)}

    def update(self, state: ESState, noise: np.ndarray, fitness: np.ndarray, trials: np.ndarray) -> None:
        pairs = state.population_size // 2
        g_mu, g_sigma = pgpe_gradients(noise[:pairs], state.sigma, centred_ranks(fitness))
        state.velocity = clipup_step(state.velocity, g_mu, self.momentum, self.max_speed)
        state.mean = state.mean + state.velocity
        sigma = state.sigma
        change = self.sigma_max_change * sigma
        state.sigma = np.clip(sigma + self.learning_rate_sigma * g_sigma, sigma - change, sigma + change)
