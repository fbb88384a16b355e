"""The real DVC pipeline, run in a temporary git repository on a small budget."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SMALL_BUDGET = {"train": {"max_generations": 40, "population_size": 20}, "runtime": {"progress": False}}


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def run(command: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(environment(), **extra_env)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*arguments: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *arguments], cwd, **extra_env)


def set_params(repo: Path, changes: dict) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh git + DVC repo holding the project's pipeline code and params (small budget)."""
    for name in ("evomlp", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "data/raw").mkdir(parents=True)
    shutil.copy(ROOT / "data/raw/README.md", tmp_path / "data/raw/README.md")
    run(["git", "init", "-q"], tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    dvc("config", "core.analytics", "false", cwd=tmp_path)
    set_params(tmp_path, SMALL_BUDGET)
    return tmp_path


def test_pipeline_end_to_end(repo: Path) -> None:
    first = dvc("repro", cwd=repo)
    assert ran_stages(first.stdout) == {"check", "prepare", "train", "evaluate", "baseline", "plots"}

    test = json.loads((repo / "metrics/test.json").read_text())
    baseline = json.loads((repo / "metrics/baseline.json").read_text())
    train = json.loads((repo / "metrics/train.json").read_text())
    assert set(test) == set(baseline) >= {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert 0.85 <= test["accuracy"] <= 1 and 0.5 < test["roc_auc"] <= 1
    assert train["generations"] == 40 and train["evaluations"] == 20 * 41
    history = (repo / "metrics/plots/history.csv").read_text().splitlines()
    assert history[0].startswith("generation,n_evaluations,best_fitness")
    assert len(history) == 1 + 41
    assert (repo / "metrics/plots/roc.csv").read_text().startswith("fpr,tpr,threshold\n")
    assert len((repo / "metrics/plots/confusion.csv").read_text().splitlines()) == 1 + 171
    assert sorted(path.name for path in (repo / ".checkpoints").iterdir()) == ["train.lock"]  # no checkpoint left
    model_bytes = (repo / "models/model.npz").read_bytes()
    lock = (repo / "dvc.lock").read_text()

    # nothing changed: nothing runs
    assert ran_stages(dvc("repro", cwd=repo).stdout) == set()

    # runtime settings must not change results, so they are no dependency
    set_params(repo, {"runtime": {"n_jobs": 2, "backend": "threading"}})
    assert ran_stages(dvc("repro", cwd=repo).stdout) == set()

    # ...and forcing a rerun with them gives the same bytes: two threads, two loky processes,
    # and in-process with numpy alone (no compiled loops)
    for runtime, extra_env in [
        ({"n_jobs": 2, "backend": "threading"}, {}),
        ({"n_jobs": 2, "backend": "loky"}, {}),
        ({"n_jobs": 1}, {"EVOMLP_NUMBA": "0"}),
    ]:
        set_params(repo, {"runtime": runtime})
        forced = dvc("repro", "-f", "train", cwd=repo, **extra_env)
        assert "train" in ran_stages(forced.stdout)
        assert (repo / "models/model.npz").read_bytes() == model_bytes, (runtime, extra_env)
        assert (repo / "dvc.lock").read_text() == lock

    # a result param reruns train and what depends on it, not prepare nor baseline
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], repo)
    set_params(repo, {"train": {"population_size": 16}})
    assert ran_stages(dvc("repro", cwd=repo).stdout) == {"check", "train", "evaluate", "plots"}
    assert json.loads((repo / "metrics/train.json").read_text())["evaluations"] == 16 * 41

    # and dvc metrics diff (committed vs workspace) shows what moved
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo).stdout)
    evaluations = diff["metrics/train.json"]["evaluations"]
    assert (evaluations["old"], evaluations["new"]) == (20 * 41, 16 * 41)
    assert "metrics/baseline.json" not in diff  # the baseline did not move


def slot_generation(path: Path) -> int:
    """The generation a checkpoint slot holds; -1 if it is absent or being written."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return int(arrays["optimizer_generation"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return -1


def checkpoint_generation(directory: Path) -> int:
    """The newest generation in the train checkpoint's slots (what a resume starts from); -1 if none."""
    return max((slot_generation(path) for path in directory.glob("train-*.[ab].npz")), default=-1)


def test_editing_the_users_csv_makes_prepare_stale(repo: Path) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    csv = repo / "data/raw/flowers.csv"
    frame.to_csv(csv, index=False)
    set_params(repo, {"data": {"dataset": "data/raw/flowers.csv", "target": "target"}})
    dvc("repro", cwd=repo)
    assert "up to date" in dvc("status", cwd=repo).stdout
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")  # the user drops a row
    status = dvc("status", cwd=repo).stdout
    assert "prepare:" in status and "modified:" in status and "data/raw" in status
    assert ran_stages(dvc("repro", cwd=repo).stdout) >= {"prepare"}
    rows = 0
    for part in ("train", "validation", "test"):
        with np.load(repo / f"data/prepared/{part}.npz") as arrays:
            rows += arrays["y"].shape[0]
    assert rows == len(frame) - 1


@pytest.mark.parametrize("optimizer", ["currenttopbest1bin", "pgpe"])  # one DE, one evolution strategy
def test_sigkilled_training_resumes_to_the_same_bytes(repo: Path, optimizer: str) -> None:
    set_params(repo, {"train": {"max_generations": 400, "population_size": 16, "optimizer": optimizer},
                      "runtime": {"checkpoint_every": 1}})
    run([sys.executable, "-m", "stages.prepare"], repo)
    run([sys.executable, "-m", "stages.train"], repo)
    outputs = ("models/model.npz", "metrics/train.json", "metrics/plots/history.csv")
    reference = {name: (repo / name).read_bytes() for name in outputs}
    for name in outputs:
        (repo / name).unlink()

    checkpoints = repo / ".checkpoints"
    killed_at = []
    for target in (3, 20, 45, 70, 95):
        process = subprocess.Popen(
            [sys.executable, "-m", "stages.train"], cwd=repo, env=environment(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        while checkpoint_generation(checkpoints) < target and process.poll() is None:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stderr = process.stderr.read()
        generation = checkpoint_generation(checkpoints)
        assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{stderr}"
        assert generation >= target
        if killed_at:
            assert f"resuming from generation {killed_at[-1]}" in stderr
        killed_at.append(generation)
        assert not any((repo / name).exists() for name in outputs), "a killed run left an output behind"
    assert len(set(killed_at)) == 5

    finished = run([sys.executable, "-m", "stages.train"], repo)
    assert f"resuming from generation {killed_at[-1]}" in finished.stderr
    for name in outputs:
        assert (repo / name).read_bytes() == reference[name], f"{name} differs after resume"
    assert not list(checkpoints.glob("train-*")), "a finished run must remove its checkpoint"


def test_interrupted_pipeline_then_dvc_repro_gives_the_committed_lock(repo: Path) -> None:
    set_params(repo, {"train": {"max_generations": 200}})  # room to be killed at generation 10 or later
    dvc("repro", cwd=repo)
    lock = (repo / "dvc.lock").read_text()
    (repo / "models/model.npz").unlink()
    set_params(repo, {"runtime": {"checkpoint_every": 1}})
    process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while checkpoint_generation(repo / ".checkpoints") < 10 and process.poll() is None:
        time.sleep(0.002)
    assert process.poll() is None, "the run ended before it could be killed"
    process.kill()
    process.wait()
    dvc("repro", cwd=repo)
    assert (repo / "dvc.lock").read_text() == lock


def test_ctrl_c_saves_the_state_and_says_where(repo: Path) -> None:
    set_params(repo, {"train": {"max_generations": 100_000}, "runtime": {"checkpoint_every": 5}})
    run([sys.executable, "-m", "stages.prepare"], repo)
    process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # interrupt once training is under way, seen by its first checkpoint (never after a fixed
    # sleep: on a loaded machine the imports alone can take longer than any guess)
    while checkpoint_generation(repo / ".checkpoints") < 5 and process.poll() is None:
        time.sleep(0.002)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    line = next(line for line in stderr.splitlines() if line.startswith("train: stopped at the end of generation "))
    generation = int(line.split("train: stopped at the end of generation ")[1].split()[0])
    assert line.endswith("the next run resumes from it; no outputs written")
    saved = next(path for path in (repo / ".checkpoints").glob("train-*.npz") if f" {path.relative_to(repo)}," in line)
    assert slot_generation(saved) == checkpoint_generation(repo / ".checkpoints") == generation > 0
    assert not (repo / "models/model.npz").exists()


def test_each_optimizer_owns_its_settings_in_the_pipeline(repo: Path) -> None:
    dvc("repro", cwd=repo)
    model = (repo / "models/model.npz").read_bytes()

    # another optimizer's block is no dependency of train: written out at its default (as in the
    # committed params.yaml) it changes nothing ...
    set_params(repo, {"optimizer": {"jade": {"bounds_handling": "midpoint"}}})
    assert ran_stages(dvc("repro", cwd=repo).stdout) <= {"check"}
    # ... and changed, it would be ignored: an error, before any stage loses its outputs
    set_params(repo, {"optimizer": {"jade": {"bounds_handling": "clip"}}})
    failed = run([sys.executable, "-m", "dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    assert "optimizer.jade.bounds_handling: 'clip' differs from its default" in failed.stderr + failed.stdout
    assert (repo / "models/model.npz").read_bytes() == model
    set_params(repo, {"optimizer": {"jade": {"bounds_handling": "midpoint"}}})

    # the chosen optimizer's own setting is a dependency of train
    set_params(repo, {"optimizer": {"snes": {"sigma": 0.3}}})
    assert ran_stages(dvc("repro", cwd=repo).stdout) == {"check", "train", "evaluate", "plots"}
    set_params(repo, {"optimizer": {"snes": {"sigma": 0.1}}})

    # switching optimizer is one key, the other blocks staying at their defaults (here to DE:
    # the default, an evolution strategy, is checked for n_jobs and backends elsewhere)
    set_params(repo, {"train": {"optimizer": "currenttopbest1bin"}})
    assert ran_stages(dvc("repro", cwd=repo).stdout) == {"check", "train", "evaluate", "plots"}
    assert (repo / "models/model.npz").read_bytes() != model
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["evaluations"] == 20 * 41
    # DE gives the same bytes for any n_jobs and backend too
    de_model, lock = (repo / "models/model.npz").read_bytes(), (repo / "dvc.lock").read_text()
    for runtime in ({"n_jobs": 2, "backend": "threading"}, {"n_jobs": 2, "backend": "loky"}, {"n_jobs": 1}):
        set_params(repo, {"runtime": runtime})
        dvc("repro", "-f", "train", cwd=repo)
        assert (repo / "models/model.npz").read_bytes() == de_model, runtime
        assert (repo / "dvc.lock").read_text() == lock
