"""A stage's outputs are all old or all new: checked writable before any work, renamed in together."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import trained_project
from test_pipeline import environment, set_params
from test_pipeline import output_hashes as hashes

from evomlp.artifacts import Outputs, atomic_path, save_json
from evomlp.errors import EvomlpError

TRAIN_OUTPUTS = ("models/model.npz", "metrics/train/metrics.json", "metrics/plots/history.csv")
DATA = {"dataset": "iris"}


def stage(project: Path, name: str, limit_file_size: int | None = None) -> subprocess.CompletedProcess:
    def limits() -> None:
        if limit_file_size is not None:  # a write past it fails with EFBIG, as a full disk fails
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, env=environment(),
                          capture_output=True, text=True, timeout=300, preexec_fn=limits)


def one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    where = trained_project(tmp_path_factory.mktemp("outputs"), DATA)
    set_params(where, {"train": {"max_generations": 300}})  # a history.csv larger than the model
    assert stage(where, "train").returncode == 0
    return where


def test_a_failure_before_the_block_ends_leaves_every_old_output_and_no_temporary(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "sub" / "b.json"
    save_json(first, {"v": 1})
    outputs = Outputs(first, second)
    with pytest.raises(RuntimeError), outputs.written():
        save_json(first, {"v": 2})
        assert first.read_text() == '{\n  "v": 1\n}\n'  # still the old one: renamed at the end only
        raise RuntimeError("the second output could not be computed")
    assert first.read_text() == '{\n  "v": 1\n}\n' and not second.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json"]
    with outputs.written():
        save_json(first, {"v": 3})
        save_json(second, {"v": 3})
    assert first.read_text() == second.read_text() == '{\n  "v": 3\n}\n'


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask):
    script = ("import os, sys; os.umask(int(sys.argv[2], 8)); from evomlp.artifacts import save_json; "
              "save_json(sys.argv[1], {'a': 1})")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.json"), oct(umask)[2:]], check=True)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o666 & ~umask


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "models").write_text("not a folder")
    with pytest.raises(EvomlpError, match=r"models/model.npz: cannot write there .*nothing was run"):
        Outputs(tmp_path / "models" / "model.npz")
    assert (tmp_path / "models").read_text() == "not a folder"


def test_a_write_error_is_one_line_naming_the_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(EvomlpError, match=r"out.json: cannot write \(") as caught:
        with atomic_path(target) as temporary:
            temporary.mkdir()  # writing where a folder now stands: IsADirectoryError
            raise IsADirectoryError(21, "Is a directory")
    assert len(str(caught.value).splitlines()) == 1


def test_a_write_failure_in_the_train_stage_keeps_all_its_old_outputs(project):
    """The model is written first and fits the limit; history.csv does not: both stay old."""
    before = hashes(project)
    model_size = (project / "models/model.npz").stat().st_size
    history_size = (project / "metrics/plots/history.csv").stat().st_size
    assert model_size < history_size, "the fixture needs a history larger than its model"
    (project / "runtime.yaml").write_text("progress: false\ncheckpoint_every: 0\nlive_every: 0\n")
    result = stage(project, "train", limit_file_size=(model_size + history_size) // 2)
    one_line_error(result, "metrics/plots/history.csv", "cannot write")
    assert hashes(project) == before


def chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("folder, stage_name, named", [
    ("models", "train", "models/model.npz"),
    ("metrics", "evaluate", "metrics/test.json"),
    ("data/prepared", "prepare", "data/prepared"),
])
def test_a_read_only_output_folder_fails_before_any_work(project, folder, stage_name, named):
    if not chattr(project / folder, "+i"):
        pytest.skip("chattr +i is not permitted here")
    try:
        before = hashes(project)
        result = stage(project, stage_name)
        one_line_error(result, named, "nothing was run")
        assert "train: stopped" not in result.stderr and "evaluate:" not in result.stdout
        assert hashes(project) == before
    finally:
        chattr(project / folder, "-i")
    os.sync()


def test_a_run_too_large_for_memory_is_refused_before_any_allocation():
    import numpy as np

    from evomlp.params import validate_params
    from evomlp.training import train_network

    X = np.zeros((40, 30))
    y = np.arange(40) % 2
    for change, named in [({"train": {"population_size": 1_000_000}}, "population 1000000 x 4097"),
                          ({"model": {"hidden_layers": [100_000, 100_000]}}, "population 50 x 10003300001")]:
        params = validate_params(change)
        with pytest.raises(EvomlpError) as caught:  # 229 GiB and 19 TiB: a MemoryError if it allocated
            train_network(params["model"], params["train"], params["optimizer"]["snes"], params["runtime"],
                          "binary", np.array([0, 1]), (X, y), (X, y))
        message = str(caught.value)
        assert message.startswith("train.population_size, model.hidden_layers: the run needs about ")
        assert named in message and "available" in message and len(message.splitlines()) == 1
