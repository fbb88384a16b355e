"""Test accuracy of every optimizer beside the gradient-trained baseline, on bundled and synthetic sets.

For each data set, each optimizer and each seed (``train.seed``), the network is trained exactly as
the train stage does it (same code path, ``evomlp.training.train_network``) with the params of
``params.yaml`` (or ``--params``), only ``train.optimizer`` and the seed changed; the baseline is
the baseline stage's scikit-learn MLP on the same split, over the same seeds. Prints one table:
mean and standard deviation of test accuracy (balanced accuracy for the imbalanced set), and mean
training seconds per run.

Data sets: the four bundled ones (breast_cancer, wine, iris, digits) and two synthetic ones written
as CSV files, so they go through the CSV path a user's file takes (scikit-learn's
``make_classification``, fixed seeds):

- ``imbalanced``: 1,000 rows, 20 features, two classes 76% / 24% (scored by balanced accuracy);
- ``many_features``: 1,500 rows, 100 features (30 informative), 5 classes.

    python benchmarks/accuracy.py                                      # everything
    python benchmarks/accuracy.py --datasets breast_cancer digits --optimizers currenttopbest1bin pgpe
    python benchmarks/accuracy.py --set train.l2=0.001 --set optimizer.pgpe.sigma=0.5 --json out.json

Timings are wall-clock on this machine, one process (``runtime`` as in params: by default threads,
``n_jobs: auto``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evomlp import numerics  # noqa: E402  isort: skip  (pins the kernels before numpy loads)

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from evomlp.network import forward, output_probabilities  # noqa: E402
from evomlp.params import load_runtime, validate_params  # noqa: E402
from evomlp.training import train_network  # noqa: E402
from stages.baseline import fit_baseline  # noqa: E402
from stages.prepare import prepare_data  # noqa: E402

BUNDLED = ("breast_cancer", "wine", "iris", "digits")
SYNTHETIC = ("imbalanced", "many_features")
OPTIMIZERS = ("rand1bin", "best1bin", "currenttopbest1bin", "jade", "shade", "lshade", "jso", "snes", "sepcmaes", "pgpe")
BALANCED = {"imbalanced"}


def synthetic_csv(name: str, directory: Path) -> Path:
    """One of :data:`SYNTHETIC` as a CSV file (columns f0..fN and label)."""
    from sklearn.datasets import make_classification

    if name == "imbalanced":
        X, y = make_classification(n_samples=1000, n_features=20, n_informative=8, weights=[0.76],
                                   flip_y=0.02, random_state=7)
    elif name == "many_features":
        X, y = make_classification(n_samples=1500, n_features=100, n_informative=30, n_redundant=10,
                                   n_classes=5, n_clusters_per_class=2, random_state=11)
    else:
        raise ValueError(name)
    path = directory / f"{name}.csv"
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    rows = "\n".join(",".join([*(repr(float(v)) for v in x), f"c{int(label)}"]) for x, label in zip(X, y))
    path.write_text(header + "\n" + rows + "\n")
    return path


def score(task: str, y: np.ndarray, scores: np.ndarray, balanced: bool) -> float:
    predicted = (scores.reshape(-1) > 0.5).astype(int) if task == "binary" else scores.argmax(axis=1)
    truth = (y > 0.5).astype(int) if task == "binary" else y
    if not balanced:
        return float(np.mean(predicted == truth))
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def set_value(raw: dict, dotted: str, value) -> None:
    """``section.key=value`` or ``optimizer.<name>.key=value``."""
    *path, last = dotted.split(".")
    node = raw
    for part in path:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--datasets", nargs="+", default=[*BUNDLED, *SYNTHETIC], choices=[*BUNDLED, *SYNTHETIC])
    parser.add_argument("--optimizers", nargs="*", default=list(OPTIMIZERS), help="none: the baseline only")
    parser.add_argument("--seeds", type=int, default=5, help="train.seed 0..N-1 (default 5)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a param for every run (repeatable; optimizer.<name>.<key> too)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the scikit-learn baseline")
    parser.add_argument("--json", help="also write every run as JSON to this path")
    arguments = parser.parse_args()

    raw = yaml.safe_load(Path(arguments.params).read_text())
    raw["runtime"] = dict(load_runtime(Path(arguments.params).with_name("runtime.yaml")), progress=False)
    for item in arguments.set:
        key, _, value = item.partition("=")
        set_value(raw, key, yaml.safe_load(value))
    print(numerics.describe(), file=sys.stderr)

    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="evomlp-accuracy-"))
    data = dict(raw.get("data") or {})
    for dataset in arguments.datasets:
        if dataset in SYNTHETIC:
            raw["data"] = dict(data, dataset=str(synthetic_csv(dataset, workdir)), target="label", stratify=True)
        else:
            raw["data"] = dict(data, dataset=dataset, target=None)
        params = validate_params(raw, arguments.params)
        prepared = prepare_data(params["data"])
        parts, task, classes = prepared.parts, prepared.task, prepared.classes
        train_part = (parts["train"]["X"], parts["train"]["y"])
        validation_part = (parts["validation"]["X"], parts["validation"]["y"])
        X_test, y_test = parts["test"]["X"], parts["test"]["y"]
        balanced = dataset in BALANCED
        systems = [] if arguments.no_baseline else ["baseline"]
        for system in systems + list(arguments.optimizers):
            for seed in range(arguments.seeds):
                started = time.perf_counter()
                if system == "baseline":
                    scores = fit_baseline(params["model"], dict(params["baseline"], seed=seed), task, classes,
                                          train_part, X_test)
                    generations = None
                else:
                    checked = validate_params(dict(raw, train=dict(raw.get("train") or {}, optimizer=system, seed=seed)),
                                              arguments.params)
                    trained = train_network(params["model"], checked["train"], checked["optimizer"][system],
                                            params["runtime"], task, classes, train_part, validation_part)
                    scores = output_probabilities(trained.spec, forward(trained.spec, trained.result.weights, X_test))
                    generations = trained.result.n_generations
                seconds = time.perf_counter() - started
                rows.append({"dataset": dataset, "system": system, "seed": seed, "generations": generations,
                             "accuracy": score(task, y_test, scores, balanced), "seconds": seconds})
                print(f"{dataset:14s} {system:20s} seed {seed}: {'balanced ' if balanced else ''}accuracy "
                      f"{rows[-1]['accuracy']:.4f} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    systems = list(dict.fromkeys(row["system"] for row in rows))
    print(f"\nTest accuracy (imbalanced: balanced accuracy), mean +- std over seeds 0..{arguments.seeds - 1}; "
          "mean seconds per run")
    print(f"params: {arguments.params}" + (f" with {' '.join(arguments.set)}" if arguments.set else ""))
    print("| system | " + " | ".join(arguments.datasets) + " |")
    print("| --- |" + " --- |" * len(arguments.datasets))
    for system in systems:
        cells = []
        for dataset in arguments.datasets:
            selected = [r for r in rows if r["system"] == system and r["dataset"] == dataset]
            values = np.array([r["accuracy"] for r in selected])
            seconds = np.mean([r["seconds"] for r in selected])
            cells.append(f"{values.mean():.4f} +- {values.std():.4f} ({seconds:.1f} s)")
        print(f"| {system} | " + " | ".join(cells) + " |")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"params": arguments.params, "set": arguments.set,
                                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
