"""evomlp: train multilayer perceptrons with differential evolution.

Modules, by what they own:
- ``network``: MLP spec, flat weight vector, population forward pass;
- ``losses``: population losses and metrics;
- ``de``: differential evolution as ask/tell optimizers;
- ``evaluation``: the population evaluator (in-process or joblib workers);
- ``trainer``: the ask -> evaluate -> tell loop with validation-based model selection;
- ``params``: the params schema and its validation;
- ``data``: datasets, splits, scaling;
- ``artifacts``: model and metrics files, written atomically;
- ``numerics``: the BLAS and SIMD code paths, pinned so results are the same bits on any CPU.
"""

# First, before anything loads numpy: choose the kernels numpy and OpenBLAS will load with.
from evomlp import numerics  # noqa: F401  isort: skip

from evomlp.errors import EvomlpError

__all__ = ["EvomlpError"]
__version__ = "0.1.0"
