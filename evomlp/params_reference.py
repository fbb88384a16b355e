"""``python -m evomlp.params_reference``: the reference of every ``params.yaml`` key, as Markdown.

Generated from the schema (:data:`evomlp.params.SCHEMA`: each key's checker describes what it
accepts, its ``help`` says what it does) and the optimizer registry (:mod:`evomlp.optimizers`: each
optimizer's own settings), so ``docs/params.md`` cannot drift from what the ``check`` stage
validates. ``--check PATH`` exits 1 with a one-line message when ``PATH`` is not what would be
generated (``tests/test_params_reference.py`` runs the same comparison).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from evomlp.params import OPTIMIZER_SECTION, SCHEMA, Field

COMMAND = "python -m evomlp.params_reference"
DEFAULT_PATH = "docs/params.md"

SECTION_NOTES = {
    "data": "The dataset and its split into training, validation and test rows (stage `prepare`).",
    "model": "The network (stages `train` and `baseline`).",
    "train": "How the chosen optimizer trains it (stage `train`); the optimizer's own settings are "
             "its block under `optimizer`.",
    OPTIMIZER_SECTION: "Each optimizer's own settings, one block per name of `train.optimizer`. Only the "
                       "chosen optimizer's block is read (and is a DVC dependency of `train`); a setting of "
                       "another block that differs from its default is an error.",
    "baseline": "scikit-learn's MLP trained by backprop on the same split, for comparison (stage `baseline`).",
    "runtime": "Speed and display only: these cannot change results. They live in `runtime.yaml`, a flat "
               "mapping beside `params.yaml` written without the `runtime.` prefix (`n_jobs: 2`). It is no "
               "DVC params file, so it is never a dependency, never in `dvc.lock` and never a column of "
               "`dvc exp show`; edit the file (`dvc exp run -S` does not reach it).",
}

HEADER = f"""# params.yaml and runtime.yaml reference

Generated from the schema (`evomlp/params.py`) and the optimizer registry (`evomlp/optimizers.py`):
do not edit by hand. Regenerate with `{COMMAND} > {DEFAULT_PATH}`;
`{COMMAND} --check {DEFAULT_PATH}` fails if this file is out of date.

Set a key in `params.yaml` or for one experiment (`dvc exp run -S train.seed=3`); a key left out
takes its default. Every value is checked before any stage runs (stage `check`)."""

COLUMNS = ("key", "type / range or choices", "default", "what it does")


def yaml_value(value: Any) -> str:
    """A default as it is written in params.yaml."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    """Plain text as one Markdown table cell: one line, no column breaks, no emphasis, no tags."""
    text = " ".join(str(text).split()).replace("|", "\\|").replace("*", "\\*")
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _table(rows: list[tuple[str, Field]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for key, field in rows:
        cells = (f"`{key}`", _cell(field.describe()), f"`{yaml_value(field.default)}`", _cell(field.help))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _smallest_population(entry) -> int:
    """The smallest population the optimizer runs with that train.population_size also accepts."""
    field = SCHEMA["train"]["population_size"]
    for size in range(entry.minimum_population, entry.minimum_population + 100):
        try:
            return field.check(size)
        except ValueError:
            continue
    return entry.minimum_population


def _optimizer_section() -> list[str]:
    from evomlp.optimizers import registry

    lines = []
    for name, entry in registry().items():
        population = f"`train.population_size` at least {_smallest_population(entry)}"
        if entry.even_population:
            population += ", even (it samples in mirrored pairs)"
        lines += ["", f"### `{OPTIMIZER_SECTION}.{name}`", "", f"{_cell(entry.summary.rstrip('.'))}. {population}."]
        if entry.settings:
            lines += [""] + _table([(f"{OPTIMIZER_SECTION}.{name}.{key}", field) for key, field in entry.settings.items()])
        else:
            lines += ["", "No settings of its own."]
    return lines


def generate() -> str:
    """The whole reference: one table per section of params.yaml, in the file's order."""
    lines = [HEADER]
    for section, fields in SCHEMA.items():
        lines += ["", f"## `{section}`", "", SECTION_NOTES.get(section, f"The section `{section}`."), ""]
        lines += _table([(f"{section}.{key}", field) for key, field in fields.items()])
        if section == "train":  # the optimizer blocks follow train in params.yaml
            lines += ["", f"## `{OPTIMIZER_SECTION}`", "", SECTION_NOTES[OPTIMIZER_SECTION]]
            lines += _optimizer_section()
    return "\n".join(lines) + "\n"


def check_file(path: str | Path) -> str:
    """``""`` if ``path`` holds what :func:`generate` gives, else a one-line message saying why not."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path}: not found; write it with {COMMAND} > {path}"
    except (OSError, UnicodeDecodeError) as error:
        return f"{path}: cannot read ({' '.join(str(error).split())})"
    if text != generate():
        return f"{path}: differs from the params schema; regenerate it with {COMMAND} > {path}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Print the params.yaml reference (Markdown).")
    parser.add_argument("--check", metavar="PATH", help="exit 1 if PATH differs from what would be printed")
    args = parser.parse_args(argv)
    if args.check is not None:
        problem = check_file(args.check)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(generate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
