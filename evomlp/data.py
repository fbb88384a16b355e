"""Datasets, validation, the train/validation/test split, and preprocessing.

A dataset is scikit-learn's bundled ``breast_cancer``, ``iris``, ``wine`` or ``digits``, or a CSV
file with a label column. The split reproduces ``train_test_split(X, y, test_size, random_state)``
exactly (the article's test rows for breast cancer), then carves a stratified validation part out of
the training rows. :class:`Preprocessor` is fitted on the training rows only: numeric columns are
used as they are (optionally median-imputed), text columns are one-hot encoded with the categories
seen in training (an unseen category encodes as all zeros), and every feature is standardised.
It is stored as plain arrays, so a model file carries its preprocessing without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evomlp.errors import EvomlpError

BUNDLED = ("breast_cancer", "iris", "wine", "digits")
MAX_CLASSES_FOR_AUTO = 20


@dataclass
class Dataset:
    """Raw features (a DataFrame, columns named), labels and where they came from."""

    features: pd.DataFrame
    target: pd.Series
    source: str
    target_name: str


def load_dataset(name: str, target: str | None = None) -> Dataset:
    """A bundled scikit-learn dataset by name, or a CSV file by path with ``target`` as label column."""
    if name in BUNDLED:
        from sklearn import datasets

        loader = getattr(datasets, f"load_{name}")
        bunch = loader(as_frame=True)
        return Dataset(bunch.data, bunch.target, name, "target")
    return _load_csv(Path(name), target)


def _load_csv(path: Path, target: str | None) -> Dataset:
    if not path.is_file():
        raise EvomlpError(f"{path}: data file not found (data.dataset is neither a bundled set {list(BUNDLED)} nor a file)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvomlpError(f"{path}: not a readable CSV file ({reason})") from None
    if target is None:
        raise EvomlpError(f"{path}: data.target must name the label column")
    if target not in frame.columns:
        raise EvomlpError(f"{path}: no column {target!r} (data.target); columns are {list(frame.columns)[:20]}")
    labels = frame[target]
    if labels.isna().any():
        raise EvomlpError(f"{path}: column {target!r} (data.target) has {int(labels.isna().sum())} missing value(s)")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise EvomlpError(f"{path}: no feature columns besides {target!r}")
    return Dataset(features, labels, str(path), target)


def infer_task(labels: pd.Series, task: str = "auto") -> str:
    """``binary``, ``multiclass`` or ``regression``: as asked, or guessed from the labels."""
    n_unique = labels.nunique()
    if task == "auto":
        numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
        integral = numeric and np.all(np.mod(labels.to_numpy(dtype=float), 1) == 0)
        if numeric and (not integral or n_unique > MAX_CLASSES_FOR_AUTO):
            task = "regression"
        else:
            task = "binary" if n_unique <= 2 else "multiclass"
    if task in ("binary", "multiclass") and n_unique < 2:
        raise EvomlpError(f"the label column has a single class ({labels.iloc[0]!r}); nothing to learn")
    if task == "binary" and n_unique > 2:
        raise EvomlpError(f"data.task is 'binary' but the label column has {n_unique} classes")
    if task == "regression" and not pd.api.types.is_numeric_dtype(labels):
        raise EvomlpError("data.task is 'regression' but the label column is not numeric")
    return task


@dataclass
class Split:
    """Row indices of the three parts, into the dataset's rows."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_rows(
    labels: np.ndarray,
    task: str,
    test_size: float,
    validation_size: float,
    seed: int,
    stratify: bool,
    source: str = "data",
) -> Split:
    """Test rows as ``train_test_split(X, y, test_size=test_size, random_state=seed)`` picks them
    (stratified if ``stratify``); validation rows carved from the rest, stratified by class."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(labels.shape[0])
    classification = task != "regression"
    try:
        rest, test = train_test_split(
            rows, test_size=test_size, random_state=seed, stratify=labels if stratify and classification else None
        )
        train, validation = train_test_split(
            rest,
            test_size=validation_size,
            random_state=seed,
            stratify=labels[rest] if classification else None,
        )
    except ValueError as error:
        message = str(error).splitlines()[0]
        raise EvomlpError(f"{source}: cannot split {labels.shape[0]} rows as asked ({message})") from None
    return Split(np.sort(train), np.sort(validation), np.sort(test))


class Preprocessor:
    """Numeric + one-hot features, imputed and standardised with statistics of the training rows."""

    def __init__(self, impute: str = "none"):
        self.impute = impute

    def fit(self, features: pd.DataFrame, source: str = "data") -> "Preprocessor":
        self.columns = [str(c) for c in features.columns]
        self.numeric = [str(c) for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
        self.categorical = [str(c) for c in features.columns if str(c) not in self.numeric]
        frame = features.set_axis(self.columns, axis=1)
        self.fill = np.full(len(self.numeric), np.nan)
        for index, column in enumerate(self.numeric):
            values = frame[column].astype(float)
            missing = int(values.isna().sum())
            if missing and self.impute == "none":
                raise EvomlpError(
                    f"{source}: column {column!r} has {missing} missing value(s) in the training rows; "
                    "set data.impute: median to fill them"
                )
            if missing:
                median = values.median()
                if not np.isfinite(median):
                    raise EvomlpError(f"{source}: column {column!r} has no value in the training rows")
                self.fill[index] = median
        self.categories = []
        self.category_fill = []
        for column in self.categorical:
            values = frame[column]
            missing = int(values.isna().sum())
            if missing and self.impute == "none":
                raise EvomlpError(
                    f"{source}: column {column!r} has {missing} missing value(s) in the training rows; "
                    "set data.impute: median to fill them (most frequent value for text columns)"
                )
            text = values.dropna().astype(str)
            if text.empty:
                raise EvomlpError(f"{source}: column {column!r} has no value in the training rows")
            self.category_fill.append(text.value_counts().sort_index().idxmax())
            self.categories.append(sorted(text.unique()))
        encoded = self._encode(frame, source)
        self.mean = encoded.mean(axis=0)
        scale = encoded.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        return self

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for column, categories in zip(self.categorical, self.categories):
            names.extend(f"{column}={value}" for value in categories)
        return names

    def _encode(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        blocks = []
        if self.numeric:
            numeric = frame[self.numeric].astype(float).to_numpy()
            missing = np.isnan(numeric)
            if missing.any():
                fill = np.broadcast_to(self.fill, numeric.shape)
                if np.isnan(fill[missing]).any():
                    column = self.numeric[int(np.nonzero(np.isnan(fill) & missing.any(axis=0))[0][0])]
                    raise EvomlpError(
                        f"{source}: column {column!r} has {int(missing.sum())} missing value(s); "
                        "set data.impute: median to fill them"
                    )
                numeric = np.where(missing, fill, numeric)
            blocks.append(numeric)
        for column, categories, fill in zip(self.categorical, self.categories, self.category_fill):
            values = frame[column]
            if values.isna().any() and self.impute == "none":
                raise EvomlpError(f"{source}: column {column!r} has {int(values.isna().sum())} missing value(s)")
            text = values.fillna(fill).astype(str).to_numpy()
            blocks.append((text[:, None] == np.asarray(categories)[None, :]).astype(float))
        return np.hstack(blocks) if blocks else np.empty((len(frame), 0))

    def transform(self, features: pd.DataFrame, source: str = "data") -> np.ndarray:
        """Encoded, standardised features ``(N, F)``; columns must match those seen in ``fit``."""
        columns = [str(c) for c in features.columns]
        if columns != self.columns:
            raise EvomlpError(f"{source}: expected columns {self.columns}, got {columns}")
        encoded = self._encode(features.set_axis(columns, axis=1), source)
        return (encoded - self.mean) / self.scale

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "pre_impute": np.array(self.impute),
            "pre_columns": np.array(self.columns, dtype=str),
            "pre_numeric": np.array(self.numeric, dtype=str),
            "pre_categorical": np.array(self.categorical, dtype=str),
            "pre_fill": self.fill,
            "pre_category_values": np.array([v for c in self.categories for v in c], dtype=str),
            "pre_category_counts": np.array([len(c) for c in self.categories], dtype=np.int64),
            "pre_category_fill": np.array(self.category_fill, dtype=str),
            "pre_mean": self.mean,
            "pre_scale": self.scale,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Preprocessor":
        pre = cls(str(arrays["pre_impute"]))
        pre.columns = [str(v) for v in arrays["pre_columns"]]
        pre.numeric = [str(v) for v in arrays["pre_numeric"]]
        pre.categorical = [str(v) for v in arrays["pre_categorical"]]
        pre.fill = np.asarray(arrays["pre_fill"], dtype=float)
        values = [str(v) for v in arrays["pre_category_values"]]
        counts = np.asarray(arrays["pre_category_counts"], dtype=np.int64)
        if counts.sum() != len(values) or len(counts) != len(pre.categorical):
            raise EvomlpError("preprocessing arrays are inconsistent (category counts)")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        pre.categories = [values[bounds[i] : bounds[i + 1]] for i in range(len(counts))]
        pre.category_fill = [str(v) for v in arrays["pre_category_fill"]]
        pre.mean = np.asarray(arrays["pre_mean"], dtype=float)
        pre.scale = np.asarray(arrays["pre_scale"], dtype=float)
        if pre.mean.shape != pre.scale.shape or pre.mean.shape[0] != len(pre.feature_names):
            raise EvomlpError("preprocessing arrays are inconsistent (feature count)")
        return pre



def encode_labels(labels: pd.Series, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(y, classes)``: class indices into sorted ``classes`` (as strings), or float targets."""
    if task == "regression":
        return labels.to_numpy(dtype=float), np.array([], dtype=str)
    values = labels.to_numpy()
    classes = np.unique(values)
    y = np.searchsorted(classes, values).astype(np.int64)
    return y, np.array([str(c) for c in classes], dtype=str)
