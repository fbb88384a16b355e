"""The training loop: propose -> build and evaluate -> tell -> validate -> log -> checkpoint.

The model kept is the best network *by validation loss*: every generation the optimizer's
candidates (DE: the population's best individual by training fitness; an evolution strategy: its
best sample and its mean) are scored on the validation rows, and the best of those scores so far
is the model. DE overfits a few thousand weights on a few hundred rows (training loss heads to
zero while test accuracy falls), so selecting by training fitness alone would keep an overfit
network. ``patience`` stops a run after that many generations without a validation improvement.

Within :meth:`Trainer.run`, the candidates of up to :data:`VALIDATION_BATCH` generations are
scored in one pass (one forward pass of all of them on the validation rows, one of the selected
ones on the training rows), then the selection is replayed generation by generation, before any
use of the state (a report, a checkpoint, a stop, the end of the run): nothing in between reads
the selection, and a network's loss does not depend on the others scored with it
(:func:`evomlp.network.forward_population`), so the model, the history and every checkpoint are
the same bits as with a pass per generation, in a tenth of the time. With ``patience`` the stop
depends on each generation's validation, so every generation is scored at once then.

A run is a :class:`TrainerState`, plain arrays and numbers: :meth:`Trainer.run` can start from a
saved one (a checkpoint) and ends with the same result as an uninterrupted run, because every
random number comes from the optimizer state's generator.

A run stops early, at the end of a generation (so the state is whole, and checkpointed when a
callback is set), on Ctrl-C (SIGINT), SIGTERM or SIGHUP, or when ``stop_when`` says so (the train
stage's: its parent, ``dvc``, is gone; :mod:`evomlp.lifeline`); it then raises :class:`Stopped`. A
second signal interrupts a generation at once, except while the checkpoint is being written.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from evomlp.evaluation import FitnessProblem, PopulationEvaluator
from evomlp.protocol import sanitize_fitness

# The validation pass scores the candidates of at most this many generations at once, and of no
# more than VALIDATION_BATCH_BYTES of candidates and of their outputs (so that a wide network or many
# validation rows keep it small; one generation's candidates are always scored).
VALIDATION_BATCH = 50
VALIDATION_BATCH_BYTES = 8 << 20
# The progress bar is redrawn at most this often (tqdm's own mininterval), and its figures are
# formatted only then.
PROGRESS_INTERVAL_S = 0.1

HISTORY_COLUMNS = (
    "generation",
    "n_evaluations",
    "best_fitness",
    "mean_fitness",
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
)


@dataclass(frozen=True)
class TrainConfig:
    """When to stop and how fitness is sampled; ``minibatch_size`` 0 means all training rows."""

    max_generations: int = 300
    max_evaluations: int = 0  # 0: no limit besides max_generations
    patience: int = 0  # 0: no early stopping
    minibatch_size: int = 0
    checkpoint_every: int = 0  # 0: no checkpoints
    report_every: int = 0  # 0: no progress reports


@dataclass
class TrainerState:
    """Everything a run needs to continue: the optimizer state and the model selection so far."""

    optimizer: Any  # the optimizer's state (evomlp.protocol)
    best_weights: np.ndarray
    best_validation_loss: float
    best_generation: int
    generations_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    n_nonfinite: int = 0


class Stopped(KeyboardInterrupt):
    """A run stopped before its end. ``reason`` says by what; ``exit_code`` is the shell's for it
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP or a parent gone); ``completed``: at the end of a
    generation (its state whole, and saved if the trainer has a checkpoint callback), else in the
    middle of one (a second signal)."""

    def __init__(self, reason: str, exit_code: int, completed: bool = True):
        super().__init__(reason)
        self.reason, self.exit_code, self.completed = reason, exit_code, completed


STOP_SIGNALS = {"SIGINT": ("Ctrl-C (SIGINT)", 130), "SIGTERM": ("SIGTERM", 143), "SIGHUP": ("SIGHUP", 129)}
PARENT_GONE_EXIT = 129  # as for a hang-up: whoever started the run is gone


@dataclass(frozen=True)
class TrainResult:
    weights: np.ndarray
    best_generation: int
    n_generations: int
    n_evaluations: int
    stop_reason: str
    history: list[dict]
    n_nonfinite: int


# What Trainer.timings measures, in seconds (the train stage writes them to logs/train-timing.json):
# the evaluation of the initial population (in its first call numba loads the compiled loops), the
# evaluations of the generations, the optimizer's propose and tell, the validation pass, the
# checkpoint writes, the reports (live metrics), the progress bar, the stop checks, the whole run.
TIMINGS = ("start_s", "evaluation_s", "optimizer_s", "validation_s", "checkpoint_s", "report_s", "progress_s",
           "stop_checks_s", "run_s")


class Trainer:
    """Runs an ask/tell optimizer on a :class:`FitnessProblem` with validation-based selection.

    ``optimizer`` follows :mod:`evomlp.protocol` (any family); ``evaluate``
    is a :class:`PopulationEvaluator` (entered), which builds the proposed trials and evaluates
    them; ``validation`` scores single networks on held-out rows. ``checkpoint(state, durable=...)``
    is called every ``checkpoint_every`` generations (``durable`` False: it may skip a write,
    :meth:`evomlp.checkpoint.Checkpoints.save`) and when the run stops early (``durable`` True).
    ``stop_when()``, called at the end of a generation, returns why the run must stop, or ``""``:
    after every generation, or, with ``stop_poll_s``, after the first generation that ends at least
    that many seconds after the last call (a check that reads files need not cost every
    generation), and always once more after the last generation.
    """

    def __init__(
        self,
        optimizer,
        evaluate: PopulationEvaluator,
        validation: FitnessProblem,
        train_scoring: FitnessProblem,
        config: TrainConfig,
        progress: bool = False,
        checkpoint: Callable[..., object] | None = None,
        stop_when: Callable[[], str] | None = None,
        report: Callable[[TrainerState], None] | None = None,
        stop_poll_s: float = 0.0,
    ):
        self.optimizer = optimizer
        self.evaluate = evaluate
        self.validation = validation
        self.train_scoring = train_scoring
        self.config = config
        self.progress = progress
        self.checkpoint = checkpoint
        self.stop_when = stop_when
        self.report = report
        self.stop_poll_s = stop_poll_s
        self.timings = dict.fromkeys(TIMINGS, 0.0)
        self._pending: list[tuple[dict, np.ndarray]] = []  # generations whose candidates are not scored yet

    # -- one run ---------------------------------------------------------------------------
    def start(self, initial_population: np.ndarray, rng: np.random.Generator) -> TrainerState:
        """Evaluate the initial population and select its best as the first model."""
        rows = self._draw_rows(rng)
        started = time.perf_counter()
        fitness = self.evaluate(initial_population, rows)
        self.timings["start_s"] += time.perf_counter() - started
        optimizer_state = self.optimizer.init(initial_population, fitness, rng)
        state = TrainerState(
            optimizer=optimizer_state,
            best_weights=self.optimizer.candidates(optimizer_state)[0].copy(),
            best_validation_loss=np.inf,
            best_generation=0,
        )
        state.n_nonfinite += int(np.count_nonzero(~np.isfinite(fitness)))
        self._record(state)
        self._validate(state)
        return state

    def step(self, state: TrainerState) -> None:
        """One generation: propose, build and evaluate the trials, tell, validate, log."""
        self._advance(state)
        self._validate(state)

    def _advance(self, state: TrainerState) -> None:
        """One generation, its candidates left to score (:meth:`_validate`)."""
        optimizer_state = state.optimizer
        rows = self._draw_rows(optimizer_state.rng)
        started = time.perf_counter()
        plan = self.optimizer.propose(optimizer_state)
        self.timings["optimizer_s"] += time.perf_counter() - started
        started = time.perf_counter()
        if rows is None:
            # The workers build the trials they evaluate (timed as evaluation).
            trials, trial_fitness = self.evaluate.evaluate_plan(plan)
            self.timings["evaluation_s"] += time.perf_counter() - started
        else:
            # On a minibatch, parents and trials must be compared on the same rows.
            trials = self.evaluate.build(plan)
            self.timings["optimizer_s"] += time.perf_counter() - started
            both = self._timed_evaluate(np.concatenate([optimizer_state.population, trials]), rows)
            size = optimizer_state.population_size
            optimizer_state.fitness = sanitize_fitness(both[:size])
            trial_fitness = both[size:]
        state.n_nonfinite += int(np.count_nonzero(~np.isfinite(trial_fitness)))
        started = time.perf_counter()
        parents = optimizer_state.population_size  # before tell: L-SHADE and jSO shrink it
        state.optimizer = self.optimizer.tell(optimizer_state, trials, trial_fitness)
        if rows is not None:
            state.optimizer.n_evaluations += parents  # the parents were re-scored on the minibatch
        self.timings["optimizer_s"] += time.perf_counter() - started
        self._record(state)

    def stop_reason(self, state: TrainerState) -> str:
        config = self.config
        optimizer_state = state.optimizer
        if optimizer_state.generation >= config.max_generations:
            return "max_generations"
        if config.max_evaluations:
            # a minibatch generation re-scores the parents too
            cost = optimizer_state.population_size * (2 if self._uses_minibatches else 1)
            if optimizer_state.n_evaluations + cost > config.max_evaluations:
                return "max_evaluations"
        if config.patience and state.generations_without_improvement >= config.patience:
            return "patience"
        return ""

    def run(self, state: TrainerState) -> TrainResult:
        """Step until a stop criterion holds; checkpoints every ``checkpoint_every`` generations.

        A stop request (a signal, ``stop_when``; see the module docstring) is honoured at the end
        of the generation: the state is checkpointed (``durable``) and :class:`Stopped` is
        raised, even after the last generation, so that nothing is written by a run that was
        asked to stop. A second signal raises :class:`Stopped` (``completed`` False) at once.
        """
        bar = self._progress_bar(state)
        started = time.perf_counter()
        start_evaluations = state.optimizer.n_evaluations
        timings = self.timings
        config = self.config
        every, report_every = config.checkpoint_every, config.report_every if self.report else 0
        batch = 1 if config.patience else VALIDATION_BATCH  # patience reads every generation's validation
        stops = _StopRequests(self.stop_when, self.stop_poll_s, timings)
        with stops:
            try:
                while not (reason := self.stop_reason(state)):
                    self._advance(state)
                    generation = state.optimizer.generation
                    stop = stops.pending()
                    save = self.checkpoint and (stop or (every and generation % every == 0))
                    report = report_every and generation % report_every == 0
                    if save or stop or report or len(self._pending) >= batch or self._pending_full():
                        self._validate(state)
                    if save:
                        mark = time.perf_counter()
                        with stops.saving():
                            self.checkpoint(state, durable=bool(stop))
                        timings["checkpoint_s"] += time.perf_counter() - mark
                    if stop:
                        raise Stopped(stop, stops.exit_code)
                    if report:
                        mark = time.perf_counter()
                        self.report(state)
                        timings["report_s"] += time.perf_counter() - mark
                    if bar is not None:
                        bar = self._show_progress(bar, state, started, start_evaluations)
                self._validate(state)
                if stop := stops.pending(final=True):
                    if self.checkpoint:
                        with stops.saving():
                            self.checkpoint(state, durable=True)
                    raise Stopped(stop, stops.exit_code)
                if bar is not None:
                    bar = self._show_progress(bar, state, started, start_evaluations, final=True)
            finally:
                self._pending.clear()  # a run stopped in the middle of a generation: its state is not whole anyway
                if bar is not None:
                    with contextlib.suppress(OSError):
                        bar.close()
                timings["run_s"] += time.perf_counter() - started
        state.stop_reason = reason
        return TrainResult(
            weights=state.best_weights.copy(),
            best_generation=state.best_generation,
            n_generations=state.optimizer.generation,
            n_evaluations=state.optimizer.n_evaluations,
            stop_reason=reason,
            history=list(state.history),
            n_nonfinite=state.n_nonfinite,
        )

    @staticmethod
    def progress_metrics(state: TrainerState) -> dict:
        """The run so far as the train stage's metrics: the model selected so far (its history row:
        training loss without L2, validation loss, accuracies) and the counts. The same keys, in the
        same order, as the stage's final metrics."""
        row = next((r for r in reversed(state.history) if r["generation"] == state.best_generation), state.history[-1])
        metrics = {
            "train_loss": row["train_loss"],
            "validation_loss": row["validation_loss"],
            "best_generation": state.best_generation,
            "generations": state.optimizer.generation,
            "evaluations": state.optimizer.n_evaluations,
            "nonfinite_fitness": state.n_nonfinite,
        }
        if row["validation_accuracy"] is not None:
            metrics["train_accuracy"] = row["train_accuracy"]
            metrics["validation_accuracy"] = row["validation_accuracy"]
        return metrics

    def _show_progress(self, bar, state: TrainerState, started: float, start_evaluations: int, final: bool = False):
        """Update the bar, at most every :data:`PROGRESS_INTERVAL_S` (or ``final``ly); the bar, or
        ``None`` once stderr is gone (a closed pipe must not end a run). The validation figures are
        those of the generations scored so far (the validation pass is batched)."""
        now = time.perf_counter()
        if not final and now - self._bar_shown < PROGRESS_INTERVAL_S:
            return bar
        self._bar_shown = now
        last = state.history[-1]
        postfix = {
            "best": f"{state.optimizer.best_fitness:.4g}",
            "val_loss": f"{state.best_validation_loss:.4g}",
            "evals/s": f"{(state.optimizer.n_evaluations - start_evaluations) / max(now - started, 1e-9):,.0f}",
        }
        if last["validation_accuracy"] is not None:
            postfix["val_acc"] = f"{last['validation_accuracy']:.3f}"
        try:
            bar.set_postfix(postfix, refresh=False)
            bar.update(state.optimizer.generation - bar.n)
        except OSError:
            return None
        finally:
            self.timings["progress_s"] += time.perf_counter() - now
        return bar

    # -- helpers ---------------------------------------------------------------------------
    @property
    def _uses_minibatches(self) -> bool:
        return 0 < self.config.minibatch_size < self.train_scoring.n_rows

    def _draw_rows(self, rng: np.random.Generator) -> np.ndarray | None:
        if not self._uses_minibatches:
            return None
        return np.sort(rng.choice(self.train_scoring.n_rows, size=self.config.minibatch_size, replace=False))

    def _timed_evaluate(self, population: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        started = time.perf_counter()
        fitness = self.evaluate(population, rows)
        self.timings["evaluation_s"] += time.perf_counter() - started
        return fitness

    def _record(self, state: TrainerState) -> None:
        """Keep this generation's optimizer candidates (a copy) and its fitness figures, to be scored
        by :meth:`_validate`."""
        started = time.perf_counter()
        optimizer_state = state.optimizer
        candidates = np.array(self.optimizer.candidates(optimizer_state), dtype=np.float64)
        finite = optimizer_state.fitness[np.isfinite(optimizer_state.fitness)]
        row = {
            "generation": optimizer_state.generation,
            "n_evaluations": optimizer_state.n_evaluations,
            "best_fitness": optimizer_state.best_fitness,
            "mean_fitness": float(finite.mean()) if finite.size else float("inf"),
        }
        self._pending.append((row, candidates))
        self.timings["validation_s"] += time.perf_counter() - started

    def _pending_full(self) -> bool:
        """Whether one more generation would take the pending candidates, or their outputs on the
        validation rows, past :data:`VALIDATION_BATCH_BYTES` (every generation has as many
        candidates as the newest: L-SHADE's shrinking population changes the count of none)."""
        newest = self._pending[-1][1]
        width = newest.shape[1] + self.validation.n_rows * self.validation.spec.n_outputs
        return (len(self._pending) + 1) * newest.shape[0] * width * 8 > VALIDATION_BATCH_BYTES

    def _validate(self, state: TrainerState) -> None:
        """Score the pending generations' candidates and, generation by generation, update the
        selected model and append a history row (of the candidate with the lowest validation loss,
        the first on ties): the same as scoring each generation on its own (module docstring)."""
        if not self._pending:
            return
        started = time.perf_counter()
        pending, self._pending = self._pending, []
        candidates = np.concatenate([batch for _, batch in pending])
        validation_losses, validation_accuracies = self.validation.loss_and_accuracy(candidates)
        picks, start = [], 0
        for _, batch in pending:
            losses = validation_losses[start : start + len(batch)]
            picks.append(start + int(np.argmin(np.where(np.isfinite(losses), losses, np.inf))))
            start += len(batch)
        train_losses, train_accuracies = self.train_scoring.loss_and_accuracy(candidates[picks])
        for index, ((row, _), pick) in enumerate(zip(pending, picks)):
            loss = float(validation_losses[pick])
            if np.isfinite(loss) and loss < state.best_validation_loss:
                state.best_validation_loss = loss
                state.best_weights = candidates[pick].copy()
                state.best_generation = row["generation"]
                state.generations_without_improvement = 0
            else:
                state.generations_without_improvement += 1
            row["train_loss"] = float(train_losses[index])
            row["train_accuracy"] = None if train_accuracies is None else float(train_accuracies[index])
            row["validation_loss"] = loss
            row["validation_accuracy"] = None if validation_accuracies is None else float(validation_accuracies[pick])
            state.history.append(row)
        self.timings["validation_s"] += time.perf_counter() - started

    def _progress_bar(self, state: TrainerState):
        if not self.progress:
            return None
        from tqdm import tqdm

        self._bar_shown = -np.inf
        return tqdm(
            total=self.config.max_generations,
            initial=state.optimizer.generation,
            desc="train",
            unit="gen",
            file=sys.stderr,
            dynamic_ncols=True,
        )


class _StopRequests:
    """Within the block (main thread only), SIGINT, SIGTERM and SIGHUP only record a stop request,
    read by :meth:`pending` at the end of a generation, which also asks ``stop_when``; a second
    signal raises :class:`Stopped` at once, except within :meth:`saving`. Outside the main thread,
    signals are left alone."""

    def __init__(self, stop_when: Callable[[], str] | None, poll_s: float = 0.0, timings: dict | None = None):
        self.stop_when = stop_when
        self.poll_s = poll_s
        self.timings = {} if timings is None else timings
        self._asked = -np.inf
        self.reason = ""
        self.exit_code = 0
        self._saving = False
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame) -> None:
        reason, exit_code = STOP_SIGNALS[signal.Signals(number).name]
        if not self.reason:
            self.reason, self.exit_code = reason, exit_code
        elif not self._saving:  # a second request: now, in the middle of the generation
            raise Stopped(f"{reason}, a second stop request", exit_code, completed=False)

    def pending(self, final: bool = False) -> str:
        """Why the run must stop now (a signal received, or ``stop_when``), or ``""``. ``stop_when``
        is asked at most every ``poll_s`` seconds, unless ``final``."""
        if not self.reason and self.stop_when is not None:
            now = time.perf_counter()
            if final or now - self._asked >= self.poll_s:
                self._asked = now
                lost = self.stop_when()
                if lost:
                    self.reason, self.exit_code = lost, PARENT_GONE_EXIT
                self.timings["stop_checks_s"] = self.timings.get("stop_checks_s", 0.0) + time.perf_counter() - now
        return self.reason

    @contextlib.contextmanager
    def saving(self):
        """A checkpoint write, which no signal interrupts."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
