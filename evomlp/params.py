"""The params schema: every key of ``params.yaml`` with its type, range and default.

:func:`validate_params` turns a parsed YAML mapping into a complete, typed mapping (defaults filled
in) or raises :class:`ParamsError` whose one-line message names the key, the value found and what
was expected; an unknown key gets the nearest known name suggested. The library itself never reads
``params.yaml``: the stages call :func:`load_params` and pass plain values on.
"""

from __future__ import annotations

import difflib
import math
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected an integer{_range(low, high)}")
        return int(value)

    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        ok = _is_number(value)
        if ok and low is not None:
            ok = value > low if open_low else value >= low
        if ok and high is not None:
            ok = value < high if open_high else value <= high
        if not ok:
            lo = "" if low is None else ("(" if open_low else "[") + f"{low}"
            hi = "" if high is None else f"{high}" + (")" if open_high else "]")
            where = f" in {lo}, {hi}" if low is not None and high is not None else _range(low, high)
            raise ValueError(f"expected a number{where}")
        return float(value)

    return check


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {list(options)}")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def optional_string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string or null")
    return value


def list_of(item: Callable[[Any], Any], *, min_length: int = 0) -> Callable[[Any], list]:
    def check(value: Any) -> list:
        if not isinstance(value, list) or len(value) < min_length:
            raise ValueError(f"expected a list of at least {min_length} item(s)")
        try:
            return [item(entry) for entry in value]
        except ValueError as error:
            raise ValueError(f"{error} for every item") from None

    return check


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


def positive_or_per_layer(value: Any) -> float | list[float]:
    """One positive number for every layer, or a list of positive numbers, one per layer."""
    if _is_number(value) and value > 0:
        return float(value)
    if isinstance(value, list) and value and all(_is_number(v) and v > 0 for v in value):
        return [float(v) for v in value]
    raise ValueError("expected a positive number or a list of positive numbers, one per layer")


def n_jobs(value: Any) -> int:
    if _is_int(value) and (value >= 1 or value == -1):
        return int(value)
    raise ValueError("expected a positive integer or -1 (all cores)")


def _strategies() -> tuple[str, ...]:
    from evomlp.de import ALGORITHMS

    return ALGORITHMS


def strategy(value: Any) -> str:
    names = _strategies()
    if value not in names:
        raise ValueError(f"expected one of {list(names)}")
    return value


ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "elu", "softplus")
BUNDLED_DATASETS = ("breast_cancer", "iris", "wine", "digits")

SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "dataset": Field("breast_cancer", optional_string,
                         "breast_cancer, iris, wine, digits, or the path of a CSV file"),
        "target": Field(None, optional_string, "label column of a CSV dataset"),
        "task": Field("auto", choice("auto", "binary", "multiclass", "regression")),
        "test_size": Field(0.3, number(0, 1, open_low=True, open_high=True)),
        "validation_size": Field(0.2, number(0, 1, open_low=True, open_high=True)),
        "seed": Field(42, integer(0, 2**32 - 1)),
        "stratify": Field(False, boolean),
        "impute": Field("none", choice("none", "median")),
    },
    "model": {
        "hidden_layers": Field([64, 32], list_of(integer(1, 100_000))),
        "activations": Field(["relu", "relu"], list_of(choice(*ACTIVATIONS))),
    },
    "train": {
        "strategy": Field("rand1bin", strategy),
        "population_size": Field(50, integer(4, 1_000_000)),
        "mutation": Field(0.5, mutation),
        "crossover_rate": Field(0.9, number(0, 1)),
        "p_best": Field(0.1, number(0, 1, open_low=True)),
        "bounds": Field(5.0, positive_or_per_layer),
        "bounds_handling": Field("clip", choice("clip", "reinitialize", "midpoint", "reflect")),
        "init": Field("he", choice("uniform", "glorot", "he")),
        "init_scale": Field(1.0, positive_or_per_layer),
        "max_generations": Field(300, integer(1, 10_000_000)),
        "max_evaluations": Field(0, integer(0)),
        "patience": Field(0, integer(0)),
        "l2": Field(0.0, number(0)),
        "minibatch_size": Field(0, integer(0)),
        "dtype": Field("float64", choice("float32", "float64")),
        "seed": Field(0, integer(0, 2**32 - 1)),
    },
    "baseline": {
        "solver": Field("adam", choice("adam", "sgd", "lbfgs")),
        "alpha": Field(0.0001, number(0)),
        "learning_rate_init": Field(0.001, number(0, open_low=True)),
        "max_iter": Field(500, integer(1)),
        "early_stopping": Field(False, boolean),
        "seed": Field(0, integer(0, 2**32 - 1)),
    },
    "runtime": {
        "n_jobs": Field(1, n_jobs),
        "backend": Field("loky", choice("loky", "threading", "dask")),
        "scheduler_address": Field(None, optional_string),
        "progress": Field(True, boolean),
        "checkpoint_every": Field(10, integer(0)),
    },
}


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_params(raw: Any, source: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """Check every key of ``raw`` against :data:`SCHEMA`; fill defaults; check keys against each other."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections {list(SCHEMA)}, got {type(raw).__name__}")
    result: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in SCHEMA:
            raise ParamsError(f"{source}: unknown section {section!r}{_suggest(str(section), list(SCHEMA))}")
    for section, fields in SCHEMA.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            raise ParamsError(f"{source}: {section}: expected a mapping, got {given!r}")
        for key in given:
            if key not in fields:
                raise ParamsError(
                    f"{source}: unknown key {section}.{key}{_suggest(str(key), list(fields))}"
                )
        values = {}
        for key, spec in fields.items():
            value = given.get(key, spec.default)
            try:
                values[key] = spec.check(value)
            except ValueError as error:
                raise ParamsError(f"{source}: {section}.{key}: {error}, got {value!r}") from None
        result[section] = values
    _check_together(result, source)
    return result


def _check_together(params: dict[str, dict[str, Any]], source: str) -> None:
    model, train, data = params["model"], params["train"], params["data"]
    if len(model["activations"]) != len(model["hidden_layers"]):
        raise ParamsError(
            f"{source}: model.activations: expected one activation per hidden layer "
            f"({len(model['hidden_layers'])}), got {len(model['activations'])}"
        )
    from evomlp.de import minimum_population

    needed = minimum_population(train["strategy"])
    if train["population_size"] < needed:
        raise ParamsError(
            f"{source}: train.population_size: strategy {train['strategy']!r} needs at least "
            f"{needed} individuals, got {train['population_size']}"
        )
    n_layers = len(model["hidden_layers"]) + 1
    for key in ("bounds", "init_scale"):
        value = train[key]
        if isinstance(value, list) and len(value) != n_layers:
            raise ParamsError(
                f"{source}: train.{key}: expected one value per layer ({n_layers}), got {len(value)}"
            )
    if data["test_size"] + data["validation_size"] * (1 - data["test_size"]) >= 1:
        raise ParamsError(f"{source}: data.validation_size: leaves no training rows")
    if data["dataset"] not in BUNDLED_DATASETS and data["target"] is None:
        raise ParamsError(
            f"{source}: data.target: a CSV dataset ({data['dataset']!r}) needs the name of its label column"
        )


def load_params(path: str | Path = "params.yaml") -> dict[str, dict[str, Any]]:
    """Read and validate a params file; every problem is a :class:`ParamsError` naming the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot read ({error.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    return validate_params(raw, str(path))
