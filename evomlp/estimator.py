"""scikit-learn estimators that train with the pipeline's code: :class:`EvoMLPClassifier`, :class:`EvoMLPRegressor`.

``fit`` builds the params sections the train stage reads (``model``, ``train``, the chosen
optimizer's block, ``runtime``) from the estimator's parameters, checks them with
:func:`evomlp.params.validate_params` (a bad value is the pipeline's one-line
:class:`~evomlp.params.ParamsError`, prefixed with the class name), holds out validation rows and
calls :func:`evomlp.training.train_network`, as the train stage does: the same rows and settings
give the same weights, bit for bit.

Parameters (both estimators; each default is the params schema's, read at import time, so it is
always the default of ``params.yaml``'s key in brackets):

- ``hidden_layer_sizes`` [``model.hidden_layers``]: a tuple of units, one per hidden layer (an
  int: one layer);
- ``activations`` [``model.activations``]: one activation per hidden layer (a string: the same for
  every layer);
- ``optimizer`` [``train.optimizer``]: a name of :func:`evomlp.optimizers.names`;
  ``optimizer_settings`` [``optimizer.<optimizer>``]: a dict of that optimizer's own settings, or
  None for its defaults;
- ``population_size``, ``max_generations``, ``max_evaluations``, ``patience``, ``l2`` (the L2
  penalty's factor, as :class:`evomlp.evaluation.FitnessProblem` applies it), ``bounds``,
  ``init``, ``init_scale``, ``minibatch_size``, ``dtype`` [``train.<same name>``];
- ``validation_fraction`` [``data.validation_size``]: the fraction of the rows given to ``fit``
  held out to choose the model on (stratified by class for a classifier when every class has two
  rows and each side gets one row per class, else a plain shuffled split); ignored when ``fit``
  gets ``validation=(X_val, y_val)``;
- ``n_jobs``, ``backend`` [``runtime.<same name>``]: speed only, never the result;
- ``random_state`` [``train.seed``]: the run's seed (also of the validation split); None or a
  ``RandomState``/``Generator`` draws one from numpy (kept as ``seed_``);
- ``verbose`` [``runtime.progress``, but default False]: the stage's status lines and progress bar
  on stderr; False prints nothing.

``EvoMLPClassifier`` also takes ``class_weight`` [``train.class_weight``]: None or ``"balanced"``.

Input: numeric ``X`` (an array or a DataFrame, as scikit-learn's ``MLPClassifier`` takes it),
used as given: nothing is scaled. Scale in a pipeline, ``make_pipeline(StandardScaler(),
EvoMLPClassifier())``, as the prepare stage standardises the pipeline's features.
``fit(X, y, validation=(X_val, y_val))`` trains on all of ``X`` and chooses the model on the rows
given (as the train stage does with ``data/prepared/validation.npz``); those rows are used as
given too, so inside a ``Pipeline`` (whose earlier steps do not transform them) use
``validation_fraction`` instead.

Fitted attributes: ``spec_`` (:class:`evomlp.network.MLPSpec`), ``weights_`` (the flat weight
vector), ``coefs_`` and ``intercepts_`` (views of it per layer, as ``MLPClassifier``'s),
``history_`` (a DataFrame, one row per generation, columns
:data:`evomlp.trainer.HISTORY_COLUMNS`), ``n_generations_``, ``n_evaluations_``,
``best_generation_``, ``stop_reason_``, ``seed_``, ``n_features_in_``, ``feature_names_in_`` (a
DataFrame's columns), ``classes_`` (classifier) and ``n_outputs_`` (regressor).

Predictions are computed in float64 with one BLAS thread, as the evaluate stage computes them.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from evomlp.evaluation import single_threaded_blas
from evomlp.network import forward, output_probabilities
from evomlp.params import SCHEMA, validate_params
from evomlp.trainer import HISTORY_COLUMNS
from evomlp.training import train_network

__all__ = ["EvoMLPClassifier", "EvoMLPRegressor", "expected_failed_checks"]


def schema_default(section: str, key: str) -> Any:
    """The params schema's default of ``section.key``, a list as a tuple (an estimator's defaults
    must be immutable)."""
    value = SCHEMA[section][key].default
    return tuple(value) if isinstance(value, list) else value


# the estimator parameters that are train.<same name>
TRAIN_KEYS = ("population_size", "max_generations", "max_evaluations", "patience", "l2", "bounds", "init",
              "init_scale", "minibatch_size", "dtype")

COMMON_DEFAULTS: dict[str, Any] = {
    "hidden_layer_sizes": schema_default("model", "hidden_layers"),
    "activations": schema_default("model", "activations"),
    "optimizer": schema_default("train", "optimizer"),
    "optimizer_settings": None,
    **{key: schema_default("train", key) for key in TRAIN_KEYS},
    "validation_fraction": schema_default("data", "validation_size"),
    "n_jobs": schema_default("runtime", "n_jobs"),
    "backend": schema_default("runtime", "backend"),
    "random_state": schema_default("train", "seed"),
    "verbose": False,
}
_class_weight = schema_default("train", "class_weight")
CLASSIFIER_DEFAULTS = {**COMMON_DEFAULTS, "class_weight": None if _class_weight == "none" else _class_weight}


def _init_storing(defaults: dict[str, Any]):
    """An ``__init__`` taking exactly the keyword arguments ``defaults`` names, with those
    defaults, that stores each as an attribute and does nothing else (scikit-learn's rule).

    Its signature is set explicitly, so ``inspect.signature``, ``get_params``, ``clone`` and
    ``help()`` see every parameter with its default; an unknown name is a ``TypeError``, as for a
    written-out ``def``. (Written out, the two estimators' signatures would repeat each other.)
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
        + [inspect.Parameter(name, keyword, default=value) for name, value in defaults.items()]
    )

    def __init__(self, **params):
        bound = signature.bind(self, **params)
        bound.apply_defaults()
        for name in defaults:
            setattr(self, name, bound.arguments[name])

    __init__.__signature__ = signature
    return __init__


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, tuples and arrays as lists: what the schema's checks take
    (parsed YAML has no other types)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(item) for item in value]
    return value


def draw_seed(random_state: Any) -> Any:
    """``train.seed`` from ``random_state``: an int as it is (the schema checks its range), else a
    seed drawn from ``check_random_state(random_state)`` or from a ``numpy.random.Generator``."""
    if isinstance(random_state, numbers.Integral):
        return _plain(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**32))
    return int(check_random_state(random_state).randint(2**32, dtype=np.int64))


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The checks of ``sklearn.utils.estimator_checks`` that ``estimator`` fails, each with the
    reason: for ``check_estimator(..., expected_failed_checks=...)`` and
    ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)``."""
    if isinstance(estimator, EvoMLPClassifier):
        return {
            "check_class_weight_classifiers": (
                "class_weight takes None or 'balanced' (train.class_weight's values); the check "
                "sets a dict of per-class weights, which the loss does not support"
            ),
        }
    return {}


class _EvoMLP(BaseEstimator):
    """What both estimators share: the params sections, the validation split, training, outputs."""

    def _sections(self, class_weight: Any) -> dict[str, dict[str, Any]]:
        """The validated params sections of this estimator's parameters (a ParamsError if bad)."""
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else _plain(hidden)
        activations = self.activations
        if isinstance(activations, str) and isinstance(hidden, list):
            activations = [activations] * len(hidden)
        verbose = self.verbose
        raw = {
            "data": {"validation_size": _plain(self.validation_fraction)},
            "model": {"hidden_layers": hidden, "activations": _plain(activations)},
            "train": {
                "optimizer": self.optimizer,
                **{key: _plain(getattr(self, key)) for key in TRAIN_KEYS},
                "class_weight": class_weight,
                "seed": draw_seed(self.random_state),
            },
            "runtime": {
                "n_jobs": _plain(self.n_jobs),
                "backend": self.backend,
                "progress": bool(verbose) if isinstance(verbose, numbers.Integral) else verbose,
            },
        }
        if self.optimizer_settings is not None and isinstance(self.optimizer, str):
            settings = self.optimizer_settings
            raw["optimizer"] = {self.optimizer: {k: _plain(v) for k, v in settings.items()}
                                if isinstance(settings, dict) else settings}
        return validate_params(raw, type(self).__name__)

    def _holdout(self, y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(train rows, validation rows)``, sorted, as ``train_test_split(test_size=fraction,
        random_state=seed)`` picks them (stratified by ``y`` if asked and possible)."""
        n = y.shape[0]
        n_held = math.ceil(fraction * n)
        if n_held < 1 or n - n_held < 1:
            raise ValueError(
                f"{type(self).__name__}: n_samples={n} is too few to hold out validation_fraction={fraction} "
                "of the rows and train on the rest; give more rows or fit(X, y, validation=(X_val, y_val))"
            )
        strata = None
        if stratify:
            counts = np.unique(y, return_counts=True)[1]
            if counts.min() >= 2 and min(n_held, n - n_held) >= counts.shape[0]:
                strata = y
        kept, held = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=strata)
        return np.sort(kept), np.sort(held)

    def _train(self, sections: dict, task: str, classes: np.ndarray, X: np.ndarray, y: np.ndarray,
               validation: tuple[np.ndarray, np.ndarray] | None):
        """Train on ``(X, y)`` (``y`` encoded) with the validated ``sections`` and set the fitted
        attributes; ``validation``: encoded held-out rows, or None to hold out
        ``validation_fraction`` of ``(X, y)``."""
        train = sections["train"]
        if validation is None:
            kept, held = self._holdout(y, sections["data"]["validation_size"], train["seed"],
                                       stratify=task != "regression")
            train_part, validation_part = (X[kept], y[kept]), (X[held], y[held])
        else:
            train_part, validation_part = (X, y), validation
        trained = train_network(sections["model"], train, sections["optimizer"][train["optimizer"]],
                                sections["runtime"], task, classes, train_part, validation_part)
        result = trained.result
        self.spec_ = trained.spec
        self.weights_ = result.weights
        layers = self.spec_.unpack(self.weights_)
        self.coefs_ = [weights for weights, _ in layers]
        self.intercepts_ = [biases for _, biases in layers]
        history = pd.DataFrame(result.history, columns=list(HISTORY_COLUMNS))
        self.history_ = history.astype({column: float for column in HISTORY_COLUMNS[2:]})
        self.n_generations_ = result.n_generations
        self.n_evaluations_ = result.n_evaluations
        self.best_generation_ = result.best_generation
        self.stop_reason_ = result.stop_reason
        self.seed_ = train["seed"]
        return self

    def _validation_X(self, validation: Any) -> tuple[np.ndarray, Any]:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise ValueError(f"{type(self).__name__}: validation: expected a pair (X_val, y_val)")
        X_val, y_val = validation
        return validate_data(self, X_val, dtype=np.float64, reset=False), y_val

    def _outputs(self, X: Any) -> np.ndarray:
        """The output head's values ``(N, K)`` in float64 (probabilities for a classifier)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with single_threaded_blas():
            return output_probabilities(self.spec_, forward(self.spec_, self.weights_, X))


class EvoMLPClassifier(ClassifierMixin, _EvoMLP):
    """A multilayer perceptron classifier trained by an evolutionary optimizer (the train stage's
    code); parameters and attributes in :mod:`evomlp.estimator`'s docstring.

    Two classes give one output (sigmoid), more give one per class (softmax); ``predict_proba``
    has a column per class in ``classes_`` order either way.

    scikit-learn's ``check_estimator`` passes but for one check, listed with its reason by
    :func:`expected_failed_checks` (``tests/test_estimator.py`` runs them all):
    ``check_class_weight_classifiers``, because ``class_weight`` takes None or ``"balanced"``
    only (``train.class_weight``), not the dict of per-class weights the check sets.
    """

    __init__ = _init_storing(CLASSIFIER_DEFAULTS)

    def fit(self, X, y, validation=None):
        """Train on ``X, y``; ``validation=(X_val, y_val)`` chooses the model on those rows
        instead of on ``validation_fraction`` of ``X``."""
        sections = self._sections("none" if self.class_weight is None else self.class_weight)
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"{type(self).__name__}: y has 1 class ({classes[0]!r}); expected at least 2 classes")
        self.classes_ = classes
        task = "binary" if classes.shape[0] == 2 else "multiclass"
        encoded = None
        if validation is not None:
            X_val, y_val = self._validation_X(validation)
            y_val = column_or_1d(y_val)
            check_consistent_length(X_val, y_val)
            unknown = ~np.isin(y_val, classes)
            if unknown.any():
                raise ValueError(
                    f"{type(self).__name__}: validation y has label(s) {np.unique(y_val[unknown]).tolist()[:5]} "
                    f"that y does not have; expected labels of {classes.tolist()[:20]}"
                )
            encoded = (X_val, np.searchsorted(classes, y_val).astype(np.int64))
        return self._train(sections, task, classes, X, y_index.astype(np.int64), encoded)

    def predict_proba(self, X):
        """Class probabilities ``(N, n_classes)``, columns in ``classes_`` order."""
        probabilities = self._outputs(X)
        if self.spec_.task == "binary":
            positive = probabilities[:, 0]
            return np.column_stack([1 - positive, positive])
        return probabilities

    def predict(self, X):
        """The most probable class of each row (the evaluate stage's rule: the first on a tie)."""
        probabilities = self.predict_proba(X)  # first: an unfitted estimator has no classes_
        return self.classes_[np.argmax(probabilities, axis=1)]


class EvoMLPRegressor(RegressorMixin, _EvoMLP):
    """A multilayer perceptron regressor trained by an evolutionary optimizer (the train stage's
    code); parameters and attributes in :mod:`evomlp.estimator`'s docstring.

    ``y`` of shape ``(N,)`` or ``(N, K)``: one output per target, mean squared error as the loss;
    ``predict`` returns ``(N,)`` for one target, as ``MLPRegressor`` does.

    scikit-learn's ``check_estimator`` passes with no check skipped or expected to fail
    (``tests/test_estimator.py``).
    """

    __init__ = _init_storing(COMMON_DEFAULTS)

    def fit(self, X, y, validation=None):
        """Train on ``X, y``; ``validation=(X_val, y_val)`` chooses the model on those rows
        instead of on ``validation_fraction`` of ``X``."""
        sections = self._sections("none")
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        encoded = None
        if validation is not None:
            X_val, y_val = self._validation_X(validation)
            y_val = check_array(y_val, ensure_2d=False, dtype=np.float64, input_name="y_val")
            if y_val.shape[1:] != y.shape[1:] or y_val.shape[0] != X_val.shape[0]:
                raise ValueError(
                    f"{type(self).__name__}: validation y has shape {y_val.shape}; expected "
                    f"{(X_val.shape[0], *y.shape[1:])}"
                )
            encoded = (X_val, y_val)
        return self._train(sections, "regression", np.array([], dtype=str), X, y, encoded)

    def predict(self, X):
        """Predicted targets, ``(N,)`` for one target, else ``(N, K)``."""
        outputs = self._outputs(X)
        return outputs[:, 0] if self.n_outputs_ == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
