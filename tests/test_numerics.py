"""Same bits on every CPU: the pin of BLAS and SIMD code paths, and the stages under forced kernels."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from evomlp import numerics
from evomlp.errors import EvomlpError
from evomlp.evaluation import FitnessProblem, _cached_chunk_loss
from evomlp.network import MLPSpec

ROOT = Path(__file__).resolve().parents[1]
AVX2 = set(numerics.REQUIRED_CPU_FLAGS)
FLAGS = numerics.cpu_flags() or set()
needs_avx2 = pytest.mark.skipif(not AVX2 <= FLAGS or os.uname().machine != "x86_64", reason="needs an x86-64 CPU with AVX2")


# -- the plan ------------------------------------------------------------------------------
def test_plan_pins_openblas_and_numpy_and_replaces_what_the_environment_preset() -> None:
    preset = {"OPENBLAS_CORETYPE": "SkylakeX", "NPY_DISABLE_CPU_FEATURES": "X86_V4", "PATH": "/bin"}
    wanted, result = numerics.plan(preset, AVX2 | {"avx512f"}, "x86_64", numpy_loaded=False)
    assert result.pinned
    assert wanted["OPENBLAS_CORETYPE"] == "Haswell"
    assert wanted["NPY_ENABLE_CPU_FEATURES"] == numerics._numpy_level()
    assert wanted["NPY_DISABLE_CPU_FEATURES"] is None  # numpy refuses both variables at once
    assert dict(result.replaced) == {"OPENBLAS_CORETYPE": "SkylakeX", "NPY_DISABLE_CPU_FEATURES": "X86_V4"}


@pytest.mark.parametrize(
    "environ, flags, machine, numpy_loaded, reason",
    [
        ({"EVOMLP_NATIVE_KERNELS": "1"}, AVX2, "x86_64", False, "EVOMLP_NATIVE_KERNELS=1"),
        ({}, {"avx", "fma", "f16c"}, "x86_64", False, "lacks avx2"),
        ({}, AVX2, "aarch64", False, "not x86-64"),
        ({}, None, "x86_64", False, "could not be read"),
        ({}, AVX2, "x86_64", True, "numpy was imported before evomlp"),
        ({"OPENBLAS_CORETYPE": "Haswell"}, AVX2, "x86_64", True, "numpy was imported before evomlp"),
    ],
)
def test_plan_says_why_it_cannot_pin(environ, flags, machine, numpy_loaded, reason) -> None:
    wanted, result = numerics.plan(environ, flags, machine, numpy_loaded)
    assert wanted == {} and not result.pinned
    assert reason in result.reason


def test_a_process_started_with_the_pin_counts_as_pinned() -> None:
    environ = {"OPENBLAS_CORETYPE": "Haswell", "NPY_ENABLE_CPU_FEATURES": numerics._numpy_level(), "MKL_CBWR": "AVX2"}
    wanted, result = numerics.plan(environ, AVX2, "x86_64", numpy_loaded=True)
    assert wanted == {} and result.pinned and "started with" in result.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert numerics.cpu_flags(str(cpuinfo)) == {"fpu", "avx", "avx2", "fma"}
    assert numerics.cpu_flags(str(tmp_path / "missing")) is None


# -- a process that imports evomlp first computes with the pinned kernels -----------------
def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in numerics._ENV_KEYS}
    environ.pop(numerics.NATIVE_ENV, None)
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)


@needs_avx2
def test_a_preset_environment_is_overridden_before_numpy_loads() -> None:
    code = "import evomlp, numpy; from evomlp import numerics; s = numerics.status(); print(s.pinned, s.blas, s.numpy_simd)"
    result = python(code, OPENBLAS_CORETYPE="SandyBridge", NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "True"
    assert "Haswell" in result.stdout and numerics.NUMPY_LEVEL in result.stdout
    native = python(code, OPENBLAS_CORETYPE="SandyBridge", EVOMLP_NATIVE_KERNELS="1")
    assert native.stdout.split()[0] == "False" and "Sandybridge" in native.stdout.replace("SandyBridge", "Sandybridge")


def test_pinned_command_runs_with_the_pinned_environment() -> None:
    result = python(
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'evomlp.pinned', 'env'])",
        OPENBLAS_CORETYPE="SandyBridge",
    )
    lines = set(result.stdout.splitlines())
    if AVX2 <= FLAGS:
        assert "OPENBLAS_CORETYPE=Haswell" in lines and f"NPY_ENABLE_CPU_FEATURES={numerics.NUMPY_LEVEL}" in lines
    else:
        assert "OPENBLAS_CORETYPE=SandyBridge" in lines


def test_a_worker_with_other_kernels_refuses_the_problem() -> None:
    spec = MLPSpec(3, (4,), ("relu",), 1, "binary")
    problem = FitnessProblem(spec, np.zeros((5, 3)), np.zeros(5), dtype="float64")
    problem.numerics = (("openblas Prescott",), "baseline")  # as built on another machine
    with pytest.raises(EvomlpError, match="results would differ in the last bits.*evomlp.pinned"):
        _cached_chunk_loss("token-of-another-machine", problem, np.zeros((2, spec.n_weights)), None)


def test_the_test_process_itself_is_pinned() -> None:
    if AVX2 <= FLAGS:
        assert numerics.status().pinned, numerics.describe()


# -- the stages under every kernel this CPU can run ----------------------------------------
def variants() -> list[tuple[str, dict]]:
    """(name, environment) pairs: every OpenBLAS core type this CPU runs, every numpy SIMD level
    NPY_DISABLE_CPU_FEATURES can switch off, and presets of both together."""
    found = [("environment as it is", {}), ("Haswell", {"OPENBLAS_CORETYPE": "Haswell"}),
             ("Zen", {"OPENBLAS_CORETYPE": "Zen"}), ("SandyBridge", {"OPENBLAS_CORETYPE": "SandyBridge"})]
    if "avx512f" in FLAGS:
        found.append(("SkylakeX", {"OPENBLAS_CORETYPE": "SkylakeX"}))
    from numpy._core._multiarray_umath import __cpu_dispatch__

    dispatch = list(__cpu_dispatch__)
    for start in range(len(dispatch)):
        off = " ".join(dispatch[start:])
        found.append((f"numpy without {off}", {"NPY_DISABLE_CPU_FEATURES": off}))
    # the fused forward pass compiled for each instruction set this CPU runs, and its numpy reference
    found += [("fused pass for AVX2", {"EVOMLP_FUSED_TARGET": "avx2"}),
              ("fused pass for the x86-64 baseline (no FMA instruction)", {"EVOMLP_FUSED_TARGET": "sse2"}),
              ("fused pass in numpy (no compiler)", {"EVOMLP_FUSED": "0"})]
    if "avx512f" in FLAGS:
        found.append(("fused pass for AVX-512", {"EVOMLP_FUSED_TARGET": "avx512"}))
    found.append(("preset SandyBridge + numpy baseline, 2 loky workers",
                  {"OPENBLAS_CORETYPE": "SandyBridge", "NPY_DISABLE_CPU_FEATURES": " ".join(dispatch),
                   "EVOMLP_TEST_RUNTIME": "loky"}))
    return found


DATASETS = {"binary": "breast_cancer", "multiclass": "wine"}
OUTPUTS = ("models/model.npz", "metrics/train/metrics.json", "metrics/test.json", "metrics/baseline.json",
           "metrics/plots/history.csv", "metrics/plots/roc.csv", "metrics/plots/confusion.csv")
RUN_STAGES = """
import os, runpy, sys, yaml
import stages.common
stages.common.exit_at_once = lambda code=0: None  # train ends its process at once; here the next stage runs in it
directories = sys.argv[1:]
sys.argv[1:] = []  # a stage takes no arguments
for directory in directories:
    os.chdir(directory)
    if os.environ.get("EVOMLP_TEST_RUNTIME"):
        runtime = yaml.safe_load(open("runtime.yaml"))
        runtime.update(n_jobs=2, backend=os.environ["EVOMLP_TEST_RUNTIME"])
        yaml.safe_dump(runtime, open("runtime.yaml", "w"), sort_keys=False)
    for stage in ("stages.train", "stages.evaluate", "stages.baseline"):
        runpy.run_module(stage, run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Prepared data of a binary and a multiclass set, small training budgets."""
    base = tmp_path_factory.mktemp("prepared")
    for name, dataset in DATASETS.items():
        directory = base / name
        directory.mkdir()
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["data"]["dataset"] = dataset
        params["train"].update(max_generations=30, population_size=20)
        params["baseline"]["max_iter"] = 40
        (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (directory / "runtime.yaml").write_text(yaml.safe_dump({"progress": False, "checkpoint_every": 0}))
        result = run_in(directory, [sys.executable, "-m", "stages.prepare"], {})
        assert result.returncode == 0, result.stderr
    return base


def run_in(directory: Path, command: list[str], env: dict) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in numerics._ENV_KEYS}
    environ.pop(numerics.NATIVE_ENV, None)
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(command, cwd=directory, env=environ, capture_output=True, text=True, timeout=600)


def outputs_of(prepared: Path, work: Path, env: dict) -> dict[str, str]:
    """Run train, evaluate and baseline on copies of the prepared sets; sha256 of every output."""
    shutil.copytree(prepared, work)
    directories = [str(work / name) for name in DATASETS]
    result = run_in(work, [sys.executable, "-c", RUN_STAGES, *directories], env)
    assert result.returncode == 0, result.stderr
    hashes = {}
    for name in DATASETS:
        for output in OUTPUTS:
            hashes[f"{name}/{output}"] = hashlib.sha256((work / name / output).read_bytes()).hexdigest()
    hashes["numerics line"] = next(line for line in result.stdout.splitlines() if line.startswith("numerics:"))
    return hashes


@pytest.mark.slow
@needs_avx2
def test_same_bytes_under_every_kernel_this_cpu_runs(prepared: Path, tmp_path: Path) -> None:
    runs = {name: outputs_of(prepared, tmp_path / str(index), env) for index, (name, env) in enumerate(variants())}
    reference_name, reference = next(iter(runs.items()))
    assert reference["numerics line"].startswith("numerics: pinned")
    for name, hashes in runs.items():
        differing = [key for key in reference if key != "numerics line" and hashes[key] != reference[key]]
        assert not differing, f"{name}: {differing} differ from {reference_name}"
        assert "Haswell" in hashes["numerics line"], (name, hashes["numerics line"])


@pytest.mark.slow
@needs_avx2
def test_without_the_pin_kernels_change_the_bytes(prepared: Path, tmp_path: Path) -> None:
    """The control: the comparison above can fail. Unpinned, two OpenBLAS kernels give other bytes
    where BLAS computes (scikit-learn's baseline), while training, whose forward pass is the fused
    one, gives the same history under both: that part no longer needs the pin."""
    native = {"EVOMLP_NATIVE_KERNELS": "1"}
    haswell = outputs_of(prepared, tmp_path / "haswell", dict(native, OPENBLAS_CORETYPE="Haswell"))
    sandybridge = outputs_of(prepared, tmp_path / "sandybridge", dict(native, OPENBLAS_CORETYPE="SandyBridge"))
    assert "NOT pinned" in haswell["numerics line"]
    differing = {key for key in haswell if key != "numerics line" and haswell[key] != sandybridge[key]}
    assert "multiclass/metrics/baseline.json" in differing, differing
    assert not differing & {"binary/metrics/plots/history.csv", "multiclass/metrics/plots/history.csv"}


def test_native_environment_restores_what_the_pin_replaced() -> None:
    result = python(
        "import os, evomlp; from evomlp import numerics; e = numerics.native_environment();"
        "print(os.environ['OPENBLAS_CORETYPE'], e.get('OPENBLAS_CORETYPE'), e.get('NPY_ENABLE_CPU_FEATURES'),"
        " e.get('NPY_DISABLE_CPU_FEATURES'), e[numerics.NATIVE_ENV])",
        OPENBLAS_CORETYPE="Zen", NPY_DISABLE_CPU_FEATURES="X86_V4",
    )
    assert result.returncode == 0, result.stderr
    pinned_value = "Haswell" if AVX2 <= FLAGS else "Zen"
    assert result.stdout.split() == [pinned_value, "Zen", "None", "X86_V4", "1"]
