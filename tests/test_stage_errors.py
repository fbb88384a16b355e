"""The prepare stage's error contract, through the real process: bad params or data give exit code 2,
exactly one stderr line ``error: <key or file>: ...``, no traceback, and nothing under data/prepared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evomlp.params import BUNDLED_DATASETS, RUNTIME, SCHEMA, ParamsError, validate_params

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("train.npz", "validation.npz", "test.npz", "preprocessing.npz")


def make_project(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in ("stages", "evomlp"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return where


def run_prepare(project: Path, params: str, files: dict[str, str | bytes] | None = None):
    """Write params.yaml (and data files), clear data/prepared, run the stage; its CompletedProcess."""
    shutil.rmtree(project / "data", ignore_errors=True)
    (project / "params.yaml").write_text(params, encoding="utf-8")
    for name, content in (files or {}).items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "-m", "stages.prepare"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def prepared_files(project: Path) -> list[Path]:
    prepared = project / "data" / "prepared"
    return sorted(prepared.rglob("*")) if prepared.exists() else []


def assert_one_line_error(result, project: Path, *names: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert result.stdout == ""
    assert prepared_files(project) == []
    return lines[0]


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
