"""Killed, interrupted and changed runs, with real processes: never a wrong model, no orphan, no leftover.

Every wait is for an observable event (a checkpoint's generation, a process gone, a file gone), with
a generous deadline that only catches a hang; no test sleeps a fixed time.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline import ROOT, checkpoint_generation, dvc, environment, repo, run, set_params, slot_generation  # noqa: F401

pytestmark = pytest.mark.slow

DEADLINE_S = 180.0
OUTPUTS = ("models/model.npz", "metrics/train/metrics.json", "metrics/plots/history.csv")
STOP_LINE = re.compile(r"train: stopped at the end of generation (\d+) \((.*?)\); generation \1 is saved in (\S+), ")


@pytest.fixture
def logs(tmp_path_factory) -> Path:
    """A folder for the runs' stderr, outside the repository (the fixture's ``tmp_path``)."""
    return tmp_path_factory.mktemp("logs")


def wait_until(condition, what: str, seconds: float = DEADLINE_S):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return result


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def processes_in(repo: Path) -> set[int]:
    """Live processes (zombies aside) working in ``repo``: dvc, the stage, its workers, loky's tracker."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                inside = Path(os.readlink(f"/proc/{entry}/cwd")).is_relative_to(repo)
            except OSError:
                continue
            stat = _stat(int(entry))
            if inside and stat is not None and stat[0] != "Z":
                found.add(int(entry))
    return found


def shm_entries_of(pids: set[int]) -> list[str]:
    """Names in /dev/shm made by one of ``pids`` (ours: evomlp-<pid>-; loky's and joblib's)."""
    marks = [f"evomlp-{pid}-" for pid in pids] + [f"loky-{pid}-" for pid in pids] + [f"folder_{pid}_" for pid in pids]
    return [name for name in os.listdir("/dev/shm") if any(mark in name for mark in marks)]


def start(command: list[str], repo: Path, log: Path, **options) -> subprocess.Popen:
    """A process in ``repo`` whose stderr (and that of every process it starts) goes to ``log``."""
    return subprocess.Popen(command, cwd=repo, env=environment(), stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), **options)


def dvc_repro(repo: Path, log: Path, *arguments: str) -> subprocess.Popen:
    return start([sys.executable, "-m", "dvc", "repro", *arguments], repo, log)


def train_stage(repo: Path, log: Path, **options) -> subprocess.Popen:
    return start([sys.executable, "-m", "stages.train"], repo, log, **options)


def wait_for_generation(repo: Path, generation: int, process: subprocess.Popen) -> int:
    reached = wait_until(lambda: checkpoint_generation(repo / ".checkpoints") >= generation or process.poll() is not None,
                         f"a checkpoint of generation {generation}")
    assert process.poll() is None, f"the run ended before generation {generation}"
    return reached


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_killing_dvc_stops_the_trainer_and_its_workers_and_the_next_repro_resumes_to_the_same_bytes(repo, logs, kill):
    set_params(repo, {"train": {"max_generations": 3000, "population_size": 16},
                      "runtime": {"checkpoint_every": 1, "backend": "loky", "n_jobs": 2}})
    dvc("repro", cwd=repo)
    reference = {name: (repo / name).read_bytes() for name in OUTPUTS}
    lock = (repo / "dvc.lock").read_text()

    log = logs / "killed.log"
    process = dvc_repro(repo, log, "-f", "train")
    wait_for_generation(repo, 20, process)
    running = processes_in(repo)
    assert len(running) >= 4  # dvc, the stage, its loky worker and loky's resource tracker
    process.send_signal(kill)  # what timeout, a CI cancel and docker stop send to dvc
    process.wait()
    started = time.monotonic()
    wait_until(lambda: not processes_in(repo), "every process of the run to exit")
    print(f"every process gone {time.monotonic() - started:.2f} s after the {kill.name} of dvc")
    assert not shm_entries_of(running), "/dev/shm holds something of the killed run"
    stopped = STOP_LINE.search(log.read_text())
    assert stopped, log.read_text()
    generation, reason, saved = int(stopped.group(1)), stopped.group(2), repo / stopped.group(3)
    assert f"pid {process.pid}) exited" in reason
    assert slot_generation(saved) == checkpoint_generation(repo / ".checkpoints") == generation >= 20
    assert not any((repo / name).exists() for name in OUTPUTS), "the orphan wrote outputs dvc.lock never records"

    resumed = dvc("repro", cwd=repo)
    assert f"resuming from generation {generation}" in resumed.stderr
    assert {name: (repo / name).read_bytes() for name in OUTPUTS} == reference
    assert (repo / "dvc.lock").read_text() == lock
    assert sorted(path.name for path in (repo / ".checkpoints").iterdir()) == ["train.lock"]


def test_ctrl_c_under_loky_saves_the_last_generation_and_says_which(repo, logs):
    set_params(repo, {"train": {"max_generations": 100_000, "population_size": 16},
                      "runtime": {"checkpoint_every": 5, "backend": "loky", "n_jobs": 2}})
    run([sys.executable, "-m", "stages.prepare"], repo)
    log = logs / "train.log"
    process = train_stage(repo, log, start_new_session=True)  # its own process group, as a terminal's
    wait_for_generation(repo, 5, process)
    group = processes_in(repo)
    assert len(group) >= 3  # the stage, its worker, loky's tracker: all get the Ctrl-C
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=DEADLINE_S) == 130
    text = log.read_text()
    assert "Traceback" not in text and "worker" not in text and "Broken" not in text, text
    stopped = STOP_LINE.search(text)
    assert stopped and stopped.group(2) == "Ctrl-C (SIGINT)", text
    assert slot_generation(repo / stopped.group(3)) == int(stopped.group(1)) == checkpoint_generation(repo / ".checkpoints")
    assert not any((repo / name).exists() for name in OUTPUTS)
    wait_until(lambda: not processes_in(repo), "the workers to exit with the trainer")


def test_a_second_train_run_fails_at_once_naming_the_lock_and_the_first_run(repo, logs):
    set_params(repo, {"train": {"max_generations": 100_000, "population_size": 16}, "runtime": {"checkpoint_every": 5}})
    run([sys.executable, "-m", "stages.prepare"], repo)
    first = train_stage(repo, logs / "first.log")
    wait_for_generation(repo, 5, first)
    second = run([sys.executable, "-m", "stages.train"], repo, check=False)
    assert second.returncode == 2
    assert second.stderr == (f"error: .checkpoints/train.lock: another train run (pid {first.pid}) holds this lock and "
                             "is writing its outputs; wait for it to end, or stop it\n")
    reached = checkpoint_generation(repo / ".checkpoints")
    wait_for_generation(repo, reached + 5, first)  # the first run goes on, untouched
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=DEADLINE_S) == 143
    assert STOP_LINE.search((logs / "first.log").read_text()).group(2) == "SIGTERM"


L2_TERM = "loss += self.penalty_per_square * weight_square_sums(self.spec, population)"


def test_a_kill_then_a_code_change_then_dvc_repro_gives_the_new_codes_model(repo, logs):
    set_params(repo, {"train": {"max_generations": 400, "population_size": 16}, "runtime": {"checkpoint_every": 1}})
    dvc("repro", cwd=repo)
    old_model = (repo / "models/model.npz").read_bytes()

    process = dvc_repro(repo, logs / "killed.log", "-f", "train")
    wait_for_generation(repo, 20, process)
    os.kill(stage_process(repo), signal.SIGKILL)  # killed outright: its checkpoint stays as it was
    process.wait()
    wait_until(lambda: not processes_in(repo), "dvc to exit")
    assert checkpoint_generation(repo / ".checkpoints") >= 20

    library = repo / "evomlp/evaluation.py"  # the L2 term changes
    assert library.read_text().count(L2_TERM) == 1
    library.write_text(library.read_text().replace(L2_TERM, L2_TERM.replace("loss +=", "loss += 1.5 *")))
    changed = dvc("repro", cwd=repo)
    warning = next(line for line in changed.stderr.splitlines() if line.startswith("warning: .checkpoints/train-"))
    assert "made by other code (evomlp/evaluation.py changed since)" in warning and "starting afresh" in warning
    assert "resuming" not in changed.stderr
    assert any((repo / ".checkpoints/set-aside").iterdir())  # kept for inspection
    after_kill = (repo / "models/model.npz").read_bytes()

    clean = dvc("repro", "-f", "train", cwd=repo)  # a clean run of the new code
    assert "resuming" not in clean.stderr
    assert after_kill == (repo / "models/model.npz").read_bytes() != old_model


def test_ten_random_kills_leave_nothing_behind_and_the_run_ends_with_the_same_bytes(repo, logs):
    # population 160 with two loky processes: the worker's chunk (1.3 MB) goes through /dev/shm
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    # far more generations than the last kill's target (280): the run must still be going when it comes
    set_params(repo, {"train": {"max_generations": 1200, "population_size": 160},
                      "runtime": {"checkpoint_every": 1, "backend": "loky", "n_jobs": 2}})
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the project"], repo)
    dvc("repro", cwd=repo)
    reference = {name: (repo / name).read_bytes() for name in OUTPUTS}
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], repo)

    choices = random.Random(13)
    seen: set[int] = set()
    targets = sorted(choices.sample(range(5, 280), 10))
    for number, target in enumerate(targets):
        log = logs / f"run-{number}.log"
        process = dvc_repro(repo, log, "-f", "train") if number == 0 else dvc_repro(repo, log)
        wait_until(lambda: (seen.update(processes_in(repo)) or checkpoint_generation(repo / ".checkpoints") >= target
                            or process.poll() is not None), f"generation {target}")
        assert process.poll() is None, log.read_text()
        how = choices.choice(["SIGKILL dvc", "SIGTERM dvc", "SIGKILL stage", "SIGTERM stage"])
        victim = process.pid if how.endswith("dvc") else stage_process(repo)
        os.kill(victim, getattr(signal, how.split()[0]))
        process.wait()
        wait_until(lambda: not processes_in(repo), f"every process to exit after {how}")

    # writers killed in the middle of a write, under the names of before (pid-less) and of now
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    planted = [repo / "models/.model.npz.k3j_9x0a.tmp", repo / f"metrics/plots/.history.csv.{dead.stdout.strip()}-x.evomlp-tmp",
               repo / ".checkpoints/.train-0123456789abcdef.npz.k3j_9x0a.tmp"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half of a write")

    dvc("repro", cwd=repo)
    assert {name: (repo / name).read_bytes() for name in OUTPUTS} == reference
    assert not any(path.exists() for path in planted)
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout
    assert "??" not in status, status
    assert not processes_in(repo)
    wait_until(lambda: not shm_entries_of(seen), "loky's semaphores to be unlinked")
    assert sorted(path.name for path in (repo / ".checkpoints").iterdir()) == ["train.lock"]


def stage_process(repo: Path) -> int:
    """The pid of the train stage running in ``repo``."""
    for pid in processes_in(repo):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stages.train" in command and b"-c" not in command:  # not a `$SHELL -c` before it
            return pid
    raise AssertionError("no train stage is running")


def test_a_checkpoint_folder_that_cannot_be_made_is_one_line_not_a_traceback(repo):
    run([sys.executable, "-m", "stages.prepare"], repo)
    (repo / ".checkpoints").write_text("a file where the folder should be")
    result = run([sys.executable, "-m", "stages.train"], repo, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: .checkpoints/train.lock: cannot create the lock of the train stage (")
    assert len(result.stderr.splitlines()) == 1
