"""Outlier scores and AUROC from per-example log-likelihoods."""

import pytest
import torch

from pyrogen.analysis import ood_auroc, ood_scores


def test_auroc_extremes_and_chance():
    low, high = torch.arange(10.0), torch.arange(10.0) + 100
    assert ood_auroc(low, high) == 1.0
    assert ood_auroc(high, low) == 0.0
    assert ood_auroc(torch.ones(5), torch.ones(7)) == 0.5
    # one crossing pair out of 2 * 2: AUROC = 3/4
    assert ood_auroc(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])) == pytest.approx(0.75)


def test_raw_likelihood_fails_where_typicality_and_the_ratio_do_not():
    """Outliers with *higher* likelihood than the data (too smooth, like blank images): raw
    likelihood ranks them as inliers; typicality catches them; the background model, which
    also loves them, cancels the population term."""
    torch.manual_seed(0)
    ll_in = -100 + 3 * torch.randn(500)
    ll_ref = -100 + 3 * torch.randn(500)
    ll_out = -80 + 3 * torch.randn(500)
    bg_in = -110 + 3 * torch.randn(500)
    bg_out = -70 + 3 * torch.randn(500)
    s_in = ood_scores(ll_in, background_log_likelihood=bg_in, reference_log_likelihood=ll_ref)
    s_out = ood_scores(ll_out, background_log_likelihood=bg_out, reference_log_likelihood=ll_ref)
    assert ood_auroc(s_in["log_likelihood"], s_out["log_likelihood"]) < 0.01
    assert ood_auroc(s_in["typicality"], s_out["typicality"]) > 0.99
    assert ood_auroc(s_in["likelihood_ratio"], s_out["likelihood_ratio"]) > 0.99


def test_typicality_batches_and_entropy_estimate():
    ll = torch.tensor([-1.0, -3.0, -10.0, -14.0, 5.0])
    s = ood_scores(ll, reference_log_likelihood=torch.tensor([-2.0, -4.0]), batch_size=2)
    # entropy estimate 3; batch means of -ll: 2 and 12; the fifth example is dropped
    torch.testing.assert_close(s["typicality"], torch.tensor([1.0, 9.0], dtype=torch.float64))
    assert set(s) == {"log_likelihood", "typicality"}
    torch.testing.assert_close(s["log_likelihood"], -ll.double())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="log_likelihood must be a 1-D"):
        ood_scores(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        ood_scores(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="pass the same examples"):
        ood_scores(torch.zeros(3), background_log_likelihood=torch.zeros(4))
    with pytest.raises(ValueError, match="batch_size must be"):
        ood_scores(torch.zeros(3), batch_size=4)
    with pytest.raises(ValueError, match="out_scores must be"):
        ood_auroc(torch.zeros(3), torch.zeros(0))
