"""What the train stage replaces: scipy's DE on the same rows, network and evaluations, one network at a time.

    python benchmarks/scipy_reference.py [--generations G] [--population P] [--dtype float32|float64]

Self-contained (no evomlp): the prepared training rows (``data/prepared/train.npz``), the default
30-64-32-1 ReLU network, a per-individual numpy forward pass, binary cross-entropy from the logit
plus ``0.011 * sum(W^2)`` over the weight matrices (params.yaml's ``train.l2``), and
:func:`scipy.optimize.differential_evolution` with an initial population of ``P`` rows (so
``popsize`` is not used), ``maxiter=G``, ``polish=False``, ``tol=atol=0``: ``P (G + 1)``
evaluations, 75,050 at the defaults, as the train stage's 1,500 generations of 50. Timed by
``benchmarks/end_to_end.py`` as a process, from start to exit; prints the evaluations it did.
"""

import argparse

import numpy as np
from scipy.optimize import differential_evolution

parser = argparse.ArgumentParser()
parser.add_argument("--generations", type=int, default=1500)
parser.add_argument("--population", type=int, default=50)
parser.add_argument("--dtype", default="float32")
args = parser.parse_args()
data = np.load("data/prepared/train.npz")
X, y = data["X"].astype(args.dtype), data["y"].astype(args.dtype)
sizes = [X.shape[1], 64, 32, 1]
shapes = list(zip(sizes[:-1], sizes[1:]))
D = sum(i * o + o for i, o in shapes)
calls = 0


def fitness(w):
    global calls
    calls += 1
    h, start, penalty = X, 0, 0.0
    for layer, (i, o) in enumerate(shapes):
        W = w[start:start + i * o].reshape(i, o)
        b = w[start + i * o:start + i * o + o]
        start += i * o + o
        penalty += float(np.dot(W.ravel(), W.ravel()))  # l2 in float64
        h = h @ W.astype(args.dtype) + b.astype(args.dtype)
        if layer < len(shapes) - 1:
            h = np.maximum(h, 0)
    z = h[:, 0]
    loss = np.mean(np.logaddexp(0, z) - y * z)  # binary cross-entropy from the logit
    return float(loss) + 0.011 * penalty


rng = np.random.default_rng(0)
scales = np.concatenate([np.r_[np.full(i * o, np.sqrt(6 / i)), np.zeros(o)] for i, o in shapes])
init = rng.uniform(-1, 1, (args.population, D)) * scales  # He-uniform weights, zero biases
result = differential_evolution(fitness, [(-5.0, 5.0)] * D, init=init, maxiter=args.generations,
                                polish=False, tol=0, atol=0, seed=0)
print(f"scipy: {calls} evaluations ({result.nfev} reported), best fitness {result.fun:.4f}")
