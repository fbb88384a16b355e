"""A process's ties to the one that started it, and to the worker processes it starts.

No process of a run outlives the one it works for, and only the training process decides what a
Ctrl-C does:

- :class:`Lifeline`: a stage notices that the process that started it is gone. ``dvc repro`` runs
  a stage as ``$SHELL -c '<cmd>'``; the shell may or may not ``exec`` the command, so the stage
  watches its parent and, while that is a shell, the shell's parent too (each by pid and start
  time, so a reused pid is not mistaken for it). Killing ``dvc`` (SIGKILL, SIGTERM: what
  ``timeout``, a CI cancel and ``docker stop`` send) then stops the trainer at the end of its
  generation (:mod:`evomlp.trainer`) instead of leaving an orphan that writes outputs
  ``dvc.lock`` never records.
- :func:`exit_with_parent`: a worker process (loky) exits within :data:`WORKER_PARENT_POLL_S` of
  its parent's death instead of waiting out its idle timeout.
- :func:`children_ignore_interrupts`: processes started inside the block ignore SIGINT from their
  first instruction, so a Ctrl-C sent to the whole process group (a terminal's) reaches the
  trainer only; :func:`ignore_interrupts` does the same in a worker started some other way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"})
WORKER_PARENT_POLL_S = 0.2


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """``(comm, state, ppid, start time)`` of ``pid`` from ``/proc``, ``None`` if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    # the command name is in parentheses and may itself hold spaces or parentheses
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return comm, rest[0], int(rest[1]), int(rest[19])


class Lifeline:
    """Whether the process that started this one (past any ``sh -c``) is still alive.

    Built once at the start; :meth:`lost` is cheap (a ``getppid`` and, under a shell, one read of
    ``/proc``) and says why in a phrase, or returns ``""``. A process started by init (pid 1) has
    no parent to lose. Without ``/proc`` only the direct parent is watched.
    """

    def __init__(self, parent: int | None = None) -> None:
        """``parent``: the pid of this process's parent as read at its very start (default: now)."""
        self.parent = os.getppid() if parent is None else parent
        self._watched: list[tuple[int, int, str]] = []  # (pid, start time, name) above the parent
        self.parent_name = "parent"
        stat = _stat(self.parent)
        if stat is None:
            return
        self.parent_name = stat[0]
        name, ppid = stat[0], stat[2]
        while name in SHELLS and ppid > 1 and len(self._watched) < 4:
            above = _stat(ppid)
            if above is None:
                break
            self._watched.append((ppid, above[3], above[0]))
            name, ppid = above[0], above[2]

    def lost(self) -> str:
        """``""`` while the parent (and the process past its shell) lives; otherwise which one is gone."""
        if self.parent <= 1:
            return ""
        if os.getppid() != self.parent:
            return f"its parent process ({self.parent_name}, pid {self.parent}) exited"
        for pid, start, name in self._watched:
            stat = _stat(pid)
            if stat is None or stat[3] != start or stat[1] in ("Z", "X"):
                return f"the process that started it ({name}, pid {pid}) exited"
        return ""


def exit_with_parent(parent_pid: int, poll_s: float = WORKER_PARENT_POLL_S) -> threading.Thread:
    """In a worker process: a daemon thread that ends the process (exit code 0) once its parent,
    ``parent_pid``, is gone (the worker is re-parented). Returns the thread."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(0)

    thread = threading.Thread(target=watch, name="evomlp-exit-with-parent", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def children_ignore_interrupts() -> Iterator[None]:
    """Processes started inside the block ignore SIGINT from their first instruction on.

    An ignored signal stays ignored across ``fork`` and ``exec``, and Python keeps it so (a
    handler, or a blocked mask, would not survive loky's start of a worker). This process holds
    SIGINT back meanwhile (blocked, and handled as before once the block ends), so a Ctrl-C is
    lost only if another of its threads takes it within the block. Outside the main thread,
    nothing changes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def ignore_interrupts() -> None:
    """In a worker process: ignore SIGINT for good (for a worker not started inside
    :func:`children_ignore_interrupts`); only the training process decides what Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
