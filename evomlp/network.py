"""The multilayer perceptron: its spec, the flat weight vector, and the population forward pass.

A network is described by an :class:`MLPSpec`. All its weights and biases live in one flat vector
of length ``spec.n_weights``, laid out layer by layer as ``W_1 (fan_in, fan_out)`` in row-major
order followed by ``b_1 (fan_out,)``, then ``W_2``, ``b_2`` and so on (the same order as
scikit-learn's ``_pack``). A *population* is a ``(P, D)`` array of such vectors, one row per
individual, and :func:`forward_population` computes the outputs of all ``P`` networks on the same
rows ``X`` with one stacked matrix product per layer for each cache-sized block of individuals
(a few blocks per generation), never with per-individual Python code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evomlp import forward_kernel, kernels
from evomlp.errors import EvomlpError

HIDDEN_ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "elu", "softplus")
OUTPUT_ACTIVATIONS = {"binary": "sigmoid", "multiclass": "softmax", "regression": "identity"}
TASKS = tuple(OUTPUT_ACTIVATIONS)


@dataclass(frozen=True)
class MLPSpec:
    """Architecture of a fully connected network.

    ``n_outputs`` is 1 for a binary task (one logit), the number of classes for a multiclass task,
    and the number of targets for regression.
    """

    n_inputs: int
    hidden_layers: tuple[int, ...]
    activations: tuple[str, ...]
    n_outputs: int
    task: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_layers", tuple(int(h) for h in self.hidden_layers))
        object.__setattr__(self, "activations", tuple(str(a) for a in self.activations))
        if self.task not in TASKS:
            raise EvomlpError(f"task: expected one of {list(TASKS)}, got {self.task!r}")
        if len(self.activations) != len(self.hidden_layers):
            raise EvomlpError(
                f"activations: expected one per hidden layer ({len(self.hidden_layers)}), "
                f"got {len(self.activations)}"
            )
        for name in self.activations:
            if name not in HIDDEN_ACTIVATIONS:
                raise EvomlpError(
                    f"activations: expected one of {list(HIDDEN_ACTIVATIONS)}, got {name!r}"
                )
        sizes = self.layer_sizes
        if any(s < 1 for s in sizes):
            raise EvomlpError(f"layer sizes must be positive, got {list(sizes)}")
        if self.task == "binary" and self.n_outputs != 1:
            raise EvomlpError(f"a binary task has one output, got n_outputs={self.n_outputs}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (int(self.n_inputs), *self.hidden_layers, int(self.n_outputs))

    @property
    def output_activation(self) -> str:
        return OUTPUT_ACTIVATIONS[self.task]

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of each weight matrix."""
        sizes = self.layer_sizes
        return [(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]

    @property
    def n_weights(self) -> int:
        return sum(fan_in * fan_out + fan_out for fan_in, fan_out in self.layer_shapes)

    def layer_offsets(self) -> list[tuple[slice, slice]]:
        """For each layer, the slices of the flat vector that hold ``W`` and ``b``."""
        offsets = []
        start = 0
        for fan_in, fan_out in self.layer_shapes:
            w_end = start + fan_in * fan_out
            b_end = w_end + fan_out
            offsets.append((slice(start, w_end), slice(w_end, b_end)))
            start = b_end
        return offsets

    def unpack(self, vector: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views ``[(W (fan_in, fan_out), b (fan_out,)), ...]`` into one flat vector ``(D,)``."""
        vector = np.asarray(vector)
        if vector.shape != (self.n_weights,):
            raise EvomlpError(f"expected a weight vector of shape ({self.n_weights},), got {vector.shape}")
        return [
            (vector[w].reshape(shape), vector[b])
            for (w, b), shape in zip(self.layer_offsets(), self.layer_shapes)
        ]

    def unpack_population(self, population: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views ``[(W (P, fan_in, fan_out), b (P, 1, fan_out)), ...]`` into ``population (P, D)``."""
        population = np.asarray(population)
        if population.ndim != 2 or population.shape[1] != self.n_weights:
            raise EvomlpError(
                f"expected a population of shape (P, {self.n_weights}), got {population.shape}"
            )
        n = population.shape[0]
        return [
            (population[:, w].reshape(n, *shape), population[:, b].reshape(n, 1, shape[1]))
            for (w, b), shape in zip(self.layer_offsets(), self.layer_shapes)
        ]

    def to_dict(self) -> dict:
        return {
            "n_inputs": int(self.n_inputs),
            "hidden_layers": list(self.hidden_layers),
            "activations": list(self.activations),
            "n_outputs": int(self.n_outputs),
            "task": self.task,
        }


def apply_activation(name: str, z: np.ndarray) -> np.ndarray:
    """Apply a hidden-layer activation in place and return ``z``."""
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "logistic":
        # 1 / (1 + exp(-z)) written to stay finite for large |z|
        np.negative(z, out=z)
        np.exp(np.minimum(z, 700, out=z), out=z)
        z += 1
        np.reciprocal(z, out=z)
    elif name == "identity":
        pass
    elif name == "elu":
        negative = z < 0
        z[negative] = np.expm1(z[negative])
    elif name == "softplus":
        np.logaddexp(0, z, out=z)
    else:
        raise EvomlpError(f"unknown activation {name!r}")
    return z


# The forward pass runs on blocks of individuals (and, for very many rows, of rows) whose widest
# hidden activations take about this many bytes, so that a block's activations stay in a core's
# L2 cache from one layer's product to the next instead of streaming through memory. Measured
# (one core, float32 / float64 GFLOP/s, unblocked -> blocked): 318 rows x 1,000 individuals
# 30 -> 44 / 20 -> 35; 3,180 rows x 200: 24 -> 33 / 5 -> 17; 31,800 rows x 50: 6 -> 34 / 2.5 -> 17.
# 256 KiB to 2 MiB blocks perform alike; reusing preallocated work buffers between blocks instead
# of fresh arrays measured no difference (1.00x), so there are none. The row blocks (which fix an
# individual's matrix shapes, hence its last bits) use FORWARD_BLOCK_BYTES; when all rows fit in
# one block, individuals are grouped up to FORWARD_INDIVIDUALS_BYTES, which only changes the
# number of numpy calls: fewer calls hold the GIL less, and two threads of the threading backend
# wait less for each other (default problem, half of a population of 50 per thread, two threads
# at once: 0.87 ms with 512 KiB groups, 0.80 ms with 2 MiB; one thread alone: 0.81 and 0.79 ms).
FORWARD_BLOCK_BYTES = 1 << 19
FORWARD_INDIVIDUALS_BYTES = 1 << 21


def forward_population(spec: MLPSpec, population: np.ndarray, X: np.ndarray, prepared=None) -> np.ndarray:
    """Raw outputs (logits for classification) of every individual.

    ``population: (P, D)``, ``X: (N, F)`` -> ``(P, N, K)`` with ``K = spec.n_outputs``, computed in
    ``population.dtype``.

    In float32 with ReLU or identity hidden layers (the default network), the fused pass of
    :mod:`evomlp.forward_kernel` computes it: one compiled loop for all layers, whose bits are the
    same on every CPU by construction; ``prepared`` (a :class:`evomlp.forward_kernel.FusedRows`
    of ``X``) saves transposing the rows on every call. Otherwise, as follows.

    Each layer is a stacked matrix product ``(B, R, fan_in) @ (B, fan_in, fan_out)`` over a block
    of ``B`` individuals and ``R`` rows (numpy calls BLAS once per individual). ``R`` depends only
    on ``N``, the architecture and the dtype, and every individual's products have the same shapes
    whatever ``P`` and ``B`` are, so an individual's outputs do not depend on which other
    individuals share its batch: that is what makes fitness independent of how a population is
    split into chunks for parallel workers. (One product for a whole block's first layer,
    ``X @ [W_1 ... W_B]``, would change an individual's shapes with ``B``; it measured only 5%
    faster on that layer, so it is not used.) The last bits also depend on the number of BLAS
    threads: :class:`evomlp.evaluation.FitnessProblem` always runs this with one.
    """
    population = np.asarray(population)
    layers = spec.unpack_population(population)
    if X.ndim != 2 or X.shape[1] != spec.n_inputs:
        raise EvomlpError(f"expected X of shape (N, {spec.n_inputs}), got {X.shape}")
    dtype = population.dtype
    if forward_kernel.supports(spec, dtype):
        if prepared is None or prepared.n_rows != X.shape[0]:
            prepared = forward_kernel.FusedRows(X)
        return forward_kernel.forward(spec, population, prepared)
    X = np.ascontiguousarray(X, dtype=dtype)
    n_individuals, n_rows = population.shape[0], X.shape[0]
    out = np.empty((n_individuals, n_rows, spec.n_outputs), dtype=dtype)
    if n_individuals == 0 or n_rows == 0:
        return out
    block_individuals, block_rows = _forward_blocks(spec, n_rows, dtype.itemsize)
    widest = max(spec.hidden_layers, default=1)
    zeros = None
    if "relu" in spec.activations:
        zeros = _zeros(dtype, max(FORWARD_INDIVIDUALS_BYTES // dtype.itemsize, widest))
    activations = spec.activations
    compiled = kernels.available()
    last = len(layers) - 1
    for row_start in range(0, n_rows, block_rows):
        rows = slice(row_start, min(row_start + block_rows, n_rows))
        # X is shared by all individuals: matmul broadcasts it without copying.
        X_block = X[rows]
        for start in range(0, n_individuals, block_individuals):
            individuals = slice(start, min(start + block_individuals, n_individuals))
            hidden = X_block
            for index, (W, b) in enumerate(layers):
                if index == last:
                    target = out[individuals, rows]
                    np.matmul(hidden, W[individuals], out=target)
                else:
                    target = np.matmul(hidden, W[individuals])
                if index != last and activations[index] == "relu" and compiled:
                    kernels.bias_relu(target, b[individuals])  # one pass instead of two
                else:
                    target += b[individuals]
                    if index != last:
                        _activate(activations[index], target, zeros)
                hidden = target
    return out


def _activate(name: str, z: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """:func:`apply_activation`, with ReLU as ``maximum(z, zeros)`` against a zero *array*: the same
    values, but numpy's vectorised loop for two arrays runs 3-8x faster than the one for an array
    and the scalar 0 (numpy 2.4: 6 us instead of 48 us for 6 x 318 x 64 float32)."""
    if name == "relu":
        return np.maximum(z, zeros[: z.size].reshape(z.shape), out=z)
    return apply_activation(name, z)


_ZEROS: dict[tuple[str, int], np.ndarray] = {}


def _zeros(dtype: np.dtype, size: int) -> np.ndarray:
    """A read-only zero vector of at least ``size`` elements, shared by all calls and threads."""
    key = (dtype.str, size)
    zeros = _ZEROS.get(key)
    if zeros is None:
        zeros = np.zeros(size, dtype=dtype)
        zeros.flags.writeable = False
        if len(_ZEROS) > 16:
            _ZEROS.clear()
        _ZEROS[key] = zeros
    return zeros


def _forward_blocks(spec: MLPSpec, n_rows: int, itemsize: int) -> tuple[int, int]:
    """``(individuals, rows)`` per block of :func:`forward_population`; rows depend on ``n_rows`` only."""
    per_row = max(spec.hidden_layers, default=1) * itemsize
    if n_rows * per_row > FORWARD_BLOCK_BYTES:
        return 1, max(1, FORWARD_BLOCK_BYTES // per_row)
    return max(1, FORWARD_INDIVIDUALS_BYTES // (n_rows * per_row)), n_rows


def forward(spec: MLPSpec, vector: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Raw outputs ``(N, K)`` of one network, ``vector: (D,)``."""
    return forward_population(spec, np.asarray(vector)[None, :], X)[0]


def output_probabilities(spec: MLPSpec, logits: np.ndarray) -> np.ndarray:
    """Apply the output head: sigmoid (binary), softmax (multiclass) or identity (regression)."""
    if spec.task == "binary":
        return _sigmoid(logits)
    if spec.task == "multiclass":
        shifted = logits - logits.max(axis=-1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=-1, keepdims=True)
        return shifted
    return logits


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    exp_z = np.exp(z[~positive])
    out[~positive] = exp_z / (1.0 + exp_z)
    return out


def initial_scales(spec: MLPSpec, scheme: str) -> np.ndarray:
    """Per-weight half-width ``(D,)`` of a uniform initialisation, layer by layer.

    ``glorot``: ``sqrt(6 / (fan_in + fan_out))``; ``he``: ``sqrt(6 / fan_in)``. Biases get the
    same half-width as their layer's weights: DE moves a coordinate only by differences between
    individuals, so a coordinate that starts equal everywhere (zero biases) would never move.
    """
    scales = np.empty(spec.n_weights)
    for (w, b), (fan_in, fan_out) in zip(spec.layer_offsets(), spec.layer_shapes):
        if scheme == "glorot":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
        elif scheme == "he":
            limit = np.sqrt(6.0 / fan_in)
        else:
            raise EvomlpError(f"init: expected 'uniform', 'glorot' or 'he', got {scheme!r}")
        scales[w] = limit
        scales[b] = limit
    return scales


def layer_of_weight(spec: MLPSpec) -> np.ndarray:
    """Index of the layer each weight belongs to, ``(D,)``."""
    index = np.empty(spec.n_weights, dtype=np.int64)
    for layer, (w, b) in enumerate(spec.layer_offsets()):
        index[w.start : b.stop] = layer
    return index


def per_weight(spec: MLPSpec, value: float | list[float]) -> np.ndarray:
    """Spread one value per network (a float) or one per layer (a list) over all weights, ``(D,)``."""
    per_layer = np.broadcast_to(np.asarray(value, dtype=float), (len(spec.layer_shapes),))
    return per_layer[layer_of_weight(spec)]


def initial_population(
    spec: MLPSpec,
    rng: np.random.Generator,
    size: int,
    scheme: str,
    scale: float | list[float],
    lower: np.ndarray,
    upper: np.ndarray,
) -> np.ndarray:
    """``(size, D)`` starting weights: uniform in ``[lower, upper]`` (``scheme='uniform'``), or
    uniform in ``+-scale * limit`` per layer with Glorot's or He's limit, clipped to the bounds."""
    if scheme == "uniform":
        return lower + rng.random((size, spec.n_weights)) * (upper - lower)
    half_width = initial_scales(spec, scheme) * per_weight(spec, scale)
    population = (2 * rng.random((size, spec.n_weights)) - 1) * half_width
    return np.clip(population, lower, upper)
