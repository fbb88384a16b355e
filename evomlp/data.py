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

import io
import math
from collections import Counter
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
    """Read and check a CSV file; every problem is one line naming the file (and the column)."""
    try:
        if not path.is_file():
            raise EvomlpError(
                f"{path}: data file not found (data.dataset is neither a bundled set {list(BUNDLED)} nor a file)"
            )
        raw = path.read_bytes()
    except OSError as error:
        raise EvomlpError(f"{path}: cannot read the data file ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise EvomlpError(
            f"{path}: not UTF-8 text (byte {raw[error.start]:#04x} on line {line}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise EvomlpError(f"{path}: the file is empty; expected a header line and data rows")
    try:
        header = pd.read_csv(io.StringIO(text), header=None, nrows=1, dtype=str, keep_default_na=False)
        frame = pd.read_csv(io.StringIO(text), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise EvomlpError(f"{path}: not a readable CSV file ({reason})") from None
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        # pandas takes the first field(s) as an index when the rows have more fields than the header
        raise EvomlpError(
            f"{path}: the data rows have more fields than the header ({len(frame.columns)} names); "
            "expected one name per column"
        )
    names = [str(name) for name in header.iloc[0].tolist()] if len(header) else []
    # pandas would rename a repeated name to "name.1": a repeat is an error, not a new column
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1 and name.strip())
    if duplicates:
        raise EvomlpError(f"{path}: duplicate column name(s) {duplicates}; expected unique names")
    if target is None:
        raise EvomlpError(f"{path}: data.target must name the label column; columns are {_columns(frame)}")
    if target not in frame.columns:
        raise EvomlpError(f"{path}: no column {target!r} (data.target); columns are {_columns(frame)}")
    if len(frame) == 0:
        raise EvomlpError(f"{path}: no data rows, only a header; expected at least one row per class")
    labels = frame[target].copy()
    missing = int(labels.isna().sum())
    if missing:
        raise EvomlpError(
            f"{path}: column {target!r} (data.target) has {missing} row(s) without a label "
            f"(first on data row {int(np.flatnonzero(labels.isna().to_numpy())[0]) + 1}); expected a label in every row"
        )
    if labels.nunique() < 2:
        raise EvomlpError(
            f"{path}: column {target!r} (data.target) has a single value {labels.iloc[0]!r} in all "
            f"{len(labels)} rows; nothing to learn"
        )
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise EvomlpError(f"{path}: no feature columns besides {target!r}")
    for column in features.columns:
        values = features[column]
        if values.isna().all():
            raise EvomlpError(f"{path}: column {str(column)!r} is empty in all {len(values)} rows; remove it")
        if _is_numeric(values):
            infinite = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if infinite:
                raise EvomlpError(
                    f"{path}: column {str(column)!r} has {infinite} infinite value(s); expected finite numbers"
                )
    source = str(path)
    labels.attrs["source"] = source
    return Dataset(features, labels, source, target)


def _columns(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns]
    return f"{names[:20]}{' ...' if len(names) > 20 else ''}"


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def infer_task(labels: pd.Series, task: str = "auto", source: str | None = None) -> str:
    """``binary``, ``multiclass`` or ``regression``: as asked, or guessed from the labels.

    Errors name the file (``source``, by default the one the labels were loaded from) and the column.
    """
    source = source or labels.attrs.get("source") or "data"
    column = f"column {str(labels.name)!r}" if labels.name is not None else "the label column"
    n_unique = labels.nunique()
    if task == "auto":
        numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
        integral = numeric and np.all(np.mod(labels.to_numpy(dtype=float), 1) == 0)
        if numeric and (not integral or n_unique > MAX_CLASSES_FOR_AUTO):
            task = "regression"
        else:
            task = "binary" if n_unique <= 2 else "multiclass"
    if task in ("binary", "multiclass") and n_unique < 2:
        value = f" ({labels.iloc[0]!r})" if len(labels) else ""
        raise EvomlpError(f"{source}: {column} (data.target) has a single class{value}; nothing to learn")
    if task == "binary" and n_unique > 2:
        raise EvomlpError(f"{source}: data.task is 'binary' but {column} has {n_unique} classes")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
            raise EvomlpError(f"{source}: data.task is 'regression' but {column} is not numeric")
        if not np.all(np.isfinite(labels.to_numpy(dtype=float))):
            raise EvomlpError(f"{source}: {column} (data.target) has missing or infinite targets")
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
    column: str | None = None,
    class_names: np.ndarray | None = None,
) -> Split:
    """Test rows as ``train_test_split(X, y, test_size=test_size, random_state=seed)`` picks them
    (stratified if ``stratify``); validation rows carved from the rest, stratified by class.

    Too few rows, or a class with too few rows for a stratified split, is an :class:`EvomlpError`
    naming ``source``, the label ``column`` and, given ``class_names`` (the label of each class
    index), the class."""
    labels = np.asarray(labels)
    rows = np.arange(labels.shape[0])
    classification = task != "regression"
    name = (f"column {column!r} (data.target)" if column else "the label column", class_names)
    rest, test = _split(rows, labels, test_size, seed, stratify and classification, source, name,
                        ("the test split (data.test_size)", "the rest", "test"))
    train, validation = _split(rest, labels, validation_size, seed, classification, source, name,
                               ("the validation split (data.validation_size)", "training", "validation"))
    return Split(np.sort(train), np.sort(validation), np.sort(test))


def _split(
    rows: np.ndarray,
    labels: np.ndarray,
    size: float,
    seed: int,
    stratified: bool,
    source: str,
    name: tuple[str, np.ndarray | None],
    parts: tuple[str, str, str],
) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)`` rows as train_test_split picks them, after checking that it can."""
    from sklearn.model_selection import train_test_split

    column, class_values = name
    what, kept_name, held_name = parts
    n = rows.shape[0]
    n_held = math.ceil(size * n)  # as train_test_split rounds a fractional test size
    n_kept = n - n_held
    if n_held < 1 or n_kept < 1:
        raise EvomlpError(
            f"{source}: too few rows for {what}: {n} row(s) leave {n_kept} for {kept_name} and "
            f"{n_held} for {held_name}; expected at least one on each side"
        )
    strata = labels[rows] if stratified else None
    if strata is not None:
        classes, counts = np.unique(strata, return_counts=True)
        smallest = int(np.argmin(counts))
        if counts[smallest] < 2:
            value = classes[smallest]
            if class_values is not None and np.issubdtype(np.asarray(value).dtype, np.integer):
                value = class_values[int(value)]
            raise EvomlpError(
                f"{source}: class {_plain(value)!r} of {column} has only {int(counts[smallest])} row(s) "
                f"for {what}; a stratified split needs at least 2 rows per class"
            )
        if min(n_held, n_kept) < classes.shape[0]:
            raise EvomlpError(
                f"{source}: too few rows for {what}: {n} rows leave {n_kept} for {kept_name} and "
                f"{n_held} for {held_name}, fewer than the {classes.shape[0]} classes of {column}; "
                "a stratified split needs one row per class on each side"
            )
    try:
        kept, held = train_test_split(rows, test_size=size, random_state=seed, stratify=strata)
    except ValueError as error:
        message = " ".join(str(error).split())
        raise EvomlpError(f"{source}: cannot split {n} rows of {column} for {what} ({message})") from None
    return kept, held


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


class Preprocessor:
    """Numeric + one-hot features, imputed and standardised with statistics of the training rows."""

    def __init__(self, impute: str = "none"):
        self.impute = impute

    def fit(self, features: pd.DataFrame, source: str = "data") -> "Preprocessor":
        """Learn columns, categories, fill values, mean and scale from ``features`` (the training rows)."""
        if self.impute not in ("none", "median"):
            raise EvomlpError(f"data.impute: expected 'none' or 'median', got {self.impute!r}")
        self.columns = [str(c) for c in features.columns]
        if len(set(self.columns)) != len(self.columns):
            raise EvomlpError(f"{source}: duplicate column names {self.columns}")
        self.numeric = [str(c) for c in features.columns if _is_numeric(features[c])]
        self.categorical = [str(c) for c in features.columns if str(c) not in self.numeric]
        frame = features.set_axis(self.columns, axis=1)
        self.fill = np.full(len(self.numeric), np.nan)
        for index, column in enumerate(self.numeric):
            values = frame[column].astype(float)
            self._check_missing(column, int(values.isna().sum()), len(values), source, " training")
            if self.impute == "median":
                median = values.median()
                if not np.isfinite(median):
                    raise EvomlpError(f"{source}: column {column!r} has no value in the training rows")
                self.fill[index] = median
        self.categories = []
        self.category_fill = []
        for column in self.categorical:
            values = frame[column]
            self._check_missing(column, int(values.isna().sum()), len(values), source, " training")
            text = values.dropna().astype(str)
            if text.empty:
                raise EvomlpError(f"{source}: column {column!r} has no value in the training rows")
            # most frequent value; ties go to the first in sorted order, so the fit is deterministic
            self.category_fill.append(str(text.value_counts().sort_index(kind="stable").idxmax()))
            self.categories.append(sorted(text.unique()))
        encoded = self._encode(frame, source)
        self.mean = encoded.mean(axis=0)
        scale = encoded.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        return self

    def _check_missing(self, column: str, missing: int, total: int, source: str, where: str = "") -> None:
        if missing and self.impute == "none":
            raise EvomlpError(
                f"{source}: column {column!r} has {missing} row(s) with a missing value (of {total}{where} rows); "
                "set data.impute: median to fill them (most frequent value for text columns)"
            )

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
            for index in np.flatnonzero(missing.any(axis=0)):
                if self.impute == "none" or np.isnan(self.fill[index]):
                    self._check_missing(self.numeric[index], int(missing[:, index].sum()), len(frame), source)
                    raise EvomlpError(f"{source}: column {self.numeric[index]!r} has no fill value")
            if missing.any():
                numeric = np.where(missing, np.broadcast_to(self.fill, numeric.shape), numeric)
            blocks.append(numeric)
        for column, categories, fill in zip(self.categorical, self.categories, self.category_fill):
            values = frame[column]
            self._check_missing(column, int(values.isna().sum()), len(values), source)
            text = values.astype(object).where(values.notna(), fill).astype(str).to_numpy()
            blocks.append((text[:, None] == np.asarray(categories, dtype=str)[None, :]).astype(float))
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
