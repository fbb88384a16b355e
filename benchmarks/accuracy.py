"""Test accuracy of DE strategies beside the gradient-trained baseline, on the bundled datasets.

For each dataset, each strategy and each seed (``train.seed``), the network is trained exactly as
the train stage does it (same code path, `stages.train.train_network`) with the params of
``params.yaml`` (or ``--params``) plus the strategy; the baseline is the baseline stage's
scikit-learn MLP on the same split, over the same seeds. Prints one table: mean and standard
deviation of test accuracy, and mean training seconds per run.

    python benchmarks/accuracy.py                                     # all datasets, default strategies
    python benchmarks/accuracy.py --datasets breast_cancer --strategies currenttopbest1bin lshade
    python benchmarks/accuracy.py --set train.max_generations=800 --json accuracy.json

Timings are wall-clock on this machine, one process (``runtime`` as in params: by default threads, ``n_jobs: auto``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evomlp.network import forward, output_probabilities  # noqa: E402
from evomlp.params import validate_params  # noqa: E402
from stages.baseline import fit_baseline  # noqa: E402
from stages.prepare import prepare_data  # noqa: E402
from stages.train import train_network  # noqa: E402

DATASETS = ("breast_cancer", "wine", "iris", "digits")
STRATEGIES = ("rand1bin", "best1bin", "currenttopbest1bin", "jade", "shade", "lshade", "jso")


def parse_value(text: str):
    return yaml.safe_load(text)


def accuracy(task: str, y: np.ndarray, scores: np.ndarray) -> float:
    if task == "binary":
        return float(np.mean((scores.reshape(-1) > 0.5) == (y > 0.5)))
    return float(np.mean(scores.argmax(axis=1) == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5, help="train.seed 0..N-1 (default 5)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a param for every run (repeatable)")
    parser.add_argument("--json", help="also write every run as JSON to this path")
    arguments = parser.parse_args()

    raw = yaml.safe_load(Path(arguments.params).read_text())
    raw.setdefault("runtime", {})["progress"] = False
    for item in arguments.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = parse_value(value)

    rows = []
    for dataset in arguments.datasets:
        raw["data"]["dataset"] = dataset
        params = validate_params(raw, arguments.params)
        prepared = prepare_data(params["data"])
        parts, task, classes = prepared.parts, prepared.task, prepared.classes
        train_part = (parts["train"]["X"], parts["train"]["y"])
        validation_part = (parts["validation"]["X"], parts["validation"]["y"])
        X_test, y_test = parts["test"]["X"], parts["test"]["y"]
        for seed in range(arguments.seeds):
            started = time.perf_counter()
            scores = fit_baseline(params["model"], dict(params["baseline"], seed=seed), task, classes, train_part, X_test)
            rows.append({"dataset": dataset, "system": "baseline (sklearn MLP, adam)", "seed": seed,
                         "accuracy": accuracy(task, y_test, scores), "seconds": time.perf_counter() - started})
        for strategy in arguments.strategies:
            for seed in range(arguments.seeds):
                train = dict(params["train"], strategy=strategy, seed=seed)
                checked = validate_params(dict(raw, train=train), arguments.params)["train"]
                started = time.perf_counter()
                trained = train_network(params["model"], checked, params["runtime"], task, classes,
                                        train_part, validation_part)
                seconds = time.perf_counter() - started
                scores = output_probabilities(trained.spec, forward(trained.spec, trained.result.weights, X_test))
                rows.append({"dataset": dataset, "system": strategy, "seed": seed,
                             "accuracy": accuracy(task, y_test, scores), "seconds": seconds,
                             "generations": trained.result.n_generations})
                print(f"{dataset:14s} {strategy:20s} seed {seed}: accuracy {rows[-1]['accuracy']:.4f} "
                      f"({seconds:.1f} s)", file=sys.stderr, flush=True)

    systems = list(dict.fromkeys(row["system"] for row in rows))
    print(f"\nTest accuracy, mean +- std over seeds 0..{arguments.seeds - 1}; mean seconds per run")
    print(f"params: {arguments.params}" + (f" with {' '.join(arguments.set)}" if arguments.set else ""))
    header = f"{'system':30s}" + "".join(f"{d:>24s}" for d in arguments.datasets)
    print(header)
    print("-" * len(header))
    for system in systems:
        cells = []
        for dataset in arguments.datasets:
            selected = [r for r in rows if r["system"] == system and r["dataset"] == dataset]
            values = np.array([r["accuracy"] for r in selected])
            seconds = np.mean([r["seconds"] for r in selected])
            cells.append(f"{values.mean():.4f} +- {values.std():.4f} {seconds:5.1f}s")
        print(f"{system:30s}" + "".join(f"{c:>24s}" for c in cells))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"params": arguments.params, "set": arguments.set,
                                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
