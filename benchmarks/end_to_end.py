"""The default train stage end to end, as users run it, against a scipy script doing the same evaluations.

    python benchmarks/end_to_end.py [--repeats N] [--quick] [--json PATH]

Systems, each timed as a process from its start to its exit, interleaved, best of ``N`` (default 3;
the machine may be shared), after one untimed run of each (numba compiles the loops into the
scratch copy's cache, the disk cache is warm):

- ``dvc repro -f -s train``: the headline, the command users run. In a scratch copy of this
  working tree (its files as they are now, committed in a fresh git repository, with this tree's
  ``data/prepared``), with this checkout's ``.venv`` first on ``PATH``; the default params
  (``params.yaml``, ``runtime.yaml``: SNES, population 50, 1,500 generations, float32,
  threads, ``n_jobs: auto``, progress bar, checkpoints every 100, live metrics every 50).
- ``python -m stages.train``: the same stage without DVC, in the same copy.
- ``scipy``: ``benchmarks/scipy_reference.py``, a self-contained ~40-line script: the same
  prepared training rows, a per-individual numpy forward pass (float32, as the stage), binary
  cross-entropy + the same L2 penalty, :func:`scipy.optimize.differential_evolution` with an initial
  population of 50 (so ``popsize`` is not used), ``maxiter`` 1,500, ``polish=False``,
  ``tol=atol=0``: 50 x 1,501 = 75,050 evaluations, the stage's count. It runs in the environment
  this benchmark was started in (no evomlp, so no pinned kernels: this CPU's own).

Printed: the wall times, the ratios scipy / stage, the evaluations of each, and a breakdown of the
best ``dvc repro`` run: the stage's phases come from its ``logs/train-timing.json`` (the stage
writes when it started and ended, and its phases from its first line on); the interpreter's start
(up to the stage's first line) and its exit are those of the best direct run; DVC's own overhead
is the rest of the ``dvc repro`` wall time. The CPU (``/proc/cpuinfo``), the stage's kernels
(:func:`evomlp.numerics.status`) and scipy's BLAS (threadpoolctl) are named.

``--quick`` (a smoke run, about 30 s): 150 generations, one timed repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
QUICK_GENERATIONS = 150


def scratch_copy(generations: int | None) -> Path:
    """This working tree's files (tracked and untracked, not ignored) and ``data/prepared`` in a
    temporary folder, committed in a fresh git repository so that DVC and dvclive see a project;
    with ``generations``, ``train.max_generations`` set to it."""
    folder = Path(tempfile.mkdtemp(prefix="evomlp-e2e-"))
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    shutil.copytree(ROOT / "data" / "prepared", folder / "data" / "prepared")
    if generations is not None:
        params = folder / "params.yaml"
        params.write_text(params.read_text().replace("max_generations: 1500", f"max_generations: {generations}"))
    git = ["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "scratch copy"]):
        subprocess.run(git + command, cwd=folder, check=True, capture_output=True)
    return folder


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def timed(command: list[str], folder: Path) -> tuple[float, float, str]:
    """``(started, wall seconds, stdout + stderr)`` of ``command`` run in ``folder``; fails loudly."""
    started = time.time()
    done = subprocess.run(command, cwd=folder, env=environment(), capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return started, wall, done.stdout + done.stderr


def stage_record(folder: Path, started: float, wall: float) -> dict:
    timing = json.loads((folder / "logs" / "train-timing.json").read_text())
    metrics = json.loads((folder / "metrics" / "train" / "metrics.json").read_text())
    return {"wall": wall, "before": timing["started_at"] - started, "after": started + wall - timing["ended_at"],
            "timing": timing, "evaluations": metrics["evaluations"]}


def kernels(folder: Path) -> tuple[str, str]:
    """The stage's kernels (evomlp.numerics.status in the scratch copy) and scipy's BLAS here."""
    python = str(VENV_BIN / "python")
    stage = subprocess.run([python, "-c", "import evomlp.numerics as n, numpy; print(n.describe())"], cwd=folder,
                           env=environment(), capture_output=True, text=True, check=True).stdout.strip()
    probe = ("import numpy, threadpoolctl; print(', '.join(f\"{i['internal_api']} {i.get('architecture')}\" "
             "for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))")
    scipy = subprocess.run([python, "-c", probe], cwd=folder, env=environment(), capture_output=True, text=True,
                           check=True).stdout.strip()
    return stage, scipy


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = fields.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    name = fields.get("model name", "unknown CPU")
    family = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{name} ({family}, {simd}), {os.cpu_count()} cores"


def breakdown(dvc: dict, direct: dict) -> list[tuple[str, float]]:
    """Seconds of the best ``dvc repro`` run by phase (see the module docstring)."""
    timing, phases = dvc["timing"], dvc["timing"]["phases"]
    live = timing.get("live", {})
    loop = ("evaluation_s", "optimizer_s", "validation_s", "checkpoint_s", "report_s", "progress_s", "stop_checks_s")
    rows = [
        ("interpreter start (to the stage's first line)", direct["before"]),
        ("imports", phases["imports_s"]),
        ("params validation (params.yaml + runtime.yaml)", phases["params_s"]),
        ("data loading (checked), checkpoint key", phases["data_s"]),
        ("training set-up (problems, optimizer, workers)", timing["setup_s"]),
        ("first evaluation (numba loads its loops)", timing["start_s"]),
        ("loop: evaluation (trials built and evaluated)", timing["evaluation_s"]),
        ("loop: optimizer propose + tell", timing["optimizer_s"]),
        ("loop: validation pass", timing["validation_s"]),
        ("loop: checkpoint writes", timing["checkpoint_s"]),
        ("loop: live metrics (hand-over; written in a thread)", timing["report_s"]),
        ("loop: progress bar", timing["progress_s"]),
        ("loop: stop checks (has dvc exited?)", timing["stop_checks_s"]),
        ("loop: the rest (Python between the steps)", timing["run_s"] - sum(timing[key] for key in loop)),
        ("train_network's rest", phases["train_s"] - timing["setup_s"] - timing["start_s"] - timing["run_s"]),
        ("outputs (model, metrics, history; live end)", phases["outputs_s"]),
        ("interpreter exit", direct["after"]),
        ("DVC's own (dvc repro wall - the stage process)", dvc["before"] - direct["before"] + dvc["after"] - direct["after"]),
    ]
    if live:
        rows.append((f"  (dvclive's load, in its thread: {live.get('load_s', 0):.2f} s; its waits: "
                     f"{live.get('wait_s', 0):.3f} s)", float("nan")))
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_GENERATIONS} generations, one repeat")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    generations = QUICK_GENERATIONS if args.quick else None
    repeats = 1 if args.quick else args.repeats
    if not (ROOT / "data" / "prepared" / "train.npz").is_file():
        raise SystemExit("benchmark: no data/prepared here; run `dvc repro prepare` first")
    folder = scratch_copy(generations)
    python = str(VENV_BIN / "python")
    scipy_command = [python, str(ROOT / "benchmarks" / "scipy_reference.py")]
    if generations is not None:
        scipy_command += ["--generations", str(generations)]
    systems = {
        "dvc repro -f -s train": [str(VENV_BIN / "dvc"), "repro", "-f", "-s", "train"],
        "python -m stages.train": [python, "-m", "stages.train"],
        "scipy (per individual)": scipy_command,
    }
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    try:
        stage_kernels, scipy_blas = kernels(folder)
        for name, command in systems.items():  # warm-up: numba's cache in the copy, the disk cache
            timed(command, folder)
        for repeat in range(repeats):
            for name, command in systems.items():
                started, wall, output = timed(command, folder)
                if name.startswith("scipy"):
                    evaluations = int(output.split("scipy: ", 1)[1].split()[0])
                    runs[name].append({"wall": wall, "evaluations": evaluations})
                else:
                    runs[name].append(stage_record(folder, started, wall))
                print(f"  repeat {repeat + 1}/{repeats}: {name}: {wall:.2f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = {name: min(found, key=lambda run: run["wall"]) for name, found in runs.items()}
    dvc, direct, scipy = best["dvc repro -f -s train"], best["python -m stages.train"], best["scipy (per individual)"]
    print(f"\nCPU: {cpu_name()}")
    print(f"stage kernels: {stage_kernels}")
    print(f"scipy's BLAS: {scipy_blas}")
    print(f"\nbest of {repeats}, wall seconds from process start to exit:")
    for name, run in best.items():
        ratio = scipy["wall"] / run["wall"]
        print(f"  {name:<26} {run['wall']:7.2f} s  {run['evaluations']:>7,} evaluations  scipy / this = {ratio:.2f}x")
    print(f"\nheadline: `dvc repro -f -s train` is {scipy['wall'] / dvc['wall']:.2f}x the scipy script "
          f"({scipy['wall']:.2f} s / {dvc['wall']:.2f} s)")
    print("\nwhere the best `dvc repro -f -s train` run's time goes:")
    for label, seconds in breakdown(dvc, direct):
        print(f"  {label:<52} {'' if seconds != seconds else f'{seconds:6.3f} s'}")
    result = {"cpu": cpu_name(), "stage_kernels": stage_kernels, "scipy_blas": scipy_blas, "runs": runs,
              "best": {name: run["wall"] for name, run in best.items()},
              "breakdown": dict(breakdown(dvc, direct))}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
