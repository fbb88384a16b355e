"""docs/params.md: generated from the schema and the registry, complete, and true to the checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evomlp import params_reference
from evomlp.optimizers import registry
from evomlp.params import SCHEMA, Field, choice, describe, integer, list_of, number

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "params.md"


def schema_fields() -> dict[str, Field]:
    """Every key the params reference documents, dotted as in ``dvc exp run -S``."""
    fields = {f"{section}.{key}": field for section, entries in SCHEMA.items() for key, field in entries.items()}
    for name, entry in registry().items():
        fields.update({f"optimizer.{name}.{key}": field for key, field in entry.settings.items()})
    return fields


def documented_rows(text: str) -> dict[str, list[str]]:
    """The table rows of the doc by key: ``key -> [type, default, help]``."""
    rows = {}
    for line in text.splitlines():
        found = re.match(r"\| `([^`]+)` \| (.*) \|$", line)
        if found:
            assert found.group(1) not in rows, f"{found.group(1)} documented twice"
            rows[found.group(1)] = re.split(r" (?<!\\)\| ", found.group(2))
    return rows


def dotted_keys(mapping: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in mapping.items():
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_the_committed_doc_is_what_the_schema_generates():
    assert DOC.read_text(encoding="utf-8") == params_reference.generate(), (
        "docs/params.md is stale: run python -m evomlp.params_reference > docs/params.md"
    )


def test_every_schema_key_has_exactly_one_row_with_its_range_default_and_help():
    rows = documented_rows(params_reference.generate())
    fields = schema_fields()
    assert set(rows) == set(fields)
    for key, field in fields.items():
        kind, default, text = rows[key]
        assert kind == params_reference._cell(field.describe()), key
        assert default == f"`{params_reference.yaml_value(field.default)}`", key
        assert text == params_reference._cell(field.help), key


def test_every_key_of_the_committed_params_file_is_documented():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    keys = dotted_keys(committed)
    assert len(keys) > 30  # the flattening found the keys, not just the sections
    missing = keys - set(documented_rows(DOC.read_text(encoding="utf-8")))
    assert not missing, f"params.yaml keys missing from docs/params.md: {sorted(missing)}"


def test_every_key_has_a_help_text_and_a_description():
    for key, field in schema_fields().items():
        assert field.help.strip(), f"{key} has no help text"
        assert field.describe().strip(), f"{key}'s checker does not describe itself"


def test_defaults_are_shown_as_params_yaml_spells_them():
    rows = documented_rows(params_reference.generate())
    assert rows["data.target"][1] == "`null`"
    assert rows["data.stratify"][1] == "`false`"
    assert rows["model.hidden_layers"][1] == "`[64, 32]`"
    assert rows["model.activations"][1] == "`[relu, relu]`"
    for key, field in schema_fields().items():  # the shown default reads back as the default
        shown = yaml.safe_load(rows[key][1].strip("`"))
        assert field.check(shown) == field.check(field.default), key


def test_descriptions_of_the_checkers():
    assert describe(integer(2)) == "integer >= 2"
    assert describe(integer(1, 10)) == "integer from 1 to 10"
    assert describe(number(0, 1, open_low=True)) == "number in (0, 1]"
    assert describe(number(0, 1, open_high=True)) == "number in [0, 1)"
    assert describe(number(0, open_low=True)) == "number > 0"
    assert describe(number(high=3)) == "number <= 3"
    assert describe(number()) == "any finite number"
    assert describe(choice("a", "b", "c")) == "one of: a, b, c"
    assert describe(list_of(integer(1))) == "list, each item integer >= 1"


N = r"(-?[\d.]+)"
BOUNDED = re.compile(rf"^(integer|number) (?:in ([\[(]){N}, {N}([\])])|from {N} to {N}|(>=|>|<=) {N})")


@pytest.mark.parametrize("key", sorted(schema_fields()))
def test_a_described_range_is_the_range_the_check_accepts(key):
    """Each end of a stated interval is accepted exactly when the description says it is, and a
    step beyond it is refused: the doc cannot claim a range the check stage does not enforce."""
    field = schema_fields()[key]
    found = BOUNDED.match(field.describe())
    if not found:  # a string, list, choice or boolean; or a number without bounds
        assert not field.describe().startswith(("integer", "number")), field.describe()
        return
    kind, bracket_low, low, high, bracket_high, from_low, to_high, relation, bound = found.groups()
    step = 1 if kind == "integer" else 1e-9
    ends = []  # (value, accepted?)
    if bracket_low:
        ends += [(float(low), bracket_low == "["), (float(high), bracket_high == "]")]
        ends += [(float(low) - step, False), (float(high) + step, False)]
    elif from_low:
        ends += [(int(from_low), True), (int(to_high), True), (int(from_low) - 1, False), (int(to_high) + 1, False)]
    else:
        edge = float(bound) if kind == "number" else int(bound)
        beyond = edge - step if relation in (">=", ">") else edge + step
        ends += [(edge, relation in (">=", "<=")), (beyond, False)]
    for value, accepted in ends:
        value = int(value) if kind == "integer" else value
        try:
            field.check(value)
            ok = True
        except ValueError:
            ok = False
        assert ok == accepted, f"{key}: {field.describe()!r}, but {value!r} is {'accepted' if ok else 'refused'}"


def test_every_choice_listed_is_accepted_and_nothing_else():
    for key, field in schema_fields().items():
        text = field.describe()
        if text.startswith("one of: "):
            options = text.removeprefix("one of: ").split(", ")
            for option in options:
                assert field.check(option) == option, key
            with pytest.raises(ValueError):
                field.check(options[0] + "x")


def test_a_new_key_appears_and_makes_the_committed_doc_stale(monkeypatch, tmp_path):
    """A key another engineer adds to the schema shows up in the doc, and --check then fails."""
    path = tmp_path / "params.md"
    path.write_text(params_reference.generate(), encoding="utf-8")
    assert params_reference.check_file(path) == ""
    train = dict(SCHEMA["train"], warmup=Field(3, integer(0), "generations before patience counts"))
    monkeypatch.setitem(SCHEMA, "train", train)
    rows = documented_rows(params_reference.generate())
    assert rows["train.warmup"] == ["integer >= 0", "`3`", "generations before patience counts"]
    message = params_reference.check_file(path)
    assert message.startswith(f"{path}: differs") and "\n" not in message


def test_a_checker_without_a_description_fails_the_generator(monkeypatch):
    train = dict(SCHEMA["train"], odd=Field(1, lambda value: value, "no description"))
    monkeypatch.setitem(SCHEMA, "train", train)
    with pytest.raises(TypeError, match="has no description"):
        params_reference.generate()


def test_check_command_exit_codes(tmp_path):
    stale = tmp_path / "params.md"
    stale.write_text(params_reference.generate().replace("| `data.seed` |", "| `data.sead` |"), encoding="utf-8")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "evomlp.params_reference", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    current = run("--check", str(DOC))
    assert current.returncode == 0, current.stderr
    printed = run()
    assert printed.returncode == 0 and printed.stdout == DOC.read_text(encoding="utf-8")
    for path in (stale, tmp_path / "missing.md"):
        result = run("--check", str(path))
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr, result.stderr
