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
