"""dvc.yaml lists each stage's real dependencies: the code it imports and the params it reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from evomlp.params import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in ("evomlp", "stages"):
        return None
    base = ROOT.joinpath(*parts)
    if base.is_dir():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else None


def imported_files(start: Path) -> set[Path]:
    """Project files reachable by imports from ``start`` (module level and inside functions)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for parent in path.relative_to(ROOT).parents[:-1]:  # importing a.b.c runs a/__init__ and a/b/__init__
            init = ROOT / parent / "__init__.py"
            if init.exists():
                todo.append(init)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                found = module_file(name)
                if found is not None:
                    todo.append(found)
    return seen


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_every_imported_project_file_is_a_dependency_and_code_is_the_two_packages(stage):
    definition = PIPELINE[stage]
    module = definition["cmd"].split("-m ")[1].strip()
    files = imported_files(module_file(module))
    deps = definition["deps"]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in files if not covered(p, deps))
    assert not missing, f"{stage} imports {missing} but dvc.yaml does not list them"
    # the code is the two packages whole (two columns of dvc exp show, never a stale import list)
    assert [d for d in deps if d.startswith(("evomlp", "stages"))] == ["evomlp", "stages"], stage


@pytest.mark.parametrize(
    "stage, sections",
    [("prepare", ["data"]), ("train", ["model", "train"]), ("baseline", ["model", "baseline"]), ("evaluate", [])],
)
def test_params_are_exactly_the_result_affecting_keys(stage, sections):
    listed = set(PIPELINE[stage].get("params", []))
    expected = {f"{section}.{key}" for section in sections for key in SCHEMA[section]}
    if stage == "train":  # and the chosen optimizer's own block, and no other optimizer's
        expected.add("optimizer.${train.optimizer}")
        expected.add("data.target")  # the model file records the target's name
    assert listed == expected
    assert not any(key.startswith("runtime.") for key in listed)


def test_the_check_stage_reruns_whenever_any_stage_would_and_every_stage_comes_after_it():
    check = PIPELINE["check"]
    # params.yaml as a file (any section), not runtime.yaml, which cannot change results and so must
    # not change dvc.lock
    assert "params" not in check and "runtime.yaml" not in check["deps"]
    upstream = {dep for stage in PIPELINE.values() for dep in stage["deps"]} - {
        out for stage in PIPELINE.values() for out in (next(iter(o)) if isinstance(o, dict) else o
                                                      for o in stage.get("outs", []) + stage.get("metrics", []))}
    assert set(check["deps"]) == upstream | {"params.yaml"}, "a change that reruns a stage must rerun check first"
    (checked,) = check["outs"]
    assert checked in PIPELINE["prepare"]["deps"]  # prepare is upstream of train, evaluate, baseline
    for name in ("train", "evaluate", "baseline"):
        assert "data/prepared" in PIPELINE[name]["deps"]


def test_metrics_and_plots_live_in_git():
    for stage in PIPELINE.values():
        assert "plots" not in stage  # charts are defined once, in the top-level plots section
        for kind in ("metrics", "outs"):
            for entry in stage.get(kind, []):
                (path, options), = entry.items() if isinstance(entry, dict) else [(entry, {})]
                if kind == "metrics" or path.startswith("metrics/"):
                    assert options == {"cache": False}, path
