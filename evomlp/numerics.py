"""Same bits on every x86-64 CPU: which BLAS and SIMD code paths compute what decides a result.

The last bits of a float computation depend on the code path that computes it, and libraries
choose their code path by the CPU they find at load time:

- OpenBLAS (numpy's and scipy's) picks a GEMM kernel per CPU family. Measured on one Sapphire
  Rapids host, a ``(318, 30) @ (30, 64)`` float32 product gives different bits with its SkylakeX
  (AVX-512), Haswell (AVX2) and SandyBridge (AVX) kernels; Zen uses the Haswell kernels.
- numpy dispatches its transcendental loops by SIMD level: ``log1p`` (float32) differs between its
  AVX-512, AVX2 and SSE loops; ``exp`` and ``log`` (float64) between AVX-512 and the others.
  Its sums, means, ``einsum``, ``maximum`` and arithmetic gave the same bits at every level.

Differential evolution's greedy selection turns one ulp into a different run, so a model trained
on an AVX-512 laptop would not match one trained on an AVX2 CI runner. :func:`pin` therefore fixes
both code paths, in the analogue of MKL's conditional numerical reproducibility (``MKL_CBWR``):
before numpy is loaded it sets, for this process and every process it starts,

- ``OPENBLAS_CORETYPE=Haswell``: OpenBLAS's AVX2 + FMA kernels, which run on every x86-64 CPU
  with AVX2 (Intel since Haswell, AMD since Excavator and every Zen), with or without AVX-512;
- ``NPY_ENABLE_CPU_FEATURES`` to numpy's AVX2 level (``X86_V3``), dropping any
  ``NPY_DISABLE_CPU_FEATURES`` (numpy refuses both at once): numpy's AVX2 loops everywhere;
- ``MKL_CBWR=AVX2``, for a numpy or scipy built against MKL instead of OpenBLAS.

Whatever the user's environment already set for these is replaced (and said so by
:func:`describe`): the point is that the same params give the same bytes wherever they run.
``EVOMLP_NATIVE_KERNELS=1`` lifts the pin (faster on an AVX-512 CPU, see the README, but the
bits are then this CPU's own). A CPU without AVX2 and FMA, or a process that imported numpy
before evomlp, cannot be pinned: :func:`status` says so, and the stages print it.

Everything here runs before numpy is imported and imports nothing heavy itself; the checks
(:func:`status`) use threadpoolctl and numpy's own feature table once numpy is loaded.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

NATIVE_ENV = "EVOMLP_NATIVE_KERNELS"
OPENBLAS_CORETYPE = "Haswell"
MKL_CBWR = "AVX2"
# numpy >= 2.4 names its x86 levels by the psABI's microarchitecture levels; older numpy by feature
NUMPY_LEVEL = "X86_V3"
NUMPY_LEVEL_BEFORE_2_4 = "AVX F16C FMA3 AVX2"
REQUIRED_CPU_FLAGS = ("avx", "avx2", "fma", "f16c")
_ENV_KEYS = ("OPENBLAS_CORETYPE", "NPY_ENABLE_CPU_FEATURES", "NPY_DISABLE_CPU_FEATURES", "MKL_CBWR")


@dataclass(frozen=True)
class PinResult:
    """What :func:`pin` did: ``pinned``, or why not (``reason``), and what it replaced."""

    pinned: bool
    reason: str
    replaced: tuple[tuple[str, str], ...] = ()


_RESULT: PinResult | None = None
_BEFORE_PIN: dict[str, str | None] = {}


def _machine() -> str:
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (Linux), or ``None`` where they cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _numpy_level() -> str:
    """numpy's name for its AVX2 level, by numpy's version, read without importing numpy (its
    ``version.py``; importlib.metadata would take 35 ms of every stage's start)."""
    try:
        import importlib.util
        import re

        spec = importlib.util.find_spec("numpy")
        location = spec.submodule_search_locations[0]
        with open(os.path.join(location, "version.py"), encoding="utf-8") as handle:
            found = re.search(r"^version\s*[:=].*?[\"'](\d+)\.(\d+)", handle.read(), re.MULTILINE)
        major, minor = int(found.group(1)), int(found.group(2))
    except Exception:  # not found the usual way: assume the numpy of requirements.lock
        return NUMPY_LEVEL
    return NUMPY_LEVEL if (major, minor) >= (2, 4) else NUMPY_LEVEL_BEFORE_2_4


def plan(environ: dict, flags: set[str] | None, machine: str, numpy_loaded: bool) -> tuple[dict, PinResult]:
    """The environment :func:`pin` would set, and what it means; pure, for tests."""
    if environ.get(NATIVE_ENV, "0") not in ("", "0"):
        return {}, PinResult(False, f"{NATIVE_ENV}={environ[NATIVE_ENV]}: this CPU's own kernels")
    if machine.lower() not in ("x86_64", "amd64"):
        return {}, PinResult(False, f"{machine} is not x86-64: bits may differ from x86-64 machines")
    if flags is None:
        return {}, PinResult(False, "the CPU's features could not be read (/proc/cpuinfo)")
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in flags]
    if missing:
        return {}, PinResult(False, f"this CPU lacks {', '.join(missing)}: bits may differ from AVX2 machines")
    wanted = {
        "OPENBLAS_CORETYPE": OPENBLAS_CORETYPE,
        "NPY_ENABLE_CPU_FEATURES": _numpy_level(),
        "NPY_DISABLE_CPU_FEATURES": None,
        "MKL_CBWR": MKL_CBWR,
    }
    if numpy_loaded:
        if all(environ.get(key) == value for key, value in wanted.items()):
            # started with the pin in its environment (a worker process of a pinned one)
            return {}, PinResult(True, "pinned by the environment this process started with")
        return {}, PinResult(False, "numpy was imported before evomlp, too late to choose its kernels")
    replaced = tuple(
        (key, environ[key]) for key, value in wanted.items() if key in environ and environ[key] != value
    )
    return wanted, PinResult(True, "pinned", replaced)


def pin() -> PinResult:
    """Fix BLAS and SIMD code paths for this process and its children (once; see the module doc)."""
    global _RESULT
    if _RESULT is None:
        wanted, result = plan(dict(os.environ), cpu_flags(), _machine(), "numpy" in sys.modules)
        _BEFORE_PIN.update((key, os.environ.get(key)) for key in wanted)
        _apply(os.environ, wanted)
        _RESULT = result
    return _RESULT


def one_blas_thread_per_process() -> bool:
    """Make every BLAS library this process loads run one thread (``OPENBLAS_NUM_THREADS=1``).

    OpenBLAS splits a small product differently with its thread count, hence other last bits
    (see :mod:`evomlp.evaluation`), so a stage must not compute with as many threads as the
    machine has cores. Called by the stages before numpy loads (a library user keeps their
    threads: the fitness passes limit themselves). Returns whether it was in time."""
    if "numpy" in sys.modules:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    return True


def _apply(env: dict, changes: dict[str, str | None]) -> dict:
    """Set each key of ``changes`` in ``env`` (``None``: remove it), in place; returns ``env``."""
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pinned_environment() -> dict[str, str]:
    """``os.environ`` with the pin applied: for starting processes elsewhere (dask workers)."""
    wanted, _ = plan(dict(os.environ), cpu_flags(), _machine(), False)
    return _apply(dict(os.environ), wanted)


def native_environment() -> dict[str, str]:
    """``os.environ`` as it was before :func:`pin`, plus ``EVOMLP_NATIVE_KERNELS=1``: for starting a
    process that computes with this CPU's own kernels (benchmarks)."""
    return _apply(dict(os.environ), dict(_BEFORE_PIN, **{NATIVE_ENV: "1"}))


@dataclass(frozen=True)
class Status:
    """The code paths this process computes with (after numpy is loaded)."""

    pinned: bool
    reason: str
    blas: tuple[str, ...]  # one "name architecture" per BLAS library loaded
    numpy_simd: str  # the highest numpy dispatch level enabled

    @property
    def fingerprint(self) -> tuple:
        """What must be equal between two processes for their results to be equal: the kernels."""
        return (tuple(sorted(set(self.blas))), self.numpy_simd)


def status() -> Status:
    """Which kernels this process uses: BLAS architectures (threadpoolctl) and numpy's SIMD level."""
    result = pin()
    blas: list[str] = []
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas":
                blas.append(f"{info.get('internal_api')} {info.get('architecture', '?')}")
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        pass
    simd = numpy_simd_level()
    pinned, reason = result.pinned, result.reason
    if pinned:
        wrong = [name for name in blas if name.startswith("openblas") and not name.endswith(OPENBLAS_CORETYPE)]
        if wrong:
            pinned, reason = False, f"OpenBLAS runs {', '.join(wrong)} despite OPENBLAS_CORETYPE={OPENBLAS_CORETYPE}"
        elif simd not in (NUMPY_LEVEL, "AVX2", "FMA3", "unknown"):
            pinned, reason = False, f"numpy runs its {simd} loops despite NPY_ENABLE_CPU_FEATURES"
    return Status(pinned, reason, tuple(blas), simd)


def numpy_simd_level() -> str:
    """The highest of numpy's dispatch targets enabled in this process (``baseline`` if none)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # pragma: no cover - numpy < 2
        return "unknown"
    features = umath.__cpu_features__
    enabled = [name for name in umath.__cpu_dispatch__ if features.get(name)]
    return enabled[-1] if enabled else "baseline"


def describe() -> str:
    """One line for a stage's log: what computes the results, and whether it is pinned."""
    current = status()
    blas = ", ".join(sorted(set(current.blas))) or "no BLAS loaded yet"
    if current.pinned:
        result = pin()
        extra = ""
        if result.replaced:
            extra = "; replaced " + ", ".join(f"{key}={value}" for key, value in result.replaced)
        return (
            f"numerics: pinned for the same bytes on any x86-64 CPU with AVX2 ({blas}; numpy SIMD "
            f"{current.numpy_simd}{extra}); {NATIVE_ENV}=1 uses this CPU's own kernels"
        )
    return f"numerics: NOT pinned ({current.reason}; {blas}; numpy SIMD {current.numpy_simd})"


def require_same(expected: tuple, where: str) -> None:
    """Raise if this process computes with other kernels than ``expected`` (a :attr:`Status.fingerprint`)."""
    from evomlp.errors import EvomlpError

    mine = status().fingerprint
    if mine != expected:
        raise EvomlpError(
            f"{where}: computes with {_say(mine)}, the training process with {_say(expected)}: "
            "results would differ in the last bits; start the workers through "
            "`python -m evomlp.pinned <command>` (for example `python -m evomlp.pinned dask "
            "worker <scheduler>`) so they are pinned too"
        )


def _say(fingerprint: tuple) -> str:
    blas, simd = fingerprint
    return f"{', '.join(blas) or 'no BLAS'} and numpy's {simd} loops"


pin()
