"""Every example and benchmark runs in its smoke mode."""

import json
import math

import pytest

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_digits_density_smoke(tmp_path):
    example = load(ROOT / "examples" / "digits_density.py")
    results = example.main(["--smoke", "--no-progress", "--out", str(tmp_path)])
    assert set(results) == {"Gaussian (full cov)", "RealNVP", "MAF", "NSF", "Planar"}
    for r in results.values():
        assert math.isfinite(r["test_log_likelihood_nats"])
        assert r["test_bits_per_dim"] > 0
    assert (tmp_path / "digits_density.png").stat().st_size > 0
    assert (tmp_path / "digits_density.json").exists()


@pytest.mark.slow
def test_posteriordb_accuracy_smoke(tmp_path):
    example = load(ROOT / "examples" / "posteriordb_accuracy.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {
        "eight_schools_noncentered",
        "eight_schools_centered",
        "kilpisjarvi",
        "sblri",
    }
    for per_guide in results.values():
        assert set(per_guide) == {
            "AutoNormal",
            "AutoMultivariateNormal",
            "AutoFlow(iaf)",
            "AutoFlow(maf)",
        }
        for per_seed in per_guide.values():
            assert set(per_seed) == {0}
            r = per_seed[0]
            assert math.isfinite(r["max_abs_mean_error_sd"]) and r["khat"] > -math.inf
            assert isinstance(r["meets_target"], bool)
    assert (tmp_path / "eight_schools_pair.png").stat().st_size > 0


@pytest.mark.slow
def test_bench_flows_quick():
    bench = load(ROOT / "benchmarks" / "bench_flows.py")
    rows = bench.main(["--quick"])
    assert len(rows) == 7
    assert all(t_ours > 0 and t_pyro > 0 for _, t_ours, t_pyro in rows)


@pytest.mark.slow
def test_amortized_flow_guide_smoke():
    example = load(ROOT / "examples" / "amortized_flow_guide.py")
    results = example.main(["--smoke"])
    assert set(results) == {"Gaussian", "IAF flow"}
    for r in results.values():
        # an importance-weighted estimate is a tighter bound than the ELBO (K = 256 draws)
        assert math.isfinite(r["test_elbo"]) and r["test_log_px_iw"] >= r["test_elbo"]


@pytest.mark.slow
def test_vae_mnist_smoke(tmp_path):
    example = load(ROOT / "examples" / "vae_mnist.py")
    out = example.main(["--smoke", "--out", str(tmp_path)])
    variants = out["variants"]
    assert set(variants) == set(example.VARIANTS)
    for r in variants.values():
        # the importance-weighted log-likelihood is a tighter bound than the ELBO
        assert math.isfinite(r["test_log_likelihood"])
        assert r["test_log_likelihood"] > r["test_elbo"] - 3 * r["max_stderr"]
        assert 0 <= r["active_units"] <= example.Z_DIM
    assert out["summary"]["snr_at_IWAE_k=50_K50"]["dreg_mean"] > 0
    assert (tmp_path / "vae_mnist.png").stat().st_size > 0


@pytest.mark.slow
def test_discrete_latents_smoke(tmp_path):
    example = load(ROOT / "examples" / "discrete_latents.py")
    out = example.main(["--smoke", "--out", str(tmp_path)])
    assert len(out["gradient_variance"]) == 5
    assert all(math.isfinite(r["test_log_likelihood"]) for r in out["trained"].values())


@pytest.mark.slow
def test_bench_objectives_quick():
    bench = load(ROOT / "benchmarks" / "bench_objectives.py")
    rows = bench.main(["--quick"])
    assert len(rows) == 6
    assert rows[-1][0].startswith("IAF guide")
    assert all(t_ours > 0 and t_pyro > 0 for _, t_ours, t_pyro in rows)


@pytest.mark.slow
def test_gan_eight_gaussians_smoke(tmp_path):
    example = load(ROOT / "examples" / "gan_eight_gaussians.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"non-saturating", "WGAN-GP"}
    for r in results.values():
        assert 0 <= r["final_modes"] <= 8 and 0 <= r["final_high_quality"] <= 1
    assert (tmp_path / "gan_eight_gaussians.png").stat().st_size > 0


@pytest.mark.slow
def test_gan_digits_smoke(tmp_path):
    example = load(ROOT / "examples" / "gan_digits.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"real training digits", "GAN (non-saturating)", "WGAN-GP", "VAE"}
    assert results["real training digits"]["classes_covered"] == 10
    for r in results.values():
        assert math.isfinite(r["classifier_fd"]) and r["classifier_fd"] >= 0
    assert (tmp_path / "gan_digits.png").stat().st_size > 0


@pytest.mark.slow
def test_avb_digits_smoke(tmp_path):
    example = load(ROOT / "examples" / "avb_digits.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"VAE (Gaussian guide)", "AVB", "AVB + adaptive contrast"}
    for r in results.values():
        assert math.isfinite(r["test_elbo"])
        assert math.isfinite(r["test_log_likelihood_moment_proposal"])


@pytest.mark.slow
def test_autoregressive_mnist_smoke(tmp_path):
    example = load(ROOT / "examples" / "autoregressive_mnist.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"MADE (1 ordering)", "MADE (8 orderings)", "PixelCNN", "PixelVAE"}
    for r in results.values():
        assert math.isfinite(r["test_nll"]) and r["test_nll"] > 0
    assert (tmp_path / "autoregressive_mnist.png").stat().st_size > 0


@pytest.mark.slow
def test_image_flows_smoke(tmp_path):
    example = load(ROOT / "examples" / "image_flows.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    for data in ("digits", "MNIST-5k"):
        assert set(results[data]) == {"Glow", "RealNVP (image)", "MAF (vector)", "RealNVP (vector)"}
        for r in results[data].values():
            assert math.isfinite(r["test_bits_per_dim"]) and r["test_bits_per_dim"] > 0
    assert (tmp_path / "image_flows_mnist.png").stat().st_size > 0


def test_logistic_regression_smoke(tmp_path):
    """Both guides fit, k-hat and the moment comparison are reported and written as JSON."""
    example = load(ROOT / "examples" / "logistic_regression.py")
    record = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(record["guides"]) == {"AutoFlow", "AutoMultivariateNormal"}
    for r in record["guides"].values():
        # a log-likelihood of 569 Bernoulli labels: below zero
        assert -5000 < r["elbo"] < 0 and math.isfinite(r["khat"])
        assert r["log_evidence"] < 0
    assert record["comparison"]["max_abs_sd_ratio_minus_1"] >= 0
    saved = json.loads((tmp_path / "logistic_regression.json").read_text())
    assert saved["results"]["guides"] == record["guides"]
