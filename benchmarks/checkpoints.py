"""The cost of checkpoints: the default training run with ``runtime.checkpoint_every: 1`` against none.

    python benchmarks/checkpoints.py [--generations G] [--repeats R] [--params params.yaml]

Trains the network of ``params.yaml`` (default: the committed one) exactly as the train stage does
(``evomlp.training.train_network``, the data prepared in memory as stage ``prepare`` makes it,
the stage's ``runtime`` except ``progress``), in one process, in three ways, interleaved (the
order rotates every repeat, so a drift of the machine's load spreads over all three):

- ``none``: no checkpoints (``checkpoint_every: 0`` and no files);
- ``every 1``: ``checkpoint_every: 1`` into a temporary ``.checkpoints/``, as the stage writes them
  (:class:`evomlp.checkpoint.Checkpoints`: writes skipped so that they take at most
  :data:`~evomlp.checkpoint.WRITE_SHARE` of the run's time);
- ``every 1, uncapped``: the same with every generation written (``write_share=None``), to show
  what one write costs.

Prints every run's seconds, the median of each way, the ratios to ``none`` (target: ``every 1``
under 1.2), how many checkpoints were written and their size, the CPU and the BLAS kernel
(:func:`evomlp.numerics.describe`). The three ways must give the same weights (checked). A first,
short run compiles the numba loops and is not counted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stages  # noqa: E402, F401  isort: skip  (the stage's setup: kernels pinned, one BLAS thread)

import numpy as np  # noqa: E402

from evomlp import checkpoint, numerics  # noqa: E402
from evomlp.params import load_params  # noqa: E402
from evomlp.training import train_network  # noqa: E402
from stages.common import CODE  # noqa: E402
from stages.prepare import prepare_data  # noqa: E402

WAYS = ("none", "every 1", "every 1, uncapped")


class CountingCheckpoints(checkpoint.Checkpoints):
    """Checkpoints that count their writes and the time spent in :meth:`save`."""

    def __init__(self, *arguments, **keywords):
        super().__init__(*arguments, **keywords)
        self.writes = 0
        self.seconds = 0.0

    def save(self, state, optimizer, durable=False):
        started = time.perf_counter()
        written = super().save(state, optimizer, durable)
        self.seconds += time.perf_counter() - started
        self.writes += written
        return written


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--generations", type=int, default=None, help="default: train.max_generations of params")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()

    params = load_params(arguments.params)  # and runtime.yaml beside it
    train = dict(params["train"])
    if arguments.generations is not None:
        train["max_generations"] = arguments.generations
    prepared = prepare_data(params["data"])
    parts = prepared.parts
    train_part = (parts["train"]["X"], parts["train"]["y"])
    validation_part = (parts["validation"]["X"], parts["validation"]["y"])
    optimizer_settings = params["optimizer"][train["optimizer"]]
    provenance = checkpoint.provenance(CODE)

    def run(way: str, generations: int) -> tuple[float, np.ndarray, CountingCheckpoints | None]:
        directory = Path(tempfile.mkdtemp(prefix="evomlp-checkpoints-"))
        checkpoints = None
        if way != "none":
            share = None if way.endswith("uncapped") else checkpoint.WRITE_SHARE
            checkpoints = CountingCheckpoints(directory, "train", "benchmark", provenance, write_share=share)
        runtime = dict(params["runtime"], progress=False, checkpoint_every=0 if way == "none" else 1)
        started = time.perf_counter()
        trained = train_network(params["model"], dict(train, max_generations=generations), optimizer_settings, runtime,
                                prepared.task, prepared.classes, train_part, validation_part, checkpoints)
        seconds = time.perf_counter() - started
        if checkpoints is not None:
            checkpoints.size = sum(path.stat().st_size for path in directory.iterdir())
            checkpoints.slot = checkpoints.slot_path("a").stat().st_size
        shutil.rmtree(directory)
        return seconds, trained.result.weights, checkpoints

    run("every 1", 20)  # compiles the numba loops, starts the pools
    seconds = {way: [] for way in WAYS}
    weights, written = {}, {}
    for repeat in range(arguments.repeats):
        order = WAYS[repeat % len(WAYS):] + WAYS[: repeat % len(WAYS)]
        for way in order:
            elapsed, weights[way], checkpoints = run(way, train["max_generations"])
            seconds[way].append(elapsed)
            if checkpoints is not None:
                written[way] = checkpoints
            extra = "" if checkpoints is None else (
                f"  {checkpoints.writes} writes, {checkpoints.seconds / max(checkpoints.writes, 1) * 1e3:.2f} ms each, "
                f"{checkpoints.seconds / elapsed:.1%} of the run")
            print(f"repeat {repeat + 1}  {way:18s} {elapsed:6.2f} s{extra}", flush=True)
    assert all(np.array_equal(weights[way], weights["none"]) for way in WAYS), "checkpoints changed the result"

    generations = train["max_generations"]
    median = {way: statistics.median(values) for way, values in seconds.items()}
    print(f"\n{train['optimizer']}, population {train['population_size']}, {generations} generations, "
          f"runtime n_jobs {params['runtime']['n_jobs']} backend {params['runtime']['backend']}; "
          f"median of {arguments.repeats}, interleaved")
    print(f"CPU: {cpu_name()} ({len(__import__('os').sched_getaffinity(0))} cores usable)")
    print(numerics.describe())
    for way in WAYS:
        line = f"  {way:18s} {median[way]:6.2f} s  ({median[way] / generations * 1e3:.2f} ms a generation)"
        if way != "none":
            saved = written[way]
            line += (f"  ratio {median[way] / median['none']:.3f}; {saved.writes} of {generations} generations "
                     f"written, slot {saved.slot / 1e6:.2f} MB, all files {saved.size / 1e6:.2f} MB")
        print(line)
    ratio = median["every 1"] / median["none"]
    print(f"checkpoint_every: 1 costs {ratio - 1:+.1%} against no checkpoints (target: under +20%)")


if __name__ == "__main__":
    main()
