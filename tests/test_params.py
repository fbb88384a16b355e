"""The params schema: every rule, the messages, defaults, and a fuzz test of the error contract."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evomlp.optimizers import default_settings, entry, names
from evomlp.errors import EvomlpError
from evomlp.params import ACTIVATIONS, SCHEMA, ParamsError, load_params, show, validate_params


def params_with(section: str, key: str, value) -> dict:
    return {section: {key: value}}


def assert_rejected(raw, *fragments: str) -> str:
    with pytest.raises(ParamsError) as caught:
        validate_params(raw)
    message = str(caught.value)
    assert "\n" not in message and len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------
# Defaults


def test_defaults_fill_every_key_of_the_schema():
    params = validate_params(None)
    assert params == validate_params({})
    assert set(params) == set(SCHEMA) | {"optimizer"}
    for section, fields in SCHEMA.items():
        assert set(params[section]) == set(fields)
    assert set(params["optimizer"]) == set(names())
    for name in names():
        assert params["optimizer"][name] == default_settings(name)
    assert params["train"]["population_size"] == 50
    assert params["data"]["test_size"] == 0.3
    assert params["data"]["impute"] == "none"
    assert params["model"]["hidden_layers"] == [64, 32]
    assert params["runtime"]["n_jobs"] == "auto" and params["runtime"]["backend"] == "threading"


def test_the_committed_params_file_spells_out_the_schema_defaults():
    """A key left out of params.yaml must behave as the committed value does."""
    import yaml
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    committed = yaml.safe_load((root / "params.yaml").read_text())
    runtime = yaml.safe_load((root / "runtime.yaml").read_text())
    assert validate_params(committed) == validate_params({})
    assert load_params(root / "params.yaml") == validate_params({})
    assert "runtime" not in committed and set(runtime) == set(SCHEMA["runtime"])  # runtime.yaml: every key
    for section, fields in SCHEMA.items():
        assert set(committed.get(section, runtime)) == set(fields), section
    assert list(committed["optimizer"]) == list(names())  # every optimizer's block, in the registry's order
    for name in names():
        assert set(committed["optimizer"][name]) == set(entry(name).settings), name


def test_a_partial_section_keeps_the_given_value_and_defaults_the_rest():
    params = validate_params({"train": {"population_size": 12}, "data": None})
    assert params["train"]["population_size"] == 12
    assert params["train"]["bounds"] == 5.0
    assert params["data"] == validate_params({})["data"]


def test_numbers_are_normalised_to_their_type():
    params = validate_params({"train": {"bounds": [1, 2, 3], "optimizer": "currenttopbest1bin"},
                              "optimizer": {"currenttopbest1bin": {"mutation": 1, "crossover_rate": 1}}})
    settings = params["optimizer"]["currenttopbest1bin"]
    assert isinstance(settings["mutation"], float) and isinstance(settings["crossover_rate"], float)
    assert params["train"]["bounds"] == [1.0, 2.0, 3.0]


def test_validation_is_idempotent():
    params = validate_params({"train": {"optimizer": "currenttopbest1bin"},
                              "optimizer": {"currenttopbest1bin": {"mutation": [0.4, 0.9]}}, "runtime": {"n_jobs": "auto"}})
    assert validate_params(params) == params


# ---------------------------------------------------------------------------------------------
# Every rule: a bad value names section.key, the value and what was expected

BAD_VALUES = [
    ("train", "population_size", 3, "integer"),
    ("train", "population_size", 10.0, "integer"),
    ("train", "population_size", "50", "integer"),
    ("train", "population_size", True, "integer"),
    ("data", "test_size", 0, "(0, 1)"),
    ("data", "test_size", 1, "(0, 1)"),
    ("data", "test_size", 1.0, "(0, 1)"),
    ("data", "validation_size", 0.0, "(0, 1)"),
    ("data", "seed", -1, "integer"),
    ("data", "seed", 2**32, "integer"),
    ("data", "stratify", "yes", "true or false"),
    ("data", "impute", "mean", "'none', 'median'"),
    ("data", "task", "classification", "'auto'"),
    ("data", "dataset", None, "non-empty string"),
    ("data", "dataset", "  ", "non-empty string"),
    ("model", "hidden_layers", [64, 0], "item 1"),
    ("model", "hidden_layers", [64, -3], "integer"),
    ("model", "hidden_layers", 64, "list"),
    ("model", "hidden_layers", [64, 2.5], "integer"),
    ("model", "activations", ["relu", "sigmoid"], "item 1"),
    ("model", "activations", "relu", "list"),
    ("train", "optimizer", "rand3bin", "expected one of"),
    ("train", "optimizer", 7, "expected one of"),
    ("train", "bounds", 0, "positive"),
    ("train", "bounds", [1.0, -1.0, 1.0], "positive"),
    ("train", "init_scale", [], "positive"),
    ("train", "init", "xavier", "'glorot'"),
    ("train", "max_generations", 0, "integer"),
    ("train", "max_evaluations", -1, "integer"),
    ("train", "patience", 10**30, "integer"),
    ("train", "l2", -1e-9, ">= 0"),
    ("train", "l2", 10**400, "number"),
    ("train", "dtype", "float16", "'float32'"),
    ("baseline", "solver", "rmsprop", "'adam'"),
    ("baseline", "learning_rate_init", 0, "number"),
    ("baseline", "max_iter", 0, "integer"),
    ("runtime", "n_jobs", 0, "-1"),
    ("runtime", "n_jobs", -2, "'auto'"),
    ("runtime", "n_jobs", "all", "'auto'"),
    ("runtime", "n_jobs", 1.5, "positive integer"),
    ("runtime", "backend", "spark", "'loky'"),
    ("runtime", "progress", 1, "true or false"),
    ("runtime", "scheduler_address", "", "dask scheduler address"),
    ("runtime", "scheduler_address", "localhost:8786", "tcp://host:8786"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), BAD_VALUES)
def test_a_bad_value_names_key_value_and_expectation(section, key, value, expected):
    assert_rejected(params_with(section, key, value), f"{section}.{key}: expected", f"got {show(value)}", expected)


def test_a_target_for_a_bundled_set_and_a_budget_under_one_generation_are_refused():
    assert_rejected({"data": {"target": "label"}}, "data.target: the bundled data set 'breast_cancer' has its own target")
    assert_rejected({"data": {"delimiter": ";"}}, "data.delimiter: reads a CSV file, but data.dataset is the bundled")
    assert_rejected({"data": {"coerce_numeric": True}}, "data.coerce_numeric: reads a CSV file")
    assert_rejected({"train": {"max_evaluations": 99}}, "train.max_evaluations: 99 is less than one generation",
                    "at least 100")
    assert_rejected({"train": {"max_evaluations": 149, "minibatch_size": 10}}, "at least 150")
    assert validate_params({"train": {"max_evaluations": 100}})["train"]["max_evaluations"] == 100


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("data", "test_size", 0.5),
        ("data", "task", "regression"),
        ("data", "impute", "median"),
        ("model", "hidden_layers", [1, 100_000]),
        ("runtime", "n_jobs", -1),
        ("runtime", "n_jobs", 4),
        ("runtime", "n_jobs", "auto"),
        ("runtime", "scheduler_address", "tcp://127.0.0.1:8786"),
    ],
)
def test_boundary_values_are_accepted(section, key, value):
    assert validate_params(params_with(section, key, value))[section][key] == value


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_known_activation_is_accepted(name):
    params = validate_params({"model": {"hidden_layers": [3], "activations": [name]}})
    assert params["model"]["activations"] == [name]


@pytest.mark.parametrize("name", names())
def test_population_size_must_cover_what_the_optimizer_needs(name):
    needed = entry(name).minimum_population
    size = max(needed, 4) + (max(needed, 4) % 2 if entry(name).even_population else 0)
    ok = validate_params({"train": {"optimizer": name, "population_size": size}})
    assert ok["train"]["population_size"] == size
    too_small = needed - 1
    if too_small >= 4:  # below 4 the key's own range already rejects it
        message = assert_rejected(
            {"train": {"optimizer": name, "population_size": too_small}},
            "train.population_size",
            repr(name),
            f"at least {needed}",
            f"got {too_small}",
        )
        assert message.startswith("params.yaml: ")


def test_rand2_strategies_need_six_individuals():
    assert_rejected({"train": {"optimizer": "rand2bin", "population_size": 5}}, "train.population_size", "at least 6")


def test_mirrored_sampling_needs_an_even_population():
    mirrored = [name for name in names() if entry(name).even_population]
    assert mirrored, "pgpe samples in mirrored pairs"
    assert_rejected({"train": {"optimizer": mirrored[0], "population_size": 51}}, "train.population_size", "even", "got 51")


# ---------------------------------------------------------------------------------------------
# Optimizer blocks: each optimizer reads its own settings, and only those


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [("currenttopbest1bin", "mutation", 2), ("currenttopbest1bin", "mutation", 1e-9),
     ("currenttopbest1bin", "mutation", [0.5, 0.5]), ("rand1bin", "crossover_rate", 0),
     ("rand1bin", "crossover_rate", 1), ("currenttopbest1bin", "p_best", 1)],
)
def test_boundary_settings_of_the_chosen_optimizer_are_accepted(name, key, value):
    params = validate_params({"train": {"optimizer": name}, "optimizer": {name: {key: value}}})
    assert params["optimizer"][name][key] == value


@pytest.mark.parametrize(
    ("name", "key", "value", "expected"),
    [("rand1bin", "crossover_rate", 1.5, "[0, 1]"), ("currenttopbest1bin", "mutation", 3, "F in (0, 2]"),
     ("jade", "bounds_handling", "wrap", "'clip'")],
)
def test_a_bad_setting_names_the_optimizer_block(name, key, value, expected):
    assert_rejected({"train": {"optimizer": name}, "optimizer": {name: {key: value}}},
                    f"optimizer.{name}.{key}: expected", expected, f"got {show(value)}")


def test_a_key_the_chosen_optimizer_does_not_read_is_an_error():
    # the old flat namespace: JADE adapts F itself, so a mutation setting would be silently ignored
    assert_rejected({"train": {"optimizer": "jade"}, "optimizer": {"jade": {"mutation": 0.7}}},
                    "optimizer.jade.mutation: unknown key", "jade reads ['bounds_handling']")
    assert_rejected({"optimizer": {"rand1bin": {"p_best": 0.2}}}, "optimizer.rand1bin.p_best: unknown key")
    # another optimizer's setting, changed from its default, would be ignored too
    message = assert_rejected({"train": {"optimizer": "jade"}, "optimizer": {"currenttopbest1bin": {"mutation": 0.7}}},
                              "optimizer.currenttopbest1bin.mutation", "differs from its default",
                              "train.optimizer is 'jade'")
    assert "set train.optimizer: currenttopbest1bin" in message


def test_other_optimizers_blocks_at_their_defaults_are_fine_so_switching_is_one_key():
    blocks = {name: default_settings(name) for name in names()}
    for name in names():
        params = validate_params({"train": {"optimizer": name, "population_size": 50}, "optimizer": blocks})
        assert params["optimizer"][name] == default_settings(name)


def test_an_unknown_optimizer_block_gets_the_nearest_name():
    assert_rejected({"optimizer": {"snse": {}}}, "optimizer.snse: unknown optimizer", "did you mean 'snes'?")


def test_one_activation_per_hidden_layer():
    assert_rejected(
        {"model": {"hidden_layers": [8, 8, 8], "activations": ["relu", "relu"]}},
        "model.activations",
        "(3)",
        "got 2",
    )


def test_per_layer_bounds_need_one_value_per_layer():
    # two hidden layers -> three weight layers
    assert validate_params({"train": {"bounds": [1.0, 2.0, 3.0]}})["train"]["bounds"] == [1.0, 2.0, 3.0]
    assert_rejected({"train": {"init_scale": [1.0, 2.0]}}, "train.init_scale", "per layer (3)", "got 2")


def test_a_csv_dataset_needs_a_target():
    assert_rejected({"data": {"dataset": "data/raw.csv"}}, "data.target", "'data/raw.csv'")
    assert validate_params({"data": {"dataset": "data/raw.csv", "target": "label"}})["data"]["target"] == "label"


# ---------------------------------------------------------------------------------------------
# Unknown names: the nearest known one is suggested


def test_a_misspelt_key_gets_the_nearest_known_name():
    assert_rejected(
        {"train": {"populaton_size": 30}}, "train.populaton_size", "unknown key", "did you mean 'population_size'?"
    )


def test_a_misspelt_section_gets_the_nearest_known_name():
    assert_rejected({"trian": {"population_size": 30}}, "unknown section trian", "did you mean 'train'?")


def test_an_unknown_key_without_a_near_name_lists_the_known_keys():
    message = assert_rejected({"runtime": {"zzzzzz": 1}}, "runtime.zzzzzz: unknown key", "'n_jobs'")
    assert "did you mean" not in message


def test_a_misspelt_choice_gets_the_nearest_option():
    assert_rejected({"train": {"optimizer": "rand1bim"}}, "train.optimizer", "did you mean 'rand1bin'?")
    assert_rejected(
        {"model": {"hidden_layers": [4], "activations": ["rleu"]}}, "model.activations", "did you mean 'relu'?"
    )


def test_non_string_and_multiline_keys_stay_on_one_line():
    assert_rejected({"data": {1: 2}}, "data.1: unknown key")
    message = assert_rejected({"data": {"a\nb": 2}}, "data.'a\\nb': unknown key")
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------
# Wrong shapes


@pytest.mark.parametrize("raw", [[], ["data"], "data", 5, 3.5, True])
def test_the_top_level_must_be_a_mapping(raw):
    assert_rejected(raw, "expected a mapping of sections")


@pytest.mark.parametrize("value", [[], [1, 2], "x", 0, False, 1.5])
def test_a_section_must_be_a_mapping(value):
    assert_rejected({"train": value}, "train: expected a mapping", f"got {show(value)}")


def test_huge_and_deep_values_give_a_short_message():
    message = assert_rejected({"train": {"population_size": 10**5000}}, "train.population_size", "bits")
    assert len(message) < 400
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    message = assert_rejected({"train": {"population_size": deep}}, "train.population_size")
    assert len(message) < 400


# ---------------------------------------------------------------------------------------------
# load_params: the file itself


def test_load_params_reads_and_validates(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  population_size: 20\n")
    assert load_params(path)["train"]["population_size"] == 20
    path.write_text("train:\n  population_sise: 20\n")
    with pytest.raises(ParamsError, match=r"params.yaml: train.population_sise: unknown key"):
        load_params(path)


def test_an_alias_bomb_is_refused_at_once_and_show_never_formats_more_than_it_shows(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 leaves
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(levels) + "\n")
    with pytest.raises(ParamsError, match=r"refused at line 2: an alias \*a0"):
        load_params(path)
    shared = ["x" * 10] * 9
    for _ in range(9):  # the same bomb built in memory: 9**10 strings reachable, a handful shown
        shared = [shared] * 9
    text = show(shared)
    assert len(text) <= 80 and text.startswith("[[[[")


def test_runtime_settings_come_from_runtime_yaml_beside_params_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  population_size: 20\n")
    assert load_params(params)["runtime"] == validate_params({})["runtime"]  # no runtime.yaml: defaults
    (tmp_path / "runtime.yaml").write_text("n_jobs: 2\nbackend: loky\n")
    loaded = load_params(params)
    assert loaded["runtime"]["n_jobs"] == 2 and loaded["runtime"]["backend"] == "loky"
    assert loaded["runtime"]["checkpoint_every"] == SCHEMA["runtime"]["checkpoint_every"].default
    assert loaded["train"]["population_size"] == 20


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("n_jobs: 0\n", "runtime.yaml: n_jobs: "),
        ("n_job: 2\n", "runtime.yaml: n_job: unknown key (did you mean 'n_jobs'?)"),
        ("runtime:\n  n_jobs: 2\n", "runtime.yaml: runtime: unknown key"),
        ("- 2\n", "runtime.yaml: expected a mapping of keys"),
        ("n_jobs: [2\n", "runtime.yaml: not valid YAML"),
    ],
)
def test_a_bad_runtime_file_is_one_line_naming_it_and_the_key(tmp_path, content, expected):
    (tmp_path / "params.yaml").write_text("")
    (tmp_path / "runtime.yaml").write_text(content)
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    message = str(caught.value)
    assert expected in message and str(tmp_path / "runtime.yaml") in message, message
    assert len(message.splitlines()) == 1


def test_a_runtime_section_left_in_params_yaml_is_refused_with_where_it_goes(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("runtime:\n  n_jobs: 2\n")
    with pytest.raises(ParamsError, match=r"params.yaml: runtime: .*move the section's keys to runtime.yaml"):
        load_params(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"train: [unclosed\n", "not valid YAML at line"),
        (b"train:\n  population_size: 20\n \xff\xfe\n", "not UTF-8"),
        (b"train:\n  population_size: " + b"9" * 5000 + b"\n", "not valid YAML"),
        (b"[" * 1200 + b"]" * 1200, "refused at line 1: nested deeper than 20 levels"),
        (b"a: &x [1, 2]\nb: *x\n", "refused at line 2: an alias *x"),
        (b"train:\n  population_size: 20\n  seed: 1\n  population_size: 30\n",
         "refused at line 4: key 'population_size' given twice (first at line 2)"),
        (b"# " + b"x" * 1_000_001 + b"\n", "a settings file of more than 1000000 bytes is refused"),
        (b"- 1\n- 2\n", "expected a mapping of sections"),
    ],
)
def test_load_params_turns_every_file_problem_into_a_params_error(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    message = str(caught.value)
    assert expected in message and str(path) in message
    assert len(message.splitlines()) == 1


def test_load_params_of_a_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_params_error_is_an_evomlp_error():
    assert issubclass(ParamsError, EvomlpError)


# ---------------------------------------------------------------------------------------------
# Fuzzing: any parsed-YAML value gives a valid mapping or a one-line ParamsError naming the key

KNOWN_STRINGS = sorted(
    {
        "auto", "binary", "multiclass", "regression", "none", "median", "breast_cancer", "iris", "x.csv",
        "clip", "reflect", "he", "glorot", "float32", "float64", "adam", "lbfgs", "loky", "dask",
        *ACTIVATIONS, *names(),
    }
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=200),
    st.integers(),
    st.sampled_from([2**32, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=2),
    st.text(max_size=12),
    st.sampled_from(KNOWN_STRINGS),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    max_leaves=10,
)
extra_keys = st.one_of(st.text(min_size=1, max_size=15), st.integers(), st.booleans(), st.none())


ALL_KEYS = [(section, key) for section, fields in SCHEMA.items() for key in fields]


@st.composite
def fuzzed_params(draw):
    """A params mapping: a few keys get random values (often near-valid: small numbers, known
    names), the others their default or nothing; sometimes a section is junk or a key is unknown."""
    junk_keys = draw(st.sets(st.sampled_from(ALL_KEYS), max_size=4))
    if draw(st.integers(0, 9)) == 7:  # now and then, every key at once
        junk_keys = set(ALL_KEYS)
    raw: dict = {}
    extras: list[tuple[str, object]] = []
    for section, fields in SCHEMA.items():
        shape = draw(st.sampled_from(["mapping"] * 12 + ["absent", "null", "junk"]))
        if shape == "absent":
            continue
        if shape in ("null", "junk"):
            raw[section] = None if shape == "null" else draw(junk)
            continue
        given = {}
        for key, spec in fields.items():
            if (section, key) in junk_keys:
                given[key] = draw(junk)
            elif draw(st.booleans()):
                given[key] = spec.default
        if draw(st.integers(0, 14)) == 7:
            extra = draw(extra_keys.filter(lambda k, fields=fields: k not in fields))
            given[extra] = draw(junk)
            extras.append((section, extra))
        raw[section] = given
    if draw(st.integers(0, 19)) == 7:
        extra = draw(extra_keys.filter(lambda k: k not in SCHEMA and k != "optimizer"))
        raw[extra] = draw(junk)
        extras.append(("", extra))
    return raw, extras


PARTNERS = {  # a change of one key may be reported on the key it is checked against
    "model.hidden_layers": {"model.activations", "train.bounds", "train.init_scale"},
    "train.optimizer": {"train.population_size"},
    "data.dataset": {"data.target"},
    "data.test_size": {"data.validation_size"},
}


def _offending(raw: dict) -> set[str]:
    """What an error about ``raw`` may name: a given key (or the key it is checked against), a
    section given as a non-mapping, an unknown key, or an unknown section."""
    names: set[str] = set()
    for section, value in raw.items():
        if section not in SCHEMA:
            names.add("params.yaml: unknown section")
        elif value is not None and not isinstance(value, dict):
            names.add(f"params.yaml: {section}: expected a mapping")
        elif isinstance(value, dict):
            for key in value:
                if key in SCHEMA[section]:
                    names.add(f"params.yaml: {section}.{key}: ")
                    names |= {f"params.yaml: {name}: " for name in PARTNERS.get(f"{section}.{key}", ())}
                else:
                    names |= {f"params.yaml: {section}.{key}: unknown key",
                              f"params.yaml: {section}.{show(key)}: unknown key"}
    return names


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_params())
def test_fuzzed_params_give_a_valid_mapping_or_a_one_line_params_error(case):
    raw, extras = case
    try:
        result = validate_params(raw)
    except ParamsError as error:
        message = str(error)
        assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message
        assert len(message) < 1000
        assert any(message.startswith(name) for name in _offending(raw)), message
        if ": unknown key" in message or message.startswith("params.yaml: unknown section"):
            assert "did you mean" in message or "expected one of" in message
        return
    # other exception types propagate and fail the test
    assert not extras, f"unknown keys {extras} were accepted"
    assert set(result) == set(SCHEMA) | {"optimizer"}
    for section, fields in SCHEMA.items():
        assert set(result[section]) == set(fields)
        for key, spec in fields.items():
            assert spec.check(result[section][key]) == result[section][key]
    assert validate_params(result) == result
    assert result["train"]["population_size"] >= entry(result["train"]["optimizer"]).minimum_population
    assert len(result["model"]["activations"]) == len(result["model"]["hidden_layers"])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(section, key) for section, fields in SCHEMA.items() for key in fields]),
    junk,
)
def test_a_single_bad_key_is_the_one_named(where, value):
    section, key = where
    try:
        own_error = None
        SCHEMA[section][key].check(value)
    except ValueError as error:
        own_error = str(error)
    try:
        result = validate_params({section: {key: value}})
    except ParamsError as error:
        message = str(error)
        if own_error is not None:  # the value itself is wrong: the key, the value, what was expected
            assert message == f"params.yaml: {section}.{key}: {own_error}, got {show(value)}"
        else:  # a valid value that clashes with a default of the key it is checked against
            named = {f"{section}.{key}"} | PARTNERS.get(f"{section}.{key}", set())
            assert any(message.startswith(f"params.yaml: {name}: ") for name in named), message
    else:
        assert own_error is None
        assert result[section][key] == SCHEMA[section][key].check(value)  # normalised, e.g. int -> float
        assert result[section][key] == value or isinstance(value, int) and abs(value) > 2**53
