# evomlp first: it pins the BLAS and SIMD code paths before numpy loads (evomlp.numerics), so the
# tests compute with the kernels the stages use.
import evomlp  # noqa: F401  isort: skip

import numpy as np
import pytest

from evomlp.network import MLPSpec


@pytest.fixture(scope="session")
def small_problem():
    """A small binary problem: two Gaussian blobs, split into train and validation rows."""
    rng = np.random.default_rng(123)
    X = np.vstack([rng.normal(-1, 1, size=(60, 4)), rng.normal(1, 1, size=(60, 4))])
    y = np.repeat([0, 1], 60)
    order = rng.permutation(120)
    X, y = X[order], y[order]
    spec = MLPSpec(4, (6,), ("tanh",), 1, "binary")
    return spec, (X[:90], y[:90]), (X[90:], y[90:])
