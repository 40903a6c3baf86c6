"""Pyro's shape contract, as one table-driven suite run over every pyrogen distribution.

Each row of ``CASES`` builds one distribution configuration for a requested batch shape; every
test below runs over every row: support and batch shapes, the ``expand`` variants and their
errors, ``log_prob`` broadcasting against ``batch_shape`` and the context, plates with and
without the plate dimension in the value, vectorized particles in ``Trace_ELBO``,
``enumerate_support``, normalization (enumeration or quadrature), goodness of fit of samples
against ``log_prob``, dtype handling, empty batches and score errors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import TorchDistribution
from pyro.infer import Trace_ELBO
from torch import nn

from pyrogen import distributions as pd
from pyrogen.nn.masked_conv import PixelCNNNetwork

stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------------------------------------
# The table of cases
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One distribution configuration.

    ``build(batch_shape)`` returns a fresh distribution of that batch shape;
    ``decoder()`` (context models) returns ``(context_dim, context -> distribution)`` with
    fixed parameters; ``discrete``: values are integers ``0..num_categories-1`` (enumerable on
    these tiny sizes); ``exact_sampler``: ``sample`` draws exactly from ``log_prob``;
    ``energy``: the model offers ``log_partition()``.
    """

    name: str
    build: Callable[[tuple], TorchDistribution]
    batch_shapes: tuple = ((), (2,))
    discrete: bool = True
    num_categories: int = 2
    exact_sampler: bool = True
    energy: bool = False
    decoder: Callable | None = None

    def __repr__(self) -> str:
        return self.name


def _rbm(batch):
    return pd.BernoulliRBM(
        torch.randn(*batch, 4, 3), 0.5 * torch.randn(*batch, 4), 0.5 * torch.randn(*batch, 3)
    )


def _gaussian_rbm(batch):
    return pd.GaussianBernoulliRBM(
        0.5 * torch.randn(*batch, 2, 3),
        0.5 * torch.randn(*batch, 2),
        0.5 * torch.randn(*batch, 3),
        0.6 + torch.rand(*batch, 2),
    )


def _boltzmann(batch, temperature=None):
    w = torch.randn(*batch, 4, 4)
    w = w + w.transpose(-1, -2)
    w = w - torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))
    kwargs = {} if temperature is None else {"temperature": temperature}
    return pd.BoltzmannMachine(w, 0.5 * torch.randn(*batch, 4), **kwargs)


class Quadratic(nn.Module):
    """E(x) = sum((x - loc)^2 / (2 scale^2)); log Z = sum(log(sqrt(2 pi) scale))."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([0.5, -0.3]))
        self.log_scale = nn.Parameter(torch.tensor([0.2, -0.1]))

    def forward(self, x):
        return ((x - self.loc) ** 2 / (2 * self.log_scale.exp() ** 2)).sum(-1)

    def log_partition(self):
        return float((self.log_scale.detach() + 0.5 * math.log(2 * math.pi)).sum())


def _ebm(batch):
    energy = Quadratic()
    d = pd.EnergyBasedDistribution(
        energy,
        (2,),
        num_steps=300,
        step_size=0.05,
        adjusted=True,
        log_partition=energy.log_partition(),
    )
    return d if batch == () else d.expand(batch)


def _dbm(batch):
    return pd.DeepBoltzmannMachine(
        [torch.randn(*batch, 3, 3), torch.randn(*batch, 3, 2)],
        [0.5 * torch.randn(*batch, 3), 0.5 * torch.randn(*batch, 3), 0.5 * torch.randn(*batch, 2)],
    )


def _image_flow(batch):
    """A real-valued image density on (2, 1, 1), its coupling perturbed away from identity."""
    from pyrogen.nn import ConvNet
    from pyrogen.transforms import ImageCoupling

    net = ConvNet(1, 8, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flow = pd.ImageFlow(ImageCoupling(2, net, mask="channel"), (2, 1, 1), pixel_levels=None)
    return flow if batch == () else flow.expand(batch)


def _made_decoder(num_categories, num_masks, mask_index, context_dim):
    def decoder():
        net = pd.MADENetwork(
            3, [12], num_categories=num_categories, num_masks=num_masks, context_dim=context_dim
        )
        with torch.no_grad():
            net.output.bias.normal_()

        def make(context):
            return pd.MADE(net, context, mask_index=mask_index)

        return context_dim, make

    return decoder


def _pixelcnn_decoder(num_categories, context_dim):
    def decoder():
        net = PixelCNNNetwork(
            num_categories=num_categories, hidden_channels=8, num_layers=1, context_dim=context_dim
        )
        with torch.no_grad():
            net.out.bias.normal_()

        def make(context):
            return pd.PixelCNN(net, (1, 2, 2), context)

        return context_dim, make

    return decoder


def _from_decoder(decoder):
    def build(batch):
        context_dim, make = decoder()
        if context_dim:
            return make(torch.randn(*batch, context_dim))
        d = make(None)
        return d if batch == () else d.expand(batch)

    return build


def _autoregressive_cases():
    cases = []
    for k, masks, index, ctx in [
        (2, 1, None, 0),
        (2, 1, None, 2),
        (3, 1, None, 0),
        (3, 1, None, 2),
        (2, 3, None, 0),
        (2, 3, None, 2),
        (3, 3, 1, 2),
    ]:
        decoder = _made_decoder(k, masks, index, ctx)
        name = f"MADE-K{k}-masks{masks}-index{index}-ctx{ctx}"
        cases.append(
            Case(
                name,
                _from_decoder(decoder),
                batch_shapes=((), (2,)) if ctx else ((),),
                num_categories=k,
                decoder=decoder if ctx else None,
            )
        )
    for k, ctx in [(2, 0), (2, 2), (3, 2)]:
        decoder = _pixelcnn_decoder(k, ctx)
        cases.append(
            Case(
                f"PixelCNN-K{k}-ctx{ctx}",
                _from_decoder(decoder),
                batch_shapes=((), (2,)) if ctx else ((),),
                num_categories=k,
                decoder=decoder if ctx else None,
            )
        )
    return cases


CASES = [
    Case("BernoulliRBM", _rbm, energy=True),
    Case("GaussianBernoulliRBM", _gaussian_rbm, discrete=False, energy=True),
    Case("BoltzmannMachine", _boltzmann, energy=True),
    Case("BoltzmannMachine-T2", lambda b: _boltzmann(b, temperature=2.0), energy=True),
    Case(
        "EnergyBasedDistribution",
        _ebm,
        batch_shapes=((),),
        discrete=False,
        exact_sampler=False,
        energy=True,
    ),
    Case("DeepBoltzmannMachine", _dbm, energy=True),
    Case("ImageFlow", _image_flow, batch_shapes=((),), discrete=False),
    *_autoregressive_cases(),
]

CASE_BATCH = [
    pytest.param(case, batch, id=f"{case.name}-batch{batch}")
    for case in CASES
    for batch in case.batch_shapes
]
CASE_UNBATCHED = [pytest.param(case, id=case.name) for case in CASES]
CONTEXT_CASES = [pytest.param(case, id=case.name) for case in CASES if case.decoder is not None]
ENERGY_CASES = [
    pytest.param(case, case.batch_shapes[-1], id=case.name) for case in CASES if case.energy
]
DISCRETE_CASES = [p for p in CASE_BATCH if p.values[0].discrete]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def all_values(case: Case, d) -> torch.Tensor:
    """Every value of a discrete event, ``(K^n, *event_shape)``, built independently of the
    library (itertools)."""
    n = d.event_shape.numel()
    grid = list(itertools.product(range(case.num_categories), repeat=n))
    return torch.tensor(grid, dtype=torch.get_default_dtype()).reshape(-1, *d.event_shape)


def with_batch_dims(values: torch.Tensor, d) -> torch.Tensor:
    """``(S, *event)`` -> ``(S, *1s, *event)`` so it broadcasts over ``d.batch_shape``."""
    return values.reshape(values.shape[:1] + (1,) * len(d.batch_shape) + d.event_shape)


def event_dims(d) -> tuple[int, ...]:
    return tuple(range(-len(d.event_shape), 0))


def assert_close(a, b, **kw):
    torch.testing.assert_close(a, b, **kw)


def check_sample_shapes(small, large):
    """As Pyro's generic tests: the expanded distribution scores like the small one."""
    x = small.sample()
    assert_close(small.log_prob(x).expand(large.batch_shape), large.log_prob(x))
    x = large.sample()
    assert_close(small.log_prob(x), large.log_prob(x))


# ---------------------------------------------------------------------------------------------
# Support, shapes, expand
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_support_and_shapes(case, batch):
    d = case.build(batch)
    assert d.batch_shape == batch
    assert d.support.event_dim == len(d.event_shape)
    assert d.support.is_discrete == case.discrete
    x = d.sample((5,))
    assert x.shape == (5, *batch, *d.event_shape)
    ok = d.support.check(x)
    assert ok.shape == (5, *batch) and bool(ok.all())
    assert d.log_prob(x).shape == (5, *batch)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_log_prob_broadcasts_value_against_batch_shape(case, batch):
    d = case.build(batch)
    x = d.sample()
    one = x.reshape(-1, *d.event_shape)[0]  # one event, no batch dims
    lp = d.log_prob(one)
    assert lp.shape == batch
    assert_close(lp, d.log_prob(one.expand(x.shape)))
    wide = one.expand((3, *(1,) * len(batch), *d.event_shape))
    assert d.log_prob(wide).shape == (3, *batch)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
@pytest.mark.parametrize(
    ("sample_shape", "shape_type"), [((), torch.Size), ((2,), tuple), ((2, 3), list)]
)
def test_expand_by(case, batch, sample_shape, shape_type):
    small = case.build(batch)
    large = small.expand_by(shape_type(sample_shape))
    assert large.batch_shape == sample_shape + small.batch_shape
    check_sample_shapes(small, large)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
@pytest.mark.parametrize("default", [False, True])
def test_expand_new_dim(case, batch, default):
    small = case.build(batch)
    shape = (2, 3, *small.batch_shape)
    large = TorchDistribution.expand(small, shape) if default else small.expand(shape)
    assert large.batch_shape == shape
    check_sample_shapes(small, large)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
@pytest.mark.parametrize("default", [False, True])
def test_expand_existing_dim(case, batch, default):
    small = case.build(batch).expand_by((1,))
    shape = (5, *small.batch_shape[1:])
    large = TorchDistribution.expand(small, shape) if default else small.expand(shape)
    assert large.batch_shape == shape
    check_sample_shapes(small, large)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
@pytest.mark.parametrize("shapes", [[(2, 1), (2, 3)], [(2, 1, 1), (2, 1, 3), (2, 5, 3)]])
@pytest.mark.parametrize("default", [False, True])
def test_subsequent_expands_ok(case, batch, shapes, default):
    d = original = case.build(batch)
    for shape in shapes:
        proposed = torch.Size(shape) + original.batch_shape
        n = TorchDistribution.expand(d, proposed) if default else d.expand(proposed)
        assert n.batch_shape == proposed
        check_sample_shapes(d, n)
        d = n


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
@pytest.mark.parametrize(
    ("initial", "proposed"), [((2, 1), (4, 3)), ((2, 4), (2, 2, 1)), ((1, 2, 1), (2, 1))]
)
@pytest.mark.parametrize("default", [False, True])
def test_expand_error(case, batch, initial, proposed, default):
    small = case.build(batch)
    shape = torch.Size(initial) + small.batch_shape
    large = TorchDistribution.expand(small, shape) if default else small.expand(shape)
    with pytest.raises((RuntimeError, ValueError)):
        large.expand(torch.Size(proposed) + small.batch_shape)


@pytest.mark.parametrize(("case", "batch"), ENERGY_CASES)
def test_log_partition_of_expanded_model_has_batch_shape(case, batch):
    d = case.build(batch)
    large = d.expand((3, *batch))
    log_z = large.log_partition()
    assert log_z.shape == (3, *batch)
    assert_close(log_z, torch.as_tensor(d.log_partition()).expand(3, *batch))


# ---------------------------------------------------------------------------------------------
# Pyro: plates, vectorized particles, context broadcasting
# ---------------------------------------------------------------------------------------------


def _empty_guide(x):
    pass


@pytest.mark.parametrize("case", CASE_UNBATCHED)
@pytest.mark.parametrize("plate_dim_in_value", [True, False])
@pytest.mark.parametrize("vectorize", [False, True])
def test_trace_elbo_in_a_plate(case, plate_dim_in_value, vectorize):
    d = case.build(())
    x = d.sample((3,))
    if not plate_dim_in_value:
        x = x[0]

    def model(x):
        with pyro.plate("data", 3):
            pyro.sample("x", d, obs=x)

    elbo = Trace_ELBO(num_particles=2, vectorize_particles=vectorize, max_plate_nesting=1)
    loss = elbo.loss(model, _empty_guide, x)
    expected = -float(d.log_prob(x).detach().sum()) * (1 if plate_dim_in_value else 3)
    assert loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", CONTEXT_CASES)
def test_decoder_with_latent_context_under_vectorized_particles(case):
    """The PixelVAE / MADE-decoder set-up: the context comes from a latent code inside a data
    plate; with a point-mass guide the ELBO is deterministic, so vectorized particles must
    give the very value of one particle."""
    context_dim, decoder = case.decoder()
    n = 4
    x = decoder(torch.randn(n, context_dim)).sample()
    loc = torch.randn(n, context_dim)

    def model(x):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([context_dim]).to_event(1))
            pyro.sample("x", decoder(z), obs=x)

    def guide(x):
        with pyro.plate("data", n):
            pyro.sample("z", dist.Delta(loc).to_event(1))

    with torch.no_grad():
        expected = -float(
            decoder(loc).log_prob(x).sum() + dist.Normal(0.0, 1.0).log_prob(loc).sum()
        )
    for vectorize in (False, True):
        elbo = Trace_ELBO(num_particles=3, vectorize_particles=vectorize, max_plate_nesting=1)
        assert elbo.loss(model, guide, x) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", CONTEXT_CASES)
def test_log_prob_broadcasts_value_against_context(case):
    context_dim, decoder = case.decoder()
    context = torch.randn(2, 1, context_dim)
    d = decoder(context)
    assert d.batch_shape == (2, 1)
    x = d.sample((3,)).reshape(-1, *d.event_shape)[:3]  # (3, *event)
    lp = d.log_prob(x)
    assert lp.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert_close(lp[i, j], decoder(context[i, 0]).log_prob(x[j]))


# ---------------------------------------------------------------------------------------------
# Normalization, enumeration, goodness of fit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_enumerate_support_where_claimed(case, batch):
    d = case.build(batch)
    assert d.has_enumerate_support == (case.discrete and case.energy)
    if not d.has_enumerate_support:
        with pytest.raises(NotImplementedError):
            d.enumerate_support()
        return
    values = all_values(case, d)
    support = d.enumerate_support(expand=False)
    assert support.shape == (len(values), *(1,) * len(batch), *d.event_shape)
    assert {tuple(s.flatten().tolist()) for s in support} == {
        tuple(v.flatten().tolist()) for v in values
    }
    expanded = d.enumerate_support()
    assert expanded.shape == (len(values), *batch, *d.event_shape)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_normalized(case, batch):
    d = case.build(batch)
    if case.discrete:
        log_total = torch.logsumexp(d.log_prob(with_batch_dims(all_values(case, d), d)), 0)
        assert_close(log_total, torch.zeros(batch), atol=1e-6, rtol=0)
        return
    grid = torch.linspace(-9, 9, 601)
    points = torch.cartesian_prod(grid, grid)
    mass = (
        torch.logsumexp(d.log_prob(with_batch_dims(points, d)), 0).exp() * (grid[1] - grid[0]) ** 2
    )
    assert_close(mass, torch.ones(batch), atol=1e-4, rtol=0)


def chi2_pvalue(samples: torch.Tensor, values: torch.Tensor, log_probs: torch.Tensor) -> float:
    """Pearson chi-square of discrete samples ``(N, *event)`` against the exact probabilities
    of ``values`` ``(S, *event)``; cells expected below 5 are pooled."""
    match = (samples.flatten(1).unsqueeze(1) == values.flatten(1).unsqueeze(0)).all(-1)
    assert bool((match.sum(1) == 1).all()), "a sample is outside the enumerated values"
    # in the dtype of the probabilities: scipy checks that they sum to the number of samples
    # to the square root of that dtype's eps (float32 probabilities sum to 1 only up to rounding)
    counts = match.sum(0).to(log_probs.dtype)
    expected = log_probs.exp() * len(samples)
    keep = expected > 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1] * obs[:-1].sum() / exp[:-1].sum()
    return float(stats.chisquare(obs.detach().numpy(), exp.detach().numpy()).pvalue)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_samples_agree_with_log_prob(case, batch):
    d = case.build(batch)
    num = 3000
    samples = d.sample((num,)).reshape(num, -1, *d.event_shape)
    if case.discrete:
        values = all_values(case, d)
        log_probs = d.log_prob(with_batch_dims(values, d)).reshape(len(values), -1)
        for b in range(samples.shape[1]):
            assert chi2_pvalue(samples[:, b], values, log_probs[:, b]) > 1e-3
        return
    # continuous: sample means against the means by quadrature, within 5 standard errors
    grid = torch.linspace(-9, 9, 601)
    points = torch.cartesian_prod(grid, grid)
    weights = torch.softmax(d.log_prob(with_batch_dims(points, d)), 0).reshape(len(points), -1)
    mean = weights.T @ points
    se = samples.std(0).flatten(1) / math.sqrt(num)  # (batch, 2) for any event shape
    tolerance = 5 * se if case.exact_sampler else 5 * se + 0.05
    assert bool(((samples.mean(0).flatten(1) - mean).abs() < tolerance).all())


# ---------------------------------------------------------------------------------------------
# dtypes, empty batches, score errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_UNBATCHED)
@pytest.mark.parametrize("value_dtype", [torch.int64, torch.float64, torch.bool])
def test_value_dtype_is_converted_or_rejected_clearly(case, value_dtype):
    if value_dtype is torch.bool and case.num_categories > 2:
        pytest.skip("bool values only for binary models")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        d = case.build(())
    finally:
        torch.set_default_dtype(old)
    x = d.sample((4,))
    assert x.dtype == torch.float32
    reference = d.log_prob(x)
    if not case.discrete and value_dtype is not torch.float64:
        x = x.round()
        reference = d.log_prob(x)
        if value_dtype is torch.bool:
            pytest.skip("bool values are not in a continuous support")
    try:
        lp = d.log_prob(x.to(value_dtype))
    except (TypeError, ValueError) as e:
        assert "dtype" in str(e)
        return
    assert lp.shape == (4,)
    assert_close(lp.to(reference.dtype), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_empty_batches(case, batch):
    d = case.build(batch)
    x = d.sample((0,))
    assert x.shape == (0, *batch, *d.event_shape)
    assert d.log_prob(x).shape == (0, *batch)
    assert d.log_prob(torch.zeros(0, *(1,) * len(batch), *d.event_shape)).shape == (0, *batch)


@pytest.mark.parametrize(("case", "batch"), CASE_BATCH)
def test_score_errors(case, batch):
    d = case.build(batch)
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(*d.shape(), 1))  # an extra event dim
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(*d.event_shape[:-1], d.event_shape[-1] + 1))  # wrong size
    if batch:
        with pytest.raises(ValueError):
            d.log_prob(torch.zeros(batch[0] + 1, *batch[1:], *d.event_shape))
    if case.discrete:
        with pytest.raises(ValueError):
            d.log_prob(torch.full(d.event_shape, float(case.num_categories)))


@pytest.mark.parametrize("value_dtype", [torch.int64, torch.float64, torch.bool])
def test_deep_belief_net_converts_value_dtypes(value_dtype):
    """A DBN is not a distribution; its upward pass still takes any value dtype."""
    rbms = [
        pd.BernoulliRBM(torch.randn(6, 4).float(), torch.zeros(6).float(), torch.zeros(4).float()),
        pd.BernoulliRBM(torch.randn(4, 3).float(), torch.zeros(4).float(), torch.zeros(3).float()),
    ]
    dbn = pd.DeepBeliefNet(rbms)
    v = torch.bernoulli(torch.full((5, 6), 0.5)).float()
    expected = dbn.propagate_up(v)
    actual = dbn.propagate_up(v.to(value_dtype))
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == torch.float32
        assert_close(a, e)
