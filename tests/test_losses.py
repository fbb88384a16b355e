import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error as sk_mse

from evomlp.losses import (
    accuracy,
    binary_cross_entropy,
    categorical_cross_entropy,
    mean_squared_error,
    task_loss,
)


def test_binary_cross_entropy_matches_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(5, 40, 1))
    y = rng.integers(0, 2, size=40)
    ours = binary_cross_entropy(logits, y)
    for p in range(5):
        probability = 1 / (1 + np.exp(-logits[p, :, 0]))
        assert ours[p] == pytest.approx(log_loss(y, probability, labels=[0, 1]), rel=1e-9)


def test_categorical_cross_entropy_matches_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3, size=(4, 30, 5))
    y = rng.integers(0, 5, size=30)
    ours = categorical_cross_entropy(logits, y)
    for p in range(4):
        e = np.exp(logits[p] - logits[p].max(axis=1, keepdims=True))
        assert ours[p] == pytest.approx(log_loss(y, e / e.sum(axis=1, keepdims=True), labels=range(5)), rel=1e-9)


def test_cross_entropies_stay_finite_and_exact_for_huge_logits():
    y = np.array([1, 0])
    logits = np.array([[[-1000.0], [1000.0]]])  # confidently wrong on both rows
    assert binary_cross_entropy(logits, y)[0] == pytest.approx(1000.0)
    multi = np.array([[[900.0, 0.0], [0.0, 900.0]]])
    assert categorical_cross_entropy(multi, y)[0] == pytest.approx(900.0)


def test_mse_and_accuracy_match_sklearn():
    rng = np.random.default_rng(2)
    outputs = rng.normal(size=(3, 20, 2))
    target = rng.normal(size=(20, 2))
    for p in range(3):
        assert mean_squared_error(outputs, target)[p] == pytest.approx(sk_mse(target, outputs[p]))
    logits = rng.normal(size=(3, 20, 4))
    labels = rng.integers(0, 4, size=20)
    for p in range(3):
        assert accuracy(logits, labels)[p] == accuracy_score(labels, logits[p].argmax(axis=1))
    binary_logits = rng.normal(size=(2, 20, 1))
    binary = rng.integers(0, 2, size=20)
    assert accuracy(binary_logits, binary)[1] == accuracy_score(binary, binary_logits[1, :, 0] > 0)


def test_task_loss_dispatches_on_the_task():
    logits = np.zeros((1, 2, 1))
    assert task_loss("binary", logits, np.array([0, 1]))[0] == pytest.approx(np.log(2))
    assert task_loss("regression", logits, np.array([1.0, 3.0]))[0] == pytest.approx(5.0)
