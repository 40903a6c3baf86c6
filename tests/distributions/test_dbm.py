"""Deep Boltzmann machines against brute force on enumerable models; the mean-field bound; AIS;
Gibbs samples; MeanFieldPCD training and resumption; Boltzmann-machine temperature; exact
log Z never stale after parameter edits."""

import itertools
import math

import pyro
import pytest
import torch

from pyrogen.distributions import BernoulliRBM, BoltzmannMachine, DeepBoltzmannMachine
from pyrogen.infer import MeanFieldPCD

stats = pytest.importorskip("scipy.stats")

SIZES = (4, 3, 2, 3)  # v, h1, h2, h3: three hidden layers


def random_dbm(sizes=SIZES, batch=(), scale=1.0):
    weights = [scale * torch.randn(*batch, a, b) for a, b in itertools.pairwise(sizes)]
    biases = [0.5 * torch.randn(*batch, n) for n in sizes]
    return DeepBoltzmannMachine(weights, biases)


def binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def chi2_pvalue(x, states, log_probs):
    """Pearson chi-square p-value of the samples ``x`` against the exact ``log_probs`` of all
    ``states``, in the dtype of ``log_probs``: scipy checks that the expected counts sum to
    ``len(x)`` to the square root of their dtype's eps (float32 probabilities sum to 1 only up
    to float32 rounding)."""
    counts = (x.unsqueeze(1) == states).all(-1).sum(0).to(log_probs.dtype)
    return stats.chisquare(counts.numpy(), (log_probs.exp() * len(x)).numpy()).pvalue


def brute_force_log_joint(dbm):
    """-E over every joint state, ``(2^V, 2^H1, 2^H2, ...)``."""
    grids = [binary(n) for n in dbm.layer_sizes]
    shaped = []
    for i, g in enumerate(grids):
        shape = [1] * len(grids) + [g.shape[-1]]
        shape[i] = g.shape[0]
        shaped.append(g.reshape(shape))
    return -dbm.energy(*shaped)


@pytest.mark.parametrize("sizes", [SIZES, (3, 4, 2), (5, 2, 4)])
def test_log_partition_free_energy_and_log_prob_against_brute_force(sizes):
    dbm = random_dbm(sizes)
    log_joint = brute_force_log_joint(dbm)
    log_z = torch.logsumexp(log_joint.flatten(), 0)
    torch.testing.assert_close(dbm.log_partition(), log_z)
    v = binary(sizes[0])
    log_pv = torch.logsumexp(log_joint.flatten(1), 1) - log_z
    torch.testing.assert_close(dbm.log_prob(v), log_pv)
    torch.testing.assert_close(-dbm.free_energy(v), log_pv + log_z)


def test_hidden_marginals_match_brute_force_gibbs():
    """Gibbs chains over the full state reproduce the brute-force marginals of every unit."""
    dbm = random_dbm()
    log_joint = brute_force_log_joint(dbm)
    p = torch.softmax(log_joint.flatten(), 0).reshape(log_joint.shape)
    grids = [binary(n) for n in dbm.layer_sizes]
    n = 4000
    states = [torch.bernoulli(torch.full((n, k), 0.5)) for k in dbm.layer_sizes]
    states = dbm.gibbs_chain(states, 200)
    for layer, g in enumerate(grids):
        other = tuple(i for i in range(len(grids)) if i != layer)
        marginal = p.sum(other) @ g  # P(unit = 1) for every unit of the layer
        se = (marginal * (1 - marginal) / n).sqrt()
        assert bool(((states[layer].mean(0) - marginal).abs() < 5 * se + 0.01).all())


@pytest.mark.parametrize("sampler", ["exact", "gibbs"])
def test_samples_match_enumerated_distribution(sampler):
    dbm = random_dbm()
    if sampler == "exact":
        x = dbm.sample((4000,))
    else:
        x = dbm.markov_chain(torch.bernoulli(torch.full((4000, 4), 0.5)), 100)
    v = binary(4)
    assert chi2_pvalue(x, v, dbm.log_prob(v)) > 1e-3


def test_gibbs_test_has_power():
    dbm, other = random_dbm(), random_dbm()
    x = other.sample((4000,))
    v = binary(4)
    assert chi2_pvalue(x, v, dbm.log_prob(v)) < 1e-6


def test_mean_field_is_a_fixed_point_and_the_bound_holds():
    dbm = random_dbm(scale=0.7)
    v = binary(4)
    mu = dbm.mean_field(v, 200)
    states = [v, *mu]
    for k in range(1, len(states)):
        torch.testing.assert_close(mu[k - 1], torch.sigmoid(dbm.layer_input(states, k)))
    bound = dbm.log_likelihood_lower_bound(v)
    exact = dbm.log_prob(v)
    assert bool((bound <= exact + 1e-9).all())
    # the gap is the KL from q to the exact posterior, computed by brute force
    log_joint = brute_force_log_joint(dbm)
    posterior = log_joint.flatten(1) - torch.logsumexp(log_joint.flatten(1), 1, keepdim=True)
    grids = [binary(n) for n in dbm.layer_sizes[1:]]
    log_q = 0.0
    for i, (g, m) in enumerate(zip(grids, mu, strict=True)):
        lq = (g * m.unsqueeze(1).log() + (1 - g) * (1 - m.unsqueeze(1)).log()).sum(-1)
        shape = [len(v)] + [1] * len(grids)
        shape[i + 1] = g.shape[0]
        log_q = log_q + lq.reshape(shape)
    log_q = log_q.flatten(1)
    kl = (log_q.exp() * (log_q - posterior)).sum(1)
    torch.testing.assert_close(exact - bound, kl)


def test_ais_log_partition_within_its_error():
    dbm = random_dbm(scale=0.7)
    est = dbm.log_partition(method="ais", num_chains=200, num_betas=1000)
    assert float(est.stderr) < 0.05
    assert abs(float(est.log_partition - dbm.log_partition())) < 4 * float(est.stderr) + 0.02


def test_batched_dbm_matches_each_member():
    dbm = random_dbm(batch=(2,))
    v = binary(4).unsqueeze(1)
    lp = dbm.log_prob(v)
    assert lp.shape == (16, 2)
    for i in range(2):
        one = DeepBoltzmannMachine([w[i] for w in dbm.weights], [b[i] for b in dbm.biases])
        torch.testing.assert_close(lp[:, i], one.log_prob(binary(4)))


def test_large_dbm_needs_the_bound_and_estimates():
    dbm = random_dbm((30, 25, 22), scale=0.05)
    v = torch.bernoulli(torch.full((3, 30), 0.5))
    with pytest.raises(ValueError, match="variational_free_energy"):
        dbm.log_prob(v)
    est = dbm.log_partition(method="ais", num_chains=20, num_betas=50)
    assert est.log_partition.shape == ()
    bound = dbm.log_likelihood_lower_bound(v, est.log_partition)
    assert bound.shape == (3,) and bool(torch.isfinite(bound).all())
    # the estimate itself is accepted, as the docstring says
    torch.testing.assert_close(dbm.log_likelihood_lower_bound(v, est), bound)


def test_variational_bounds_have_log_prob_shapes_under_expand():
    """The bound stands in for ``log_prob`` on large DBMs, so it has ``log_prob``'s shape:
    ``broadcast(value batch, batch_shape)``, and each entry is the unexpanded bound."""
    dbm = random_dbm(scale=0.7)
    v = binary(4)[5]
    wide = dbm.expand((3,))
    assert wide.log_prob(v).shape == (3,)
    for fn in ("log_likelihood_lower_bound", "variational_free_energy"):
        out = getattr(wide, fn)(v)
        assert out.shape == (3,), fn
        torch.testing.assert_close(out, getattr(dbm, fn)(v).expand(3))


def test_validation_errors():
    w, b = [torch.randn(4, 3)], [torch.zeros(4), torch.zeros(3)]
    with pytest.raises(ValueError, match="at least 2 hidden layers"):
        DeepBoltzmannMachine(w, b)
    with pytest.raises(ValueError, match="biases"):
        DeepBoltzmannMachine([torch.randn(4, 3), torch.randn(3, 2)], b)
    with pytest.raises(ValueError, match="rows"):
        DeepBoltzmannMachine(
            [torch.randn(4, 3), torch.randn(2, 2)], [torch.zeros(4), torch.zeros(3), torch.zeros(2)]
        )
    with pytest.raises(ValueError, match="num_mean_field_steps"):
        random_dbm().__class__(
            [torch.randn(4, 3), torch.randn(3, 2)],
            [torch.zeros(4), torch.zeros(3), torch.zeros(2)],
            num_mean_field_steps=0,
        )


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _train(data, steps, *, evaluate=False, loss=None, start=0, resume=None):
    sizes = (6, 5, 4)

    def model(v):
        w = [
            pyro.param(f"w{i}", lambda a=a, b=b: 0.01 * torch.randn(a, b))
            for i, (a, b) in enumerate(itertools.pairwise(sizes))
        ]
        b = [pyro.param(f"b{i}", torch.zeros(n)) for i, n in enumerate(sizes)]
        with pyro.plate("data", len(data), subsample=torch.arange(len(v))):
            pyro.sample("v", DeepBoltzmannMachine(w, b), obs=v)

    loss = loss or MeanFieldPCD(num_chains=50)
    optim = pyro.optim.Adam({"lr": 0.01})
    if resume is not None:
        optim.set_state(resume)
    svi = pyro.infer.SVI(model, lambda v: None, optim, loss)
    for step in range(start, steps):
        batch = data[(torch.arange(20) + 20 * step) % len(data)]
        svi.step(batch)
        if evaluate:
            svi.evaluate_loss(batch)
    w = [pyro.param(f"w{i}").detach() for i in range(2)]
    b = [pyro.param(f"b{i}").detach() for i in range(3)]
    return DeepBoltzmannMachine(w, b), loss, optim


def _data():
    g = torch.Generator().manual_seed(1)
    prototypes = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    picks = prototypes[torch.randint(2, (200,), generator=g)]
    flips = torch.rand(200, 6, generator=g) < 0.1
    return torch.where(flips, 1 - picks, picks)


@pytest.mark.slow
def test_mean_field_pcd_learns_a_better_model_than_initialization():
    data = _data()
    pyro.set_rng_seed(0)
    dbm, _, _ = _train(data, 300)
    uniform = -6 * math.log(2)
    ll = float(dbm.log_prob(data).mean())
    assert ll > uniform + 1.0  # data entropy is well below 6 bits


def test_evaluate_loss_between_steps_does_not_change_training():
    data = _data()
    pyro.set_rng_seed(0)
    a, _, _ = _train(data, 20)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    b, _, _ = _train(data, 20, evaluate=True)
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert torch.equal(x, y)


def test_resume_from_saved_state_is_bit_identical(tmp_path):
    data = _data()
    pyro.set_rng_seed(0)
    full, _, _ = _train(data, 20)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    _, loss, optim = _train(data, 10)
    path = tmp_path / "state.pt"
    torch.save(
        {
            "params": {k: v.detach() for k, v in pyro.get_param_store().items()},
            "loss": loss.state_dict(),
            "optim": optim.get_state(),
            "rng": torch.get_rng_state(),
        },
        path,
    )
    pyro.clear_param_store()
    state = torch.load(path, weights_only=True)
    for name, value in state["params"].items():
        pyro.param(name, value)
    resumed_loss = MeanFieldPCD(num_chains=50)
    resumed_loss.load_state_dict(state["loss"])
    torch.set_rng_state(state["rng"])
    resumed, _, _ = _train(data, 20, loss=resumed_loss, start=10, resume=state["optim"])
    for x, y in zip(full.weights + full.biases, resumed.weights + resumed.biases, strict=True):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------------------------
# Boltzmann machine temperature; exact log Z after parameter edits
# ---------------------------------------------------------------------------------------------


def _bm_params(n=4):
    w = torch.randn(n, n)
    w = w + w.T
    return w - torch.diag(torch.diagonal(w)), torch.randn(n)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_boltzmann_temperature_against_brute_force(temperature):
    w, b = _bm_params()
    bm = BoltzmannMachine(w, b, temperature=temperature)
    y = binary(4)
    energy = -0.5 * ((y @ w) * y).sum(-1) - y @ b
    expected = torch.log_softmax(-energy / temperature, 0)
    torch.testing.assert_close(bm.log_prob(y), expected)
    est = bm.log_partition(method="ais", num_chains=200, num_betas=500)
    assert abs(float(est.log_partition - bm.log_partition())) < 4 * float(est.stderr) + 0.02
    x = bm.markov_chain(torch.bernoulli(torch.full((4000, 4), 0.5)), 30)
    assert chi2_pvalue(x, y, expected) > 1e-3


def test_high_temperature_approaches_uniform():
    w, b = _bm_params()
    hot = BoltzmannMachine(w, b, temperature=1e4)
    torch.testing.assert_close(
        hot.log_prob(binary(4)), torch.full((16,), -4 * math.log(2)), atol=1e-3, rtol=0
    )


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan, "1", True])
def test_boltzmann_temperature_validated(temperature):
    w, b = _bm_params()
    with pytest.raises(ValueError, match="temperature"):
        BoltzmannMachine(w, b, temperature=temperature)


class RBMModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(5, 4))
        self.visible_bias = torch.nn.Parameter(torch.randn(5))
        self.hidden_bias = torch.nn.Parameter(torch.randn(4))

    def forward(self):
        return BernoulliRBM(self.weight, self.visible_bias, self.hidden_bias)


def _assert_normalized(rbm, rtol):
    with torch.no_grad():
        total = torch.logsumexp(rbm.log_prob(binary(5)), 0)
    torch.testing.assert_close(total, torch.tensor(0.0), atol=rtol, rtol=0)  # zero up to rounding


@pytest.mark.parametrize("route", ["data", "load_state_dict_assign", "functional_call"])
def test_exact_log_partition_is_never_stale_after_a_parameter_edit(route, rtol):
    module = RBMModule()
    rbm = module()
    _assert_normalized(rbm, rtol)  # computes log Z once under no_grad
    new = {k: v.detach() + torch.randn_like(v) for k, v in module.state_dict().items()}
    if route == "data":
        for name, p in module.named_parameters():
            p.data.copy_(new[name])  # what ClippedAdam does; the same distribution object
        _assert_normalized(rbm, rtol)
    elif route == "load_state_dict_assign":
        module.load_state_dict(new, assign=True)
        _assert_normalized(module(), rtol)
    else:
        rbm2 = torch.func.functional_call(module, new, ())
        _assert_normalized(rbm2, rtol)
        _assert_normalized(module(), rtol)
