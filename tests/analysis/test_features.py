"""The default feature network: a classifier trained on real digits."""

import pytest
import torch

from pyrogen.analysis import (
    FeatureClassifier,
    class_coverage,
    digits_classifier,
    fit_feature_classifier,
    frechet_distance,
)
from pyrogen.datasets import load_digits
from tests.same_draws import in_float64


@pytest.mark.slow
def test_digits_classifier_is_accurate_and_its_features_separate_real_from_noise():
    net = digits_classifier()
    _, x_test, _, y_test = load_digits()
    with torch.no_grad():
        accuracy = (net.probs(x_test / 16).argmax(-1) == y_test).double().mean()
        assert accuracy > 0.93, accuracy
        assert class_coverage(net.probs(x_test / 16))[0] == 10
        real_a, real_b = net.features(x_test[:180] / 16), net.features(x_test[180:] / 16)
        noise = net.features(torch.rand(180, 64))
        assert frechet_distance(real_a, real_b) < 0.2 * frechet_distance(real_a, noise)


@pytest.mark.slow
def test_digits_classifier_is_trained_once_per_seed_and_dtype_and_gives_no_gradients():
    import time

    first = digits_classifier(seed=3, dtype=torch.float32)
    start = time.perf_counter()
    again = digits_classifier(seed=3, dtype=torch.float32)
    assert time.perf_counter() - start < 0.5  # cached, not retrained
    assert again is not first
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b) and not b.requires_grad
    again.head.weight.data.add_(1.0)  # one caller's change does not reach the next
    fresh = digits_classifier(seed=3, dtype=torch.float32)
    assert torch.equal(fresh.head.weight, first.head.weight)
    other = digits_classifier(seed=3, dtype=torch.float64)
    assert other.head.weight.dtype == torch.float64
    _, x_test, _, _ = load_digits(dtype=torch.float32)
    real_a, real_b = first.features(x_test[:100] / 16), first.features(x_test[100:200] / 16)
    assert not real_a.requires_grad and not first.probs(x_test / 16).requires_grad
    assert float(frechet_distance(real_a, real_b)) >= 0  # no warning about gradients


def test_fit_learns_a_separable_problem():
    # data and initial weights drawn in float64, then cast: every dtype fits the same problem
    # from the same start (a float32 draw of its own is another, here less lucky, run)
    dtype = torch.get_default_dtype()
    with in_float64():
        torch.manual_seed(0)
        x = torch.randn(200, 2).to(dtype)
        y = (x[:, 0] > 0).long()
        net = fit_feature_classifier(x, y, hidden_dims=(16,), epochs=30)  # trains in x's dtype
    assert net.head.weight.dtype == dtype
    with torch.no_grad():
        assert (net(x).argmax(-1) == y).double().mean() > 0.95
    assert net.features(x).shape == (200, 16)
    assert torch.allclose(net.probs(x).sum(-1), torch.ones(200, dtype=x.dtype))


def test_errors():
    with pytest.raises(ValueError, match="num_classes"):
        FeatureClassifier(4, 1)
    with pytest.raises(ValueError, match="hidden_dims"):
        FeatureClassifier(4, 3, ())
    with pytest.raises(ValueError, match="expected inputs with 4 values"):
        FeatureClassifier(4, 3).features(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="y must be a long tensor"):
        fit_feature_classifier(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels 0\.\.K-1"):
        fit_feature_classifier(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
