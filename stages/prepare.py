"""Stage prepare: load the dataset, check it, split it, fit preprocessing on the training rows.

Reads params ``data.*``. Rows dropped for want of a label (``data.drop_missing_target``) and
columns that look like identifiers are reported on stderr, one line each, after the work has
succeeded. Writes ``data/prepared/{train,validation,test}.npz`` (``X`` standardised,
``y`` class indices or targets, ``rows`` indices into the dataset) and
``data/prepared/preprocessing.npz`` (task, class labels, feature names, the fitted preprocessor).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from stages.common import PARAMS, PARTS, PREPARED, run_stage

from evomlp.artifacts import Outputs, save_npz
from evomlp.data import (
    BUNDLED,
    DataOptions,
    Preprocessor,
    encode_labels,
    infer_task,
    load_dataset,
    separator_name,
    split_rows,
)
from evomlp.params import load_params


@dataclass
class PreparedData:
    parts: dict[str, dict[str, np.ndarray]]  # train / validation / test -> X, y, rows
    task: str
    classes: np.ndarray
    preprocessor: Preprocessor
    source: str
    notes: list[str] = field(default_factory=list)  # shown on stderr once the stage has succeeded
    delimiter: str | None = None  # a CSV file's field separator


def prepare_data(data: dict) -> PreparedData:
    """Load, check, split and preprocess a dataset from the validated ``data`` params section."""
    dataset = load_dataset(data["dataset"], data["target"], DataOptions.from_params(data))
    task = infer_task(dataset.target, data["task"])
    y, classes = encode_labels(dataset.target, task)
    split = split_rows(
        y,
        task,
        data["test_size"],
        data["validation_size"],
        data["seed"],
        data["stratify"],
        dataset.source,
        column=None if data["dataset"] in BUNDLED else dataset.target_name,
        class_names=classes if len(classes) else None,
    )
    features = dataset.features
    preprocessor = Preprocessor(data["impute"]).fit(features.iloc[split.train], dataset.source)
    parts = {}
    for name in PARTS:
        rows = getattr(split, name)
        parts[name] = {
            "X": preprocessor.transform(features.iloc[rows], dataset.source),
            "y": y[rows],
            "rows": rows,
        }
    return PreparedData(parts, task, classes, preprocessor, dataset.source, dataset.notes, dataset.delimiter)


def main() -> None:
    data = load_params(PARAMS)["data"]
    outputs = Outputs(PREPARED)
    prepared = prepare_data(data)
    parts, task, classes, preprocessor = prepared.parts, prepared.task, prepared.classes, prepared.preprocessor
    # Everything is computed before the first file is written, and the files are renamed in together.
    with outputs.written():
        for name, arrays in parts.items():
            save_npz(PREPARED / f"{name}.npz", arrays)
        save_npz(
            PREPARED / "preprocessing.npz",
            {
                "task": np.array(task),
                "classes": classes,
                "feature_names": np.array(preprocessor.feature_names, dtype=str),
                **preprocessor.to_arrays(),
            },
        )
    for note in prepared.notes:
        print(note, file=sys.stderr)
    sizes = ", ".join(f"{name} {len(parts[name]['rows'])}" for name in PARTS)
    n_rows = sum(len(part["rows"]) for part in parts.values())
    print(
        f"prepare: {prepared.source}: {n_rows} rows, {len(preprocessor.feature_names)} features, "
        f"task {task}{f' ({len(classes)} classes)' if len(classes) else ''}; rows: {sizes}"
        + (f"; fields separated by {separator_name(prepared.delimiter)}" if prepared.delimiter else "")
    )


if __name__ == "__main__":
    run_stage(main)
