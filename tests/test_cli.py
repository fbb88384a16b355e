"""The ``evomlp`` command (predict, info) on models trained by the real stages, and the stages'
``--help``: it prints the docstring and leaves every file as it was."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_pipeline import ROOT, run, set_params

from evomlp.artifacts import load_model, load_npz, save_npz
from evomlp.network import forward, output_probabilities

pytestmark = pytest.mark.slow

TINY = {
    "model": {"hidden_layers": [8], "activations": ["tanh"]},
    "train": {"optimizer": "currenttopbest1bin", "population_size": 12, "max_generations": 15},
    "optimizer": {"currenttopbest1bin": {"crossover_rate": 0.3}},
    "runtime": {"progress": False},
}
# every stage of dvc.yaml, by its module: python -m stages.<name>
STAGES = sorted(
    stage["cmd"].split("-m stages.")[1].strip() for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
)


def trained_project(where: Path, data: dict, files: dict[str, str] | None = None) -> Path:
    """The project's code and params in ``where``, with ``data`` params, and the prepare, train and
    evaluate stages run on a tiny budget (no DVC: the stages themselves)."""
    for name in ("evomlp", "stages"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", where / "params.yaml")
    shutil.copy(ROOT / "runtime.yaml", where / "runtime.yaml")
    set_params(where, {**TINY, "data": data})
    for name, text in (files or {}).items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    for stage in ("prepare", "train", "evaluate"):
        run([sys.executable, "-m", f"stages.{stage}"], where)
    return where


def evomlp(*arguments: str, cwd: Path, check: bool = True):
    """The installed console script (``pip install -e .``)."""
    return run([str(Path(sys.executable).parent / "evomlp"), *arguments], cwd, check=check)


def expected_scores(project: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, class probabilities, labels)`` of the network's forward pass on the prepared test set."""
    spec, weights, classes, _ = load_model(project / "models/model.npz")
    test = load_npz(project / "data/prepared/test.npz")
    scores = output_probabilities(spec, forward(spec, weights, test["X"]))
    probabilities = np.column_stack([1 - scores[:, 0], scores[:, 0]]) if spec.task == "binary" else scores
    return test["rows"], probabilities, classes[probabilities.argmax(axis=1)]


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def breast_cancer(tmp_path_factory) -> Path:
    return trained_project(tmp_path_factory.mktemp("breast_cancer"), {"dataset": "breast_cancer"})


ANIMALS = ("cat", "dog", "eel")


def animal_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.integers(0, 3, n)
    return pd.DataFrame({
        "weight": np.round(rng.normal(species * 2.0, 1.0), 3),
        "habitat": np.array(["land", "water", "air"])[(species + rng.integers(0, 2, n)) % 3],
        "legs": rng.integers(0, 5, n),
        "species": np.array(ANIMALS)[species],
    })


@pytest.fixture(scope="module")
def animals(tmp_path_factory) -> Path:
    """A user CSV: a text column, a numeric one, an integer one, and a text label (three classes)."""
    text = animal_rows(150, 0).to_csv(index=False)
    return trained_project(tmp_path_factory.mktemp("animals"), {"dataset": "raw/animals.csv", "target": "species"},
                           {"raw/animals.csv": text})


def read_predictions(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype={"prediction": str})


def test_predict_on_breast_cancer_features_is_the_forward_pass_on_the_prepared_test_set(breast_cancer, tmp_path):
    rows, probabilities, labels = expected_scores(breast_cancer)
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.iloc[rows]  # scikit-learn's feature names + "target"
    frame.to_csv(tmp_path / "with_target.csv", index=False)
    frame.drop(columns=["target"]).to_csv(tmp_path / "features.csv", index=False)
    with_target = evomlp("predict", "models/model.npz", str(tmp_path / "with_target.csv"), cwd=breast_cancer)
    assert with_target.stderr == ""
    predictions = read_predictions(with_target.stdout)
    assert list(predictions.columns) == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_array_equal(predictions["prediction"], labels)
    np.testing.assert_allclose(predictions[["proba_0", "proba_1"]].to_numpy(), probabilities, rtol=1e-12, atol=1e-15)
    # the labels the evaluate stage counted in its confusion plot
    confusion = pd.read_csv(breast_cancer / "metrics/plots/confusion.csv", dtype=str)
    np.testing.assert_array_equal(predictions["prediction"], confusion["predicted"])
    assert set(labels) == {"0", "1"}  # a model that says one class only would not test much

    # without the target column, written to a file with -o: the same predictions
    output = tmp_path / "out" / "predictions.csv"
    result = evomlp("predict", "models/model.npz", str(tmp_path / "features.csv"), "-o", str(output), cwd=breast_cancer)
    assert result.stdout == ""
    assert output.read_text() == with_target.stdout


def test_predict_matches_columns_by_name_and_ignores_extra_ones(breast_cancer, tmp_path):
    rows, probabilities, _ = expected_scores(breast_cancer)
    from sklearn.datasets import load_breast_cancer

    features = load_breast_cancer(as_frame=True).data.iloc[rows[:20]]
    reordered = features[list(reversed(features.columns))].assign(patient=np.arange(20), note="x")
    reordered.insert(3, "target", 1)
    reordered.to_csv(tmp_path / "reordered.csv", index=False)
    predictions = read_predictions(evomlp("predict", "models/model.npz", str(tmp_path / "reordered.csv"),
                                          cwd=breast_cancer).stdout)
    np.testing.assert_allclose(predictions[["proba_0", "proba_1"]].to_numpy(), probabilities[:20], rtol=1e-12, atol=1e-15)


def test_predict_with_a_text_column_applies_the_one_hot_encoding(animals, tmp_path):
    rows, probabilities, labels = expected_scores(animals)
    raw = pd.read_csv(animals / "raw/animals.csv").iloc[rows]
    raw[["legs", "habitat", "weight"]].to_csv(tmp_path / "animals.csv", index=False)  # no label, other order
    predictions = read_predictions(evomlp("predict", "models/model.npz", str(tmp_path / "animals.csv"),
                                          cwd=animals).stdout)
    assert list(predictions.columns) == ["prediction", *(f"proba_{name}" for name in ANIMALS)]
    np.testing.assert_array_equal(predictions["prediction"], labels)
    np.testing.assert_allclose(predictions.iloc[:, 1:].to_numpy(), probabilities, rtol=1e-12, atol=1e-15)
    assert len(set(labels)) > 1
    (tmp_path / "header.csv").write_text("legs,habitat,weight\n")  # no rows: no predictions
    assert evomlp("predict", "models/model.npz", str(tmp_path / "header.csv"),
                  cwd=animals).stdout == "prediction,proba_cat,proba_dog,proba_eel\n"


@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda f: f.drop(columns=["habitat"]), ["missing column(s) ['habitat']"]),
        (lambda f: f.assign(habitat=["land", "space", "air", "land"]), ["'habitat'", "data row 2", "'space'",
                                                                        "not seen in training"]),
        (lambda f: f.assign(weight=["1.5", "2", "heavy", "0"]), ["'weight'", "data row 3", "'heavy'", "not a number"]),
        (lambda f: f.assign(legs=[1, None, 2, 3]), ["'legs'", "data row 2", "no value"]),
    ],
    ids=["missing column", "unseen category", "not a number", "empty cell"],
)
def test_bad_input_columns_are_one_line_errors(animals, tmp_path, change, fragments):
    good = animal_rows(4, 1).drop(columns=["species"])
    path = tmp_path / "input.csv"
    good.to_csv(path, index=False)
    assert evomlp("predict", "models/model.npz", str(path), cwd=animals).returncode == 0
    change(good).to_csv(path, index=False)
    output = tmp_path / "predictions.csv"
    result = evomlp("predict", "models/model.npz", str(path), "-o", str(output), cwd=animals, check=False)
    assert assert_one_line_error(result, *fragments).startswith(f"error: {path}: ")
    assert not output.exists()


def rewrite(model: Path, change) -> None:
    arrays = load_npz(model)
    change(arrays)
    save_npz(model, arrays)


BOTH = ("predict", "info")


@pytest.mark.parametrize(
    "make, fragment, commands",
    [
        (lambda m: m.unlink(), "model file not found", BOTH),
        (lambda m: m.write_bytes(b"not a zip file"), "not a readable .npz model file", BOTH),
        (lambda m: rewrite(m, lambda a: a.update(format_version=np.array(1))), "model format version 1, expected 2", BOTH),
        (lambda m: rewrite(m, lambda a: a.pop("pre_scale")), "lacks the preprocessing array 'pre_scale'", BOTH),
        (lambda m: rewrite(m, lambda a: a.pop("weights")), "lacks array(s) ['weights']", BOTH),
        # only info reads the training record
        (lambda m: rewrite(m, lambda a: a.update(training=np.array("{not json"))), "'training' is not a JSON object", ["info"]),
    ],
    ids=["missing", "not npz", "format version", "no preprocessing", "no weights", "bad training record"],
)
def test_a_bad_model_file_is_a_one_line_error(breast_cancer, tmp_path, make, fragment, commands):
    model = tmp_path / "model.npz"
    shutil.copy(breast_cancer / "models/model.npz", model)
    make(model)
    # with a usable model this input would be an error too, but one naming the input file
    (tmp_path / "input.csv").write_text("mean radius\n1.0\n")
    for command in commands:
        arguments = [str(model), str(tmp_path / "input.csv")] if command == "predict" else [str(model)]
        result = evomlp(command, *arguments, cwd=tmp_path, check=False)
        assert assert_one_line_error(result, fragment).startswith(f"error: {model}: "), command


def test_info_shows_classes_target_optimizer_and_training_metrics(animals):
    text = evomlp("info", "models/model.npz", cwd=animals).stdout
    assert "multiclass, classes cat, dog, eel; target column species" in text
    assert "currenttopbest1bin: bounds_handling \"clip\", crossover_rate 0.3" in text
    assert "population_size 12" in text and "max_generations 15" in text
    assert "habitat: air, land, water" in text
    assert "metrics/test.json" in text

    info = json.loads(evomlp("info", "models/model.npz", "--json", cwd=animals).stdout)
    assert info["classes"] == list(ANIMALS) and info["target"] == "species" and info["format_version"] == 2
    # weight, legs and one input per habitat
    assert info["architecture"] == {"layer_sizes": [5, 8, 3], "hidden_activations": ["tanh"],
                                    "output_activation": "softmax", "n_weights": 5 * 8 + 8 + 8 * 3 + 3}
    assert info["features"]["columns"] == ["weight", "habitat", "legs"]
    assert info["features"]["text"] == {"habitat": ["air", "land", "water"]}
    assert info["training"]["train"]["optimizer"] == "currenttopbest1bin"
    assert info["training"]["optimizer"]["crossover_rate"] == 0.3
    live = json.loads((animals / "metrics/train/metrics.json").read_text())
    assert info["metrics"] == {key: value for key, value in live.items() if key != "step"}
    assert live["step"] == live["generations"]  # dvclive's step: the last generation


def snapshot(project: Path) -> dict:
    return {
        path.relative_to(project).as_posix(): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(project.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_answers_help_without_running(breast_cancer, stage):
    before = snapshot(breast_cancer)
    for flag in ("--help", "-h"):
        result = run([sys.executable, "-m", f"stages.{stage}", flag], breast_cancer)
        assert result.stdout.startswith(f"usage: python -m stages.{stage} [-h]\n")
        assert f"Stage {stage}:" in result.stdout and result.stderr == ""
        assert "numerics:" not in result.stdout  # the line a stage prints after it has run
    result = run([sys.executable, "-m", f"stages.{stage}", "--fast"], breast_cancer, check=False)
    assert_one_line_error(result, f"python -m stages.{stage}", "unrecognized arguments: --fast")
    assert snapshot(breast_cancer) == before
    assert not list((breast_cancer / ".checkpoints").glob("train-*"))  # no run started (the lock is the trained one's)
