import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error as sk_mse

from evomlp.losses import (
    accuracy,
    binary_cross_entropy,
    categorical_cross_entropy,
    class_weights,
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


def test_balanced_class_weights_are_sklearns_and_weigh_every_class_the_same():
    from sklearn.utils.class_weight import compute_sample_weight

    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 1, 0])
    weights = class_weights(y, 3)
    np.testing.assert_allclose(weights, compute_sample_weight("balanced", y), rtol=1e-15)
    totals = [weights[y == c].sum() for c in range(3)]
    assert totals == pytest.approx([len(y) / 3] * 3)
    # a class absent from the rows takes no weight: the present ones still share N equally
    assert class_weights(np.array([0, 0, 0, 2]), 3).sum() == pytest.approx(4.0)


@pytest.mark.parametrize("loss, n_outputs", [(binary_cross_entropy, 1), (categorical_cross_entropy, 3)])
def test_weighted_loss_is_the_weighted_mean_of_row_losses(loss, n_outputs):
    rng = np.random.default_rng(3)
    y = rng.integers(0, max(2, n_outputs), size=25)
    logits = rng.normal(size=(4, 25, n_outputs))
    weights = rng.uniform(0.1, 3.0, size=25)
    rows = np.stack([loss(logits[:, i : i + 1], y[i : i + 1]) for i in range(25)], axis=1)  # (P, N)
    np.testing.assert_allclose(loss(logits, y, weights), rows @ weights / weights.sum(), rtol=1e-12)
    np.testing.assert_allclose(loss(logits, y, np.ones(25)), loss(logits, y), rtol=1e-14)
    # weighting a class up moves the loss towards that class's mean row loss
    heavy = np.where(y == 0, 100.0, 1.0)
    assert abs(loss(logits, y, heavy) - rows[:, y == 0].mean(axis=1)).max() < abs(
        loss(logits, y) - rows[:, y == 0].mean(axis=1)).max()


def test_regression_has_no_class_weights():
    with pytest.raises(Exception, match="class_weight"):
        task_loss("regression", np.zeros((1, 3, 1)), np.zeros(3), np.ones(3))
