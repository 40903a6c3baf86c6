"""Every example and benchmark runs in its smoke mode."""

import json
import math

import pytest

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_digits_density_smoke(tmp_path, capsys):
    example = load(ROOT / "examples" / "digits_density.py")
    record = example.main(["--smoke", "--no-progress", "--seeds", "0", "1", "--out", str(tmp_path)])
    models = ["Gaussian (full cov)", "RealNVP", "MAF", "NSF", "Planar"]
    assert list(record["spread_over_seeds"]) == models == list(record["per_seed"])
    for name in models:
        runs = record["per_seed"][name]
        assert set(runs) == {"0", "1"}
        for r in runs.values():
            assert math.isfinite(r["test_log_likelihood_nats"])
            assert r["test_bits_per_dim"] == pytest.approx(
                -r["test_log_likelihood_nats"] / (64 * math.log(2))
            )
        nats = [r["test_log_likelihood_nats"] for r in runs.values()]
        spread = record["spread_over_seeds"][name]
        assert spread["seeds"] == 2
        assert spread["test_log_likelihood_nats mean"] == pytest.approx(sum(nats) / 2)
        assert spread["test_log_likelihood_nats sd"] == pytest.approx(
            abs(nats[0] - nats[1]) / math.sqrt(2)
        )
    # The printed tables: the headers documented in the example (and so on its results
    # page), then one row per model and seed, then one row per model, with the same numbers.
    lines = capsys.readouterr().out.splitlines()
    doc = example.__doc__
    assert f"    {example.TABLE_HEADER}\n" in doc and f"    {example.SPREAD_HEADER}\n" in doc
    top = lines.index(example.TABLE_HEADER)
    rows = [example.table_row(m, s, record["per_seed"][m][str(s)]) for s in (0, 1) for m in models]
    assert lines[top + 1 : top + 1 + len(rows)] == rows
    for row, seed, name in zip(rows, [0] * 5 + [1] * 5, models * 2, strict=True):
        fields = row[20:].split()
        r = record["per_seed"][name][str(seed)]
        assert row.startswith(name) and int(fields[0]) == seed and len(fields) == 7
        assert float(fields[1]) == pytest.approx(r["test_log_likelihood_nats"], abs=0.005)
    bottom = lines.index(example.SPREAD_HEADER)
    spread_rows = [example.spread_row(m, record["spread_over_seeds"][m]) for m in models]
    assert lines[bottom + 1 : bottom + 1 + len(models)] == spread_rows
    assert (tmp_path / "digits_density.png").stat().st_size > 0
    written = json.loads((tmp_path / "digits_density.json").read_text())
    assert written["results"] == json.loads(json.dumps(record))


def test_main_job_results_page_documents_the_printed_tables():
    example = load(ROOT / "examples" / "digits_density.py")
    page = (ROOT / "docs" / "results" / "digits_density.rst").read_text()
    assert f"    {example.TABLE_HEADER}\n" in page and f"    {example.SPREAD_HEADER}\n" in page


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
    record = example.main(["--smoke", "--seeds", "0", "1", "--out", str(tmp_path)])
    models = {"MADE (1 ordering)", "MADE (8 orderings)", "PixelCNN", "PixelVAE"}
    assert set(record["per_seed"]) == {"0", "1"} and set(record["spread_over_seeds"]) == models
    for name in models:
        nll = [record["per_seed"][seed][name]["test_nll"] for seed in ("0", "1")]
        assert all(math.isfinite(v) and v > 0 for v in nll)
        assert record["spread_over_seeds"][name]["test_nll mean"] == pytest.approx(sum(nll) / 2)
    written = json.loads((tmp_path / "autoregressive_mnist.json").read_text())
    assert written["results"] == record and written["meta"]["reduced"].startswith("--smoke")
    assert (tmp_path / "autoregressive_mnist.png").stat().st_size > 0


@pytest.mark.slow
def test_image_flows_smoke(tmp_path):
    example = load(ROOT / "examples" / "image_flows.py")
    record = example.main(["--smoke", "--out", str(tmp_path)])
    results = record["per_seed"]["0"]
    for data in ("digits", "MNIST-5k"):
        assert set(results[data]) == {"Glow", "RealNVP (image)", "MAF (vector)", "RealNVP (vector)"}
        for name, r in results[data].items():
            assert math.isfinite(r["test_bits_per_dim"]) and r["test_bits_per_dim"] > 0
            spread = record["spread_over_seeds"][data][name]
            assert spread["seeds"] == 1 and spread["test_bits_per_dim sd"] == 0.0
    written = json.loads((tmp_path / "image_flows.json").read_text())
    assert written["results"] == record and written["meta"]["reduced"].startswith("--smoke")
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
