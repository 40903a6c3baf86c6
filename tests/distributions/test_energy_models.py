"""RBMs, Boltzmann machines and continuous EBMs: normalization, free energies, samplers,
partition functions (exact and AIS) and validation."""

import math

import pyro
import pytest
import torch

from pyrogen.distributions import (
    BernoulliRBM,
    BoltzmannMachine,
    EnergyBasedDistribution,
    GaussianBernoulliRBM,
)
from pyrogen.distributions.base import all_binary_states

stats = pytest.importorskip("scipy.stats")


def random_rbm(n_visible, n_hidden, batch=(), scale=1.0):
    return BernoulliRBM(
        scale * torch.randn(*batch, n_visible, n_hidden),
        torch.randn(*batch, n_visible),
        torch.randn(*batch, n_hidden),
    )


def random_bm(n, batch=(), scale=1.0):
    w = scale * torch.randn(*batch, n, n)
    w = w + w.transpose(-1, -2)
    w = w - torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))
    return BoltzmannMachine(w, torch.randn(*batch, n))


def states(n):
    return all_binary_states(n, torch.empty(()))


@pytest.mark.parametrize(("v", "h"), [(4, 3), (3, 5), (6, 6)])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_rbm_log_prob_sums_to_one(v, h, batch):
    rbm = random_rbm(v, h, batch)
    s = states(v).reshape(2**v, *([1] * len(batch)), v)
    total = rbm.log_prob(s).exp().sum(0)
    assert total.shape == batch
    assert torch.allclose(total, torch.ones(batch))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_boltzmann_machine_log_prob_sums_to_one(batch):
    bm = random_bm(5, batch)
    s = states(5).reshape(32, *([1] * len(batch)), 5)
    assert torch.allclose(bm.log_prob(s).exp().sum(0), torch.ones(batch))


def test_rbm_free_energy_is_brute_force_marginal():
    rbm = random_rbm(4, 3)
    v = states(4)
    h = states(3)
    energies = rbm.energy(v[:, None, :], h[None, :, :])  # (16, 8)
    assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-energies, dim=1))
    log_z = torch.logsumexp(-energies.reshape(-1), 0)
    assert torch.allclose(rbm.log_partition(), log_z)


def test_gaussian_rbm_free_energy_and_normalization():
    rbm = GaussianBernoulliRBM(
        0.6 * torch.randn(2, 3), torch.randn(2), torch.randn(3), torch.tensor([0.7, 1.3])
    )
    v = torch.randn(5, 2)
    h = states(3)
    energies = rbm.energy(v[:, None, :], h[None, :, :])
    assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-energies, dim=1))
    grid = torch.linspace(-12, 12, 801)
    x = torch.cartesian_prod(grid, grid)
    mass = rbm.log_prob(x).exp().sum() * (grid[1] - grid[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-4)


def chi2_pvalue(samples, log_probs):
    """Pearson chi-square goodness of fit of binary samples against exact probabilities
    (states with fewer than 5 expected counts are pooled into one cell)."""
    n = samples.shape[-1]
    codes = (samples * (2 ** torch.arange(n))).sum(-1).long()
    counts = torch.bincount(codes, minlength=2**n).double()
    expected = log_probs.exp().double()
    expected = expected / expected.sum() * len(codes)
    keep = expected > 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1] * obs[:-1].sum() / exp[:-1].sum()
    return stats.chisquare(obs.numpy(), exp.numpy()).pvalue


@pytest.mark.parametrize("sampler", ["exact", "gibbs"])
def test_rbm_samples_match_log_prob(sampler):
    rbm = random_rbm(5, 4)
    if sampler == "exact":
        x = rbm.sample((20000,))
    else:
        x = rbm.markov_chain(torch.bernoulli(torch.full((20000, 5), 0.5)), 50)
    assert chi2_pvalue(x, rbm.log_prob(states(5))) > 1e-3


def test_rbm_sampler_has_power():
    rbm, other = random_rbm(5, 4), random_rbm(5, 4)
    assert chi2_pvalue(other.sample((20000,)), rbm.log_prob(states(5))) < 1e-6


def test_large_hidden_layer_samples_by_enumerating_visible():
    rbm = random_rbm(4, 25, scale=0.3)
    assert chi2_pvalue(rbm.sample((20000,)), rbm.log_prob(states(4))) > 1e-3


@pytest.mark.parametrize("sampler", ["exact", "gibbs"])
def test_boltzmann_samples_match_log_prob(sampler):
    bm = random_bm(5)
    if sampler == "exact":
        x = bm.sample((20000,))
    else:
        x = bm.markov_chain(torch.bernoulli(torch.full((20000, 5), 0.5)), 30)
    assert chi2_pvalue(x, bm.log_prob(states(5))) > 1e-3


def test_gaussian_rbm_exact_samples():
    rbm = GaussianBernoulliRBM(
        torch.randn(1, 2), torch.tensor([0.5]), torch.zeros(2), torch.ones(1)
    )
    x = rbm.sample((20000,)).squeeze(-1)
    grid = torch.linspace(-10, 10, 4001)
    cdf = torch.cumsum(rbm.log_prob(grid[:, None]).exp(), 0) * (grid[1] - grid[0])
    ks = stats.kstest(
        x.numpy(),
        lambda t: torch.from_numpy(
            __import__("numpy").interp(t, grid.numpy(), cdf.numpy())
        ).numpy(),
    )
    assert ks.pvalue > 1e-3


@pytest.mark.parametrize("adjusted", [False, True])
def test_langevin_samples_a_gaussian(adjusted):
    precision = torch.tensor([1.0, 4.0])
    ebm = EnergyBasedDistribution(
        lambda x: 0.5 * (precision * x**2).sum(-1),
        (2,),
        num_steps=400,
        step_size=0.05 if adjusted else 0.01,
        adjusted=adjusted,
    )
    x = ebm.sample((4000,))
    for d in range(2):
        assert (
            stats.kstest(x[:, d].numpy(), "norm", args=(0, precision[d].rsqrt().item())).pvalue
            > 1e-3
        )


def test_langevin_has_power():
    ebm = EnergyBasedDistribution(
        lambda x: 0.5 * (x**2).sum(-1), (2,), num_steps=400, step_size=0.05
    )
    x = ebm.sample((4000,))
    assert stats.kstest(x[:, 0].numpy(), "norm", args=(0, 1.3)).pvalue < 1e-6


@pytest.mark.parametrize("model", ["rbm", "bm"])
def test_ais_is_unbiased_in_Z_and_within_its_error(model):
    m = random_rbm(8, 6, scale=0.8) if model == "rbm" else random_bm(6, scale=0.5)
    exact = m.log_partition()
    runs = [m.log_partition(method="ais", num_chains=20, num_betas=200) for _ in range(30)]
    z_ratio = torch.stack([(r.log_partition - exact).exp() for r in runs])
    assert abs(float(z_ratio.mean()) - 1) < 4 * float(z_ratio.std()) / math.sqrt(len(runs))
    big = m.log_partition(method="ais", num_chains=500, num_betas=2000)
    assert abs(float(big.log_partition - exact)) < max(4 * float(big.stderr), 0.02)
    assert float(big.stderr) < 0.05


def test_ais_base_rate_initialization_reduces_variance():
    torch.manual_seed(1)
    rbm = random_rbm(10, 6, scale=1.0)
    data = rbm.sample((2000,))
    plain = rbm.log_partition(method="ais", num_chains=200, num_betas=300)
    base_rate = rbm.log_partition(method="ais", num_chains=200, num_betas=300, data=data)
    assert base_rate.log_weights.var() < plain.log_weights.var()


def test_log_prob_without_log_z_raises_and_attaching_fixes_it():
    rbm = random_rbm(25, 30, scale=0.1)
    v = torch.bernoulli(torch.full((3, 25), 0.5))
    with pytest.raises(ValueError, match="attach_log_partition"):
        rbm.log_prob(v)
    with pytest.raises(ValueError, match="too large"):
        rbm.log_partition()
    est = rbm.log_partition(method="ais", num_chains=10, num_betas=100)
    rbm.attach_log_partition(est.log_partition)
    assert torch.allclose(rbm.log_prob(v), rbm.unnormalized_log_prob(v) - est.log_partition)


def test_expand_and_batch_shapes():
    rbm = random_rbm(4, 3, batch=(2,))
    assert rbm.batch_shape == (2,) and rbm.event_shape == (4,)
    big = rbm.expand((5, 2))
    assert big.sample((7,)).shape == (7, 5, 2, 4)
    v = torch.bernoulli(torch.full((5, 2, 4), 0.5))
    assert torch.allclose(big.log_prob(v), rbm.log_prob(v))
    bm = random_bm(3).expand((6,))
    assert bm.sample().shape == (6, 3)


def test_rbm_inside_a_pyro_plate():
    rbm = random_rbm(4, 3)
    v = torch.bernoulli(torch.full((10, 4), 0.5))

    def model():
        with pyro.plate("data", 10):
            pyro.sample("v", rbm, obs=v)

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    assert torch.allclose(trace.nodes["v"]["log_prob"], rbm.log_prob(v))


def test_validation_errors():
    rbm = random_rbm(4, 3)
    with pyro.validation_enabled(True):
        with pytest.raises(ValueError, match="support"):
            BernoulliRBM(
                rbm.weight, rbm.visible_bias, rbm.hidden_bias, validate_args=True
            ).log_prob(torch.full((4,), 0.5))
        w = torch.randn(3, 3)
        with pytest.raises(ValueError, match="symmetric"):
            BoltzmannMachine(w, torch.zeros(3), validate_args=True)
        with pytest.raises(ValueError, match="diagonal"):
            BoltzmannMachine(torch.eye(3), torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="visible_bias"):
        BernoulliRBM(torch.randn(4, 3), torch.zeros(5), torch.zeros(3))
    with pytest.raises(ValueError, match="hidden_bias"):
        BernoulliRBM(torch.randn(4, 3), torch.zeros(4), torch.zeros(2))
    with pytest.raises(ValueError, match="num_gibbs_steps"):
        BernoulliRBM(torch.randn(4, 3), torch.zeros(4), torch.zeros(3), num_gibbs_steps=0)
    other = torch.float32 if torch.get_default_dtype() == torch.float64 else torch.float64
    with pytest.raises(TypeError, match="dtype"):
        BernoulliRBM(torch.randn(4, 3), torch.zeros(4, dtype=other), torch.zeros(3))
    with pytest.raises(ValueError, match="num_steps"):
        rbm.markov_chain(torch.zeros(4), -1)
    with pytest.raises(ValueError, match="method"):
        rbm.log_partition(method="bridge")
    with pytest.raises(ValueError, match="step_size"):
        EnergyBasedDistribution(lambda x: x.sum(-1), (2,), step_size=0.0)
    with pytest.raises(ValueError, match="log Z"):
        EnergyBasedDistribution(lambda x: x.sum(-1), (2,)).log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match="num_betas"):
        rbm.log_partition(method="ais", num_betas=2)


@pytest.mark.gpu
def test_rbm_on_cuda(device):
    rbm = BernoulliRBM(
        torch.randn(4, 3, device=device),
        torch.zeros(4, device=device),
        torch.zeros(3, device=device),
    )
    s = all_binary_states(4, rbm.weight)
    assert torch.allclose(rbm.log_prob(s).exp().sum(), torch.ones((), device=device))
    assert rbm.sample((5,)).device.type == device.type
    est = rbm.log_partition(method="ais", num_chains=50, num_betas=300)
    assert est.log_partition.device.type == device.type


def test_langevin_ais_log_partition_of_a_gaussian_energy():
    """AIS from the Gaussian base to E(x) = |x - m|^2 / (2 s^2) recovers log Z = 2 log(sqrt(2
    pi) s) (MALA transitions on the annealing path)."""
    m, s = torch.tensor([1.0, -0.5]), 0.7
    ebm = EnergyBasedDistribution(
        lambda x: ((x - m) ** 2).sum(-1) / (2 * s**2), (2,), step_size=0.2, init_scale=1.5
    )
    est = ebm.log_partition(method="ais", num_chains=200, num_betas=300)
    exact = 2 * math.log(math.sqrt(2 * math.pi) * s)
    assert float(est.stderr) < 0.1
    assert abs(float(est.log_partition) - exact) < 4 * float(est.stderr) + 0.05
    ebm.attach_log_partition(est.log_partition)
    assert ebm.log_partition() == est.log_partition
    x = torch.randn(5, 2)
    torch.testing.assert_close(ebm.log_prob(x), -ebm.energy(x) - est.log_partition)


def small_limit(model, units):
    """``model`` with ``max_enumerable_units`` lowered to ``units``, so the samplers' and the
    exact log Z's size limits can be tested on models with a handful of units."""
    model.max_enumerable_units = units
    return model


def test_rbm_errors_name_the_argument_and_the_remedy():
    with pytest.raises(ValueError, match=r"^weight must be a tensor .*got \[\[1\.0\]\]$|got list"):
        BernoulliRBM([[1.0]], torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match=r"^weight must be a tensor .*got torch\.Size\(\[4\]\)$"):
        BernoulliRBM(torch.randn(4), torch.zeros(4), torch.zeros(1))
    with pytest.raises(ValueError, match=r"^num_gibbs_steps must be an int >= 1, got 0$"):
        BernoulliRBM(torch.randn(4, 3), torch.zeros(4), torch.zeros(3), num_gibbs_steps=0)
    with pytest.raises(ValueError, match=r"^num_steps must be an int >= 0, got -1$"):
        random_rbm(4, 3).markov_chain(torch.zeros(4), -1)
    remedy = r"is too large for an exact log Z .*; use log_partition\(method='ais'\)$"
    with pytest.raises(ValueError, match="^BernoulliRBM " + remedy):
        small_limit(random_rbm(4, 3), 2).exact_log_partition()
    gaussian = GaussianBernoulliRBM(
        torch.randn(2, 3), torch.zeros(2), torch.zeros(3), torch.ones(2)
    )
    with pytest.raises(ValueError, match="^GaussianBernoulliRBM " + remedy):
        small_limit(gaussian, 2).exact_log_partition()
    no_ais = r"^AIS is implemented for binary models; .*GaussianBernoulliRBM.* exact log Z$"
    with pytest.raises(NotImplementedError, match=no_ais):
        gaussian.annealing_path()


def test_rbm_markov_chain_with_zero_steps_returns_its_start():
    v = torch.bernoulli(torch.full((6, 4), 0.5))
    assert torch.equal(random_rbm(4, 3).markov_chain(v, 0), v)


def test_rbm_keyword_arguments_reach_the_distribution():
    """``log_partition``, ``validate_args`` and ``num_gibbs_steps`` given to either RBM are used,
    whatever the global validation setting."""
    rbm = random_rbm(4, 3)
    w, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    v = torch.bernoulli(torch.full((5, 4), 0.5))
    attached = small_limit(BernoulliRBM(w, b, c, log_partition=torch.tensor(3.0)), 2)
    torch.testing.assert_close(attached.log_prob(v), -rbm.free_energy(v) - 3.0)
    half = torch.full((4,), 0.5)
    with pyro.validation_enabled(False):
        with pytest.raises(ValueError, match="support"):
            BernoulliRBM(w, b, c, validate_args=True).log_prob(half)
    with pyro.validation_enabled(True):
        BernoulliRBM(w, b, c, validate_args=False).log_prob(half)  # not checked
    gaussian = GaussianBernoulliRBM(
        w, b, c, torch.ones(4), num_gibbs_steps=7, log_partition=torch.tensor(2.0)
    )
    gaussian = small_limit(gaussian, 2)
    assert gaussian.num_gibbs_steps == 7
    x = torch.randn(3, 4)
    torch.testing.assert_close(gaussian.log_prob(x), -gaussian.free_energy(x) - 2.0)


def test_rbm_conditionals_accept_integer_states():
    """Binary states stored as integers give the same conditionals and free energy as floats."""
    rbm = random_rbm(4, 3)
    v, h = states(4), states(3)
    torch.testing.assert_close(
        rbm.hidden_given_visible(v.long()).base_dist.logits,
        rbm.hidden_given_visible(v).base_dist.logits,
    )
    torch.testing.assert_close(
        rbm.visible_given_hidden(h.long()).base_dist.logits,
        rbm.visible_given_hidden(h).base_dist.logits,
    )
    torch.testing.assert_close(rbm.free_energy(v.long()), rbm.free_energy(v))


@pytest.mark.parametrize("gaussian", [False, True])
def test_batched_rbm_matches_each_of_its_members(gaussian):
    """A batch of RBMs scores, conditions and normalizes as its members one at a time, for a
    value with no sample dimension and one with two; the conditionals are factorized over the
    units only (event dim 1)."""
    w, b, c = torch.randn(2, 3, 4), torch.randn(2, 3), torch.randn(2, 4)
    s = torch.rand(2, 3) + 0.5

    def make(*p):
        return GaussianBernoulliRBM(*p) if gaussian else BernoulliRBM(*p[:3])

    batch, members = make(w, b, c, s), [make(w[i], b[i], c[i], s[i]) for i in range(2)]
    v2 = torch.randn(2, 3) if gaussian else torch.bernoulli(torch.full((2, 3), 0.5))
    v4 = torch.randn(5, 1, 2, 3) if gaussian else torch.bernoulli(torch.full((5, 1, 2, 3), 0.5))
    h2 = torch.bernoulli(torch.full((2, 4), 0.5))
    for v in (v2, v4):
        expected = torch.stack([m.log_prob(v[..., i, :]) for i, m in enumerate(members)], -1)
        torch.testing.assert_close(batch.log_prob(v), expected)
        assert batch.free_energy(v).shape == v.shape[:-1]
        cond = batch.hidden_given_visible(v)
        assert cond.batch_shape == v.shape[:-1] and cond.event_shape == (4,)
    cond = batch.visible_given_hidden(h2)
    assert cond.batch_shape == (2,) and cond.event_shape == (3,)
    for i, m in enumerate(members):
        torch.testing.assert_close(
            cond.log_prob(v2)[i], m.visible_given_hidden(h2[i]).log_prob(v2[i])
        )
        torch.testing.assert_close(batch.log_partition()[i], m.log_partition())


def test_rbm_sample_shapes_one_draw_and_none():
    rbm = BernoulliRBM(torch.zeros(3, 2), torch.full((3,), 8.0), torch.zeros(2))
    assert torch.equal(rbm.sample(), torch.ones(3))  # P(v_i = 0) = sigmoid(-8) each
    gaussian = GaussianBernoulliRBM(
        torch.randn(3, 2), torch.zeros(3), torch.zeros(2), torch.ones(3)
    )
    draw = gaussian.sample()
    assert draw.shape == (3,) and bool((draw != 0).all())
    for model in (random_rbm(3, 2, batch=(2,)), gaussian.expand((2,))):
        assert model.sample((0,)).shape == (0, 2, 3)


def one_sweep_law(rbm):
    """Exact law of one block-Gibbs sweep from uniformly random binary visible states."""
    v0, h, v1 = states(rbm.n_visible), states(rbm.n_hidden), states(rbm.n_visible)
    p_h = rbm.hidden_given_visible(v0[:, None, :]).log_prob(h[None]).exp().mean(0)  # (2^H,)
    p_v = rbm.visible_given_hidden(h[:, None, :]).log_prob(v1[None]).exp()  # (2^H, 2^V)
    return (p_h @ p_v).log()


def test_rbm_gibbs_sampler_runs_num_gibbs_steps_sweeps_from_uniform_states():
    """Too large to enumerate (limit lowered to 2 units), ``sample`` runs ``num_gibbs_steps``
    sweeps from uniform visible states: with one sweep its law is known exactly."""
    torch.manual_seed(3)
    w, b, c = 2 * torch.randn(3, 3), torch.randn(3), torch.randn(3)
    rbm = small_limit(BernoulliRBM(w, b, c, num_gibbs_steps=1), 2)
    law = one_sweep_law(rbm)
    x = rbm.sample((20000,))
    assert chi2_pvalue(x, law) > 1e-3
    assert chi2_pvalue(x, BernoulliRBM(w, b, c).log_prob(states(3))) < 1e-6  # not mixed yet


@pytest.mark.parametrize(("n_visible", "n_hidden"), [(5, 4), (4, 5), (4, 25)])
def test_rbm_samples_exactly_up_to_the_enumeration_limit(n_visible, n_hidden):
    """A layer of exactly ``max_enumerable_units`` units (4 here) is still enumerated: one Gibbs
    sweep (``num_gibbs_steps=1``) would not reach the model's law."""
    rbm = random_rbm(n_visible, n_hidden, scale=2.0 if n_hidden < 25 else 1.0)
    fast = BernoulliRBM(rbm.weight, rbm.visible_bias, rbm.hidden_bias, num_gibbs_steps=1)
    fast = small_limit(fast, 4)
    assert chi2_pvalue(fast.sample((20000,)), rbm.log_prob(states(n_visible))) > 1e-3


def mixture_cdf(weights, means, scale):
    """CDF of the 1-D Gaussian mixture ``sum_k weights[k] N(means[k], scale^2)``."""
    w, m = weights.numpy(), means.numpy()
    return lambda t: (w * stats.norm.cdf(t[..., None], m, float(scale))).sum(-1)


def test_gaussian_rbm_gibbs_sampler_starts_from_the_visible_prior():
    """With the hidden layer over the (lowered) limit, one sweep starts at ``N(b, sigma^2)``:
    the draws follow the mixture ``sum_h pi_h N(b + sigma W h, sigma^2)`` with
    ``pi_h = E_{v0 ~ N(b, sigma^2)} p(h | v0)``; at the limit the draws are exact."""
    w, b, s = torch.tensor([[2.5, -1.5]]), torch.tensor([1.0]), torch.tensor([0.5])
    c = torch.tensor([-1.0, 0.5])
    rbm = small_limit(GaussianBernoulliRBM(w, b, c, s, num_gibbs_steps=1), 1)
    grid = torch.linspace(-8, 10, 20001)
    prior = torch.distributions.Normal(b, s).log_prob(grid[:, None]).exp().squeeze(-1)
    h = states(2)
    p_h = rbm.hidden_given_visible(grid[:, None, None]).log_prob(h).exp()  # (grid, 4)
    pi = (prior[:, None] * p_h).sum(0) * (grid[1] - grid[0])
    means = (b + s * (h @ w.T)).squeeze(-1)
    x = rbm.sample((10000,)).squeeze(-1).numpy()

    assert stats.kstest(x, mixture_cdf(pi, means, s)).pvalue > 1e-3
    exact = small_limit(GaussianBernoulliRBM(w, b, c, s, num_gibbs_steps=1), 2)
    exact_pi = c @ h.T + (b / s * (h @ w.T).squeeze(-1)) + (h @ w.T).squeeze(-1) ** 2 / 2
    exact_pi = exact_pi.softmax(0)
    y = exact.sample((10000,)).squeeze(-1).numpy()

    assert stats.kstest(y, mixture_cdf(exact_pi, means, s)).pvalue > 1e-3
    assert stats.kstest(x, mixture_cdf(exact_pi, means, s)).pvalue < 1e-6  # one sweep has not mixed


def test_rbm_annealing_path_base_biases():
    rbm = random_rbm(4, 3)
    given = torch.tensor([0.5, -1.0, 2.0, 0.0])
    torch.testing.assert_close(rbm.annealing_path(base_visible_bias=given).base_bias, given)
    data = torch.tensor([[1.0, 0, 1, 1], [1.0, 1, 0, 1]])
    expected = torch.logit(data.mean(0).clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(rbm.annealing_path(data=data).base_bias, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_draw_has_the_law_of_its_probabilities_and_independent_expanded_rows(dtype):
    from pyrogen.util import bernoulli_draw

    torch.manual_seed(0)
    n = 200_000
    probs = torch.tensor([0.0, 0.1, 0.5, 0.5, 0.9, 1.0], dtype=dtype)
    draws = bernoulli_draw(probs.expand(n, -1))  # stride-0 rows, as the AIS path passes them
    assert draws.dtype == dtype and draws.shape == (n, 6)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert draws[:, 0].sum() == 0 and draws[:, 5].sum() == n  # p = 0 and p = 1 exactly
    freq = draws.mean(0).double()
    se = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert torch.all((freq - probs.double()).abs() <= 5 * se + 1e-12)
    # rows of an expanded tensor get their own uniforms: two p = 1/2 columns agree half the time
    agree = (draws[:, 2] == draws[:, 3]).double().mean()
    assert abs(float(agree) - 0.5) < 5 * (0.25 / n) ** 0.5
    # and neighbouring rows are not copies of each other
    assert abs(float((draws[1:, 2] == draws[:-1, 2]).double().mean()) - 0.5) < 5 * (0.25 / n) ** 0.5
    # draws from probabilities that carry a graph are plain data, as torch.bernoulli's are
    logits = torch.zeros(3, dtype=dtype, requires_grad=True)
    assert not bernoulli_draw(torch.sigmoid(logits)).requires_grad


class _BufferEnergy(torch.nn.Module):
    """A fixed quadratic energy around a float64 buffer (no parameters)."""

    def __init__(self, centre):
        super().__init__()
        self.register_buffer("centre", torch.tensor([centre], dtype=torch.float64))

    def forward(self, x):
        return ((x - self.centre) ** 2).sum(-1) / 2


def test_energy_without_parameters_keeps_the_precision_of_its_tensors():
    """``N(1e8, 1)`` as an energy: float32 cannot tell ``1e8 + 1`` from ``1e8``, so a
    downcast value gives the density at the mode, ``-log(2 pi) / 2``, instead of
    ``-1/2 - log(2 pi) / 2``. A plain callable is evaluated in the value's precision and a
    module holding only a float64 buffer in the buffer's."""
    log_z = 0.5 * math.log(2 * math.pi)
    x = torch.tensor([[1e8 + 1.0]], dtype=torch.float64)
    plain = EnergyBasedDistribution(
        lambda v: ((v - 1e8) ** 2).sum(-1) / 2, (1,), log_partition=log_z
    )
    buffered = EnergyBasedDistribution(_BufferEnergy(1e8), (1,), log_partition=log_z, num_steps=2)
    for ebm in (plain, buffered):
        lp = ebm.log_prob(x)
        assert lp.dtype == torch.float64
        assert abs(float(lp) - (-0.5 - log_z)) < 1e-9
        assert ebm.unnormalized_log_prob(x).dtype == torch.float64
    assert buffered.sample((3,)).dtype == torch.float64
    # a float32 value to the plain callable stays float32
    assert plain.log_prob(x.float()).dtype == torch.float32
