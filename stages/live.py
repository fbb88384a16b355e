"""Live progress of the train stage through dvclive: ``metrics/train/metrics.json`` during the run.

DVC removes a stage's outputs before it runs, so without this ``dvc exp show`` and ``dvc metrics
show`` would show ``!`` for the train metrics until the run ends. :class:`LiveMetrics` keeps the
file written with dvclive, the DVC ecosystem's logger (which also tells DVC's VS Code extension and
Studio, when configured, that a step completed):

- every ``runtime.live_every`` generations, the metrics of the run so far
  (:meth:`evomlp.trainer.Trainer.progress_metrics`: the model selected so far and the counts), with
  dvclive's ``step`` = the generation;
- at the end, the stage's final metrics, with ``step`` = the last generation, written with the
  stage's other outputs (all or nothing, :class:`evomlp.artifacts.Outputs`).

Only values that a run with the same params reproduces reach the file: no timestamps, no timings,
no ``plots`` (the per-generation curves are ``metrics/plots/history.csv``), so the final file is
the same bytes whatever the machine, ``n_jobs`` or interruptions. Each write is atomic
(:func:`evomlp.artifacts.save_json`), so a reader never sees half a file.

A run that fails (an error, Ctrl-C) puts the file back as it was (:meth:`LiveMetrics.restore`);
only a run killed outright (SIGKILL) leaves its progress there, beside the old model, and DVC
reruns the stage then anyway (``dvc.lock`` was not updated).

``dvclive`` and the DVC repository it opens take about a second to load; the logger is made in a
background thread while training starts, and the same thread writes the progress (dvclive's
``next_step``: the summary, fsynced, and the signal file of DVC's VS Code extension), so the
training loop only hands it the newest metrics (:meth:`LiveMetrics.update`): when the thread is
behind, a newer update replaces the one not yet written. The final metrics are written in the
calling thread, once every update is (:meth:`LiveMetrics.finish`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from evomlp.artifacts import atomic_path, save_json


class LiveMetrics:
    """dvclive's ``Live`` on ``directory``: :meth:`update` during the run, :meth:`finish` at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._previous = self.path.read_bytes() if self.path.is_file() else None  # for restore()
        self._live = None
        self._ended = False  # the outputs are in place: nothing to restore
        self._failure: BaseException | None = None
        self._condition = threading.Condition()
        self._newest: tuple[int, dict] | None = None  # the update the thread has not written yet
        self._closing = False
        # seconds: dvclive's load (in its thread), the calling thread's waits for the thread;
        # updates handed over, and written (the others were replaced by a newer one first)
        self.timings = {"load_s": 0.0, "wait_s": 0.0, "updates": 0, "written": 0}
        self._worker = threading.Thread(target=self._work, name="dvclive", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        """The thread: load dvclive, then write each update handed over, until :meth:`_drain`."""
        started = time.perf_counter()
        self._load()
        self.timings["load_s"] = time.perf_counter() - started
        while True:
            with self._condition:
                while self._newest is None and not self._closing:
                    self._condition.wait()
                newest, self._newest = self._newest, None
            if newest is None:
                return
            if self._failure is None:
                try:
                    self._write(*newest)
                    self._live.next_step()
                    self.timings["written"] += 1
                except BaseException as error:  # re-raised in the calling thread
                    self._failure = error

    def _load(self) -> None:
        try:
            from dvclive import Live

            class AtomicLive(Live):
                def make_summary(self) -> None:  # dvclive's summary file, written atomically
                    if self._step is not None:
                        self.summary["step"] = self.step
                    save_json(Path(self.metrics_file), self.summary)

                def _init_dvc(self) -> None:
                    # The DVC side (VS Code and Studio signals) is optional: outside a DVC project (a
                    # stage run by hand in a plain folder) dvclive would run `dvc init` in the
                    # enclosing git repository, and in a git repository without a commit it fails
                    # (dvclive 3.49: SCMError "Empty git repo"). Log without DVC then.
                    if not Path(".dvc").is_dir():
                        return
                    try:
                        super()._init_dvc()
                    except Exception:
                        self._dvc_repo, self._inside_dvc_exp = None, False

            # no dvc.yaml of its own (dvc.yaml declares the file), no experiment of its own (the
            # stage runs inside dvc repro or dvc exp run), no report
            self._live = AtomicLive(str(self.directory), save_dvc_exp=False, dvcyaml=None, report=None)
        except BaseException as error:  # re-raised in the main thread at first use
            self._failure = error

    @property
    def path(self) -> Path:
        return self.directory / "metrics.json"

    def restore(self) -> None:
        """Put back the file as it was before this run (a run that fails keeps its last good
        outputs, this one included)."""
        with self._condition:
            self._newest = None  # not worth writing now
        self._drain()
        if self._ended:
            return
        if self._previous is None:
            self.path.unlink(missing_ok=True)
        else:
            with atomic_path(self.path) as temporary:
                temporary.write_bytes(self._previous)

    def _drain(self) -> None:
        """Wait until dvclive is loaded and every update handed over is written; the thread then ends."""
        started = time.perf_counter()
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._worker.join()
        self.timings["wait_s"] += time.perf_counter() - started

    def _logger(self):
        self._drain()
        if self._failure is not None:
            raise self._failure
        return self._live

    def _write(self, step: int, metrics: dict) -> None:
        live = self._live
        live.summary = {}
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value, plot=False)

    def update(self, step: int, metrics: dict) -> None:
        """The run so far, at generation ``step``: handed to the thread, which writes it (unless a
        newer update replaces it first). A failure of dvclive's (its load, a write) is raised here,
        at the next update, or by :meth:`finish`."""
        if self._failure is not None:
            raise self._failure
        with self._condition:
            self._newest = (step, dict(metrics))
            self._condition.notify()
        self.timings["updates"] += 1

    def finish(self, step: int, metrics: dict) -> None:
        """Write the final metrics, at the last generation ``step``, once every update is
        (within the stage's :meth:`evomlp.artifacts.Outputs.written`, so with its other outputs or
        not at all)."""
        live = self._logger()
        self._write(step, metrics)
        live.make_summary()

    def end(self) -> None:
        """dvclive's end of the run, once the outputs are in place (it rewrites the same summary)."""
        self._ended = True
        self._logger().end()
