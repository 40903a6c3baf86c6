"""The generic contract of a normalizing-flow transform, applied to every pyrogen transform.

The checks follow the properties that Pyro's transform tests and zuko's flow tests assert of
every transform (written here independently): inverse round trips, shapes for several batch
shapes, log-determinants against autograd and finite-difference Jacobians in both directions,
the Jacobian structure of autoregressive, coupling, elementwise and permutation layers,
conditioning with a batched context, gradients reaching every parameter through ``log_prob``
and through ``rsample``, ``eval()`` equal to ``train()``, ``J_f J_{f^{-1}} = I``, a
``state_dict`` round trip through ``torch.load(weights_only=True)``, and a ``repr`` that shows
every submodule.

``CASES`` is the one table: ``(name, factory, meta)``, one line per transform. ``factory()``
builds the module (a plain or conditional transform); :func:`build` perturbs every parameter
away from the identity initialization. ``meta`` keys:

- ``event_shape`` (required): the input event shape.
- ``context_dim``: > 0 for a conditional transform (``module.condition(context)``).
- ``structure``: the expected Jacobian structure of ``dy/dx`` (rows: outputs), one of
  ``("autoregressive", order)`` (lower triangular with a nonzero diagonal after permuting rows
  and columns into the variable ``order``, first to last, and every allowed dependency present),
  ``("coupling", passed)`` (``passed`` a boolean mask of the flattened event: those entries are
  copied, the others change elementwise given them), ``("elementwise",)`` or
  ``("permutation",)``.
- ``perturbation``: standard deviation of the noise added to every parameter (default 0.3).
- ``xfail``: ``{check: reason}`` for a check that the case fails today, with the reason
  (strict: a fix makes the test fail until the mark is removed).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pyro.distributions as dist
import pytest
import torch

from pyrogen import flows
from pyrogen.nn import MADE, ConvNet, DenseNN
from pyrogen.transforms import (
    ActNorm,
    AffineCoupling,
    Autoregressive,
    ConditionalAffineCoupling,
    ConditionalAutoregressive,
    ConditionalInverseAutoregressive,
    ConditionalMaskedAutoregressive,
    Coupling,
    ImageCoupling,
    InverseAutoregressive,
    Invertible1x1Conv,
    LULinear,
    MaskedAutoregressive,
    MultiScale,
    Permute,
    Planar,
    QRLinear,
    RationalQuadraticSpline,
    Squeeze,
)
from tests.same_draws import in_float64


def _split(dim: int, split_dim: int) -> torch.Tensor:
    """Passed-through mask of a vector coupling that copies the first ``split_dim`` features."""
    return torch.arange(dim) < split_dim


def _checkerboard(c: int, h: int, w: int, parity: int = 0) -> torch.Tensor:
    """Passed-through mask of a checkerboard coupling: ``(h + w + parity) mod 2 == 1``."""
    hw = (torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2 == 1
    return hw.expand(c, h, w).reshape(-1)


def _channels(c: int, h: int, w: int, parity: int = 0) -> torch.Tensor:
    """Passed-through mask of a channel coupling: the first ``c // 2`` channels (parity 0) or
    the last ``c - c // 2`` (parity 1)."""
    kept = torch.arange(c) < c // 2 if parity == 0 else torch.arange(c) >= c // 2
    return kept[:, None, None].expand(c, h, w).reshape(-1)


def _multiscale() -> MultiScale:
    inner = MultiScale(4, [Invertible1x1Conv(16)])
    steps = [ActNorm((8, 2, 2)), ImageCoupling(8, ConvNet(8, 8, 16)), Invertible1x1Conv(8)]
    return MultiScale(2, steps, inner=inner, prior=ConvNet(4, 8, 8))


IMAGE = (2, 4, 4)
_DEGENERATE_CHECKERBOARD = (
    "realnvp_image puts checkerboard couplings on the 1x1 last level (2x4x4, two levels): "
    "parity 0 masks every pixel out (the conditioner sees zeros, its first layer gets no "
    "gradient), parity 1 passes every pixel through (an identity layer with dead weights)"
)
Factory = Callable[[], torch.nn.Module]

# (name, factory, meta): one line per transform or builder; adding a transform adds one line
CASES: list[tuple[str, Factory, dict]] = [
    ("planar", lambda: Planar(3), dict(event_shape=(3,))),
    (
        "affine_coupling",
        lambda: AffineCoupling(2, DenseNN(2, [8], 6)),
        dict(event_shape=(5,), structure=("coupling", _split(5, 2))),
    ),
    (
        "additive_coupling",
        lambda: AffineCoupling(1, DenseNN(1, [8], 2), additive=True),
        dict(event_shape=(3,), structure=("coupling", _split(3, 1))),
    ),
    (
        "unbounded_coupling",
        lambda: AffineCoupling(2, DenseNN(2, [8], 4), log_scale_bound=None),
        dict(event_shape=(4,), structure=("coupling", _split(4, 2))),
    ),
    (
        "conditional_coupling",
        lambda: ConditionalAffineCoupling(2, DenseNN(2, [8], 4, context_dim=3)),
        dict(event_shape=(4,), context_dim=3, structure=("coupling", _split(4, 2))),
    ),
    (
        "conditional_additive_coupling",
        lambda: ConditionalAffineCoupling(1, DenseNN(1, [8], 2, context_dim=2), additive=True),
        dict(event_shape=(3,), context_dim=2, structure=("coupling", _split(3, 1))),
    ),
    (
        "maf",
        lambda: MaskedAutoregressive(MADE(4, [12, 12], order=[2, 0, 3, 1])),
        dict(event_shape=(4,), structure=("autoregressive", [2, 0, 3, 1])),
    ),
    (
        "maf_natural",
        lambda: MaskedAutoregressive(MADE(5, [12])),
        dict(event_shape=(5,), structure=("autoregressive", [0, 1, 2, 3, 4])),
    ),
    (
        "iaf",
        lambda: InverseAutoregressive(MADE(4, [12, 12], order="reversed")),
        dict(event_shape=(4,), structure=("autoregressive", [3, 2, 1, 0])),
    ),
    (
        "conditional_maf",
        lambda: ConditionalMaskedAutoregressive(MADE(3, [12], order=[1, 2, 0], context_dim=2)),
        dict(event_shape=(3,), context_dim=2, structure=("autoregressive", [1, 2, 0])),
    ),
    (
        "conditional_iaf",
        lambda: ConditionalInverseAutoregressive(MADE(4, [12], order=[3, 1, 0, 2], context_dim=3)),
        dict(event_shape=(4,), context_dim=3, structure=("autoregressive", [3, 1, 0, 2])),
    ),
    ("lu_linear", lambda: LULinear(4), dict(event_shape=(4,))),
    ("qr_linear", lambda: QRLinear(4), dict(event_shape=(4,))),
    (
        "spline_coupling",
        lambda: Coupling((4,), DenseNN(2, [8], 2 * 11), transform=RationalQuadraticSpline(4)),
        dict(event_shape=(4,), structure=("coupling", _split(4, 2)), perturbation=0.15),
    ),
    (
        "spline_maf",
        lambda: Autoregressive(
            MADE(4, [12], num_params=11, order=[1, 3, 0, 2]), RationalQuadraticSpline(4)
        ),
        dict(event_shape=(4,), structure=("autoregressive", [1, 3, 0, 2]), perturbation=0.15),
    ),
    (
        "spline_iaf_conditional",
        lambda: ConditionalAutoregressive(
            MADE(3, [12], num_params=11, order=[2, 0, 1], context_dim=2),
            RationalQuadraticSpline(4),
            cheap="forward",
        ),
        dict(
            event_shape=(3,),
            context_dim=2,
            structure=("autoregressive", [2, 0, 1]),
            perturbation=0.15,
        ),
    ),
    (
        "flows.nsf",
        lambda: flows.nsf(3, num_layers=2, hidden_dims=[8], num_bins=4),
        dict(event_shape=(3,), perturbation=0.15),
    ),
    (
        "flows.spline_coupling_conditional",
        lambda: flows.spline_coupling(4, num_layers=2, hidden_dims=[8], num_bins=4, context_dim=2),
        dict(event_shape=(4,), context_dim=2, perturbation=0.15),
    ),
    (
        "permute",
        lambda: Permute([2, 0, 3, 1]),
        dict(event_shape=(4,), structure=("permutation",)),
    ),
    ("actnorm", lambda: ActNorm((4,)), dict(event_shape=(4,), structure=("elementwise",))),
    ("actnorm_image", lambda: ActNorm(IMAGE), dict(event_shape=IMAGE, structure=("elementwise",))),
    ("conv1x1", lambda: Invertible1x1Conv(2), dict(event_shape=IMAGE)),
    (
        "image_coupling_checkerboard",
        lambda: ImageCoupling(2, ConvNet(2, 8, 4)),
        dict(event_shape=IMAGE, structure=("coupling", _checkerboard(*IMAGE))),
    ),
    (
        "image_coupling_checkerboard_parity1_additive",
        lambda: ImageCoupling(2, ConvNet(2, 8, 2), parity=1, additive=True),
        dict(event_shape=IMAGE, structure=("coupling", _checkerboard(*IMAGE, parity=1))),
    ),
    (
        "image_coupling_channel",
        lambda: ImageCoupling(2, ConvNet(1, 8, 2), mask="channel"),
        dict(event_shape=IMAGE, structure=("coupling", _channels(*IMAGE))),
    ),
    (
        "image_coupling_channel_parity1",
        lambda: ImageCoupling(3, ConvNet(2, 8, 2), mask="channel", parity=1),
        dict(event_shape=(3, 2, 2), structure=("coupling", _channels(3, 2, 2, parity=1))),
    ),
    ("squeeze", lambda: Squeeze(2), dict(event_shape=IMAGE, structure=("permutation",))),
    ("multiscale", _multiscale, dict(event_shape=IMAGE, perturbation=0.1)),
    ("flows.planar", lambda: flows.planar(3, num_layers=3), dict(event_shape=(3,))),
    (
        "flows.realnvp",
        lambda: flows.realnvp(4, num_layers=3, hidden_dims=[8]),
        dict(event_shape=(4,)),
    ),
    (
        "flows.realnvp_additive_lu",
        lambda: flows.realnvp(5, num_layers=2, hidden_dims=[8], additive=True, mixing="lu"),
        dict(event_shape=(5,)),
    ),
    (
        "flows.realnvp_conditional",
        lambda: flows.realnvp(4, num_layers=2, hidden_dims=[8], context_dim=2),
        dict(event_shape=(4,), context_dim=2),
    ),
    (
        "flows.maf_one_layer",
        lambda: flows.maf(4, num_layers=1, hidden_dims=[12], order="natural"),
        dict(event_shape=(4,), structure=("autoregressive", [0, 1, 2, 3])),
    ),
    ("flows.maf", lambda: flows.maf(4, num_layers=3, hidden_dims=[12]), dict(event_shape=(4,))),
    (
        "flows.maf_lu_tanh",
        lambda: flows.maf(3, num_layers=2, hidden_dims=[8], mixing="lu", activation=torch.nn.Tanh),
        dict(event_shape=(3,)),
    ),
    (
        "flows.maf_conditional",
        lambda: flows.maf(3, num_layers=2, hidden_dims=[8], context_dim=2),
        dict(event_shape=(3,), context_dim=2),
    ),
    ("flows.iaf", lambda: flows.iaf(4, num_layers=2, hidden_dims=[12]), dict(event_shape=(4,))),
    (
        "flows.iaf_conditional",
        lambda: flows.iaf(3, num_layers=2, hidden_dims=[8], context_dim=3),
        dict(event_shape=(3,), context_dim=3),
    ),
    (
        "flows.glow",
        lambda: flows.glow(IMAGE, num_steps=2, hidden_channels=8, pixel_levels=None).transform,
        dict(event_shape=IMAGE, perturbation=0.1),
    ),
    (
        "flows.realnvp_image_one_level",
        lambda: (
            flows.realnvp_image(
                IMAGE, num_levels=1, num_steps=4, hidden_channels=8, pixel_levels=None
            ).transform
        ),
        dict(event_shape=IMAGE, perturbation=0.1),
    ),
    (
        "flows.realnvp_image",
        lambda: (
            flows.realnvp_image(IMAGE, num_steps=4, hidden_channels=8, pixel_levels=None).transform
        ),
        dict(
            event_shape=IMAGE,
            perturbation=0.1,
            xfail={"gradient": _DEGENERATE_CHECKERBOARD, "rsample": _DEGENERATE_CHECKERBOARD},
        ),
    ),
]
META = {name: meta for name, _, meta in CASES}
FACTORY = {name: factory for name, factory, _ in CASES}


def cases(check: str, where: Callable[[dict], bool] = lambda meta: True) -> list:
    """The case names for one check, with the cases' ``xfail`` marks for that check."""
    out = []
    for name, _, meta in CASES:
        if where(meta):
            reason = meta.get("xfail", {}).get(check)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(name, marks=marks, id=name))
    return out


BATCH_SHAPES = [(), (3,), (2, 3)]
DIRECTIONS = ["forward", "inverse"]


def tol(dtype: torch.dtype) -> dict:
    return {"atol": 1e-9, "rtol": 1e-7} if dtype == torch.float64 else {"atol": 2e-4, "rtol": 2e-4}


def context_for(name: str, batch_shape=(), seed: int = 11) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(*batch_shape, META[name]["context_dim"], generator=g, dtype=torch.float64)
    return c.to(torch.get_default_dtype())


def build(name: str, seed: int = 0, *, initialize: bool = True):
    """The case's module with every parameter perturbed, and its (conditioned) transform.

    ``initialize=True`` marks data-dependent initializations (ActNorm) as done, so that the
    perturbed parameters are the ones checked.
    """
    # built and perturbed in float64, then cast: every dtype checks the same parameters (a
    # float32 draw of its own could be an ill-conditioned map that no float32 inverse resolves)
    with in_float64():
        torch.manual_seed(seed)
        module = FACTORY[name]()
        scale = META[name].get("perturbation", 0.3)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(scale * torch.randn_like(p))
            if initialize:
                for b_name, b in module.named_buffers():
                    if b_name.endswith("initialized"):
                        b.fill_(True)
    module = module.to(torch.get_default_dtype())
    if META[name].get("context_dim", 0):
        return module, module.condition(context_for(name))
    return module, module


def data(name: str, batch_shape=(), seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch_shape, *META[name]["event_shape"], generator=g, dtype=torch.float64)
    return x.to(torch.get_default_dtype())


def codomain_data(name: str, f, batch_shape=(), seed: int = 1) -> torch.Tensor:
    """Standard normal points of the shape of ``f``'s outputs (without calling ``f``)."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(f.forward_shape(tuple(META[name]["event_shape"])))
    y = torch.randn(*batch_shape, *shape, generator=g, dtype=torch.float64)
    return y.to(torch.get_default_dtype())


def base_for(name: str) -> dist.Distribution:
    shape = META[name]["event_shape"]
    return dist.Normal(torch.zeros(shape), 1.0).to_event(len(shape))


def point(name: str, f, direction: str, seed: int = 1):
    """``(g, v)``: the map of the direction (``f`` or ``f.inv``) and one input event for it
    (for the inverse, an output of ``f``, cloned so that no cache can recognize it)."""
    x = data(name, seed=seed)
    if direction == "forward":
        return f, x
    return f.inv, f(x).detach().clone()


def jacobian(g, v: torch.Tensor) -> torch.Tensor:
    """Dense Jacobian ``d g(v) / d v`` of one event, flattened to ``(out, in)``."""
    shape = v.shape
    return torch.autograd.functional.jacobian(
        lambda u: g(u.reshape(shape)).reshape(-1), v.reshape(-1)
    )


def central_differences(g, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    flat = v.reshape(-1)
    columns = []
    with torch.no_grad():
        for i in range(flat.numel()):
            step = torch.zeros_like(flat)
            step[i] = eps
            hi = g((flat + step).reshape(v.shape)).reshape(-1)
            lo = g((flat - step).reshape(v.shape)).reshape(-1)
            columns.append((hi - lo) / (2 * eps))
    return torch.stack(columns, dim=-1)


# -- inverse and shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases("round_trip"))
def test_inverse_round_trip(name):
    _, f = build(name)
    x = data(name, (2, 3))
    y = f(x)
    assert y.shape != x.shape or not torch.allclose(y, x), "the perturbed map is the identity"
    torch.testing.assert_close(f.inv(y.clone()), x, **tol(x.dtype))
    y_data = f(data(name, (2, 3), seed=5)).detach().clone()  # any point of the codomain
    torch.testing.assert_close(f(f.inv(y_data).clone()), y_data, **tol(x.dtype))


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("name", cases("forward_shape"))
def test_forward_shape(name, batch_shape):
    _, f = build(name)
    x = data(name, batch_shape)
    y = f(x)
    event = tuple(META[name]["event_shape"])
    assert tuple(y.shape) == (*batch_shape, *f.forward_shape(event))
    assert tuple(f.forward_shape(x.shape)) == tuple(y.shape)
    assert f.log_abs_det_jacobian(x, y).shape == batch_shape
    sample = dist.TransformedDistribution(base_for(name), [f]).sample(batch_shape)
    assert sample.shape == y.shape


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("name", cases("inverse_shape"))
def test_inverse_shape(name, batch_shape):
    _, f = build(name)
    y = f(data(name, batch_shape)).detach().clone()
    x = f.inv(y)
    assert tuple(x.shape) == (*batch_shape, *META[name]["event_shape"])
    assert tuple(f.inverse_shape(y.shape)) == tuple(x.shape)
    assert f.inv.log_abs_det_jacobian(y, x).shape == batch_shape
    q = dist.TransformedDistribution(base_for(name), [f])
    assert q.log_prob(y.clone()).shape == batch_shape


# -- log-determinants --------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", cases("autograd"))
def test_log_det_matches_autograd_jacobian(name, direction):
    _, f = build(name)
    g, v = point(name, f, direction)
    out = g(v)
    ladj = g.log_abs_det_jacobian(v, out)
    expected = torch.linalg.slogdet(jacobian(g, v.clone())).logabsdet
    torch.testing.assert_close(ladj, expected, **tol(v.dtype))
    # the other direction's log-det at the same pair is the negative
    other = f.inv if direction == "forward" else f
    torch.testing.assert_close(other.log_abs_det_jacobian(out, v), -ladj, **tol(v.dtype))


@pytest.mark.usefixtures("float64_only")
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", cases("finite_differences"))
def test_log_det_matches_finite_differences(name, direction):
    _, f = build(name)
    g, v = point(name, f, direction)
    ladj = g.log_abs_det_jacobian(v, g(v))
    numeric = torch.linalg.slogdet(central_differences(g, v)).logabsdet
    torch.testing.assert_close(ladj.detach(), numeric, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", cases("jacobian_inverse"))
def test_jacobian_times_inverse_jacobian_is_identity(name):
    _, f = build(name)
    x = data(name)
    y = f(x).detach().clone()
    j_forward = jacobian(f, x)
    j_inverse = jacobian(f.inv, y)
    eye = torch.eye(j_forward.shape[0])
    torch.testing.assert_close(j_forward @ j_inverse, eye, **tol(x.dtype))
    torch.testing.assert_close(j_inverse @ j_forward, eye, **tol(x.dtype))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", cases("structure", lambda meta: "structure" in meta))
def test_jacobian_structure(name, direction):
    """Structural zeros are zero at every point; a dependency the structure allows (through a
    network, so possibly switched off locally by a ReLU) is present at some point."""
    _, f = build(name)
    jacs = []
    for seed in (1, 2, 3):
        g, v = point(name, f, direction, seed=seed)
        jacs.append(jacobian(g, v.clone()).detach())
    jac = jacs[0]
    nonzero_everywhere = torch.stack([j != 0 for j in jacs]).all(0)
    nonzero_somewhere = torch.stack([j != 0 for j in jacs]).any(0)
    kind, *args = META[name]["structure"]
    n = jac.shape[0]
    if kind == "autoregressive":
        order = torch.as_tensor(args[0])
        everywhere = nonzero_everywhere[order][:, order]  # from first to last variable
        somewhere = nonzero_somewhere[order][:, order]
        assert everywhere.diagonal().all(), "zero on the diagonal"
        assert not somewhere.triu(1).any(), f"depends on a later variable:\n{somewhere.int()}"
        lower = torch.ones(n, n, dtype=torch.bool).tril(-1)
        assert somewhere[lower].all(), (
            f"a dependency on an earlier variable is missing:\n{somewhere}"
        )
    elif kind == "coupling":
        passed = args[0]
        changed = ~passed
        for j in jacs:
            torch.testing.assert_close(
                j[passed][:, passed], torch.eye(int(passed.sum())), atol=0, rtol=0
            )
        assert not nonzero_somewhere[passed][:, changed].any(), "a passed-through entry changed"
        eye = torch.eye(int(changed.sum()), dtype=torch.bool)
        assert torch.equal(nonzero_somewhere[changed][:, changed], eye), (
            "the changed block is not elementwise given the passed-through entries"
        )
        assert nonzero_everywhere[changed][:, changed].diagonal().all(), "zero on the diagonal"
        assert nonzero_somewhere[changed][:, passed].any(), "the conditioner has no effect"
    elif kind == "elementwise":
        eye = torch.eye(n, dtype=torch.bool)
        assert torch.equal(nonzero_somewhere, eye) and torch.equal(nonzero_everywhere, eye)
    elif kind == "permutation":
        assert torch.equal(jac.abs() + (jac == 0), torch.ones_like(jac)), "entries not 0 or 1"
        assert (jac != 0).sum(0).eq(1).all() and (jac != 0).sum(1).eq(1).all()
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(f"unknown structure {kind!r}")


# -- conditioning ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases("condition", lambda meta: meta.get("context_dim", 0) > 0))
def test_condition_broadcasts_a_batch_of_contexts(name):
    module, _ = build(name)
    contexts = context_for(name, (3,))
    x = data(name, (2, 3))
    f = module.condition(contexts)
    y = f(x)
    assert y.shape == x.shape
    ladj = f.log_abs_det_jacobian(x, y)
    assert ladj.shape == (2, 3)
    x_back = f.inv(y.clone())
    torch.testing.assert_close(x_back, x, **tol(x.dtype))
    for i in range(3):  # each context acts on its own column of the batch
        f_i = module.condition(contexts[i])
        y_i = f_i(x[:, i])
        torch.testing.assert_close(y[:, i], y_i, **tol(x.dtype))
        torch.testing.assert_close(ladj[:, i], f_i.log_abs_det_jacobian(x[:, i], y_i))
    # one event, a batch of contexts: the output takes the contexts' batch shape
    y_single = module.condition(contexts)(x[0, 0])
    assert y_single.shape == (3, *META[name]["event_shape"])
    torch.testing.assert_close(y_single[0], y[0, 0], **tol(x.dtype))
    # the context matters
    assert not torch.allclose(module.condition(contexts + 1.0)(x), y)


# -- gradients, modes ---------------------------------------------------------------------------


def _assert_every_parameter_has_a_gradient(module: torch.nn.Module) -> None:
    for p_name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient reached {p_name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient of {p_name}"
        assert p.grad.abs().sum() > 0, f"zero gradient of {p_name}"


@pytest.mark.parametrize("name", cases("gradient"))
def test_log_prob_gradient_reaches_every_parameter(name):
    module, f = build(name)
    if not list(module.parameters()):
        pytest.skip("no parameters")
    q = dist.TransformedDistribution(base_for(name), [f])
    log_prob = q.log_prob(codomain_data(name, f, (8,)))
    assert log_prob.requires_grad
    log_prob.mean().neg().backward()
    _assert_every_parameter_has_a_gradient(module)


@pytest.mark.parametrize("name", cases("rsample"))
def test_rsample_gradient_reaches_every_parameter(name):
    module, f = build(name)
    if not list(module.parameters()):
        pytest.skip("no parameters")
    q = dist.TransformedDistribution(base_for(name), [f])
    assert q.has_rsample
    x = q.rsample((8,))
    x.square().sum().backward()
    _assert_every_parameter_has_a_gradient(module)


@pytest.mark.parametrize("name", cases("eval"))
def test_eval_equals_train(name):
    module, f = build(name, initialize=False)
    q = dist.TransformedDistribution(base_for(name), [f])
    q.log_prob(codomain_data(name, f, (16,), seed=2))  # data-dependent init (ActNorm), train mode
    y = codomain_data(name, f, (8,))
    module.train()
    log_prob_train = q.log_prob(y)
    x_train = f(data(name, (8,), seed=3))
    module.eval()
    with torch.no_grad():
        log_prob_eval = q.log_prob(y.clone())
        x_eval = f(data(name, (8,), seed=3))
    torch.testing.assert_close(log_prob_eval, log_prob_train.detach(), atol=0, rtol=0)
    torch.testing.assert_close(x_eval, x_train.detach(), atol=0, rtol=0)


# -- persistence -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases("state_dict"))
def test_state_dict_round_trip(name):
    module, f = build(name, seed=0)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh, g = build(name, seed=123)
    x = data(name, (4,))
    if list(module.parameters()):
        assert not torch.equal(g(x), f(x)), "the fresh module should differ before loading"
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    if META[name].get("context_dim", 0):
        g = fresh.condition(context_for(name))
    y_f, y_g = f(x), g(x)
    assert torch.equal(y_g, y_f)
    assert torch.equal(g.log_abs_det_jacobian(x, y_g), f.log_abs_det_jacobian(x, y_f))
    y = data(name, (4,), seed=5)
    y = f(y).detach()
    assert torch.equal(g.inv(y.clone()), f.inv(y.clone()))


@pytest.mark.parametrize("name", cases("repr"))
def test_repr_shows_every_submodule(name):
    module, _ = build(name)
    text = repr(module)
    for child_name, child in module.named_modules():
        assert type(child).__name__ in text, f"repr hides {child_name or 'the module'}"
