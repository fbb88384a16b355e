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

import csv
import difflib
import io
import math
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evomlp.errors import EvomlpError

BUNDLED = ("breast_cancer", "iris", "wine", "digits")
MAX_CLASSES_FOR_AUTO = 20


@dataclass
class Dataset:
    """Raw features (a DataFrame, columns named), labels and where they came from.

    ``notes`` are the lines a stage shows on stderr once its work has succeeded (rows dropped,
    columns that look like identifiers); ``delimiter`` is the field separator of a CSV file."""

    features: pd.DataFrame
    target: pd.Series
    source: str
    target_name: str
    notes: list[str] = field(default_factory=list)
    delimiter: str | None = None


MAX_CATEGORIES = 100
# data.delimiter: its values and the separator each stands for (a literal tab or space works too)
DELIMITERS = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "space": " ", " ": " "}
_DETECTED = (",", ";", "\t", " ")  # in this order of preference when several fit equally well
_SAMPLE_RECORDS = 50  # records (the header first) the delimiter is detected on
UNIQUE_MIN_ROWS = 20  # fewer rows than this: no identifier warning
UNIQUE_SHARE = 0.95  # a text column with at least this share of distinct values is unique per row


@dataclass(frozen=True)
class DataOptions:
    """How a CSV file is read and cleaned (the ``data`` params beyond dataset, target and split).

    - ``delimiter``: ``auto`` (detected among ``,`` ``;`` tab and space) or a key of :data:`DELIMITERS`.
    - ``comment``: lines whose first non-blank character is this one are skipped.
    - ``drop_missing_target``: rows without a label are dropped (a note says how many), not an error.
    - ``coerce_numeric``: in a numeric column (more than half of its non-empty cells are numbers),
      the text cells become missing values instead of an error.
    - ``drop_columns``: removed before anything else (for a bundled dataset too).
    - ``max_categories``: a text feature column with more distinct values is an error.
    """

    delimiter: str = "auto"
    comment: str | None = None
    drop_missing_target: bool = False
    coerce_numeric: bool = False
    drop_columns: tuple[str, ...] = ()
    max_categories: int = MAX_CATEGORIES

    @classmethod
    def from_params(cls, data: dict) -> "DataOptions":
        """The options of a validated ``data`` params section."""
        return cls(
            delimiter=data["delimiter"],
            comment=data["comment"],
            drop_missing_target=data["drop_missing_target"],
            coerce_numeric=data["coerce_numeric"],
            drop_columns=tuple(data["drop_columns"]),
            max_categories=data["max_categories"],
        )


def load_dataset(name: str, target: str | None = None, options: DataOptions | None = None) -> Dataset:
    """A bundled scikit-learn dataset by name, or a CSV file by path with ``target`` as label column."""
    options = options or DataOptions()
    if name in BUNDLED:
        from sklearn import datasets

        loader = getattr(datasets, f"load_{name}")
        bunch = loader(as_frame=True)
        features = _drop_columns(bunch.data, options.drop_columns, name, None)
        return Dataset(features, bunch.target, name, "target")
    return _load_csv(Path(name), target, options)


def _check_file(path: Path) -> None:
    """A regular file, or an error saying what ``path`` is instead (a FIFO is never opened)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise EvomlpError(f"{path}: cannot read the data file ({error.strerror or error})") from None
    if mode is None:
        raise EvomlpError(
            f"{path}: data file not found (data.dataset is neither a bundled set {list(BUNDLED)} nor a file)"
        )
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    for test, kind in kinds:
        if test(mode):
            raise EvomlpError(f"{path}: is {kind}, not a file; data.dataset must name a CSV file or a bundled set")


def _load_csv(path: Path, target: str | None, options: DataOptions) -> Dataset:
    """Read and check a CSV file; every problem is one line naming the file (and the column)."""
    _check_file(path)
    try:
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
    if options.comment is not None:
        text = _blank_comment_lines(text, options.comment)
    if not text.strip():
        raise EvomlpError(f"{path}: the file is empty; expected a header line and data rows")
    separator = _separator(path, text, options)
    pandas_separator = r"\s+" if separator == " " else separator
    try:
        header = pd.read_csv(io.StringIO(text), sep=pandas_separator, header=None, nrows=1, dtype=str,
                             keep_default_na=False)
        frame = pd.read_csv(io.StringIO(text), sep=pandas_separator, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        how = "detected; set data.delimiter if wrong" if options.delimiter == "auto" else "data.delimiter"
        raise EvomlpError(
            f"{path}: not a readable CSV file ({reason}); fields split at {separator_name(separator)} ({how})"
        ) from None
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
    frame = _drop_columns(frame, options.drop_columns, str(path), target)
    if target is None:
        raise EvomlpError(f"{path}: data.target must name the label column; columns are {_columns(frame)}")
    if target not in frame.columns:
        raise EvomlpError(f"{path}: no column {target!r} (data.target); columns are {_columns(frame)}")
    if len(frame) == 0:
        raise EvomlpError(f"{path}: no data rows, only a header; expected at least one row per class")
    lines = _RowLines(text, separator, len(frame))
    notes: list[str] = []
    frame[target] = _numeric_or_text(frame[target], path, lines, options.coerce_numeric, " (data.target)")
    frame = _labelled_rows(frame, target, path, lines, options.drop_missing_target, notes)
    labels = frame[target].copy()
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
        values = features[column] = _numeric_or_text(values, path, lines, options.coerce_numeric)
        if _is_numeric(values):
            infinite = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if infinite:
                raise EvomlpError(
                    f"{path}: column {str(column)!r} has {infinite} infinite value(s); expected finite numbers"
                )
        _check_categories(values, path, options.max_categories, notes)
    source = str(path)
    features = features.reset_index(drop=True)
    labels = labels.reset_index(drop=True)
    labels.attrs["source"] = source
    return Dataset(features, labels, source, target, notes, separator)


def _blank_comment_lines(text: str, comment: str) -> str:
    """``text`` with every line whose first non-blank character is ``comment`` emptied (blank lines
    are skipped when read, and the line numbers stay those of the file)."""
    return "\n".join("" if line.lstrip(" \t").startswith(comment) else line for line in text.split("\n"))


def _records(text: str, separator: str, limit: int | None = None) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` of each non-blank record of ``text`` split at ``separator`` (the first
    ``limit``); ``line`` is the 1-based line it starts on. Space: runs of spaces separate fields."""
    source = io.StringIO(text)
    if separator == " ":
        source = (line.rstrip("\r\n").strip(" ") + "\n" for line in source)
    reader = csv.reader(source, delimiter=separator, skipinitialspace=separator == " ")
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for record in reader:
            if len(record) > 1 or (record and record[0].strip()):  # pandas skips blank lines only
                records.append((line, record))
                if limit is not None and len(records) == limit:
                    break
            line = reader.line_num + 1
    except csv.Error:
        pass  # what pandas makes of it decides; the records so far are all a sample needs
    return records


def _fit(text: str, separator: str) -> tuple[int, float]:
    """``(fields of the header, share of the next records with as many)`` when split at ``separator``."""
    records = _records(text, separator, _SAMPLE_RECORDS)
    if not records:
        return 0, 0.0
    width = len(records[0][1])
    rows = records[1:]
    return width, (sum(len(fields) == width for _, fields in rows) / len(rows) if rows else 1.0)


def _separator(path: Path, text: str, options: DataOptions) -> str:
    """The field separator: data.delimiter's, or (auto) the one of ``,`` ``;`` tab and space that
    splits the most of the first records into as many fields as the header, at least two (the
    first of them on a tie). A comment line read as the header, or a header that stays one field,
    is an error with a hint."""
    number, first_line = next(((n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()),
                              (1, ""))
    if options.delimiter == "auto":
        fits = [(_fit(text, s), s) for s in _DETECTED]
        fits = [(share, -index, s) for index, ((width, share), s) in enumerate(fits) if width >= 2]
        share, _, separator = max(fits) if fits else (0.0, 0, None)
    else:
        separator = DELIMITERS[options.delimiter]
        width, share = _fit(text, separator)
    if first_line.lstrip(" \t").startswith("#") and (separator is None or share < 0.5):
        raise EvomlpError(
            f"{path}: line {number} {_show_text(first_line)} looks like a comment, not a header; set "
            "data.comment: '#' to skip lines starting with '#'"
        )
    if separator is None:
        raise EvomlpError(
            f"{path}: the header line {_show_text(first_line)} is a single field: no ',', ';', tab or space "
            "separates names; expected the label column and feature columns (data.delimiter)"
        )
    if options.delimiter != "auto" and width < 2:
        others = [separator_name(s) for s in _DETECTED if s != separator and s in first_line]
        hint = f"; it holds {' and '.join(others)}: set data.delimiter to that, or to auto" if others else ""
        raise EvomlpError(
            f"{path}: the header line {_show_text(first_line)} is a single field when split at "
            f"{separator_name(separator)} (data.delimiter){hint}"
        )
    return separator


def separator_name(separator: str) -> str:
    """A field separator as messages (and data.delimiter) spell it: ',' ';' tab space."""
    return {"\t": "tab", " ": "space"}.get(separator, repr(separator))


def _show_text(text: str, limit: int = 60) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters, for one-line messages."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class _RowLines:
    """Where the data rows of a CSV text are: ``where(row)`` (``row`` counted from 0 in the file's
    order) is ``line N``, its first line in the file, or ``data row N`` if pandas's rows cannot be
    matched to lines; found only when a message asks."""

    def __init__(self, text: str, separator: str, n_rows: int):
        self._text, self._separator, self._n_rows = text, separator, n_rows
        self._lines: list[int] | None | bool = False

    def where(self, row: int) -> str:
        if self._lines is False:
            lines = [line for line, _ in _records(self._text, self._separator)[1:]]
            self._lines = lines if len(lines) == self._n_rows else None
        return f"line {self._lines[row]}" if self._lines else f"data row {row + 1}"


def _drop_columns(frame: pd.DataFrame, names: tuple[str, ...], source: str, target: str | None) -> pd.DataFrame:
    """``frame`` without the columns of data.drop_columns; an unknown name, or the label column, is an error."""
    if not names:
        return frame
    columns = [str(c) for c in frame.columns]
    for name in names:
        if target is not None and name == target:
            raise EvomlpError(
                f"{source}: data.drop_columns names {name!r}, the label column (data.target); "
                "expected feature columns only"
            )
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            raise EvomlpError(
                f"{source}: data.drop_columns: no column {name!r}{suggestion}; columns are {_columns(frame)}"
            )
    return frame.drop(columns=[c for c in frame.columns if str(c) in set(names)])


def _numeric_or_text(values: pd.Series, path: Path, lines: _RowLines, coerce: bool, role: str = "") -> pd.Series:
    """A text column of which more than half the non-empty cells are numbers is numeric: its text
    cells are an error naming the first one, or (``coerce``) become missing values."""
    if _is_numeric(values):
        return values
    present = values.notna().to_numpy()
    numbers = pd.to_numeric(values, errors="coerce")
    text = present & numbers.isna().to_numpy()
    n_text = int(text.sum())
    if n_text == 0 or int(present.sum()) - n_text <= n_text:
        return values
    if coerce:
        return numbers.astype(float)
    row = int(np.flatnonzero(text)[0])
    raise EvomlpError(
        f"{path}: column {str(values.name)!r}{role} holds numbers but {lines.where(int(values.index[row]))} has the text "
        f"{_show_text(str(values.iloc[row]))} ({n_text} text cell(s) among {int(present.sum()) - n_text} numbers); "
        "fix the file, or set data.coerce_numeric: true to treat such cells as missing values"
    )


def _labelled_rows(frame: pd.DataFrame, target: str, path: Path, lines: _RowLines, drop: bool,
                   notes: list[str]) -> pd.DataFrame:
    """The rows that have a label; rows without one are dropped (``drop``, with a note) or an error."""
    missing = frame[target].isna().to_numpy()
    count = int(missing.sum())
    if not count:
        return frame
    first = lines.where(int(frame.index[np.flatnonzero(missing)[0]]))
    if not drop:
        raise EvomlpError(
            f"{path}: column {target!r} (data.target) has {count} row(s) without a label (first on {first}); "
            "expected a label in every row, or set data.drop_missing_target: true to drop such rows"
        )
    if count == len(frame):
        raise EvomlpError(f"{path}: column {target!r} (data.target) has no label in any of its {count} rows")
    notes.append(
        f"prepare: {path}: dropped {count} of {len(frame)} rows without a label in column {target!r} "
        f"(first on {first}; data.drop_missing_target)"
    )
    return frame.loc[~missing]


def _check_categories(values: pd.Series, path: Path, max_categories: int, notes: list[str]) -> None:
    """A text column with more distinct values than data.max_categories is an error; a column
    with a different value in (nearly) every row gets a warning note: IDs, dates, free text."""
    column = str(values.name)
    present = int(values.notna().sum())
    if _is_numeric(values):
        numbers = values.dropna().to_numpy(dtype=float)
        steps = np.diff(numbers)
        if present >= UNIQUE_MIN_ROWS and present == len(values) and np.all(steps == 1):
            notes.append(
                f"warning: {path}: column {column!r} counts the rows ({numbers[0]:g} to {numbers[-1]:g}, one "
                "step per row): a row number or ID, used as a feature; drop it with data.drop_columns"
            )
        return
    distinct = int(values.nunique())
    unique = present >= UNIQUE_MIN_ROWS and distinct >= UNIQUE_SHARE * present
    looks = f" (a different one in {'every' if distinct == present else 'nearly every'} row: an ID, date or free text?)"
    if distinct > max_categories:
        raise EvomlpError(
            f"{path}: column {column!r} has {distinct} distinct text values{looks if unique else ''}, more than "
            f"data.max_categories ({max_categories}), each a one-hot input; drop it (data.drop_columns) "
            "or raise data.max_categories"
        )
    if unique:
        notes.append(
            f"warning: {path}: column {column!r} has {distinct} distinct text values in {present} rows{looks}; "
            "each becomes a one-hot input: drop it with data.drop_columns if it is no feature"
        )


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
    # whole-number classes may be counts or measurements, which a regression learns
    hint = "; if the labels are counts or measurements, set data.task: regression" if _integer_classes(class_values) else ""
    if strata is not None:
        classes, counts = np.unique(strata, return_counts=True)
        smallest = int(np.argmin(counts))
        if counts[smallest] < 2:
            value = classes[smallest]
            if class_values is not None and np.issubdtype(np.asarray(value).dtype, np.integer):
                value = class_values[int(value)]
            raise EvomlpError(
                f"{source}: class {_plain(value)!r} of {column} has only {int(counts[smallest])} row(s) "
                f"for {what}; a stratified split needs at least 2 rows per class{hint}"
            )
        if min(n_held, n_kept) < classes.shape[0]:
            raise EvomlpError(
                f"{source}: too few rows for {what}: {n} rows leave {n_kept} for {kept_name} and "
                f"{n_held} for {held_name}, fewer than the {classes.shape[0]} classes of {column}; "
                f"a stratified split needs one row per class on each side{hint}"
            )
    try:
        kept, held = train_test_split(rows, test_size=size, random_state=seed, stratify=strata)
    except ValueError as error:
        message = " ".join(str(error).split())
        raise EvomlpError(f"{source}: cannot split {n} rows of {column} for {what} ({message}){hint}") from None
    return kept, held


def _integer_classes(class_values: np.ndarray | None) -> bool:
    """Whether every class label (as text) is a whole number: ``3``, ``-1``, ``2.0``."""
    if class_values is None or len(class_values) == 0:
        return False
    try:
        numbers = np.asarray([float(value) for value in class_values])
    except ValueError:
        return False
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


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
