"""The params schema: every key of ``params.yaml`` with its type, range and default.

:func:`validate_params` turns a parsed YAML mapping into a complete, typed mapping (defaults filled
in) or raises :class:`ParamsError` whose one-line message names the key, the value found and what
was expected; an unknown key gets the nearest known name suggested. The library itself never reads
``params.yaml``: the stages call :func:`load_params` and pass plain values on.

Two files hold the settings. ``params.yaml`` (DVC's params file) holds every section that can change
a result. The ``runtime`` section (speed and display only) lives in ``runtime.yaml`` beside it, a
flat mapping that DVC never reads, so it can't crowd ``dvc exp show`` or change ``dvc.lock``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evomlp.errors import EvomlpError


class ParamsError(EvomlpError):
    """A key of params.yaml is missing, unknown, or has a value of the wrong type or range."""


@dataclass(frozen=True)
class Field:
    default: Any
    check: Callable[[Any], Any]  # returns the normalised value or raises ValueError("expected ...")
    help: str = ""

    def describe(self) -> str:
        """The accepted values in words, for the params reference (``evomlp.params_reference``)."""
        return describe(self.check)


def described(text: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Attach ``text`` ("integer >= 2", "one of: a, b") to a checker as what it accepts; every
    checker of the schema carries one, so the params reference can say it."""

    def attach(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
        check.description = text  # type: ignore[attr-defined]
        return check

    return attach


def describe(check: Callable[[Any], Any]) -> str:
    """What ``check`` accepts, in words; a checker without a description is an error."""
    text = getattr(check, "description", "")
    if not text:
        raise TypeError(f"checker {getattr(check, '__qualname__', check)!r} has no description; wrap it in @described(...)")
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is not a number here."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


INT64_MAX = 2**63 - 1
_SHOW_LIMIT = 80


def show(value: Any) -> str:
    """``repr(value)`` on one line, cut to a readable length; never raises (huge ints, deep nesting)
    and never formats more than it shows: containers are walked only up to the limit."""
    parts: list[str] = []
    size = 0

    def emit(text: str) -> bool:  # True once enough is written
        nonlocal size
        parts.append(text)
        size += len(text)
        return size > _SHOW_LIMIT

    def walk(item: Any, depth: int) -> bool:
        if isinstance(item, dict) or isinstance(item, (list, tuple)):
            if depth > 16:
                return emit("...")
            pairs = item.items() if isinstance(item, dict) else ((None, element) for element in item)
            opening, closing = ("{", "}") if isinstance(item, dict) else ("(", ")") if isinstance(item, tuple) else ("[", "]")
            if emit(opening):
                return True
            for index, (key, element) in enumerate(pairs):
                if (index and emit(", ")) or (isinstance(item, dict) and (walk(key, depth + 1) or emit(": "))):
                    return True
                if walk(element, depth + 1):
                    return True
            return emit(closing)
        try:
            if _is_int(item) and item.bit_length() > 200:
                return emit(f"an integer of {item.bit_length()} bits")
            return emit(repr(item)[: _SHOW_LIMIT + 1])
        except Exception:  # noqa: BLE001 - repr of arbitrary parsed input must not escape
            return emit(f"<{type(item).__name__}>")

    walk(value, 0)
    text = " ".join("".join(parts).split())
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 3] + "..."


def _name(key: Any) -> str:
    """A key as written in messages: plain if it is a simple word, else its (cut) repr."""
    if isinstance(key, str) and key and len(key) <= _SHOW_LIMIT and all(
        c.isalnum() or c in "_-" for c in key
    ):
        return key
    return show(key)


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    @described(f"integer{_range(low, None)} (64-bit)" if high == INT64_MAX else f"integer{_range(low, high)}")
    def check(value: Any) -> int:
        if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected an integer{_range(low, high)}")
        return int(value)

    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Callable[[Any], float]:
    if low is not None and high is not None:
        where = f" in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    elif low is not None:
        where = f" {'>' if open_low else '>='} {low}"
    elif high is not None:
        where = f" {'<' if open_high else '<='} {high}"
    else:
        where = ""

    @described(f"number{where}" if where else "any finite number")
    def check(value: Any) -> float:
        ok = _is_number(value)
        if ok and low is not None:
            ok = value > low if open_low else value >= low
        if ok and high is not None:
            ok = value < high if open_high else value <= high
        if not ok:
            raise ValueError(f"expected a finite number{where}")
        return float(value)

    return check


def _range(low: float | None, high: float | None) -> str:
    if high == INT64_MAX:
        return f" >= {low} and below 2**63" if low is not None else " below 2**63"
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def choice(*options: str) -> Callable[[Any], str]:
    @described(f"one of: {', '.join(options)}")
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"expected one of {list(options)}{_suggest_value(value, options)}")
        return value

    return check


def _suggest_value(value: Any, options: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@described("true or false")
def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


@described("non-empty string")
def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("expected a non-empty string")
    return value


@described("non-empty string or null")
def optional_string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("expected a non-empty string or null")
    return value


def list_of(item: Callable[[Any], Any], *, min_length: int = 0) -> Callable[[Any], list]:
    @described(f"list{f' of at least {min_length} item(s)' if min_length else ''}, each item {describe(item)}")
    def check(value: Any) -> list:
        if not isinstance(value, list) or len(value) < min_length:
            least = f" of at least {min_length} item(s)" if min_length else ""
            raise ValueError(f"expected a list{least}")
        result = []
        for index, entry in enumerate(value):
            try:
                result.append(item(entry))
            except ValueError as error:
                raise ValueError(f"{error} (item {index})") from None
        return result

    return check


@described("number in (0, 2], or a range [low, high] with 0 < low <= high <= 2")
def mutation(value: Any) -> float | list[float]:
    """F in (0, 2], or a dither range ``[low, high]`` with ``0 < low <= high <= 2``."""
    if _is_number(value) and 0 < value <= 2:
        return float(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and 0 < value[0] <= value[1] <= 2
    ):
        return [float(value[0]), float(value[1])]
    raise ValueError("expected F in (0, 2] or a range [low, high] with 0 < low <= high <= 2")


@described("number > 0, or a list of numbers > 0, one per layer")
def positive_or_per_layer(value: Any) -> float | list[float]:
    """One positive number for every layer, or a list of positive numbers, one per layer."""
    if _is_number(value) and value > 0:
        return float(value)
    if isinstance(value, list) and value and all(_is_number(v) and v > 0 for v in value):
        return [float(v) for v in value]
    raise ValueError("expected a positive number or a list of positive numbers, one per layer")


@described("integer from 1 to 1000000, -1 (all cores) or auto")
def n_jobs(value: Any) -> int | str:
    """A positive number of workers, ``-1`` (all cores) or ``"auto"`` (decided at run time)."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    if _is_int(value) and (1 <= value <= 1_000_000 or value == -1):
        return int(value)
    raise ValueError("expected a positive integer (at most 1000000), -1 (all cores) or 'auto'")


_SCHEDULER_ADDRESS = re.compile(r"(tcp|tls|ucx|ws|wss|inproc)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?/?")


@described("null, or a dask scheduler address: tcp://host:port (or tls://, ucx://, ws://, wss://)")
def scheduler_address(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SCHEDULER_ADDRESS.fullmatch(value):
        raise ValueError("expected null or a dask scheduler address such as tcp://host:8786")
    return value


DELIMITER_NAMES = ("auto", ",", ";", "tab", "space")


@described("auto, ',', ';', tab or space (a literal tab or space works too)")
def delimiter(value: Any) -> str:
    """``auto``, ``,``, ``;``, ``tab`` or ``space``; a literal tab or space is kept as given."""
    if isinstance(value, str) and (value in DELIMITER_NAMES or value in ("\t", " ")):
        return value
    raise ValueError(f"expected one of {list(DELIMITER_NAMES)}{_suggest_value(value, DELIMITER_NAMES)}")


_NOT_COMMENT = ",;\t \"'\r\n"


@described("one character (not a separator, quote or space), or null")
def comment_character(value: Any) -> str | None:
    """One character that starts a comment line, e.g. ``'#'``; null: none."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 1 or value in _NOT_COMMENT or value == "\0":
        raise ValueError("expected one character other than a separator, quote or space (e.g. '#'), or null")
    return value


@described("one of the optimizer names (the section optimizer)")
def optimizer_name(value: Any) -> str:
    from evomlp.optimizers import names

    known = names()
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"expected one of {list(known)}{_suggest_value(value, known)}")
    return value


ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "elu", "softplus")
BUNDLED_DATASETS = ("breast_cancer", "iris", "wine", "digits")

SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "dataset": Field("breast_cancer", string,
                         "scikit-learn's bundled breast_cancer, iris, wine or digits, or the path of a CSV file"),
        "target": Field(None, optional_string, "label column of a CSV dataset (a bundled set has its own)"),
        "task": Field("auto", choice("auto", "binary", "multiclass", "regression"),
                      "what to learn; auto: regression for numeric labels that are not integers or take more "
                      "than 20 values, else binary (2 classes) or multiclass"),
        "test_size": Field(0.3, number(0, 1, open_low=True, open_high=True),
                           "fraction of the rows held out for the test metrics (train_test_split's test_size)"),
        "validation_size": Field(0.2, number(0, 1, open_low=True, open_high=True),
                                 "fraction of the remaining rows held out (stratified by class) to choose the model on"),
        "seed": Field(42, integer(0, 2**32 - 1), "random_state of the test and validation splits"),
        "stratify": Field(False, boolean,
                          "stratify the test split by class (the validation split of a classification always is)"),
        "impute": Field("none", choice("none", "median"),
                        "missing feature values: none (an error) or median, fitted on the training rows "
                        "(the most frequent value for text columns)"),
        "delimiter": Field("auto", delimiter,
                           "field separator of a CSV dataset; auto: of ',', ';', tab and space, the one that "
                           "splits the header into two or more fields and the most of the next 49 rows into as "
                           "many (the first of them on a tie); space: runs of spaces"),
        "comment": Field(None, comment_character,
                         "lines of a CSV dataset whose first non-blank character is this one are skipped "
                         "(quote it in YAML: '#'); null: none"),
        "drop_missing_target": Field(False, boolean,
                                     "drop the rows of a CSV dataset without a label, and say how many on stderr; "
                                     "false: such a row is an error"),
        "coerce_numeric": Field(False, boolean,
                                "in a numeric column of a CSV dataset (more than half of its non-empty cells are "
                                "numbers; the label column too), text cells become missing values (which "
                                "data.impute fills, or drop_missing_target drops); false: such a cell is an error"),
        "drop_columns": Field([], list_of(string),
                              "columns removed before anything else (identifiers, dates, free text); an unknown "
                              "name is an error"),
        "max_categories": Field(100, integer(1, 1_000_000),
                                "most distinct values a text feature column may have, each a one-hot input; more "
                                "is an error"),
    },
    "model": {
        "hidden_layers": Field([64, 32], list_of(integer(1, 100_000)),
                               "units of each hidden layer; the input and output sizes follow from the data"),
        "activations": Field(["relu", "relu"], list_of(choice(*ACTIVATIONS)),
                             "activation of each hidden layer, one per entry of hidden_layers (the baseline, "
                             "one activation for all layers, takes the first scikit-learn has)"),
    },
    "train": {
        "optimizer": Field("snes", optimizer_name,
                           "the optimizer (evomlp.optimizers); its settings are the block optimizer.<name>"),
        "population_size": Field(50, integer(4, 1_000_000),
                                 "individuals (samples) per generation, an absolute number (not scipy's "
                                 "multiplier); some optimizers need more, PGPE and OpenAI-ES an even number"),
        "bounds": Field(5.0, positive_or_per_layer,
                        "every weight stays in [-bounds, bounds]; one value, or one per layer (hidden layers, then output)"),
        "init": Field("he", choice("uniform", "glorot", "he"),
                      "initial population: uniform in the bounds, or uniform in +- init_scale times Glorot's or "
                      "He's limit of each layer (clipped to the bounds)"),
        "init_scale": Field(1.0, positive_or_per_layer,
                            "multiplies the glorot or he limit (not read by uniform); one value, or one per layer"),
        "max_generations": Field(1500, integer(1, 10_000_000), "stop after this many generations"),
        "max_evaluations": Field(0, integer(0, INT64_MAX),
                                 "stop before the fitness evaluations would exceed this; 0: max_generations alone "
                                 "(adaptive DE then plans for population_size x (max_generations + 1))"),
        "patience": Field(0, integer(0, INT64_MAX),
                          "stop after this many generations without a better validation loss; 0: never"),
        "l2": Field(0.011, number(0), "the fitness adds l2 * (sum of squared weights, biases excluded), whatever the number of rows"),
        "minibatch_size": Field(0, integer(0, INT64_MAX),
                                "training rows drawn anew each generation to compute the fitness on (the parents "
                                "are scored again on them); 0, or the row count or more: all rows"),
        "dtype": Field("float32", choice("float32", "float64"),
                       "float type of the forward pass (float32 is faster)"),
        "class_weight": Field("none", choice("none", "balanced"),
                              "balanced: every class weighs the same in the loss (scikit-learn's class_weight)"),
        "seed": Field(0, integer(0, 2**32 - 1),
                      "seed of the run's one random generator: initial population, every draw of the optimizer, "
                      "minibatches"),
    },
    "baseline": {
        "solver": Field("adam", choice("adam", "sgd", "lbfgs"), "solver of scikit-learn's MLP (trained by backprop)"),
        "alpha": Field(0.0001, number(0), "scikit-learn's L2 penalty alpha"),
        "learning_rate_init": Field(0.001, number(0, open_low=True), "initial learning rate (adam and sgd)"),
        "max_iter": Field(500, integer(1, INT64_MAX), "most epochs (adam, sgd) or iterations (lbfgs)"),
        "early_stopping": Field(False, boolean,
                                "stop when the score on 10% of the training rows, held out by scikit-learn, "
                                "stops improving"),
        "seed": Field(0, integer(0, 2**32 - 1), "random_state of scikit-learn's MLP (initial weights, shuffling)"),
    },
    "runtime": {
        "n_jobs": Field("auto", n_jobs,
                        "workers that evaluate the population: a number, -1 (all cores) or auto (chosen by the "
                        "work per generation); with backend dask and a scheduler_address, -1 and auto count the "
                        "cluster's worker threads (docs/scale-out.md); never changes results"),
        "backend": Field("threading", choice("threading", "loky", "dask"),
                         "threads in this process, loky worker processes, or a dask.distributed cluster"),
        "scheduler_address": Field(None, scheduler_address,
                                   "backend dask: the scheduler to connect to (tcp://host:8786); null: a local "
                                   "cluster of n_jobs workers"),
        "progress": Field(True, boolean, "a progress bar and status lines on stderr"),
        "checkpoint_every": Field(100, integer(0, INT64_MAX),
                                  "save the whole run to .checkpoints/ every this many generations (fewer if "
                                  "writing would take over 10% of the run's time) and when stopped (Ctrl-C, "
                                  "SIGTERM, dvc killed), for a bit-exact resume by the same code and libraries; "
                                  "0: only when stopped"),
        "live_every": Field(50, integer(0, INT64_MAX),
                            "the train stage rewrites metrics/train/metrics.json (dvclive) every this many "
                            "generations with the run so far, for dvc exp show and dvc metrics show; 0: only at the end"),
    },
}

RUNTIME = "runtime"  # the section kept in runtime.yaml, not in params.yaml
RUNTIME_FILE = "runtime.yaml"


def _suggest(name: Any, known: list[str]) -> str:
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_params(raw: Any, source: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """Check every key of ``raw`` against :data:`SCHEMA`; fill defaults; check keys against each other.

    Any parsed-YAML input either gives a complete mapping or raises :class:`ParamsError` with a
    one-line message naming ``section.key`` (or the section), the value found and what was expected.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping of sections {list(SCHEMA)}, got {type(raw).__name__} {show(raw)}"
        )
    result: dict[str, dict[str, Any]] = {}
    sections = [*SCHEMA, OPTIMIZER_SECTION]
    for section in raw:
        if not isinstance(section, str) or section not in sections:
            raise ParamsError(
                f"{source}: unknown section {_name(section)}{_suggest(section, sections)}; "
                f"expected one of {sections}"
            )
    for section, fields in SCHEMA.items():
        given = raw.get(section)
        if given is None:  # an absent or empty section: every key takes its default
            given = {}
        result[section] = validate_section(section, given, source)
    result[OPTIMIZER_SECTION] = _validate_optimizer_blocks(raw.get(OPTIMIZER_SECTION), result["train"]["optimizer"], source)
    _check_together(result, source)
    return result


def validate_section(section: str, given: Any, source: str, prefix: str | None = None) -> dict[str, Any]:
    """One section of :data:`SCHEMA` from its parsed mapping, defaults filled in. Messages name keys
    as ``<prefix><key>`` (``<section>.`` unless given: runtime.yaml's keys stand alone)."""
    fields = SCHEMA[section]
    prefix = f"{section}." if prefix is None else prefix
    if not isinstance(given, dict):
        where = f"{section}: " if prefix else ""
        raise ParamsError(f"{source}: {where}expected a mapping of keys {list(fields)}, got {show(given)}")
    for key in given:
        if not isinstance(key, str) or key not in fields:
            raise ParamsError(
                f"{source}: {prefix}{_name(key)}: unknown key"
                f"{_suggest(key, list(fields)) or f'; expected one of {list(fields)}'}"
            )
    values = {}
    for key, spec in fields.items():
        value = given.get(key, spec.default)
        try:
            values[key] = spec.check(value)
        except ValueError as error:
            raise ParamsError(f"{source}: {prefix}{key}: {error}, got {show(value)}") from None
    return values


OPTIMIZER_SECTION = "optimizer"


def _validate_optimizer_blocks(given: Any, chosen: str, source: str) -> dict[str, dict[str, Any]]:
    """``optimizer.<name>``: one block of settings per optimizer, defaults filled in for all.

    Only the chosen optimizer's block is read (and is the train stage's DVC dependency); a setting
    of another optimizer's block that differs from its default would be ignored, so it is an error.
    """
    from evomlp.optimizers import registry

    known = registry()
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ParamsError(f"{source}: {OPTIMIZER_SECTION}: expected a mapping of optimizer names to settings, got {show(given)}")
    blocks: dict[str, dict[str, Any]] = {}
    for name in given:
        if not isinstance(name, str) or name not in known:
            raise ParamsError(
                f"{source}: {OPTIMIZER_SECTION}.{_name(name)}: unknown optimizer"
                f"{_suggest(name, list(known)) or f'; expected one of {list(known)}'}"
            )
    for name, entry in known.items():
        block = given.get(name)
        if block is None:
            block = {}
        if not isinstance(block, dict):
            raise ParamsError(f"{source}: {OPTIMIZER_SECTION}.{name}: expected a mapping of settings {list(entry.settings)}, got {show(block)}")
        for key in block:
            if not isinstance(key, str) or key not in entry.settings:
                reads = f"{name} reads {list(entry.settings)}" if entry.settings else f"{name} has no settings"
                raise ParamsError(
                    f"{source}: {OPTIMIZER_SECTION}.{name}.{_name(key)}: unknown key"
                    f"{_suggest(key, list(entry.settings))}; {reads}"
                )
        values = {}
        for key, spec in entry.settings.items():
            value = block.get(key, spec.default)
            try:
                values[key] = spec.check(value)
            except ValueError as error:
                raise ParamsError(f"{source}: {OPTIMIZER_SECTION}.{name}.{key}: {error}, got {show(value)}") from None
            if name != chosen and values[key] != spec.check(spec.default):
                raise ParamsError(
                    f"{source}: {OPTIMIZER_SECTION}.{name}.{key}: {show(value)} differs from its default "
                    f"{show(spec.default)}, but train.optimizer is {chosen!r}, which does not read it; set "
                    f"train.optimizer: {name} or put it back"
                )
        blocks[name] = values
    return blocks


def _check_together(params: dict[str, dict[str, Any]], source: str) -> None:
    model, train, data = params["model"], params["train"], params["data"]
    if len(model["activations"]) != len(model["hidden_layers"]):
        raise ParamsError(
            f"{source}: model.activations: expected one activation per hidden layer "
            f"({len(model['hidden_layers'])}), got {len(model['activations'])}"
        )
    from evomlp.optimizers import entry

    chosen = entry(train["optimizer"])
    needed = chosen.minimum_population
    if train["population_size"] < needed:
        raise ParamsError(
            f"{source}: train.population_size: optimizer {chosen.name!r} needs at least "
            f"{needed} individuals, got {train['population_size']}"
        )
    if chosen.even_population and train["population_size"] % 2:
        raise ParamsError(
            f"{source}: train.population_size: optimizer {chosen.name!r} samples in mirrored pairs and "
            f"needs an even population, got {train['population_size']}"
        )
    n_layers = len(model["hidden_layers"]) + 1
    for key in ("bounds", "init_scale"):
        value = train[key]
        if isinstance(value, list) and len(value) != n_layers:
            raise ParamsError(
                f"{source}: train.{key}: expected one value per layer ({n_layers}), got {len(value)}"
            )
    if data["test_size"] + data["validation_size"] * (1 - data["test_size"]) >= 1:
        raise ParamsError(
            f"{source}: data.validation_size: with data.test_size {data['test_size']}, a validation "
            f"size of {data['validation_size']} leaves no training rows; expected a smaller value"
        )
    if data["target"] is not None and data["target"] in data["drop_columns"]:
        raise ParamsError(
            f"{source}: data.drop_columns: names {show(data['target'])}, the label column (data.target); "
            "expected feature columns only"
        )
    if data["dataset"] not in BUNDLED_DATASETS and data["target"] is None:
        raise ParamsError(
            f"{source}: data.target: a CSV dataset ({show(data['dataset'])}) needs the name of its label column"
        )
    if data["dataset"] in BUNDLED_DATASETS and data["target"] is not None:
        raise ParamsError(
            f"{source}: data.target: the bundled data set {data['dataset']!r} has its own target; expected null, "
            f"got {show(data['target'])}"
        )
    if data["dataset"] in BUNDLED_DATASETS:
        for key in ("delimiter", "comment", "drop_missing_target", "coerce_numeric", "max_categories"):
            if data[key] != SCHEMA["data"][key].default:
                raise ParamsError(
                    f"{source}: data.{key}: reads a CSV file, but data.dataset is the bundled {data['dataset']!r}; "
                    f"expected its default {show(SCHEMA['data'][key].default)}, got {show(data[key])}"
                )
    budget, size = train["max_evaluations"], train["population_size"]
    per_generation = 2 * size if 0 < train["minibatch_size"] else size  # the parents are scored again
    if 0 < budget < size + per_generation:
        raise ParamsError(
            f"{source}: train.max_evaluations: {budget} is less than one generation (the initial population "
            f"and one generation take {size + per_generation} evaluations at population_size {size}); "
            f"expected 0 (no limit) or at least {size + per_generation}"
        )


def load_params(path: str | Path = "params.yaml", runtime_path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read and validate a params file and the runtime file beside it (``runtime.yaml``, or
    ``runtime_path``; all defaults when it is absent). Every problem is a :class:`ParamsError`
    naming the file."""
    path = Path(path)
    raw = _read_yaml(path)
    if isinstance(raw, dict) and RUNTIME in raw:
        raise ParamsError(
            f"{path}: {RUNTIME}: speed settings are not DVC params; move the section's keys to "
            f"{RUNTIME_FILE} (a flat mapping, see docs/params.md)"
        )
    runtime = load_runtime(path.with_name(RUNTIME_FILE) if runtime_path is None else runtime_path)
    params = validate_params(raw, str(path))
    params[RUNTIME] = runtime
    return params


def load_runtime(path: str | Path = RUNTIME_FILE) -> dict[str, Any]:
    """The ``runtime`` settings of a runtime file (defaults when it is absent)."""
    path = Path(path)
    return validate_section(RUNTIME, (_read_yaml(path) if path.exists() else None) or {}, str(path), prefix="")


MAX_SETTINGS_BYTES = 1_000_000  # params.yaml is about 3 kB
MAX_YAML_DEPTH = 20  # params.yaml nests 3 deep


class _Refused(Exception):
    """A YAML construct a settings file has no use for, and its line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


def _strict_loader():
    """PyYAML's safe loader without aliases (an alias bomb expands to gigabytes), nesting deeper
    than :data:`MAX_YAML_DEPTH`, or a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(event.start_mark.line + 1, f"an alias *{event.anchor}: write the value out")
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise _Refused(event.start_mark.line + 1, f"nested deeper than {MAX_YAML_DEPTH} levels")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first != key_node.start_mark.line + 1:
                    raise _Refused(key_node.start_mark.line + 1, f"key {show(key)} given twice (first at line {first})")
            return super().construct_mapping(node, deep)

    return StrictLoader


def _read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``; an unreadable, invalid or refused file is a :class:`ParamsError`."""
    import yaml

    try:
        if path.is_file() and path.stat().st_size > MAX_SETTINGS_BYTES:
            raise ParamsError(f"{path}: {path.stat().st_size} bytes; a settings file of more than "
                              f"{MAX_SETTINGS_BYTES} bytes is refused")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise ParamsError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {error.start})") from None
    except (OSError, ValueError) as error:
        raise ParamsError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a safe loader, stricter still
    except _Refused as refused:
        raise ParamsError(f"{path}: refused at line {refused.line}: {refused.reason}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None)
        raise ParamsError(f"{path}: not valid YAML{where}{f' ({problem})' if problem else ''}") from None
    except RecursionError:
        raise ParamsError(f"{path}: not valid YAML (nested too deeply)") from None
    except (ValueError, TypeError, OverflowError) as error:
        # e.g. an integer with more digits than Python converts (sys.get_int_max_str_digits)
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(error).split())[:120]})") from None
