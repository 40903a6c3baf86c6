"""Bad input to the analysis helpers, the data sets and the toy densities."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyrogen import analysis, datasets
from pyrogen.analysis.report import set_threads
from tests.bad_input.table import (
    COUNT,
    COUNT2,
    INF,
    NAN,
    NONNEGATIVE,
    Case,
    hyper,
)

CASES: list[Case] = []
add = CASES.extend


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / 2, 0.6))


def X():
    return torch.tensor([0.0, 1.0])


def F():
    return torch.randn(20, 3)


_FEATURES = [("1d", torch.zeros(5), ValueError), ("one-row", torch.zeros(1, 3), ValueError),
             ("nan", torch.full((5, 3), NAN), ValueError), ("width", torch.zeros(5, 4), ValueError),
             ("int", torch.zeros(5, 3, dtype=torch.long), TypeError),
             ("list", [[0.0] * 3] * 5, TypeError)]  # fmt: skip


# -- sample-quality metrics -----------------------------------------------------------------
def _COV_B():
    return torch.eye(2)


_COVS = [("negative-definite", -torch.eye(2), ValueError),
         ("indefinite", torch.tensor([[1.0, 2.0], [2.0, 1.0]]), ValueError),
         ("asymmetric", torch.tensor([[1.0, 0.5], [0.0, 1.0]]), ValueError),
         ("shape", torch.eye(3), ValueError), ("nan", torch.full((2, 2), NAN), ValueError),
         ("int", torch.eye(2, dtype=torch.long), TypeError)]  # fmt: skip
add(hyper("gaussian_frechet_distance", lambda v: analysis.gaussian_frechet_distance(torch.zeros(2), v, torch.zeros(2), _COV_B()), "cov_a", _COVS))  # fmt: skip
add(hyper("gaussian_frechet_distance", lambda v: analysis.gaussian_frechet_distance(torch.zeros(2), _COV_B(), torch.zeros(2), v), "cov_b", _COVS))  # fmt: skip
_MEANS = [("shape", torch.zeros(3), ValueError), ("nan", torch.tensor([NAN, 0.0]), ValueError),
          ("2d", torch.zeros(1, 2), ValueError)]  # fmt: skip
add(hyper("gaussian_frechet_distance", lambda v: analysis.gaussian_frechet_distance(v, _COV_B(), torch.zeros(2), _COV_B()), "mean_a", _MEANS))  # fmt: skip
add(hyper("gaussian_frechet_distance", lambda v: analysis.gaussian_frechet_distance(torch.zeros(2), _COV_B(), v, _COV_B()), "mean_b", _MEANS))  # fmt: skip
add(hyper("frechet_distance", lambda v: analysis.frechet_distance(v, F()), "features_a", _FEATURES))
add(hyper("frechet_distance", lambda v: analysis.frechet_distance(F(), v), "features_b", _FEATURES))
add(hyper("kernel_distance", lambda v: analysis.kernel_distance(v, F()), "features_a", _FEATURES))
add(hyper("kernel_distance", lambda v: analysis.kernel_distance(F(), F(), num_subsets=v), "num_subsets", COUNT))  # fmt: skip
add(hyper("kernel_distance", lambda v: analysis.kernel_distance(F(), F(), subset_size=v), "subset_size", COUNT2))  # fmt: skip
add(hyper("precision_recall", lambda v: analysis.precision_recall(v, F()), "real_features", _FEATURES))  # fmt: skip
add(hyper("precision_recall", lambda v: analysis.precision_recall(F(), v), "fake_features", _FEATURES))  # fmt: skip
add(hyper("precision_recall", lambda v: analysis.precision_recall(F(), F(), k=v), "k", [*COUNT, ("large", 20, ValueError)]))  # fmt: skip


def P():
    return torch.softmax(torch.randn(10, 4), -1)


_PROBS = [("negative", -P(), ValueError), ("unnormalized", 2 * P(), ValueError),
          ("nan", torch.full((10, 4), NAN), ValueError), ("1d", P()[0], ValueError),
          ("int", torch.ones(10, 4, dtype=torch.long), TypeError)]  # fmt: skip
add(hyper("inception_score", lambda v: analysis.inception_score(v), "probs", _PROBS))
add(hyper("inception_score", lambda v: analysis.inception_score(P(), num_splits=v), "num_splits", [*COUNT, ("large", 11, ValueError)]))  # fmt: skip
# class_coverage takes any scores (only the argmax is used): no sign or normalization cases
add(hyper("class_coverage", lambda v: analysis.class_coverage(v), "probs", _PROBS[2:]))


def C():
    return torch.randn(4, 3)


add(hyper("mode_coverage", lambda v: analysis.mode_coverage(F(), C(), radius=v), "radius"))
add(hyper("mode_coverage", lambda v: analysis.mode_coverage(F(), C(), radius=1.0, min_samples=v), "min_samples", COUNT))  # fmt: skip
add(hyper("mode_coverage", lambda v: analysis.mode_coverage(v, C(), radius=1.0), "samples", _FEATURES[2:]))  # fmt: skip
add(hyper("mode_coverage", lambda v: analysis.mode_coverage(F(), v, radius=1.0), "centers", _FEATURES[2:]))  # fmt: skip


def LL():
    return torch.randn(10)


_LL = [("2d", torch.zeros(3, 2), ValueError), ("nan", torch.tensor([0.0, NAN]), ValueError),
       ("empty", torch.zeros(0), ValueError), ("list", [0.0, 1.0], (TypeError, ValueError))]  # fmt: skip
add(hyper("ood_scores", lambda v: analysis.ood_scores(v), "log_likelihood", _LL))
add(hyper("ood_scores", lambda v: analysis.ood_scores(LL(), background_log_likelihood=v), "background_log_likelihood", [*_LL, ("shape", torch.zeros(4), ValueError)]))  # fmt: skip
add(hyper("ood_scores", lambda v: analysis.ood_scores(LL(), batch_size=v), "batch_size", [*COUNT, ("large", 11, ValueError)]))  # fmt: skip
add(hyper("ood_auroc", lambda v: analysis.ood_auroc(v, LL()), "in_scores", _LL))
add(hyper("ood_auroc", lambda v: analysis.ood_auroc(LL(), v), "out_scores", _LL))
for key, fn in (("analysis.bits_per_dim", analysis.bits_per_dim), ("datasets.bits_per_dim", datasets.bits_per_dim)):  # fmt: skip
    add(hyper(key, lambda v, fn=fn: fn(-10.0, v), "num_dims", COUNT))
    add(hyper(key, lambda v, fn=fn: fn(v, 4), "log_prob", [("str", "-1", TypeError), ("nan", NAN, ValueError), ("nan-tensor", torch.tensor([-1.0, NAN]), ValueError)]))  # fmt: skip

# -- posterior diagnostics ------------------------------------------------------------------
for key, fn in (("psis_khat", analysis.psis_khat), ("to_inference_data", analysis.to_inference_data)):  # fmt: skip
    add(hyper(key, lambda v, fn=fn: fn(model, guide, X(), num_samples=v), "num_samples", COUNT))
CASES.append(Case("psis_khat-num_samples-one", lambda: analysis.psis_khat(model, guide, X(), num_samples=1), ValueError, "num_samples"))  # fmt: skip
add(hyper("importance_resample", lambda v: analysis.importance_resample(model, guide, X(), num_samples=v, num_proposals=100), "num_samples", COUNT))  # fmt: skip
add(hyper("importance_resample", lambda v: analysis.importance_resample(model, guide, X(), num_samples=10, num_proposals=v), "num_proposals", [("one", 1, ValueError), *COUNT]))  # fmt: skip
add(hyper("kl_per_dimension", lambda v: analysis.kl_per_dimension(model, guide, X(), num_samples=v), "num_samples", COUNT))  # fmt: skip
add(hyper("active_units", lambda v: analysis.active_units(model, guide, X(), num_samples=v), "num_samples", COUNT))  # fmt: skip
add(hyper("active_units", lambda v: analysis.active_units(model, guide, X(), threshold=v), "threshold", NONNEGATIVE))  # fmt: skip


def Q():
    return dist.Normal(torch.zeros(2), 1.0).to_event(1)


def _log_density(x):
    return -(x**2).sum(-1) / 2


add(hyper("kl_diagnostics", lambda v: analysis.kl_diagnostics(Q(), _log_density, num_samples=v), "num_samples", COUNT2))  # fmt: skip
add(hyper("kl_diagnostics", lambda v: analysis.kl_diagnostics(Q(), _log_density, num_samples=10, log_partition=v), "log_partition", [("nan", NAN, ValueError), ("inf", INF, ValueError), ("str", "1", TypeError)]))  # fmt: skip
add(hyper("kl_diagnostics", lambda v: analysis.kl_diagnostics(Q(), _log_density, num_samples=10, samples=v), "samples", [("width", torch.zeros(5, 3), ValueError), ("nan", torch.full((5, 2), NAN), ValueError)]))  # fmt: skip
add(hyper("kl_diagnostics", lambda v: analysis.kl_diagnostics(v, _log_density, num_samples=10), "q", [("str", "normal", TypeError), ("torch-distribution", torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), 1.0), 1), TypeError)]))  # fmt: skip

# -- feature classifier, figures, threads ---------------------------------------------------
add(hyper("FeatureClassifier", lambda v: analysis.FeatureClassifier(v, 3), "input_dim", COUNT))
add(hyper("FeatureClassifier", lambda v: analysis.FeatureClassifier(4, v), "num_classes", COUNT2))
add(hyper("FeatureClassifier", lambda v: analysis.FeatureClassifier(4, 3, v), "hidden_dims", [("empty", [], ValueError), ("zero", [0], ValueError)]))  # fmt: skip
add(hyper("FeatureClassifier.forward", lambda v: analysis.FeatureClassifier(4, 3, [8])(v), "x", [
    ("width", torch.zeros(2, 5), ValueError), ("int", torch.zeros(2, 4, dtype=torch.long), TypeError),
    ("list", [[0.0] * 4], TypeError)]))  # fmt: skip


def Y():
    return torch.arange(20) % 2


def XF():
    return torch.randn(20, 4)


add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(v, Y(), epochs=1), "x", [("1d", torch.zeros(20), ValueError), ("int", torch.zeros(20, 4, dtype=torch.long), (TypeError, ValueError)), ("empty", torch.zeros(0, 4), ValueError), ("nan", torch.full((20, 4), NAN), ValueError)]))  # fmt: skip
add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(XF(), v, epochs=1), "y", [("float", Y().double(), (TypeError, ValueError)), ("length", Y()[:5], ValueError), ("one-class", torch.zeros(20, dtype=torch.long), ValueError)]))  # fmt: skip
add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(XF(), Y(), epochs=v), "epochs", COUNT))  # fmt: skip
add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(XF(), Y(), epochs=1, batch_size=v), "batch_size", COUNT))  # fmt: skip
add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(XF(), Y(), epochs=1, lr=v), "lr"))  # fmt: skip
add(hyper("fit_feature_classifier", lambda v: analysis.fit_feature_classifier(XF(), Y(), epochs=1, weight_decay=v), "weight_decay", NONNEGATIVE))  # fmt: skip
add(hyper("save_image_grid", lambda v: analysis.save_image_grid(torch.zeros(4, 2, 2), "/nonexistent/x.png", padding=v), "padding", [("negative", -1, ValueError), ("str", "1", TypeError)]))  # fmt: skip
add(hyper("save_image_grid", lambda v: analysis.save_image_grid(torch.zeros(4, 2, 2), "/nonexistent/x.png", per_row=v), "per_row", COUNT))  # fmt: skip
add(hyper("save_image_grid", lambda v: analysis.save_image_grid(torch.zeros(4, 2, 2), "/nonexistent/x.png", vmax=v), "vmax", [("equal", 0.0, ValueError), ("nan", NAN, ValueError), ("inf", INF, ValueError)]))  # fmt: skip
add(hyper("set_threads", lambda v: set_threads(v), "threads", COUNT))

# -- data sets ------------------------------------------------------------------------------
for key, fn in (("two_moons", datasets.two_moons), ("eight_gaussians", datasets.eight_gaussians),
                ("checkerboard", datasets.checkerboard), ("pinwheel", datasets.pinwheel)):  # fmt: skip
    add(hyper(key, lambda v, fn=fn: fn(v), "n", COUNT))
add(hyper("two_moons", lambda v: datasets.two_moons(5, noise=v), "noise", NONNEGATIVE))
add(hyper("eight_gaussians", lambda v: datasets.eight_gaussians(5, radius=v), "radius"))
add(hyper("eight_gaussians", lambda v: datasets.eight_gaussians(5, std=v), "std"))
add(hyper("pinwheel", lambda v: datasets.pinwheel(5, num_arms=v), "num_arms", COUNT))
add(hyper("pinwheel", lambda v: datasets.pinwheel(5, radial_std=v), "radial_std", NONNEGATIVE))
add(hyper("pinwheel", lambda v: datasets.pinwheel(5, tangential_std=v), "tangential_std", NONNEGATIVE))  # fmt: skip
add(hyper("pinwheel", lambda v: datasets.pinwheel(5, rate=v), "rate", NONNEGATIVE))
add(hyper("dequantize", lambda v: datasets.dequantize(v), "x", [("int", torch.zeros(3, dtype=torch.long), TypeError), ("list", [0.0], TypeError), ("nan", torch.tensor([NAN]), ValueError)]))  # fmt: skip
add(hyper("logit_transform", lambda v: datasets.logit_transform(v), "num_levels", COUNT2))
_DTYPES = [("long", torch.long, TypeError), ("bool", torch.bool, TypeError), ("str", "float32", TypeError)]  # fmt: skip
for key, fn in (("load_digits", datasets.load_digits), ("load_mnist5k", datasets.load_mnist5k)):
    add(hyper(key, lambda v, fn=fn: fn(dtype=v), "dtype", _DTYPES))
    add(hyper(key, lambda v, fn=fn: fn(test_size=v), "test_size", [("zero", 0, ValueError), ("str", "100", TypeError), ("bool", True, TypeError), ("float-count", 360.0, ValueError), ("tiny-fraction", 0.001, ValueError), ("nan", NAN, ValueError)]))  # fmt: skip
