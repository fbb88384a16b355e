"""docs/scale-out.md's example, run as written: a scheduler and two pinned workers started by hand
on 127.0.0.1 train the same model bytes as a local run; a scheduler nobody runs is one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_pipeline import environment, repo, run, set_params  # noqa: F401  (repo: the fixture, a fresh project copy)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/scale-out.md"
MARK = "# scale-out example"


def example() -> str:
    """The doc's example block: the fenced bash block whose first line is the mark."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [block for block in blocks if block.startswith(MARK)]
    assert len(found) == 1, f"docs/scale-out.md: expected one bash block starting with {MARK!r}"
    return found[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepared(repo: Path) -> Path:
    run([sys.executable, "-m", "stages.prepare"], repo)
    return repo


def test_the_example_trains_the_local_runs_bytes_through_a_hand_started_cluster(repo: Path) -> None:
    pytest.importorskip("distributed")
    prepared(repo)
    set_params(repo, {"runtime": {"progress": True}})  # the stage then says what evaluates
    local = run([sys.executable, "-m", "stages.train"], repo)
    assert "evaluating" in local.stderr and "(dask)" not in local.stderr
    expected = {name: (repo / name).read_bytes() for name in ("models/model.npz", "metrics/train/metrics.json")}
    for name in expected:
        (repo / name).unlink()
    runtime = (repo / "runtime.yaml").read_bytes()

    script = example()
    # its own process group, so that whatever it leaves running is stopped here
    process = subprocess.Popen(["bash", "-e", "-c", script], cwd=repo, env=dict(environment(), PORT=str(free_port())),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=900)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert process.returncode == 0, f"the example failed ({process.returncode}):\n{stdout}\n{stderr[-3000:]}"
    assert "train: evaluating 2 workers (dask) (runtime.n_jobs -1)" in stderr
    for name, content in expected.items():
        assert (repo / name).read_bytes() == content, f"{name}: other bytes through the cluster"
    assert (repo / "runtime.yaml").read_bytes() == runtime  # put back by the example


def test_train_with_no_scheduler_at_the_address_is_one_line_and_exit_2(repo: Path) -> None:
    pytest.importorskip("distributed")
    prepared(repo)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    (repo / "runtime.yaml").write_text(f"backend: dask\nscheduler_address: {address}\nn_jobs: -1\nprogress: false\n")
    result = run([sys.executable, "-m", "stages.train"], repo, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: runtime.scheduler_address: no dask scheduler answered at '{address}' within 10 s")
    assert "Traceback" not in result.stderr
    assert not (repo / "models/model.npz").exists()
