"""The scikit-learn estimators: scikit-learn's own checks, the train stage's bytes, and use in
pipelines, cross-validation and grid search."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_iris, make_regression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import evomlp
from evomlp.artifacts import load_model, load_npz
from evomlp.estimator import EvoMLPClassifier, EvoMLPRegressor, expected_failed_checks
from evomlp.params import SCHEMA, ParamsError, validate_params
from evomlp.trainer import HISTORY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"max_generations": 30, "population_size": 16, "hidden_layer_sizes": (8,), "activations": "tanh", "n_jobs": 1}


@parametrize_with_checks([EvoMLPClassifier(**SMALL), EvoMLPRegressor(**SMALL)],
                         expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=42, stratify=y)


def quick(**settings):
    """A classifier on a small budget (a fraction of a second on breast cancer)."""
    return EvoMLPClassifier(**{"optimizer": "pgpe", "population_size": 20, "max_generations": 40,
                               "hidden_layer_sizes": (16,), "activations": "relu", "n_jobs": 1, **settings})


# -- defaults and parameters -------------------------------------------------------------------
SCHEMA_KEY = {
    "hidden_layer_sizes": ("model", "hidden_layers"),
    "activations": ("model", "activations"),
    "validation_fraction": ("data", "validation_size"),
    "n_jobs": ("runtime", "n_jobs"),
    "backend": ("runtime", "backend"),
    "random_state": ("train", "seed"),
    **{key: ("train", key) for key in ("optimizer", "population_size", "max_generations", "max_evaluations",
                                       "patience", "l2", "bounds", "init", "init_scale", "minibatch_size",
                                       "dtype", "class_weight")},
}


@pytest.mark.parametrize("cls", [EvoMLPClassifier, EvoMLPRegressor])
def test_every_default_is_the_params_schemas_default(cls):
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    assert defaults.pop("optimizer_settings") is None and defaults.pop("verbose") is False
    assert set(defaults) == set(SCHEMA_KEY) - ({"class_weight"} if cls is EvoMLPRegressor else set())
    for name, default in defaults.items():
        section, key = SCHEMA_KEY[name]
        expected = SCHEMA[section][key].default
        if name == "class_weight":
            expected = {"none": None}.get(expected, expected)
        assert default == (tuple(expected) if isinstance(expected, list) else expected), name
    # and with them the estimator trains what params.yaml with every key at its default would
    assert cls().get_params() == defaults | {"optimizer_settings": None, "verbose": False}


def test_unknown_parameter_is_a_type_error_and_the_constructor_only_stores():
    with pytest.raises(TypeError):
        EvoMLPClassifier(hidden_layers=(3,))
    estimator = EvoMLPClassifier(population_size=-1, optimizer="nope", optimizer_settings="x")
    assert (estimator.population_size, estimator.optimizer, estimator.optimizer_settings) == (-1, "nope", "x")


@pytest.mark.parametrize(
    "settings, raw",
    [
        ({"population_size": 2}, {"train": {"population_size": 2}}),
        ({"optimizer": "snse"}, {"train": {"optimizer": "snse"}}),
        ({"optimizer": "snes", "optimizer_settings": {"sigmaa": 0.5}},
         {"train": {"optimizer": "snes"}, "optimizer": {"snes": {"sigmaa": 0.5}}}),
        ({"class_weight": "balance"}, {"train": {"class_weight": "balance"}}),
        ({"hidden_layer_sizes": (4, 4), "activations": ("relu",)},
         {"model": {"hidden_layers": [4, 4], "activations": ["relu"]}}),
        ({"validation_fraction": 1.5}, {"data": {"validation_size": 1.5}}),
        ({"random_state": -3}, {"train": {"seed": -3}}),
        ({"optimizer": "pgpe", "population_size": 21}, {"train": {"optimizer": "pgpe", "population_size": 21}}),
    ],
)
def test_a_bad_parameter_is_the_pipelines_one_line_params_error(settings, raw, breast_cancer):
    X, _, y, _ = breast_cancer
    with pytest.raises(ParamsError) as expected:
        validate_params(raw, "EvoMLPClassifier")
    with pytest.raises(ParamsError) as raised:
        EvoMLPClassifier(**settings).fit(X, y)
    assert str(raised.value) == str(expected.value)
    assert "\n" not in str(raised.value)


# -- the same training as the train stage -------------------------------------------------------
def _regression_csv(directory: Path) -> str:
    X, y = make_regression(n_samples=150, n_features=5, n_informative=3, noise=5.0, random_state=1)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(value=y / 50.0)
    frame.to_csv(directory / "values.csv", index=False)
    return "values.csv"


CASES = {
    "binary, DE with its own setting": (
        {"data": {"dataset": "breast_cancer"}, "model": {"hidden_layers": [8], "activations": ["tanh"]},
         "train": {"optimizer": "currenttopbest1bin", "population_size": 12, "max_generations": 15, "l2": 5.0,
                   "seed": 3},
         "optimizer": {"currenttopbest1bin": {"crossover_rate": 0.3}}},
        {"hidden_layer_sizes": (8,), "activations": ("tanh",), "optimizer": "currenttopbest1bin",
         "optimizer_settings": {"crossover_rate": 0.3}, "population_size": 12, "max_generations": 15, "l2": 5.0,
         "random_state": 3},
    ),
    "multiclass, ES, balanced, minibatches, per-layer bounds": (
        {"data": {"dataset": "iris"}, "model": {"hidden_layers": [6, 5], "activations": ["relu", "tanh"]},
         "train": {"optimizer": "snes", "population_size": 10, "max_generations": 12, "class_weight": "balanced",
                   "minibatch_size": 40, "bounds": [3.0, 4.0, 5.0], "seed": 5},
         "optimizer": {"snes": {"sigma": 0.2}}},
        {"hidden_layer_sizes": (6, 5), "activations": ("relu", "tanh"), "optimizer": "snes",
         "optimizer_settings": {"sigma": 0.2}, "population_size": 10, "max_generations": 12,
         "class_weight": "balanced", "minibatch_size": 40, "bounds": (3.0, 4.0, 5.0), "random_state": 5},
    ),
    "regression, PGPE, uniform init, float64": (
        {"data": {"dataset": "values.csv", "target": "value"}, "model": {"hidden_layers": [7], "activations": ["elu"]},
         "train": {"optimizer": "pgpe", "population_size": 10, "max_generations": 200, "init": "uniform",
                   "bounds": 2.0, "dtype": "float64", "patience": 4, "seed": 11}},
        {"hidden_layer_sizes": (7,), "activations": ("elu",), "optimizer": "pgpe", "population_size": 10,
         "max_generations": 200, "init": "uniform", "bounds": 2.0, "dtype": "float64", "patience": 4,
         "random_state": 11},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_estimator_trains_the_train_stages_bytes_from_the_same_rows_and_settings(case, tmp_path, monkeypatch):
    from stages import evaluate, prepare, train

    params, settings = CASES[case]
    monkeypatch.chdir(tmp_path)
    if params["data"]["dataset"] == "values.csv":
        _regression_csv(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Path("runtime.yaml").write_text(yaml.safe_dump({"progress": False, "n_jobs": 1}))
    prepare.main()
    train.main()
    evaluate.main()
    parts = {name: load_npz(f"data/prepared/{name}.npz") for name in ("train", "validation", "test")}
    regression = "regression" in case
    estimator = (EvoMLPRegressor if regression else EvoMLPClassifier)(**settings, n_jobs=1)
    estimator.fit(parts["train"]["X"], parts["train"]["y"],
                  validation=(parts["validation"]["X"], parts["validation"]["y"]))

    spec, weights, _, _ = load_model("models/model.npz")
    assert estimator.spec_ == spec
    assert estimator.weights_.tobytes() == weights.tobytes()
    stage = json.loads(Path("metrics/train/metrics.json").read_text())
    assert (estimator.n_generations_, estimator.n_evaluations_, estimator.best_generation_) == (
        stage["generations"], stage["evaluations"], stage["best_generation"])
    if regression:
        assert stage["generations"] < 200  # patience stopped it, in both
    history = pd.read_csv("metrics/plots/history.csv")
    pd.testing.assert_frame_equal(estimator.history_, history, check_dtype=False)
    # and its predictions are the evaluate stage's
    test = json.loads(Path("metrics/test.json").read_text())
    score = estimator.score(parts["test"]["X"], parts["test"]["y"])
    assert score == (test["r2"] if regression else test["accuracy"])


def test_validation_fraction_holds_out_a_stratified_split_seeded_by_random_state(breast_cancer):
    X, _, y, _ = breast_cancer
    held_out = quick(max_generations=10, validation_fraction=0.25, random_state=9).fit(X, y)
    kept, held = train_test_split(np.arange(len(y)), test_size=0.25, random_state=9, stratify=y)
    kept, held = np.sort(kept), np.sort(held)
    given = quick(max_generations=10, random_state=9).fit(X[kept], y[kept], validation=(X[held], y[held]))
    assert held_out.weights_.tobytes() == given.weights_.tobytes()
    other_split = quick(max_generations=10, validation_fraction=0.4, random_state=9).fit(X, y)
    assert other_split.weights_.tobytes() != held_out.weights_.tobytes()


def test_too_few_rows_for_a_stratified_split_fall_back_to_a_plain_one_and_one_row_is_an_error():
    X = np.arange(20.0).reshape(10, 2)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])  # 2 validation rows cannot hold 3 classes
    fitted = EvoMLPClassifier(**SMALL).fit(X, y)
    assert fitted.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="n_samples=1 is too few"):
        EvoMLPRegressor(**SMALL).fit(X[:1], [1.0])


def test_a_validation_label_that_y_lacks_is_an_error(breast_cancer):
    X, _, y, _ = breast_cancer
    with pytest.raises(ValueError, match=r"validation y has label\(s\) \[7\]"):
        quick().fit(X[:100], y[:100], validation=(X[100:120], np.full(20, 7)))


# -- fitted attributes and predictions ---------------------------------------------------------
def test_fitted_attributes_history_and_the_model_from_the_best_validation_generation(breast_cancer):
    X, _, y, _ = breast_cancer
    frame = pd.DataFrame(StandardScaler().fit_transform(X), columns=[f"x{i}" for i in range(X.shape[1])])
    labels = np.where(y == 1, "benign", "malignant")
    model = quick(max_generations=25).fit(frame, labels)
    assert model.feature_names_in_.tolist() == list(frame.columns) and model.n_features_in_ == 30
    assert model.classes_.tolist() == ["benign", "malignant"]
    history = model.history_
    assert list(history.columns) == list(HISTORY_COLUMNS) and len(history) == 26 == model.n_generations_ + 1
    assert history["validation_loss"].idxmin() == model.best_generation_
    assert model.n_evaluations_ == history["n_evaluations"].iloc[-1] == 20 * 26
    assert model.stop_reason_ == "max_generations" and model.seed_ == model.random_state
    assert [w.shape for w in model.coefs_] == [(30, 16), (16, 1)] and [b.shape for b in model.intercepts_] == [(16,), (1,)]
    assert np.concatenate([np.r_[w.ravel(), b] for w, b in zip(model.coefs_, model.intercepts_)]).tobytes() == \
        model.weights_.tobytes()

    probabilities = model.predict_proba(frame)
    assert probabilities.shape == (len(y), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    predicted = model.predict(frame)
    assert (predicted == model.classes_[probabilities.argmax(axis=1)]).all()
    # the sigmoid output is the probability of classes_[1]: mostly right on the training rows
    assert np.mean((probabilities[:, 1] > 0.5) == (labels == "malignant")) > 0.9


def test_multiclass_probabilities_have_a_column_per_class_in_classes_order():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = make_pipeline(StandardScaler(), quick(max_generations=40)).fit(X, names)
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (150, 3)
    assert model[-1].classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert np.mean(model[-1].classes_[probabilities.argmax(axis=1)] == names) > 0.85
    assert probabilities[names == "setosa", 0].mean() > 0.5


def test_regressor_predicts_one_column_per_target():
    X, Y = make_regression(n_samples=200, n_features=4, n_targets=2, noise=1.0, random_state=0)
    Y = Y / Y.std(axis=0)
    settings = {"optimizer": "pgpe", "population_size": 20, "max_generations": 60, "hidden_layer_sizes": (8,),
                "activations": "identity", "n_jobs": 1}
    two = EvoMLPRegressor(**settings).fit(X, Y)
    assert two.n_outputs_ == 2 and two.predict(X).shape == (200, 2) and two.score(X, Y) > 0.8
    one = EvoMLPRegressor(**settings).fit(X, Y[:, 0])
    assert one.n_outputs_ == 1 and one.predict(X).shape == (200,) and one.score(X, Y[:, 0]) > 0.8


def test_random_state_int_reproduces_and_none_or_a_random_state_draws_the_seed(breast_cancer):
    X, _, y, _ = breast_cancer
    first, again = quick(max_generations=5, random_state=4).fit(X, y), quick(max_generations=5, random_state=4).fit(X, y)
    assert first.weights_.tobytes() == again.weights_.tobytes()
    assert quick(max_generations=5, random_state=5).fit(X, y).weights_.tobytes() != first.weights_.tobytes()

    drawn = quick(max_generations=5, random_state=np.random.RandomState(8)).fit(X, y)
    assert drawn.seed_ == np.random.RandomState(8).randint(2**32, dtype=np.int64)
    same_seed = quick(max_generations=5, random_state=drawn.seed_).fit(X, y)
    assert same_seed.weights_.tobytes() == drawn.weights_.tobytes()
    np.random.seed(12)
    unseeded = quick(max_generations=5, random_state=None).fit(X, y)
    assert unseeded.seed_ == np.random.RandomState(12).randint(2**32, dtype=np.int64)


def test_verbose_false_prints_nothing_and_true_prints_the_stages_lines(breast_cancer, capfd):
    X, _, y, _ = breast_cancer
    quick(max_generations=3).fit(X, y)
    assert capfd.readouterr() == ("", "")
    quick(max_generations=3, verbose=True).fit(X, y)
    assert "train: pgpe on a 30-16-1 MLP (513 weights), population 20" in capfd.readouterr().err


# -- in scikit-learn's tools ----------------------------------------------------------------------
def test_cross_val_score_of_a_scaling_pipeline_on_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), quick()), X, y, cv=StratifiedKFold(5))
    assert scores.shape == (5,) and scores.min() > 0.9


def test_grid_search_picks_the_better_parameter_and_refits_with_it(breast_cancer):
    X, X_test, y, y_test = breast_cancer
    search = GridSearchCV(make_pipeline(StandardScaler(), quick()), {"evomlpclassifier__max_generations": [1, 40]}, cv=3)
    search.fit(X, y)
    assert search.best_params_ == {"evomlpclassifier__max_generations": 40}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]
    refitted = search.best_estimator_[-1]
    assert refitted.n_generations_ == 40 and refitted.n_features_in_ == 30
    assert search.score(X_test, y_test) > 0.9


# -- the package ---------------------------------------------------------------------------------
def test_the_package_exports_the_estimators_and_import_evomlp_loads_neither_numpy_nor_sklearn():
    assert evomlp.EvoMLPClassifier is EvoMLPClassifier and evomlp.EvoMLPRegressor is EvoMLPRegressor
    assert {"EvoMLPClassifier", "EvoMLPRegressor"} <= set(dir(evomlp)) & set(evomlp.__all__)
    with pytest.raises(AttributeError):
        evomlp.EvoMLPClassifer  # noqa: B018
    code = ("import sys, evomlp; loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'sklearn') "
            "or m == 'evomlp.estimator'); assert not loaded, loaded; "
            "from evomlp import EvoMLPClassifier; assert 'evomlp.estimator' in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_readme_library_example_runs_and_prints_what_the_readme_says(capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Library API\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    accuracy = float(capsys.readouterr().out.splitlines()[0])
    assert f"test accuracy of {accuracy:.3f}" in section and accuracy > 0.95
