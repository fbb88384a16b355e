"""The prepare stage's error contract, through the real process: bad params or data give exit code 2,
exactly one stderr line ``error: <key or file>: ...``, no traceback, and nothing under data/prepared."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evomlp.artifacts import load_npz, save_npz
from evomlp.params import BUNDLED_DATASETS, RUNTIME, SCHEMA, ParamsError, validate_params

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("train.npz", "validation.npz", "test.npz", "preprocessing.npz")


def make_project(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in ("stages", "evomlp"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return where


DIRECTORY, FIFO = "<a directory>", "<a FIFO>"  # data files that are no files


def run_stage(project: Path, stage: str = "prepare", params: str | None = None,
              files: dict[str, str | bytes] | None = None):
    """Write params.yaml (if given) and data files (content, DIRECTORY or FIFO), run ``python -m
    stages.<stage>`` in ``project``, leaving every earlier output in place; its CompletedProcess."""
    if params is not None:
        (project / "params.yaml").write_text(params, encoding="utf-8")
    for name, content in (files or {}).items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            path.unlink()
        if content == DIRECTORY:
            path.mkdir()
        elif content == FIFO:
            os.mkfifo(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(  # the timeout only stops a stage that would hang (one that opened the FIFO)
        [sys.executable, "-m", f"stages.{stage}"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def run_prepare(project: Path, params: str, files: dict[str, str | bytes] | None = None):
    """Write params.yaml (and data files), clear data/prepared, run the stage; its CompletedProcess."""
    shutil.rmtree(project / "data", ignore_errors=True)
    return run_stage(project, "prepare", params, files)


def prepared_files(project: Path) -> list[Path]:
    prepared = project / "data" / "prepared"
    return sorted(prepared.rglob("*")) if prepared.exists() else []


def assert_one_line_error(result, project: Path | None, *names: str) -> str:
    """Exit code 2, one stderr line ``error: ...`` holding every one of ``names``, no traceback,
    nothing on stdout, and (given ``project``) nothing under its data/prepared."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert result.stdout == ""
    if project is not None:
        assert prepared_files(project) == []
    return lines[0]


def hashes(project: Path, *folders: str) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` of ``project``, by relative path."""
    found = {}
    for folder in folders:
        for path in sorted((project / folder).rglob("*")):
            if path.is_file():
                found[path.relative_to(project).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def csv_params(target: str = "label", **data) -> str:
    return yaml.safe_dump({"data": {"dataset": "raw/data.csv", "target": target, **data}})


GOOD_CSV = "a,b,colour,label\n" + "".join(
    f"{i},{i % 5}.5,{['red', 'green', 'blue'][i % 3]},{'yes' if i % 2 else 'no'}\n" for i in range(30)
)

# name: (params.yaml, data files, strings the error line must hold)
CASES = {
    "misspelt key": ("train:\n  populaton_size: 30\n", {}, ["train.populaton_size", "population_size"]),
    "population too small": (
        "train:\n  optimizer: rand2bin\n  population_size: 5\n", {}, ["train.population_size", "5"]
    ),
    "F out of range": ("optimizer:\n  currenttopbest1bin: {mutation: 2.5}\n", {}, ["optimizer.currenttopbest1bin.mutation", "2.5"]),
    "string for a number": ("data:\n  test_size: thirty\n", {}, ["data.test_size", "'thirty'"]),
    "not YAML": ("data: {test_size: [0.3\n", {}, ["params.yaml: not valid YAML"]),
    "missing file": (csv_params(), {}, ["raw/data.csv", "not found"]),
    "missing target column": (csv_params("class"), {"raw/data.csv": GOOD_CSV}, ["raw/data.csv", "'class'"]),
    "single class": (
        csv_params(), {"raw/data.csv": "a,label\n1,x\n2,x\n3,x\n"}, ["raw/data.csv", "'label'", "single"]
    ),
    "too few rows": (csv_params(), {"raw/data.csv": "a,label\n1,x\n2,y\n"}, ["raw/data.csv", "too few rows"]),
    "class too small to stratify": (
        csv_params(stratify=True),
        {"raw/data.csv": GOOD_CSV + "7,1.5,red,rare\n"},
        ["raw/data.csv", "'label'", "'rare'"],
    ),
    "not UTF-8": (
        csv_params(), {"raw/data.csv": "a,label\n1,x\n2,caf\xe9\n".encode("latin-1")}, ["raw/data.csv", "UTF-8"]
    ),
    "duplicate columns": (csv_params(), {"raw/data.csv": "a,a,label\n1,2,x\n3,4,y\n"}, ["raw/data.csv", "['a']"]),
    "missing values without imputation": (
        csv_params(),
        {"raw/data.csv": "a,b,label\n" + "".join(f"{i},{'' if i % 3 == 0 else i},{'xy'[i % 2]}\n" for i in range(30))},
        ["raw/data.csv", "'b'", "data.impute"],
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case of CASES (and one good run) in its own project copy, two processes at a time."""
    base = tmp_path_factory.mktemp("stages")
    cases = {**CASES, "good": (csv_params(), {"raw/data.csv": GOOD_CSV}, [])}
    projects = {name: make_project(base / f"case{index}") for index, name in enumerate(cases)}

    def run(name):
        params, files, _ = cases[name]
        return name, run_prepare(projects[name], params, files)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(pool.map(run, cases))
    return {name: (projects[name], done[name]) for name in cases}


def test_good_params_and_data_write_every_part(results):
    project, result = results["good"]
    assert result.returncode == 0, result.stderr
    assert [path.name for path in prepared_files(project)] == sorted(PARTS)
    assert "raw/data.csv: 30 rows" in result.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_error_line_and_no_output(results, case):
    project, result = results[case]
    names = CASES[case][2]
    line = assert_one_line_error(result, project, *names)
    source = "raw/data.csv" if "raw/data.csv" in names else "params.yaml"
    assert line.startswith(f"error: {source}: ")


# ---------------------------------------------------------------------------------------------
# Random params.yaml files through the real stage process

junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-3, max_value=100),
        st.sampled_from([2**32, 2**70, 10**400]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.sampled_from(["auto", "median", "relu", "rand1bin", "iris", "adam"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=6,
)


PARAMS_SECTIONS = [section for section in SCHEMA if section != RUNTIME]  # runtime.yaml: tests/test_params.py


@st.composite
def random_params(draw):
    raw: dict = {}
    keys = draw(st.lists(st.sampled_from([(s, k) for s in PARAMS_SECTIONS for k in SCHEMA[s]]), min_size=1, max_size=3))
    for section, key in keys:
        raw.setdefault(section, {})[key] = draw(junk)
    if draw(st.booleans()):
        section = draw(st.sampled_from(PARAMS_SECTIONS))
        raw.setdefault(section, {})[draw(st.text(min_size=1, max_size=10))] = draw(junk)
    return raw


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("fuzz"))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(random_params())
def test_random_params_files_keep_the_error_contract(fuzz_project, raw):
    text = yaml.safe_dump(raw, allow_unicode=True)
    parsed = yaml.safe_load(text)
    result = run_prepare(fuzz_project, text)
    try:
        params = validate_params(parsed, "params.yaml")
    except ParamsError as error:  # the stage shows exactly this message, on one line
        line = assert_one_line_error(result, fuzz_project)
        assert line == "error: " + " ".join(str(error).split())
        return
    dataset = params["data"]["dataset"]
    if dataset in BUNDLED_DATASETS:
        assert result.returncode == 0, result.stderr
        assert [path.name for path in prepared_files(fuzz_project)] == sorted(PARTS)
    else:  # a random string as data.dataset: no such file
        assert_one_line_error(result, fuzz_project, "not found")


# ---------------------------------------------------------------------------------------------
# Real-world CSV files through the prepare stage, with the last good outputs in place: a failure
# leaves them byte-identical; the option each error names makes the file work.

PREPARED_DIR = "data/prepared"


def stray_text_csv() -> str:
    """GOOD_CSV with the text 'oops' in numeric column b on data row 18 (line 19 of the file)."""
    lines = GOOD_CSV.splitlines()
    fields = lines[18].split(",")
    lines[18] = ",".join([fields[0], "oops", *fields[2:]])
    return "\n".join(lines) + "\n"


def with_comments(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(["# exported by hand, 2024-05-01", *lines[:6], "# the rest", *lines[6:]]) + "\n"


_GOOD_LINES = GOOD_CSV.splitlines()
ID_CSV = "\n".join([f"id,{_GOOD_LINES[0]}", *(f"row-{i}-id,{line}" for i, line in enumerate(_GOOD_LINES[1:]))]) + "\n"
COUNTS_CSV = "a,count\n" + "".join(f"{i},{i if i < 14 else i % 3}\n" for i in range(40))
CITIES_CSV = "city,a,label\n" + "".join(f"c{i},{i % 7},{'xy'[i % 2]}\n" for i in range(100_000))

# name: (params.yaml, data files, strings the error line must hold)
CSV_FAILURES = {
    "semicolons split at commas": (
        csv_params(delimiter=","), {"raw/data.csv": GOOD_CSV.replace(",", ";")},
        ["raw/data.csv", "single field", "data.delimiter", "';'"],
    ),
    "a comment line": (csv_params(), {"raw/data.csv": with_comments(GOOD_CSV)}, ["raw/data.csv", "data.comment: '#'"]),
    "unlabeled rows": (
        csv_params(), {"raw/data.csv": GOOD_CSV + "5,1.5,red,\n"},
        ["raw/data.csv", "'label'", "line 32", "data.drop_missing_target: true"],
    ),
    "a stray text cell in a numeric column": (
        csv_params(), {"raw/data.csv": stray_text_csv()},
        ["raw/data.csv", "'b'", "line 19", "'oops'", "data.coerce_numeric: true"],
    ),
    "100,000 categories in a column": (
        csv_params(), {"raw/data.csv": CITIES_CSV},
        ["raw/data.csv", "'city'", "100000 distinct", "data.max_categories (100)", "data.drop_columns"],
    ),
    "an unknown column to drop": (
        csv_params(drop_columns=["colur"]), {"raw/data.csv": GOOD_CSV},
        ["raw/data.csv", "data.drop_columns", "'colur'", "did you mean 'colour'"],
    ),
    "a directory": (csv_params(), {"raw/data.csv": DIRECTORY}, ["raw/data.csv", "is a directory"]),
    "a FIFO": (csv_params(), {"raw/data.csv": FIFO}, ["raw/data.csv", "is a FIFO"]),
    "whole-number counts split as classes": (
        csv_params("count"), {"raw/data.csv": COUNTS_CSV}, ["raw/data.csv", "'count'", "data.task: regression"]
    ),
    "an unknown delimiter": (csv_params(delimiter="|"), {"raw/data.csv": GOOD_CSV}, ["params.yaml: data.delimiter", "'|'"]),
    "a comment of two characters": (csv_params(comment="//"), {"raw/data.csv": GOOD_CSV}, ["params.yaml: data.comment"]),
    "max_categories 0": (csv_params(max_categories=0), {"raw/data.csv": GOOD_CSV}, ["params.yaml: data.max_categories"]),
    "the label column dropped": (
        csv_params(drop_columns=["label"]), {"raw/data.csv": GOOD_CSV}, ["params.yaml: data.drop_columns", "data.target"]
    ),
}

# name: (params.yaml, data files, stdout fragment, stderr fragments, outputs the same bytes as GOOD_CSV's)
CSV_SUCCESSES = {
    "semicolons": (csv_params(), {"raw/data.csv": GOOD_CSV.replace(",", ";")}, "fields separated by ';'", [], True),
    "tabs": (csv_params(), {"raw/data.csv": GOOD_CSV.replace(",", "\t")}, "fields separated by tab", [], True),
    "spaces": (csv_params(), {"raw/data.csv": GOOD_CSV.replace(",", " ")}, "fields separated by space", [], True),
    "tabs set by data.delimiter": (
        csv_params(delimiter="tab"), {"raw/data.csv": GOOD_CSV.replace(",", "\t")}, "fields separated by tab", [], True
    ),
    "comment lines skipped": (csv_params(comment="#"), {"raw/data.csv": with_comments(GOOD_CSV)}, "30 rows", [], True),
    "unlabeled rows dropped": (
        csv_params(drop_missing_target=True), {"raw/data.csv": GOOD_CSV + "5,1.5,red,\n6,2.5,blue,\n"}, "30 rows",
        ["prepare: raw/data.csv: dropped 2 of 32 rows without a label in column 'label'"], True,
    ),
    "an ID column dropped": (csv_params(drop_columns=["id"]), {"raw/data.csv": ID_CSV}, "30 rows", [], True),
    "an ID column warned about": (
        csv_params(), {"raw/data.csv": ID_CSV}, "30 rows", ["warning: raw/data.csv: column 'id' has 30 distinct"], False
    ),
    "a stray text cell coerced and imputed": (
        csv_params(coerce_numeric=True, impute="median"), {"raw/data.csv": stray_text_csv()}, "30 rows", [], False
    ),
}


@pytest.fixture(scope="module")
def csv_results(tmp_path_factory):
    """The good CSV prepared once; then every case of CSV_FAILURES and CSV_SUCCESSES in a copy of
    that project, its outputs in place, two processes at a time. ``(good hashes, {name: (project,
    result, hashes after)})``."""
    base = tmp_path_factory.mktemp("csv")
    good = make_project(base / "good")
    assert run_prepare(good, csv_params(), {"raw/data.csv": GOOD_CSV}).returncode == 0
    before = hashes(good, PREPARED_DIR)
    cases = {**CSV_FAILURES, **CSV_SUCCESSES}

    def run(item):
        index, name = item
        project = base / f"case{index}"
        shutil.copytree(good, project)
        params, files = cases[name][:2]
        result = run_stage(project, "prepare", params, files)
        return name, (project, result, hashes(project, PREPARED_DIR))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return before, dict(pool.map(run, enumerate(cases)))


@pytest.mark.parametrize("case", sorted(CSV_FAILURES))
def test_a_bad_csv_gives_one_error_line_and_keeps_the_last_good_outputs(csv_results, case):
    before, results = csv_results
    project, result, after = results[case]
    assert_one_line_error(result, None, *CSV_FAILURES[case][2])
    assert after == before


@pytest.mark.parametrize("case", sorted(CSV_SUCCESSES))
def test_a_real_world_csv_works_with_the_option_its_error_names(csv_results, case):
    before, results = csv_results
    project, result, after = results[case]
    _, _, shown, notes, same = CSV_SUCCESSES[case]
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith(("warning: raw/data.csv: ", "prepare: raw/data.csv: ")) for line in lines), lines
    for note in notes:
        assert any(line.startswith(note) for line in lines), (note, lines)
    assert sorted(after) == sorted(before)
    if same:  # the same rows and columns as the comma-separated GOOD_CSV: the same bytes
        assert after == before
    good_names = load_npz(project.parent / "good" / PREPARED_DIR / "preprocessing.npz")["feature_names"]
    names = load_npz(project / PREPARED_DIR / "preprocessing.npz")["feature_names"]
    if case == "an ID column warned about":  # warned, and (no option says otherwise) one-hot encoded:
        training_rows = len(load_npz(project / PREPARED_DIR / "train.npz")["rows"])  # one ID each
        assert len(names) == len(good_names) + training_rows
    else:  # a coerced column stays one numeric input: never one-hot encoded
        assert names.tolist() == good_names.tolist()


# ---------------------------------------------------------------------------------------------
# Prepared data and model files are checked when a stage loads them: each problem is one line
# naming the file, exit code 2, and no output changes

TINY = {
    "model": {"hidden_layers": [4], "activations": ["tanh"]},
    "train": {"population_size": 8, "max_generations": 5},
}
OUTPUT_DIRS = (PREPARED_DIR, "models", "metrics")


def edit_npz(path: Path, change) -> None:
    arrays = load_npz(path)
    change(arrays)
    save_npz(path, arrays)


def put(name, index, value):
    def change(arrays):
        arrays[name] = arrays[name].astype(type(value) if isinstance(value, float) else arrays[name].dtype)
        arrays[name][index] = value
    return change


def replace(name, make):
    def change(arrays):
        arrays[name] = make(arrays[name])
    return change


def as_regression(arrays):
    arrays["task"], arrays["classes"] = np.array("regression"), np.array([], dtype=str)


# name: (stage, {file: its change}, strings the error line must hold)
TAMPERED = {
    "NaN in the test features": ("evaluate", {"data/prepared/test.npz": put("X", (3, 2), np.nan)},
                                 ["data/prepared/test.npz", "X has 1 NaN or infinite", "[3, 2]"]),
    "a test label outside the classes": ("evaluate", {"data/prepared/test.npz": put("y", 5, 2)},
                                         ["data/prepared/test.npz", "outside the 2 classes", "row 5"]),
    "fewer test labels than rows": ("evaluate", {"data/prepared/test.npz": replace("y", lambda y: y[:-1])},
                                    ["data/prepared/test.npz", "one label per row"]),
    "a test feature column missing": ("evaluate", {"data/prepared/test.npz": replace("X", lambda X: X[:, :-1])},
                                      ["data/prepared/test.npz", "30 columns", "preprocessing.npz"]),
    "NaN in the model's scaling": ("evaluate", {"models/model.npz": put("pre_mean", 0, np.nan)},
                                   ["models/model.npz", "pre_mean"]),
    "a model of other classes": ("evaluate", {"models/model.npz":
                                 replace("classes", lambda c: np.array(["no", "yes"]))},
                                 ["models/model.npz", "['no', 'yes']", "preprocessing.npz"]),
    "inf in the training features": ("train", {"data/prepared/train.npz": put("X", (0, 0), np.inf)},
                                     ["data/prepared/train.npz", "NaN or infinite"]),
    "a negative training label": ("train", {"data/prepared/train.npz": put("y", 0, -1)},
                                  ["data/prepared/train.npz", "outside the 2 classes"]),
    "float training labels": ("baseline", {"data/prepared/train.npz": replace("y", lambda y: y.astype(float))},
                              ["data/prepared/train.npz", "class indices"]),
    "an extra validation column": ("train", {"data/prepared/validation.npz":
                                   replace("X", lambda X: np.hstack([X, X[:, :1]]))},
                                   ["data/prepared/validation.npz", "30 columns"]),
    "three classes for a binary task": ("train", {"data/prepared/preprocessing.npz":
                                        replace("classes", lambda c: np.array(["0", "1", "2"]))},
                                        ["data/prepared/preprocessing.npz", "3 class labels", "binary"]),
    "NaN in a regression target": ("train", {"data/prepared/preprocessing.npz": as_regression,
                                             "data/prepared/train.npz": put("y", 4, np.nan)},
                                   ["data/prepared/train.npz", "y has", "NaN"]),
}


@pytest.fixture(scope="module")
def tampered_results(tmp_path_factory):
    """prepare, train and evaluate once on a tiny budget; then each case of TAMPERED in a copy:
    the files edited, the stage run. ``{name: (result, hashes before the stage, hashes after)}``."""
    base = tmp_path_factory.mktemp("tampered")
    good = make_project(base / "good")
    (good / "params.yaml").write_text(yaml.safe_dump(TINY))
    (good / "runtime.yaml").write_text("progress: false\n")
    for stage in ("prepare", "train", "evaluate"):
        result = run_stage(good, stage)
        assert result.returncode == 0, result.stderr

    def run(item):
        index, name = item
        stage, edits, _ = TAMPERED[name]
        project = base / f"case{index}"
        shutil.copytree(good, project)
        for edited, change in edits.items():
            edit_npz(project / edited, change)
        before = hashes(project, *OUTPUT_DIRS)
        result = run_stage(project, stage)
        return name, (result, before, hashes(project, *OUTPUT_DIRS))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, enumerate(TAMPERED)))


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_bad_prepared_or_model_file_gives_one_error_line_naming_it(tampered_results, case):
    result, before, after = tampered_results[case]
    assert_one_line_error(result, None, *TAMPERED[case][2])
    assert after == before and any(path.startswith("models/") for path in before)
