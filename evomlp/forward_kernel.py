"""The fused population forward pass: one compiled loop per architecture, the same bits on any CPU.

For a network whose hidden layers are ReLU (or identity) in float32, the whole forward pass of a
block of individuals runs in one call of machine code generated here as LLVM IR (llvmlite, the
compiler numba is built on) and compiled for this CPU: for each individual and each block of rows,
every layer's products, its bias and its activation are computed with the activations kept in
registers and in a small per-thread scratch that stays in L1 cache, and the output layer is
folded in. numpy's stacked ``matmul`` made a BLAS call per individual and layer, a pass for bias +
ReLU, and a memory round trip between layers; the 32 -> 1 output layer ran at a tenth of BLAS's
speed.

**The bits are defined by the IR, not by the CPU.** Every output element of a layer is
``acc = b[j]; for k in 0..fan_in-1: acc = fma(h[k], W[k, j], acc)``, in that order, with
``fma`` LLVM's ``llvm.fma`` (one rounding, exact on every target), then ReLU as
``acc < 0 ? 0 : acc``. LLVM IR without fast-math flags gives each vector lane exactly the IEEE
result of that sequence, so the vector width the CPU offers (AVX2's 8 lanes, AVX-512's 16), the
register blocking chosen for it and the number of rows per block only change how fast the same
numbers come out. That replaces :mod:`evomlp.numerics`' pin of OpenBLAS's Haswell kernels for this
computation, and with it the pin's cost on AVX-512 CPUs (the pin stays for everything else: the
loss's transcendental functions, other activations, float64, scikit-learn).

The rows are the vector lanes: the training rows are stored transposed, ``(features, rows)``,
padded with zero rows to a multiple of the block, so an output unit of a block of rows is one
vector (or a few), its weights are scalars broadcast from the individual's own weight vector, and
the 32 -> 1 output layer is as vectorised as the others. A padded row changes no other row's
value; its outputs are dropped.

:func:`reference_forward` computes the same sequence in numpy, exactly (float32 ``fma`` from float64
arithmetic and round-to-odd): it is what the tests compare the machine code with, and what runs
(slowly, but with the same bits) where llvmlite is missing or ``EVOMLP_FUSED=0``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

FUSED_ACTIVATIONS = ("relu", "identity")
_LOCK = threading.Lock()
_COMPILED: dict = {}
_MACHINE: dict = {}


def supports(spec, dtype) -> bool:
    """Whether the fused pass computes this network in this dtype (float32, ReLU/identity layers)."""
    return np.dtype(dtype) == np.float32 and all(a in FUSED_ACTIVATIONS for a in spec.activations)


def compiled_available() -> bool:
    """Whether machine code can be generated here (llvmlite importable, not disabled by ``EVOMLP_FUSED=0``)."""
    return _machine() is not None


@dataclass(frozen=True)
class Blocking:
    """How this CPU runs the loop: ``lanes`` floats per vector, ``vectors`` row vectors per block
    (``rows = lanes * vectors`` rows at a time), ``group`` output units accumulated together. None
    of it changes a bit of the result."""

    lanes: int
    vectors: int
    group: int

    @property
    def rows(self) -> int:
        return self.lanes * self.vectors


REFERENCE_BLOCKING = Blocking(lanes=8, vectors=1, group=1)


TARGET_ENV = "EVOMLP_FUSED_TARGET"
# What the loop may be compiled for (``EVOMLP_FUSED_TARGET``; tests force each one this CPU can run,
# as they force OpenBLAS's kernels): ``host`` (this CPU, the default), ``avx2`` (Haswell's
# instructions: 8-lane vectors, 16 registers), ``avx512`` (Skylake-AVX512's: 16 lanes, 32
# registers) and ``sse2`` (the x86-64 baseline, no FMA instruction: ``llvm.fma`` becomes a call to
# the C library's exact ``fmaf``; slow, and there to show that the bits do not need FMA hardware).
TARGETS = {
    "avx2": ("haswell", "", Blocking(lanes=8, vectors=2, group=6)),
    "avx512": ("skylake-avx512", "-prefer-256-bit", Blocking(lanes=16, vectors=2, group=12)),
    "sse2": ("x86-64", "", Blocking(lanes=4, vectors=2, group=6)),
}


def _machine():
    if "machine" not in _MACHINE:
        with _LOCK:
            if "machine" not in _MACHINE:
                _MACHINE["machine"] = machine_for(os.environ.get(TARGET_ENV, "host"))
    return _MACHINE["machine"]


def machine_for(target: str):
    """The :class:`Machine` of ``target`` (a key of :data:`TARGETS` or ``host``), or ``None``
    without llvmlite or with ``EVOMLP_FUSED=0``."""
    if os.environ.get("EVOMLP_FUSED", "1") == "0":
        return None
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return None
    for init in ("initialize_native_target", "initialize_native_asmprinter"):
        getattr(llvm, init)()
    if target == "host":
        features = llvm.get_host_cpu_features()
        wide = features.get("avx512f", False)
        cpu, flat = llvm.get_host_cpu_name(), features.flatten()
        # LLVM's tuning for several AVX-512 CPUs prefers 256-bit vectors; this loop wants 512
        flat += ",-prefer-256-bit" if wide else ""
        # 32 vector registers with AVX-512, 16 with AVX2: the accumulators (vectors x group) and
        # the loaded row vectors must fit
        blocks = TARGETS["avx512" if wide else "avx2"][2]
    elif target in TARGETS:
        cpu, flat, blocks = TARGETS[target]
    else:
        from evomlp.errors import EvomlpError

        raise EvomlpError(f"{TARGET_ENV}: expected one of {['host', *TARGETS]}, got {target!r}")
    return Machine(llvm, cpu, flat, blocks)


@dataclass(frozen=True)
class Machine:
    """A compilation target: llvmlite's binding module, the CPU and features to compile for, and
    the :class:`Blocking` used for it."""

    llvm: object
    cpu: str
    features: str
    blocking: Blocking

    @property
    def name(self) -> str:
        return f"{self.cpu} {self.features}"

    def target_machine(self):
        """A new LLVM target machine (an execution engine takes ownership of the one it gets)."""
        return self.llvm.Target.from_default_triple().create_target_machine(
            cpu=self.cpu, features=self.features, opt=3, codemodel="jitdefault")


def blocking() -> Blocking:
    """This process's :class:`Blocking` (the reference one when there is no compiler)."""
    machine = _machine()
    return REFERENCE_BLOCKING if machine is None else machine.blocking


# -- the rows ------------------------------------------------------------------------------------
def prepare_rows(X: np.ndarray, rows_per_block: int) -> np.ndarray:
    """``X (N, F)`` -> ``(F, N_pad)`` float32, C-contiguous, ``N_pad`` a multiple of
    ``rows_per_block``, the padding rows zero."""
    n_rows, n_features = X.shape
    padded = -(-max(n_rows, 1) // rows_per_block) * rows_per_block
    XT = np.zeros((n_features, padded), dtype=np.float32)
    XT[:, :n_rows] = X.T
    return XT


# -- the machine code ----------------------------------------------------------------------------
def _kernel(spec, machine, loss: bool = False):
    key = (spec.layer_sizes, spec.activations, machine.name, machine.blocking, loss)
    kernel = _COMPILED.get(key)
    if kernel is None:
        with _LOCK:
            kernel = _COMPILED.get(key)
            if kernel is None:
                kernel = _COMPILED[key] = _compile(spec, machine, loss)
    return kernel


CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")


def _compile(spec, target: Machine, loss: bool = False):
    """The compiled loop of ``spec`` for ``target``: its object code from the cache beside this
    file when an earlier process made it (keyed by this file's source, the architecture, the
    target and llvmlite's version), otherwise generated, optimised and compiled (about 0.2 s) and
    cached for the next process."""
    llvm, machine, blocks = target.llvm, target.target_machine(), target.blocking
    path = _cache_path(spec, target, loss)
    cached = _read_cache(path)
    if cached is not None:
        module = llvm.parse_assembly(_stub_ir())  # the code comes from the cache, not from this
    else:
        module = llvm.parse_assembly(_generate_ir(spec, blocks, loss))
        module.verify()
        try:
            options = llvm.create_pipeline_tuning_options(speed_level=3)
            builder = llvm.create_pass_builder(machine, options)
            builder.getModulePassManager().run(module, builder)
        except AttributeError:  # an llvmlite without the new pass manager: the backend's own optimisation
            pass
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.set_object_cache(
        notify_func=None if cached is not None else (lambda _module, code: _write_cache(path, code)),
        getbuffer_func=lambda _module: cached,
    )
    engine.finalize_object()
    address = engine.get_function_address("evomlp_forward")
    signature = ctypes.CFUNCTYPE(None, *_ARGUMENTS)
    function = signature(address)
    return engine, module, function  # the engine owns the code: keep it alive with the function


_ARGUMENTS = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
              ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)


def _stub_ir() -> str:
    return ("define void @evomlp_forward(ptr %a, i64 %b, ptr %c, i64 %d, i64 %e, ptr %f, i64 %g, ptr %h, ptr %i) {\n"
            "  ret void\n}\n")


def _cache_path(spec, target: Machine, loss: bool) -> str:
    import hashlib

    import llvmlite

    with open(os.path.abspath(__file__), "rb") as handle:
        source = handle.read()
    key = repr((spec.layer_sizes, spec.activations, target.name, target.blocking, loss, llvmlite.__version__))
    digest = hashlib.sha256(source + key.encode()).hexdigest()[:24]
    return os.path.join(CACHE_DIR, f"forward_kernel.{digest}.o")


def _read_cache(path: str) -> bytes | None:
    """The object code of a cache file, or ``None`` if it is missing or does not match its checksum
    (machine code is never loaded from a torn or edited file)."""
    import hashlib

    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError:
        return None
    digest, code = content[:32], content[32:]
    return code if code and hashlib.sha256(code).digest() == digest else None


def _write_cache(path: str, code: bytes) -> None:
    """Written whole or not at all (a temporary renamed over it); a folder that cannot be written
    only means the next process compiles again. The file starts with the code's sha256."""
    import hashlib

    temporary = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        code = bytes(code)
        with open(temporary, "wb") as handle:
            handle.write(hashlib.sha256(code).digest() + code)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _generate_ir(spec, blocks: Blocking, loss: bool = False) -> str:
    """The LLVM IR of ``evomlp_forward(XT, n_padded, population, n_individuals, stride, out,
    out_stride, scratch, y)``: ``XT (F, n_padded)``; ``population`` float32 rows of ``stride``
    floats; ``out`` of individual ``i`` at ``out + i * out_stride``, ``(K, n_padded)``: the
    outputs or, with ``loss`` (a binary task), each row's cross-entropy against ``y (n_padded,)``;
    ``scratch``: two buffers of ``widest hidden layer x rows`` floats."""
    from llvmlite import ir

    f32 = ir.FloatType()
    i64 = ir.IntType(64)
    lanes, vectors, group = blocks.lanes, blocks.vectors, blocks.group
    vec = ir.VectorType(f32, lanes)
    ptr = f32.as_pointer()
    vec_ptr = vec.as_pointer()
    module = ir.Module(name="evomlp_forward")
    fn_type = ir.FunctionType(ir.VoidType(), [ptr, i64, ptr, i64, i64, ptr, i64, ptr, ptr])
    function = ir.Function(module, fn_type, name="evomlp_forward")
    XT, n_padded, population, n_individuals, stride, out, out_stride, scratch, labels = function.args
    for arg in (XT, population, out, scratch):
        arg.add_attribute("noalias")
    fma = _intrinsic(ir, module, "fma", vec, 3)
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    math = _IRMath(ir, module, builder, lanes) if loss else None
    zero_vec = ir.Constant(vec, [0.0] * lanes)
    block_rows = ir.Constant(i64, blocks.rows)
    widest = max(spec.hidden_layers, default=1)
    sizes = spec.layer_sizes
    n_layers = len(sizes) - 1

    def const(value: int):
        return ir.Constant(i64, value)

    def counted_loop(count, body, carried=()):
        """``for index in range(count): carried = body(index, carried)``; returns the last carried."""
        before = builder.block
        header = function.append_basic_block("loop")
        inner = function.append_basic_block("body")
        after = function.append_basic_block("after")
        builder.branch(header)
        builder.position_at_end(header)
        index = builder.phi(i64)
        index.add_incoming(const(0), before)
        phis = []
        for value in carried:
            phi = builder.phi(value.type)
            phi.add_incoming(value, before)
            phis.append(phi)
        builder.cbranch(builder.icmp_signed("<", index, count), inner, after)
        builder.position_at_end(inner)
        results = body(index, phis)
        following = builder.add(index, const(1))
        end = builder.block
        index.add_incoming(following, end)
        for phi, value in zip(phis, results):
            phi.add_incoming(value, end)
        builder.branch(header)
        builder.position_at_end(after)
        return phis

    def splat(scalar):
        single = builder.insert_element(ir.Constant(vec, ir.Undefined), scalar, const(0))
        return builder.shuffle_vector(single, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))

    def load_vec(base, offset):
        address = builder.bitcast(builder.gep(base, [offset]), vec_ptr)
        return builder.load(address, align=4)

    def store_vec(value, base, offset):
        address = builder.bitcast(builder.gep(base, [offset]), vec_ptr)
        builder.store(value, address, align=4)

    n_blocks = builder.sdiv(n_padded, block_rows)
    hidden_a = scratch
    hidden_b = builder.gep(scratch, [const(widest * blocks.rows)])

    def per_individual(individual, _):
        weights = builder.gep(population, [builder.mul(individual, stride)])
        out_individual = builder.gep(out, [builder.mul(individual, out_stride)])

        def per_block(block, _):
            row0 = builder.mul(block, block_rows)
            source, source_stride = builder.gep(XT, [row0]), n_padded
            offset = 0
            buffers = (hidden_a, hidden_b)
            for layer in range(n_layers):
                fan_in, fan_out = sizes[layer], sizes[layer + 1]
                w_offset, b_offset = offset, offset + fan_in * fan_out
                offset = b_offset + fan_out
                last = layer == n_layers - 1
                if last:
                    target, target_stride = builder.gep(out_individual, [row0]), n_padded
                else:
                    target, target_stride = buffers[layer % 2], const(blocks.rows)
                relu = not last and spec.activations[layer] == "relu"
                for first in range(0, fan_out, group):
                    units = range(first, min(first + group, fan_out))
                    start = [splat(builder.load(builder.gep(weights, [const(b_offset + j)]))) for j in units]
                    initial = [value for value in start for _ in range(vectors)]

                    def per_input(k, accumulators, source=source, source_stride=source_stride,
                                  units=units, w_offset=w_offset, fan_out=fan_out):
                        row = builder.mul(k, source_stride)
                        xs = [load_vec(source, builder.add(row, const(v * lanes))) for v in range(vectors)]
                        w_row = builder.add(builder.mul(k, const(fan_out)), const(w_offset))
                        updated = []
                        for u, j in enumerate(units):
                            w = splat(builder.load(builder.gep(weights, [builder.add(w_row, const(j))])))
                            for v in range(vectors):
                                updated.append(builder.call(fma, [xs[v], w, accumulators[u * vectors + v]]))
                        return updated

                    final = counted_loop(const(fan_in), per_input, initial)
                    for u, j in enumerate(units):
                        for v in range(vectors):
                            value = final[u * vectors + v]
                            if relu:
                                negative = builder.fcmp_ordered("<", value, zero_vec)
                                value = builder.select(negative, zero_vec, value)
                            if last and math is not None:
                                y = load_vec(labels, builder.add(row0, const(v * lanes)))
                                value = binary_cross_entropy_rows(math, value, y)
                            row = builder.mul(const(j), target_stride)
                            store_vec(value, target, builder.add(row, const(v * lanes)))
                source, source_stride = target, target_stride
            return []

        counted_loop(n_blocks, per_block)
        return []

    counted_loop(n_individuals, per_individual)
    builder.ret_void()
    return str(module)


# -- the pass ------------------------------------------------------------------------------------
class FusedRows:
    """Rows ready for :func:`forward`: ``X`` transposed and padded for a machine's blocking (this
    process's by default)."""

    def __init__(self, X: np.ndarray, machine=None, y: np.ndarray | None = None):
        self.n_rows = int(X.shape[0])
        self.machine = _machine() if machine is None else machine
        rows_per_block = REFERENCE_BLOCKING.rows if self.machine is None else self.machine.blocking.rows
        self.XT = prepare_rows(np.asarray(X, dtype=np.float32), rows_per_block)
        # the labels of a binary task (0 or 1), padded like the rows, for :func:`row_losses`
        self.y = None
        if y is not None:
            self.y = np.zeros(self.XT.shape[1], dtype=np.float32)
            self.y[: self.n_rows] = np.asarray(y, dtype=np.float32).reshape(-1)

    @property
    def n_padded(self) -> int:
        return int(self.XT.shape[1])


_SCRATCH = threading.local()


def forward(spec, population: np.ndarray, rows: FusedRows) -> np.ndarray:
    """Outputs ``(P, N, K)`` (a view of a ``(P, K, N_pad)`` array) of ``population (P, D)``
    float32 on ``rows``, computed by the compiled loop or, without one, by
    :func:`reference_forward` (the same bits)."""
    population = np.ascontiguousarray(population, dtype=np.float32)
    n_individuals = population.shape[0]
    n_outputs, n_padded = spec.n_outputs, rows.n_padded
    out = np.empty((n_individuals, n_outputs, n_padded), dtype=np.float32)
    if n_individuals and rows.n_rows:
        if rows.machine is not None:
            _call(spec, population, rows, out)
        else:
            out[:, :, : rows.n_rows] = reference_forward(spec, population, rows.XT[:, : rows.n_rows].T).transpose(0, 2, 1)
    return out.transpose(0, 2, 1)[:, : rows.n_rows, :]


def row_losses(spec, population: np.ndarray, rows: FusedRows) -> np.ndarray:
    """Binary cross-entropy ``(P, N)`` of every individual on every row (``rows`` made with its
    labels): the forward pass with the loss folded in, so the logits never leave the registers.
    The same bits as :func:`binary_cross_entropy_rows` on :func:`reference_forward`'s logits."""
    if spec.task != "binary" or rows.y is None:
        raise ValueError("row_losses: a binary task's network and rows with their labels")
    population = np.ascontiguousarray(population, dtype=np.float32)
    out = np.empty((population.shape[0], 1, rows.n_padded), dtype=np.float32)
    if population.shape[0] and rows.n_rows:
        if rows.machine is not None:
            _call(spec, population, rows, out, loss=True)
        else:
            logits = reference_forward(spec, population, rows.XT[:, : rows.n_rows].T)[..., 0]
            out[:, 0, : rows.n_rows] = reference_losses(logits, rows.y[: rows.n_rows])
    return out[:, 0, : rows.n_rows]


def reference_losses(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`binary_cross_entropy_rows` in numpy."""
    with np.errstate(all="ignore"):
        return binary_cross_entropy_rows(_NumpyMath(), np.asarray(logits, np.float32), np.asarray(y, np.float32))


def _call(spec, population: np.ndarray, rows: FusedRows, out: np.ndarray, loss: bool = False) -> None:
    blocks = rows.machine.blocking
    _, _, function = _kernel(spec, rows.machine, loss)
    widest = max(spec.hidden_layers, default=1)
    need = 2 * widest * blocks.rows
    scratch = getattr(_SCRATCH, "buffer", None)
    if scratch is None or scratch.size < need:
        scratch = _SCRATCH.buffer = np.empty(need, dtype=np.float32)
    function(
        rows.XT.ctypes.data, rows.n_padded, population.ctypes.data, population.shape[0], population.shape[1],
        out.ctypes.data, out.shape[1] * out.shape[2], scratch.ctypes.data,
        rows.y.ctypes.data if loss else None,
    )


# -- the reference -------------------------------------------------------------------------------
def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` rounded once to float32, exactly as a hardware FMA, from float64 arithmetic:
    the product of two float32 values is exact in float64; the sum is rounded to odd (its exact
    error, from TwoSum, decides the last bit) and then to float32, which rounds the exact value
    correctly (53 bits >= 24 + 2)."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    product = a * b
    total = product + c
    back = total - product
    error = (product - (total - back)) + (c - back)
    bits = total.view(np.int64) if total.ndim else np.array(total).view(np.int64)
    inexact = (error != 0) & ((bits & 1) == 0) & np.isfinite(total)
    toward = np.where(error > 0, np.inf, -np.inf)
    total = np.where(inexact, np.nextafter(total, toward), total)
    return total.astype(np.float32)


def reference_forward(spec, population: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``(P, N, K)`` float32: the fused pass's exact sequence of operations, in numpy."""
    population = np.asarray(population, dtype=np.float32)
    hidden = np.broadcast_to(np.asarray(X, dtype=np.float32), (population.shape[0], *X.shape))
    layers = spec.unpack_population(population)
    for index, (W, b) in enumerate(layers):
        acc = np.broadcast_to(b, (population.shape[0], hidden.shape[1], b.shape[2])).astype(np.float32)
        for k in range(W.shape[1]):
            acc = fma32(hidden[:, :, k : k + 1], W[:, k : k + 1, :], acc)
        if index < len(layers) - 1 and spec.activations[index] == "relu":
            acc = np.where(acc < 0, np.float32(0), acc)
        hidden = acc
    return hidden


# -- the loss, folded in (binary tasks) ----------------------------------------------------------
# Binary cross-entropy from a logit, row by row, in float32 operations whose sequence is written
# once (below) and run by two interpreters: LLVM IR vector instructions in the compiled loop and
# numpy in the reference, so the two give the same bits. ``exp`` and ``log`` are Cephes' float32
# polynomials (Moshier), evaluated with FMAs; error about 1 ulp, the same bits on every CPU.
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
LOG2_E = 1.44269504088896341
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
            -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
SQRT_HALF_X2 = 1.41421356237309504880


def binary_cross_entropy_rows(m, z, y):
    """``log(1 + exp(-|z|)) + (max(z, 0) - z y)`` per row, with the operations of ``m``."""
    x = m.maximum(m.negate(m.abs(z)), m.const(-87.0))  # exp(-87) is still a normal float32
    # exp(x), x <= 0: x = n ln2 + r, |r| <= ln2 / 2
    n = m.rint(m.mul(x, m.const(LOG2_E)))
    r = m.fma(n, m.const(-LN2_HI), x)
    r = m.fma(n, m.const(-LN2_LO), r)
    p = m.const(EXP_POLY[0])
    for c in EXP_POLY[1:]:
        p = m.fma(p, r, m.const(c))
    e = m.add(m.fma(p, m.mul(r, r), r), m.const(1.0))
    e = m.mul(e, m.pow2(n))
    # log1p(e), e in (0, 1]: log(w) e / (w - 1) with w = 1 + e (Goldberg), e where w rounds to 1
    w = m.add(m.const(1.0), e)
    high = m.greater(w, m.const(SQRT_HALF_X2))
    mantissa = m.select(high, m.mul(w, m.const(0.5)), w)
    k = m.select(high, m.const(1.0), m.const(0.0))
    t = m.sub(mantissa, m.const(1.0))
    t2 = m.mul(t, t)
    q = m.const(LOG_POLY[0])
    for c in LOG_POLY[1:]:
        q = m.fma(q, t, m.const(c))
    q = m.mul(m.mul(q, t), t2)
    q = m.fma(k, m.const(LN2_LO), q)
    q = m.fma(t2, m.const(-0.5), q)
    log_w = m.fma(k, m.const(LN2_HI), m.add(t, q))
    ratio = m.div(e, m.sub(w, m.const(1.0)))
    log1p = m.select(m.equal(w, m.const(1.0)), e, m.mul(log_w, ratio))
    # max(z, 0) - z y is exact for y in {0, 1} (max(z, 0) or max(-z, 0)), so adding log1p last
    # loses nothing to cancellation (numpy's order, log1p + max(z, 0) - z y, did)
    return m.add(log1p, m.sub(m.maximum(z, m.const(0.0)), m.mul(z, y)))


class _NumpyMath:
    """The operations of :func:`binary_cross_entropy_rows` on float32 arrays."""

    f32 = np.float32

    def const(self, value):
        return np.float32(value)

    def fma(self, a, b, c):
        return fma32(a, b, c)

    def mul(self, a, b):
        return np.multiply(a, b, dtype=np.float32)

    def add(self, a, b):
        return np.add(a, b, dtype=np.float32)

    def sub(self, a, b):
        return np.subtract(a, b, dtype=np.float32)

    def div(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(a, b, dtype=np.float32)

    def negate(self, a):
        return np.negative(a)

    def abs(self, a):
        return np.abs(a)

    def rint(self, a):
        return np.rint(a)

    def maximum(self, a, b):  # a < b ? b : a (NaN in a stays)
        return np.where(a < b, b, a).astype(np.float32)

    def greater(self, a, b):
        return a > b

    def equal(self, a, b):
        return a == b

    def select(self, condition, a, b):
        return np.where(condition, a, b).astype(np.float32)

    def pow2(self, n):
        return ((n.astype(np.int32) + 127) << 23).astype(np.int32).view(np.float32)


def _intrinsic(ir, module, name: str, vec, arity: int):
    """LLVM's ``llvm.<name>`` on ``vec`` (declared once per module)."""
    full = f"llvm.{name}.v{vec.count}f32"
    try:
        return module.get_global(full)
    except KeyError:
        return ir.Function(module, ir.FunctionType(vec, [vec] * arity), name=full)


class _IRMath:
    """The operations of :func:`binary_cross_entropy_rows` as LLVM IR on ``lanes``-wide vectors."""

    def __init__(self, ir, module, builder, lanes: int):
        self.ir, self.builder, self.lanes = ir, builder, lanes
        self.vec = ir.VectorType(ir.FloatType(), lanes)
        self.ivec = ir.VectorType(ir.IntType(32), lanes)
        self._fma = _intrinsic(ir, module, "fma", self.vec, 3)
        self._fabs = _intrinsic(ir, module, "fabs", self.vec, 1)
        self._rint = _intrinsic(ir, module, "rint", self.vec, 1)

    def const(self, value):
        return self.ir.Constant(self.vec, [float(np.float32(value))] * self.lanes)

    def fma(self, a, b, c):
        return self.builder.call(self._fma, [a, b, c])

    def mul(self, a, b):
        return self.builder.fmul(a, b)

    def add(self, a, b):
        return self.builder.fadd(a, b)

    def sub(self, a, b):
        return self.builder.fsub(a, b)

    def div(self, a, b):
        return self.builder.fdiv(a, b)

    def negate(self, a):
        return self.builder.fneg(a)

    def abs(self, a):
        return self.builder.call(self._fabs, [a])

    def rint(self, a):
        return self.builder.call(self._rint, [a])

    def maximum(self, a, b):
        return self.builder.select(self.builder.fcmp_ordered("<", a, b), b, a)

    def greater(self, a, b):
        return self.builder.fcmp_ordered(">", a, b)

    def equal(self, a, b):
        return self.builder.fcmp_ordered("==", a, b)

    def select(self, condition, a, b):
        return self.builder.select(condition, a, b)

    def pow2(self, n):
        ir, builder = self.ir, self.builder
        exponent = builder.add(builder.fptosi(n, self.ivec), ir.Constant(self.ivec, [127] * self.lanes))
        return builder.bitcast(builder.shl(exponent, ir.Constant(self.ivec, [23] * self.lanes)), self.vec)
