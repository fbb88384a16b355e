"""evomlp.lifeline with real processes: a parent's death is noticed, through a shell too; children
started in the block ignore Ctrl-C while this process still gets it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WATCHER = """
import sys, time
from evomlp.lifeline import Lifeline
line = Lifeline()
print("watching", flush=True)
while not (reason := line.lost()):
    time.sleep(0.01)
open(sys.argv[1], "w").write(reason)
"""

# The parent: starts the watcher (directly, or through `sh -c '...; :'`, which cannot exec it, as
# dvc's `$SHELL -c` may not), says when the watcher watches, then waits to be killed.
PARENT = """
import subprocess, sys
command = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
if sys.argv[3] == "shell":
    command = ["sh", "-c", " ".join(f"'{part}'" for part in command) + "; :"]
child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "watching\\n"
print(child.pid, flush=True)
child.wait()
"""


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    """Poll ``condition`` until it holds; the deadline only catches a hang (a loaded machine)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("through", ["direct", "shell"])
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_a_process_notices_that_its_parent_is_gone(tmp_path, through, kill):
    said = tmp_path / "reason"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WATCHER, str(said), through], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    watcher = int(parent.stdout.readline())
    assert not said.exists()  # nothing lost while the parent lives
    parent.send_signal(kill)
    parent.wait(timeout=60)
    wait_for(said.exists, "the watcher to notice")
    reason = said.read_text()
    assert str(parent.pid) in reason and "exited" in reason
    wait_for(lambda: not Path(f"/proc/{watcher}").exists() or "Z" in Path(f"/proc/{watcher}/stat").read_text().split()[2],
             "the watcher to end")


HOLDER = """
import os, signal, subprocess, sys, time
from evomlp import lifeline
got = []
signal.signal(signal.SIGINT, lambda *_: got.append("SIGINT"))
probe = [sys.executable, "-c", "print(open('/proc/self/status').read().split('SigIgn:')[1].split()[0])"]
with lifeline.children_ignore_interrupts():
    inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while a worker starts
    held = list(got)
while not got:  # delivered once the block ends, not lost (the test's deadline catches a hang)
    time.sleep(0.01)
outside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
print(inside, outside, held, got)
"""


def test_children_started_in_the_block_ignore_ctrl_c_and_this_process_still_gets_it():
    # in a fresh process: its only thread is the one that blocks SIGINT
    result = subprocess.run([sys.executable, "-c", HOLDER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    inside, outside, held, got = result.stdout.split(maxsplit=3)
    assert int(inside, 16) >> (signal.SIGINT - 1) & 1
    assert not int(outside, 16) >> (signal.SIGINT - 1) & 1
    assert held == "[]" and got.strip() == "['SIGINT']"
