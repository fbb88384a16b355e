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
    """Update sections of params.yaml; the section ``runtime`` goes to runtime.yaml (flat)."""
    changes = dict(changes)
    runtime = changes.pop("runtime", None)
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    if runtime is not None:
        runtime_path = repo / "runtime.yaml"
        settings = (yaml.safe_load(runtime_path.read_text()) if runtime_path.exists() else None) or {}
        runtime_path.write_text(yaml.safe_dump({**settings, **runtime}, sort_keys=False))


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh git + DVC repo holding the project's pipeline code and params (small budget)."""
    for name in ("evomlp", "stages"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", "runtime.yaml", ".dvcignore"):
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
    train = json.loads((repo / "metrics/train/metrics.json").read_text())
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

    # ...and forcing a rerun with them gives the same bytes (dvc.lock holds every output's hash):
    # two threads, two loky processes, and in-process with numpy alone (no compiled loops); with
    # live progress written never (but at the end) or every generation
    for runtime, extra_env in [
        ({"n_jobs": 2, "backend": "threading", "live_every": 0}, {}),
        ({"n_jobs": 2, "backend": "loky"}, {}),
        ({"n_jobs": 1, "live_every": 1}, {"EVOMLP_NUMBA": "0"}),
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
    assert json.loads((repo / "metrics/train/metrics.json").read_text())["evaluations"] == 16 * 41

    # and dvc metrics diff (committed vs workspace) shows what moved
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo).stdout)
    evaluations = diff["metrics/train/metrics.json"]["evaluations"]
    assert (evaluations["old"], evaluations["new"]) == (20 * 41, 16 * 41)
    assert "metrics/baseline.json" not in diff  # the baseline did not move


def live_metrics(repo: Path) -> dict:
    """metrics/train/metrics.json as it is now ({} while absent or being replaced)."""
    try:
        return json.loads((repo / "metrics/train/metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def test_dvc_metrics_show_follows_a_running_training(repo: Path) -> None:
    set_params(repo, {"train": {"max_generations": 100_000}, "runtime": {"live_every": 5}})
    dvc("repro", "prepare", cwd=repo)
    process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while live_metrics(repo).get("step", 0) < 10 and process.poll() is None:
            time.sleep(0.01)
        assert process.poll() is None, f"the run ended before its progress was seen:\n{process.stderr.read()}"
        shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
        (workspace,) = shown.values()
        live = workspace["data"]["metrics/train/metrics.json"]["data"]
        assert live["step"] == live["generations"] and live["step"] % 5 == 0 and 10 <= live["step"] < 100_000
        assert live["evaluations"] == 20 * (live["generations"] + 1)
        assert live["best_generation"] <= live["generations"]
        assert 0.5 < live["validation_accuracy"] <= 1 and live["validation_loss"] > 0
        # only what a rerun reproduces: the final metrics' keys and dvclive's step, no time of any kind
        assert set(live) == {"step", "train_loss", "validation_loss", "best_generation", "generations",
                             "evaluations", "nonfinite_fitness", "train_accuracy", "validation_accuracy"}
        assert not (repo / "models/model.npz").exists()  # the outputs come at the end only
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
    assert process.returncode == 130


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
    # the last kill comes at generation 95 or later (saves are capped): 2,000 keeps the run going past it
    set_params(repo, {"train": {"max_generations": 2000, "population_size": 16, "optimizer": optimizer},
                      "runtime": {"checkpoint_every": 1}})
    run([sys.executable, "-m", "stages.prepare"], repo)
    run([sys.executable, "-m", "stages.train"], repo)
    outputs = ("models/model.npz", "metrics/train/metrics.json", "metrics/plots/history.csv")
    final = ("models/model.npz", "metrics/plots/history.csv")  # the live metrics are rewritten during a run
    reference = {name: (repo / name).read_bytes() for name in outputs}
    for name in outputs:
        (repo / name).unlink()

    checkpoints = repo / ".checkpoints"
    killed_at = []
    for step in (3, 17, 25, 25, 25):
        # past the generation the last run saved (saves are skipped to cap their cost, so a run
        # can be killed well after a fixed target): the new run has resumed and saved once more
        target = (killed_at[-1] if killed_at else 0) + step
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
        assert not any((repo / name).exists() for name in final), "a killed run left an output behind"
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
    train = json.loads((repo / "metrics/train/metrics.json").read_text())
    assert train["evaluations"] == 20 * 41
    # DE gives the same bytes for any n_jobs and backend too
    de_model, lock = (repo / "models/model.npz").read_bytes(), (repo / "dvc.lock").read_text()
    for runtime in ({"n_jobs": 2, "backend": "threading"}, {"n_jobs": 2, "backend": "loky"}, {"n_jobs": 1}):
        set_params(repo, {"runtime": runtime})
        dvc("repro", "-f", "train", cwd=repo)
        assert (repo / "models/model.npz").read_bytes() == de_model, runtime
        assert (repo / "dvc.lock").read_text() == lock


def output_hashes(repo: Path) -> dict[str, str]:
    import hashlib

    return {path.relative_to(repo).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in ("models", "metrics", "data/prepared") for path in sorted((repo / folder).rglob("*"))
            if path.is_file()}


BAD_EDITS = [  # (file, text to append or a (old, new) replacement, what the one line must name)
    ("params.yaml", ("population_size: 20", "population_size: fifty"), "train.population_size"),
    ("params.yaml", ("population_size: 20", "populaton_size: 20"), "did you mean 'population_size'"),
    ("params.yaml", ("population_size: 20", "population_size: 20.0"), "train.population_size"),
    ("params.yaml", "trian:\n  seed: 1\n", "unknown section trian"),
    # DVC reads params.yaml itself before any stage: its own (multi-line) error, outputs kept all the same
    ("params.yaml", ("population_size: 20", "population_size: 20\n  population_size: 30"), "DVC: found duplicate key"),
    ("params.yaml", "x: &a [1]\ny: *a\n", "an alias *a"),
    ("runtime.yaml", "n_job: 2\n", "runtime.yaml: n_job: unknown key"),
]


@pytest.mark.parametrize("file, edit, named", BAD_EDITS, ids=[named for _, _, named in BAD_EDITS])
def test_an_invalid_edit_fails_dvc_repro_in_one_line_and_keeps_every_output(repo: Path, file, edit, named) -> None:
    dvc("repro", cwd=repo)
    before = output_hashes(repo)
    path = repo / file
    text = path.read_text() if path.exists() else ""
    path.write_text(text.replace(*edit, 1) if isinstance(edit, tuple) else text + edit)
    assert path.read_text() != text
    if file == "runtime.yaml":  # no stage depends on it: it is checked whenever anything reruns
        set_params(repo, {"train": {"seed": 1}})
    failed = run([sys.executable, "-m", "dvc", "repro"], repo, check=False)
    assert failed.returncode != 0
    errors = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("error: ")]
    if named.startswith("DVC: "):
        assert named[5:] in failed.stdout + failed.stderr and not errors
    else:
        assert len(errors) == 1 and named in errors[0], failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert output_hashes(repo) == before
