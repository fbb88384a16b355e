"""The ``evomlp`` command: use a trained model file (``models/model.npz``) outside the pipeline.

- ``evomlp predict MODEL INPUT.csv [-o OUTPUT.csv]``: reads the raw feature columns of
  ``INPUT.csv``, applies the model's stored preprocessing (imputation, one-hot encoding of text
  columns, scaling, all fitted on the training rows by the prepare stage) and writes one row per
  input row: ``prediction`` (the predicted class label, or value for regression) and, for a
  classifier, ``proba_<class>`` for each class. Columns are matched by name, so their order does
  not matter; columns the model does not use (the target among them) are ignored. A missing
  column, a text value the model never saw in training, a cell that is not a number in a numeric
  column, or an empty cell when the model was trained without imputation, is an error naming the
  column (and the data row, counted from 1 after the header).
- ``evomlp info MODEL [--json]``: architecture, task, classes, target, feature columns, training
  settings and the metrics stored at training time.

Bad input (model or CSV) is one line on stderr, ``error: <file>: <what was expected>``, and exit
code 2, as in the stages (:func:`stages.common.run_stage`); a usage mistake is argparse's usage
message and exit code 2.
"""

from __future__ import annotations

from evomlp import numerics

# Before numpy loads: one BLAS thread, as in the stages, so predictions are the evaluate stage's bits.
numerics.one_blas_thread_per_process()

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evomlp.artifacts import atomic_path, load_model, model_record  # noqa: E402
from evomlp.data import Preprocessor  # noqa: E402
from evomlp.errors import EvomlpError  # noqa: E402
from evomlp.metrics import _class_probabilities  # noqa: E402
from evomlp.network import MLPSpec, forward, output_probabilities  # noqa: E402

TEST_METRICS = "metrics/test.json"


@dataclass
class Model:
    """A model file with everything ``predict`` and ``info`` need, checked."""

    path: Path
    spec: MLPSpec
    weights: np.ndarray
    classes: np.ndarray
    preprocessor: Preprocessor
    arrays: dict


def open_model(path: str | Path) -> Model:
    """Read a model file and its preprocessing; an :class:`EvomlpError` naming the file otherwise."""
    path = Path(path)
    spec, weights, classes, arrays = load_model(path)
    try:
        preprocessor = Preprocessor.from_arrays(arrays)
    except KeyError as error:
        raise EvomlpError(
            f"{path}: model file lacks the preprocessing array {error.args[0]!r}; "
            "expected a model written by the train stage"
        ) from None
    except EvomlpError as error:
        raise EvomlpError(f"{path}: {error}") from None
    if len(preprocessor.feature_names) != spec.n_inputs:
        raise EvomlpError(
            f"{path}: the preprocessing makes {len(preprocessor.feature_names)} inputs but the network "
            f"takes {spec.n_inputs}; expected a model written by the train stage"
        )
    return Model(path, spec, weights, classes, preprocessor, arrays)


# -- predict ----------------------------------------------------------------------------------
def read_input(path: str | Path, model: Model) -> pd.DataFrame:
    """The feature columns of CSV file ``path`` the model needs, in its order, checked: numbers in
    numeric columns, known categories in text columns (both may be empty when the model imputes)."""
    path = Path(path)
    pre = model.preprocessor
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise EvomlpError(f"{path}: not UTF-8 text; expected a CSV file saved as UTF-8") from None
    except OSError as error:
        reason = "file not found" if isinstance(error, FileNotFoundError) else error.strerror or str(error)
        raise EvomlpError(f"{path}: cannot read the input CSV ({reason})") from None
    header = next(csv.reader(io.StringIO(text)), [])
    if not header:
        raise EvomlpError(f"{path}: the file is empty; expected a header line naming the feature columns")
    missing = [column for column in pre.columns if column not in header]
    if missing:
        raise EvomlpError(
            f"{path}: missing column(s) {missing}; the model needs {len(pre.columns)} feature columns "
            f"(evomlp info {model.path} lists them)"
        )
    repeated = sorted({column for column in pre.columns if header.count(column) > 1})
    if repeated:
        raise EvomlpError(f"{path}: column(s) {repeated} appear more than once; expected each once")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={c: str for c in pre.categorical}, low_memory=False)
    except (pd.errors.ParserError, ValueError) as error:
        raise EvomlpError(f"{path}: not a readable CSV file ({' '.join(str(error).split())})") from None
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        raise EvomlpError(f"{path}: the data rows have more fields than the header; expected one name per column")
    features = {}
    for column in pre.numeric:
        values = frame[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            numbers = pd.to_numeric(values, errors="coerce")
            _refuse_first(path, column, values.notna() & numbers.isna(), values, "is not a number; expected numbers")
            values = numbers
        values = values.astype(float)
        _refuse_first(path, column, np.isinf(values), values, "is infinite; expected finite numbers")
        features[column] = _check_filled(path, column, values, pre)
    for column, categories in zip(pre.categorical, pre.categories):
        values = frame[column]
        unseen = values.notna() & ~values.isin(categories)
        _refuse_first(path, column, unseen, values, f"was not seen in training; expected one of {categories}")
        features[column] = _check_filled(path, column, values, pre)
    return pd.DataFrame({column: features[column] for column in pre.columns})


def _refuse_first(path: Path, column: str, bad, values: pd.Series, what: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise EvomlpError(f"{path}: column {column!r}, data row {row + 1}: {values.iloc[row]!r} {what}")


def _check_filled(path: Path, column: str, values: pd.Series, pre: Preprocessor) -> pd.Series:
    empty = values.isna().to_numpy()
    if empty.any() and pre.impute == "none":
        raise EvomlpError(
            f"{path}: column {column!r}, data row {int(np.flatnonzero(empty)[0]) + 1}: no value; the model "
            "was trained without imputation (data.impute: none), so every row needs one"
        )
    return values


def predict(model: Model, features: pd.DataFrame, source: str = "input") -> pd.DataFrame:
    """One row per row of ``features`` (as :func:`read_input` gives them): ``prediction`` and, for
    a classifier, ``proba_<class>`` per class; for regression ``prediction`` (``prediction_<k>``
    with several targets)."""
    spec = model.spec
    X = model.preprocessor.transform(features, source)
    scores = output_probabilities(spec, forward(spec, model.weights, X))
    if spec.task == "regression":
        values = scores.reshape(X.shape[0], spec.n_outputs)
        names = ["prediction"] if values.shape[1] == 1 else [f"prediction_{k + 1}" for k in range(values.shape[1])]
        return pd.DataFrame(values, columns=names)
    probabilities = _class_probabilities(spec.task, scores)
    result = {"prediction": model.classes[probabilities.argmax(axis=1)]}
    result.update({f"proba_{name}": probabilities[:, k] for k, name in enumerate(model.classes)})
    return pd.DataFrame(result)


def command_predict(arguments: argparse.Namespace) -> None:
    model = open_model(arguments.model)
    predictions = predict(model, read_input(arguments.input, model), str(arguments.input))
    text = predictions.to_csv(index=False, lineterminator="\n")
    if arguments.output is None:
        sys.stdout.write(text)
        return
    try:
        with atomic_path(arguments.output) as temporary:
            temporary.write_text(text)
    except OSError as error:
        raise EvomlpError(f"{arguments.output}: cannot write the predictions ({error.strerror or error})") from None
    print(f"predict: {len(predictions)} rows -> {arguments.output}", file=sys.stderr)


# -- info -------------------------------------------------------------------------------------
def describe(model: Model) -> dict:
    """What ``evomlp info --json`` prints."""
    spec, pre = model.spec, model.preprocessor
    return {
        "model": str(model.path),
        "format_version": int(model.arrays["format_version"]),
        "task": spec.task,
        "classes": [str(c) for c in model.classes],
        "target": str(model.arrays["target"]) if "target" in model.arrays else None,
        "architecture": {
            "layer_sizes": list(spec.layer_sizes),
            "hidden_activations": list(spec.activations),
            "output_activation": spec.output_activation,
            "n_weights": spec.n_weights,
        },
        "features": {
            "columns": list(pre.columns),
            "numeric": list(pre.numeric),
            "text": {column: list(values) for column, values in zip(pre.categorical, pre.categories)},
            "n_inputs": spec.n_inputs,
            "impute": pre.impute,
        },
        "training": model_record(model.arrays, "training", model.path),
        "metrics": model_record(model.arrays, "metrics", model.path),
        "test_metrics": f"not in the model file: {TEST_METRICS} (written by the evaluate stage)",
    }


def _settings(values: dict) -> str:
    return ", ".join(f"{key} {json.dumps(value)}" for key, value in values.items()) or "(none)"


def info_text(info: dict) -> str:
    """``evomlp info`` as lines of text."""
    architecture, features = info["architecture"], info["features"]
    classes = f", classes {', '.join(info['classes'])}" if info["classes"] else ""
    target = info["target"] if info["target"] is not None else "(not stored)"
    lines = [
        f"model:        {info['model']} (format {info['format_version']})",
        f"task:         {info['task']}{classes}; target column {target}",
        f"network:      {'-'.join(map(str, architecture['layer_sizes']))}, hidden activations "
        f"{', '.join(architecture['hidden_activations']) or '(none)'}, output {architecture['output_activation']}; "
        f"{architecture['n_weights']:,} weights",
        f"features:     {len(features['columns'])} columns ({len(features['numeric'])} numeric, "
        f"{len(features['text'])} text, one-hot encoded) -> {features['n_inputs']} standardised inputs; "
        "empty cells: "
        + ("median / most frequent value" if features["impute"] == "median" else "an error (not imputed)"),
        f"  columns:    {', '.join(features['columns'])}",
        *(f"  {column}: {', '.join(values)}" for column, values in features["text"].items()),
    ]
    training = info["training"]
    if training is None:
        lines.append("training:     (not stored in this model file)")
    else:
        train = dict(training.get("train", {}))
        optimizer = train.pop("optimizer", "?")
        lines += [
            f"optimizer:    {optimizer}: {_settings(training.get('optimizer', {}))}",
            f"training:     {_settings(train)}",
        ]
    metrics = info["metrics"]
    lines.append(f"metrics:      {_settings(metrics) if metrics is not None else '(not stored in this model file)'}"
                 " (at training time)")
    lines.append(f"test metrics: {info['test_metrics']}")
    return "\n".join(lines) + "\n"


def command_info(arguments: argparse.Namespace) -> None:
    info = describe(open_model(arguments.model))
    sys.stdout.write(json.dumps(info, indent=2) + "\n" if arguments.json else info_text(info))


# -- the command line -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evomlp",
        description="Use a model trained by the evomlp pipeline (models/model.npz).",
        epilog="Errors in the model or input file: one line 'error: <file>: ...' on stderr, exit code 2.",
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    predict_parser = commands.add_parser(
        "predict",
        help="predict labels and class probabilities (or values) for the rows of a CSV file",
        description="Apply the model's stored preprocessing to the raw feature columns of INPUT and write "
        "one row per input row: 'prediction' (the class label, or the value for regression) and, for a "
        "classifier, 'proba_<class>' for every class.",
        epilog="Columns are matched by name (any order); columns the model does not use, the target among "
        "them, are ignored. A missing column, a text value not seen in training, a cell that is not a "
        "number in a numeric column, or an empty cell when the model does not impute, is an error.",
    )
    predict_parser.add_argument("model", metavar="MODEL", help="model file, e.g. models/model.npz")
    predict_parser.add_argument("input", metavar="INPUT", help="CSV file with a header line naming the feature columns")
    predict_parser.add_argument("-o", "--output", metavar="OUTPUT", help="CSV file to write (default: stdout)")
    predict_parser.set_defaults(run=command_predict)
    info_parser = commands.add_parser(
        "info",
        help="show a model's architecture, task, classes, feature columns, training settings and metrics",
        description="Show what a model file holds: architecture, task, classes, target, feature columns, "
        f"training settings and the metrics at training time (test metrics are in {TEST_METRICS}).",
    )
    info_parser.add_argument("model", metavar="MODEL", help="model file, e.g. models/model.npz")
    info_parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    info_parser.set_defaults(run=command_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``evomlp`` console script; returns the exit code."""
    arguments = build_parser().parse_args(argv)
    try:
        arguments.run(arguments)
    except EvomlpError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
