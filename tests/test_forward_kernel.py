"""The fused forward pass: its bits are the exact sequence of :func:`reference_forward`, for every
architecture it covers, every target this CPU can run, every blocking, and every split of the
population and of the rows."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evomlp import forward_kernel as fk
from evomlp.network import MLPSpec, forward_population

ROOT = Path(__file__).resolve().parents[1]
FLAGS = set()
try:
    FLAGS = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
except (OSError, StopIteration):
    pass

needs_compiler = pytest.mark.skipif(not fk.compiled_available(), reason="llvmlite is not importable")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def network(n_inputs=30, hidden=(64, 32), activations=("relu", "relu"), n_outputs=1, task="binary",
            size=7, n_rows=45, seed=0, scale=0.4):
    spec = MLPSpec(n_inputs, hidden, activations, n_outputs, task)
    rng = np.random.default_rng(seed)
    population = (rng.standard_normal((size, spec.n_weights)) * scale).astype(np.float32)
    X = rng.standard_normal((n_rows, n_inputs)).astype(np.float32)
    return spec, population, X


ARCHITECTURES = [
    dict(),  # the default network, 30-64-32-1
    dict(n_inputs=7, hidden=(13, 5), n_outputs=3, task="multiclass"),  # widths no vector divides
    dict(n_inputs=4, hidden=(1,), activations=("identity",), n_outputs=2, task="regression"),
    dict(n_inputs=64, hidden=(64, 32, 17), activations=("relu", "identity", "relu"), n_outputs=10, task="multiclass"),
    dict(n_inputs=3, hidden=(), activations=(), n_outputs=1, task="regression"),  # no hidden layer
]


def targets() -> list[str]:
    """Every compilation target this CPU can run (the host's own among them)."""
    found = ["host", "sse2"]
    if {"avx2", "fma"} <= FLAGS:
        found.append("avx2")
    if "avx512f" in FLAGS:
        found.append("avx512")
    return found


@needs_compiler
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(map(str, (a.get("n_inputs", 30), *a.get("hidden", (64, 32)), a.get("n_outputs", 1)))))
@pytest.mark.parametrize("target", targets())
def test_compiled_pass_is_the_reference_sequence_bit_for_bit(arch, target):
    spec, population, X = network(**arch)
    machine = fk.machine_for(target)
    got = fk.forward(spec, population, fk.FusedRows(X, machine))
    expected = fk.reference_forward(spec, population, X)
    assert same_bits(got, expected), f"{target}: max difference {np.abs(got - expected).max()}"


@needs_compiler
@pytest.mark.parametrize("blocking", [fk.Blocking(16, 1, 24), fk.Blocking(8, 3, 4), fk.Blocking(4, 1, 1), fk.Blocking(16, 4, 5)])
def test_the_blocking_changes_no_bit(blocking):
    spec, population, X = network(n_rows=101)
    host = fk.machine_for("host")
    reblocked = fk.Machine(host.llvm, host.cpu, host.features, blocking)
    assert same_bits(fk.forward(spec, population, fk.FusedRows(X, reblocked)),
                     fk.forward(spec, population, fk.FusedRows(X, host)))


@needs_compiler
def test_an_individual_does_not_depend_on_its_chunk_nor_a_row_on_the_other_rows():
    spec, population, X = network(size=9, n_rows=70)
    whole = fk.forward(spec, population, fk.FusedRows(X))
    assert same_bits(fk.forward(spec, population[3:5], fk.FusedRows(X)), whole[3:5])
    assert same_bits(fk.forward(spec, population[8:], fk.FusedRows(X)), whole[8:])
    # other rows (so another padding) around the same rows
    assert same_bits(fk.forward(spec, population, fk.FusedRows(X[:33]))[:, :33], whole[:, :33])
    assert same_bits(fk.forward(spec, population, fk.FusedRows(X[40:41])), whole[:, 40:41])


def test_fma32_rounds_once_where_float64_then_float32_would_round_twice():
    # a*b + c = 1 + 2^-24 + 2^-60 exactly: just above the midpoint between 1 and the next float32.
    # Rounded to float64 first it lands on the midpoint, which then rounds to even (1.0); one
    # rounding, as an FMA does, gives 1 + 2^-23.
    a, b, c = np.float32(1 + 2.0**-23), np.float32(1 - 2.0**-24), np.float32(2.0**-47 + 2.0**-60)
    twice = np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    assert twice == np.float32(1.0)
    assert fk.fma32(a, b, c) == np.float32(1 + 2.0**-23)


def test_fma32_against_exact_rationals():
    from fractions import Fraction

    rng = np.random.default_rng(3)
    a = rng.standard_normal(4000).astype(np.float32)
    b = rng.standard_normal(4000).astype(np.float32)
    # c near -a*b, where cancellation exposes any second rounding
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(4000) * 1e-7)).astype(np.float32)
    got = fk.fma32(a, b, c)
    for i in range(0, 4000, 7):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        assert got[i] == correctly_rounded_float32(exact), i


def correctly_rounded_float32(value) -> np.float32:
    """The float32 nearest to a Fraction (ties to even), by bisection on the bit patterns."""
    from fractions import Fraction

    candidate = np.float32(float(value))  # within an ulp or two
    best = candidate
    for step in (-2, -1, 0, 1, 2):
        bits = np.array([candidate]).view(np.int32)[0] + step
        neighbour = np.array([bits], dtype=np.int32).view(np.float32)[0]
        if not np.isfinite(neighbour):
            continue
        error, best_error = abs(Fraction(float(neighbour)) - value), abs(Fraction(float(best)) - value)
        if error < best_error or (error == best_error and np.array([neighbour]).view(np.int32)[0] % 2 == 0):
            best = neighbour
    return best


def test_forward_population_uses_the_fused_pass_in_float32_only():
    spec, population, X = network(size=3)
    expected = fk.reference_forward(spec, population, X)
    assert same_bits(forward_population(spec, population, X), expected)
    # float64 and other activations keep the BLAS path: close, not the fused bits
    wide = forward_population(spec, population.astype(np.float64), X.astype(np.float64))
    assert wide.dtype == np.float64 and np.allclose(wide, expected, atol=1e-4)
    tanh = MLPSpec(30, (64, 32), ("tanh", "relu"), 1, "binary")
    assert not fk.supports(tanh, np.float32) and fk.supports(spec, np.float32)


def test_without_a_compiler_the_reference_gives_the_same_bits():
    """``EVOMLP_FUSED=0`` (as where llvmlite is missing): the numpy sequence, in a fresh process."""
    spec, population, X = network(size=4, n_rows=19)
    here = fk.forward(spec, population, fk.FusedRows(X))
    code = (
        "import sys, numpy as np\n"
        "from evomlp import forward_kernel as fk\n"
        "from evomlp.network import MLPSpec\n"
        "data = np.load(sys.argv[1])\n"
        "assert not fk.compiled_available()\n"
        "spec = MLPSpec(30, (64, 32), ('relu', 'relu'), 1, 'binary')\n"
        "out = fk.forward(spec, data['population'], fk.FusedRows(data['X']))\n"
        "sys.stdout.write(np.ascontiguousarray(out).tobytes().hex())\n"
    )
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fused-{os.getpid()}.npz"
    np.savez(path, population=population, X=X)
    try:
        environ = dict(os.environ, EVOMLP_FUSED="0", PYTHONPATH=str(ROOT))
        result = subprocess.run([sys.executable, "-c", code, str(path)], env=environ, capture_output=True, text=True, timeout=300)
    finally:
        path.unlink()
    assert result.returncode == 0, result.stderr
    assert result.stdout == np.ascontiguousarray(here).tobytes().hex()


def test_an_unknown_target_is_one_line():
    from evomlp.errors import EvomlpError

    with pytest.raises(EvomlpError, match="EVOMLP_FUSED_TARGET: expected one of"):
        fk.machine_for("avx1024")


@needs_compiler
def test_a_later_process_loads_the_compiled_loop_from_the_cache_and_never_a_damaged_one(tmp_path, monkeypatch):
    spec, population, X = network(n_inputs=5, hidden=(9,), activations=("relu",), size=3, n_rows=21)
    monkeypatch.setattr(fk, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fk, "_COMPILED", {})
    expected = fk.reference_forward(spec, population, X)
    assert same_bits(fk.forward(spec, population, fk.FusedRows(X)), expected)
    (cached,) = tmp_path.glob("forward_kernel.*.o")

    def no_generation(*_):
        raise AssertionError("generated again despite the cache")

    monkeypatch.setattr(fk, "_COMPILED", {})  # as in a new process
    with monkeypatch.context() as patch:
        patch.setattr(fk, "_generate_ir", no_generation)
        assert same_bits(fk.forward(spec, population, fk.FusedRows(X)), expected)
    # a damaged file (one byte of its code changed) is compiled again and rewritten
    content = bytearray(cached.read_bytes())
    content[len(content) // 2] ^= 0xFF
    cached.write_bytes(bytes(content))
    monkeypatch.setattr(fk, "_COMPILED", {})
    assert same_bits(fk.forward(spec, population, fk.FusedRows(X)), expected)
    assert fk._read_cache(str(cached)) is not None


@needs_compiler
@pytest.mark.parametrize("target", targets())
def test_the_folded_loss_is_the_reference_sequence_and_close_to_the_textbook_one(target):
    spec, population, X = network(size=6, n_rows=77, scale=1.5)  # logits far into both tails
    y = (np.random.default_rng(4).random(77) < 0.5).astype(np.int64)
    rows = fk.FusedRows(X, fk.machine_for(target), y)
    got = fk.row_losses(spec, population, rows)
    logits = fk.reference_forward(spec, population, X)[..., 0]
    assert same_bits(got, fk.reference_losses(logits, y))
    wide = logits.astype(np.float64)
    exact = np.logaddexp(0, -np.abs(wide)) + (np.maximum(wide, 0) - wide * y)
    assert np.abs(logits).max() > 20
    assert np.all(np.abs(got - exact) <= 3e-7 * exact + 2e-38)


def test_the_folded_loss_math_is_accurate_over_the_whole_range():
    z = np.concatenate([np.linspace(-120, 120, 100001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    for label in (0, 1):
        y = np.full_like(z, label)
        got = fk.reference_losses(z, y).astype(np.float64)
        wide = z.astype(np.float64)
        exact = np.logaddexp(0, -np.abs(wide)) + (np.maximum(wide, 0) - wide * label)
        # a few float32 ulps everywhere (exp(-|z|) is held at exp(-87) below, 1.6e-38, so tiny
        # losses are off by that much at most)
        assert np.all(np.abs(got - exact) <= 3e-7 * exact + 2e-38), label


def test_fitness_of_a_binary_task_uses_the_folded_loss_and_validation_the_same_definition():
    from evomlp.evaluation import FitnessProblem
    from evomlp.losses import row_mean

    spec, population, X = network(size=5, n_rows=40)
    y = (np.random.default_rng(2).random(40) < 0.5).astype(np.int64)
    problem = FitnessProblem(spec, X, y, l2=0.0, dtype="float32")
    logits = fk.reference_forward(spec, population, X)[..., 0]
    expected = row_mean(fk.reference_losses(logits, y), None).astype(np.float64)
    assert same_bits(problem(population.astype(np.float64)), expected)
    loss, accuracy = problem.loss_and_accuracy(population.astype(np.float64))
    assert same_bits(loss, expected)
    assert np.array_equal(accuracy, ((logits > 0) == (y > 0.5)).mean(axis=1))
    # a minibatch: the rows' own losses
    rows = np.array([3, 17, 5, 39])
    assert same_bits(problem(population.astype(np.float64), rows),
                     row_mean(fk.reference_losses(logits[:, rows], y[rows]), None).astype(np.float64))
