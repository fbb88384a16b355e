import numpy as np
import pytest

from evomlp.errors import EvomlpError
from evomlp.network import (
    MLPSpec,
    forward,
    forward_population,
    initial_population,
    output_probabilities,
    per_weight,
)


def naive_forward(layers, activations, x):
    """Reference: one individual, one layer at a time, written from the textbook definitions."""
    functions = {
        "relu": lambda z: np.where(z > 0, z, 0.0),
        "tanh": np.tanh,
        "logistic": lambda z: 1 / (1 + np.exp(-z)),
        "identity": lambda z: z,
        "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
        "softplus": lambda z: np.log(1 + np.exp(z)),
    }
    h = x
    for index, (W, b) in enumerate(layers):
        h = h @ W + b
        if index < len(activations):
            h = functions[activations[index]](h)
    return h


def pack(layers):
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])


@pytest.mark.parametrize(
    "hidden, activations, task, n_outputs",
    [
        ((64, 32), ("relu", "relu"), "binary", 1),
        ((5,), ("tanh",), "multiclass", 3),
        ((7, 6, 5), ("logistic", "elu", "softplus"), "regression", 2),
        ((), (), "binary", 1),
    ],
)
def test_population_forward_matches_a_naive_loop(hidden, activations, task, n_outputs):
    rng = np.random.default_rng(0)
    spec = MLPSpec(4, hidden, activations, n_outputs, task)
    population = rng.normal(size=(9, spec.n_weights))
    X = rng.normal(size=(13, 4))
    outputs = forward_population(spec, population, X)
    assert outputs.shape == (9, 13, n_outputs)
    for p in range(9):
        layers = []
        start = 0
        for fan_in, fan_out in spec.layer_shapes:
            W = population[p, start : start + fan_in * fan_out].reshape(fan_in, fan_out)
            start += fan_in * fan_out
            b = population[p, start : start + fan_out]
            start += fan_out
            layers.append((W, b))
        np.testing.assert_allclose(outputs[p], naive_forward(layers, activations, X), rtol=1e-10, atol=1e-12)


def test_flat_layout_is_w_then_b_per_layer_row_major():
    rng = np.random.default_rng(1)
    spec = MLPSpec(3, (4,), ("relu",), 2, "multiclass")
    layers = [(rng.normal(size=(3, 4)), rng.normal(size=4)), (rng.normal(size=(4, 2)), rng.normal(size=2))]
    vector = pack(layers)
    assert spec.n_weights == vector.size == 3 * 4 + 4 + 4 * 2 + 2
    for (W, b), (W_view, b_view) in zip(layers, spec.unpack(vector)):
        np.testing.assert_array_equal(W, W_view)
        np.testing.assert_array_equal(b, b_view)


def test_article_network_has_4097_weights():
    assert MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary").n_weights == 4097


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_individuals_outputs_do_not_depend_on_its_batch(dtype):
    rng = np.random.default_rng(2)
    spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
    population = rng.normal(size=(11, spec.n_weights)).astype(dtype)
    X = rng.normal(size=(50, 30)).astype(dtype)
    whole = forward_population(spec, population, X)
    for chunk in (population[:1], population[3:8], population[10:]):
        start = next(i for i in range(11) if np.array_equal(population[i], chunk[0]))
        part = forward_population(spec, np.ascontiguousarray(chunk), X)
        assert np.array_equal(part, whole[start : start + chunk.shape[0]])


def test_forward_of_one_vector_is_the_population_forward_of_one_row():
    rng = np.random.default_rng(3)
    spec = MLPSpec(5, (3,), ("tanh",), 1, "binary")
    vector = rng.normal(size=spec.n_weights)
    X = rng.normal(size=(4, 5))
    np.testing.assert_array_equal(forward(spec, vector, X), forward_population(spec, vector[None], X)[0])


def test_output_heads():
    spec = MLPSpec(2, (), (), 3, "multiclass")
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    probabilities = output_probabilities(spec, logits)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(probabilities[1], 1 / 3)
    assert probabilities[0, 0] == 1.0
    binary = MLPSpec(2, (), (), 1, "binary")
    np.testing.assert_allclose(output_probabilities(binary, np.array([[-800.0], [0.0], [800.0]]))[:, 0], [0, 0.5, 1])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(hidden_layers=(4,), activations=("relu", "relu")), "one per hidden layer"),
        (dict(hidden_layers=(4,), activations=("swish",)), "swish"),
        (dict(hidden_layers=(0,), activations=("relu",)), "positive"),
        (dict(hidden_layers=(4,), activations=("relu",), n_outputs=2), "binary task has one output"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(kwargs, fragment):
    arguments = dict(n_inputs=3, n_outputs=1, task="binary") | kwargs
    with pytest.raises(EvomlpError, match=fragment):
        MLPSpec(**arguments)


@pytest.mark.parametrize("scheme", ["uniform", "glorot", "he"])
def test_initial_population_respects_bounds_and_spreads_every_coordinate(scheme):
    spec = MLPSpec(30, (64, 32), ("relu", "relu"), 1, "binary")
    bound = per_weight(spec, [0.1, 1.0, 2.0])
    population = initial_population(spec, np.random.default_rng(4), 20, scheme, 1.0, -bound, bound)
    assert population.shape == (20, spec.n_weights)
    assert np.all(population >= -bound) and np.all(population <= bound)
    # DE moves a coordinate only by differences, so no coordinate (biases included) may start constant.
    assert np.all(population.std(axis=0) > 0)


def test_he_initialisation_scales_with_fan_in():
    spec = MLPSpec(100, (10,), ("relu",), 1, "binary")
    bound = per_weight(spec, 100.0)
    population = initial_population(spec, np.random.default_rng(5), 200, "he", 1.0, -bound, bound)
    (W1, _), (W2, _) = spec.unpack_population(population)
    assert np.abs(W1).max() <= np.sqrt(6 / 100) and np.abs(W1).max() > 0.9 * np.sqrt(6 / 100)
    assert np.abs(W2).max() <= np.sqrt(6 / 10) and np.abs(W2).max() > 0.9 * np.sqrt(6 / 10)
