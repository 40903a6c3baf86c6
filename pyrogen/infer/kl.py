r"""Fit a flow in either direction with ``pyro.infer.SVI``: to an unnormalized log density
(reverse KL) or to samples (forward KL, maximum likelihood).

With :math:`q` the flow's distribution and :math:`\tilde p = Z p` the target known up to its
normalizer :math:`Z`:

- **reverse KL** (:func:`density_model` + :func:`flow_guide`): the target is a latent site of
  the model and the flow is the guide, so ``Trace_ELBO`` minimizes
  :math:`E_q[\log q(x) - \log \tilde p(x)] = \mathrm{KL}(q\,\|\,p) - \log Z`. It needs the
  flow's noise-to-data direction (sampling) and the density of its own draws; it never sees a
  sample of :math:`p`. IAF is cheap here, MAF sequential.
- **forward KL** (:func:`samples_model` with :func:`empty_guide`): the flow is the likelihood
  of observed samples of :math:`p`, so the loss per sample is
  :math:`-E_p[\log q(x)] = \mathrm{KL}(p\,\|\,q) + H(p)`. It needs the data-to-noise direction
  (scoring). MAF is cheap here, IAF sequential.

Judge a fit with :func:`pyrogen.analysis.kl_diagnostics` (KL estimates with standard errors,
``log Z`` by importance sampling, ESS and PSIS k-hat).

Example:
    >>> import pyro
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyrogen import flows
    >>> from pyrogen.datasets import Banana
    >>> target, flow = Banana(), flows.iaf(2, num_layers=2)
    >>> model = density_model(target.unnormalized_log_prob, (2,))
    >>> guide = flow_guide(flow, 2)
    >>> svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO(num_particles=8))
    >>> loss = svi.step()  # an estimate of KL(q || p) - log Z, nats
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import Transform, constraints

from pyrogen.distributions import FlowDistribution
from pyrogen.util import check_count, check_data

__all__ = [
    "UnnormalizedDensity",
    "density_model",
    "empty_guide",
    "flow_distribution",
    "flow_guide",
    "sample_and_log_prob",
    "samples_model",
]


class UnnormalizedDensity(TorchDistribution):
    r"""A latent site whose log density is a user function known up to an additive constant.

    ``log_prob(x) = log_density(x)``: an *unnormalized* log density (nats, off by ``log Z``),
    so this distribution belongs only on the model side of a reverse-KL fit, where the constant
    shifts the loss and not its gradient. It cannot be sampled: the guide provides the values.

    Shapes:
        value: ``(*sample, *batch_shape, *event_shape)``.
        log_prob: ``(*sample, *batch_shape)``.
        log_density: must map ``(*any, *event_shape)`` to ``(*any,)``.
    Args:
        log_density: callable, the target's log density up to a constant (nats).
        event_shape: shape of one point, e.g. ``(D,)``.
        batch_shape: batch shape (default ``()``; ``expand`` sets it inside plates).
    Raises:
        TypeError: ``log_density`` is not callable.
        ValueError: a negative size in ``event_shape``; in ``log_prob``, a value whose rightmost
            dims are not ``event_shape``, or a ``log_density`` whose result has the wrong shape.
        NotImplementedError: on ``sample`` (sample from the guide instead).
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self,
        log_density: Callable[[torch.Tensor], torch.Tensor],
        event_shape: Sequence[int],
        *,
        batch_shape: Sequence[int] = (),
    ) -> None:
        if not callable(log_density):
            raise TypeError(f"log_density must be callable, got {type(log_density).__name__}")
        try:
            event_shape = torch.Size(event_shape)
        except TypeError as e:
            raise TypeError(f"event_shape must be a sequence of ints, got {event_shape!r}") from e
        if any(s < 0 for s in event_shape):
            raise ValueError(f"event_shape must have non-negative sizes, got {tuple(event_shape)}")
        self.log_density = log_density
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None):
        return UnnormalizedDensity(self.log_density, self.event_shape, batch_shape=batch_shape)

    def sample(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        raise NotImplementedError(
            "UnnormalizedDensity cannot be sampled: use it as the model site of a reverse-KL fit "
            "and let the guide (e.g. flow_guide) draw the values"
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        k = len(self.event_shape)
        if value.dim() < k or value.shape[value.dim() - k :] != self.event_shape:
            raise ValueError(
                f"value must have shape (*batch, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(value.shape)}"
            )
        out = self.log_density(value)
        expected = value.shape[: value.dim() - k]
        if not isinstance(out, torch.Tensor) or out.shape != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"log_density must map a value of shape {tuple(value.shape)} to shape "
                f"{tuple(expected)}, got {got}"
            )
        return out


def _like(flow: Transform, like: torch.Tensor | None) -> torch.Tensor:
    if like is not None:
        return like
    params = list(flow.parameters()) if isinstance(flow, torch.nn.Module) else []
    return params[0] if params else torch.zeros(())


def flow_distribution(
    flow: Transform | Sequence[Transform], input_dim: int, *, like: torch.Tensor | None = None
) -> FlowDistribution:
    """The flow's distribution: a standard normal base on ``R^D`` pushed forward by ``flow``,
    as a :class:`~pyrogen.distributions.FlowDistribution` (fused ``rsample_and_log_prob``).

    Shapes:
        samples and values: ``(*sample, D)``.  ``log_prob``: ``(*sample,)``.
    Args:
        flow: a transform (e.g. from :func:`pyrogen.flows.maf`) or a list, applied in order.
        input_dim: ``D``.
        like: a tensor whose dtype and device the base takes (default: the flow's first
            parameter).
    Raises:
        ValueError: ``input_dim < 1``.
    """
    check_count(input_dim, "input_dim")
    first = flow[0] if isinstance(flow, Sequence) and flow else flow
    if not isinstance(first, Transform):
        raise TypeError(f"flow must be a Transform or a list of them, got {type(first).__name__}")
    ref = _like(first, like)
    zeros = torch.zeros(input_dim, dtype=ref.dtype, device=ref.device)
    base = dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
    return FlowDistribution(base, flow)


def sample_and_log_prob(
    distribution: torch.distributions.Distribution, sample_shape: Sequence[int] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterized draw and its log density, ``(x, log q(x))``.

    Uses the distribution's fused ``rsample_and_log_prob(sample_shape)`` when it has one (one
    pass of the cheap direction, no cache involved). Otherwise it calls ``rsample`` then
    ``log_prob`` on the very tensor drawn: for a Pyro ``TransformedDistribution`` the inverse
    then comes from the transforms' round-trip cache, so the density still costs no inverse
    pass as long as ``x`` is not copied (``.clone()``, slicing) in between.

    Shapes:
        x: ``(*sample_shape, *batch_shape, *event_shape)``.
        log_q: ``(*sample_shape, *batch_shape)``, nats.
    Raises:
        TypeError: the distribution has no ``rsample``.
    """
    if not isinstance(distribution, torch.distributions.Distribution):
        raise TypeError(f"distribution must be a Distribution, got {type(distribution).__name__}")
    fused = getattr(distribution, "rsample_and_log_prob", None)
    if callable(fused):
        return fused(torch.Size(sample_shape))
    if not distribution.has_rsample:
        raise TypeError(f"{type(distribution).__name__} has no rsample; a flow distribution has")
    x = distribution.rsample(torch.Size(sample_shape))
    return x, distribution.log_prob(x)


def density_model(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    event_shape: Sequence[int],
    *,
    name: str = "x",
) -> Callable[[], torch.Tensor]:
    r"""A Pyro model whose one latent site ``name`` has the (unnormalized) target density.

    With a guide that samples ``name`` (e.g. :func:`flow_guide`), ``Trace_ELBO`` estimates
    :math:`E_q[\log q - \log \tilde p] = \mathrm{KL}(q\,\|\,p) - \log Z` (nats): the
    reverse-KL fit. Works with ``num_particles`` and ``vectorize_particles=True`` when
    ``log_density`` broadcasts over leading dims.

    Args:
        log_density: ``(*batch, *event_shape) -> (*batch,)``, nats up to a constant.
        event_shape: e.g. ``(D,)``.
        name: the site name.
    Raises:
        TypeError, ValueError: as :class:`UnnormalizedDensity`.
    """
    site = UnnormalizedDensity(log_density, event_shape)

    def model() -> torch.Tensor:
        return pyro.sample(name, site)

    return model


def flow_guide(
    flow: Transform, input_dim: int, *, name: str = "x", module_name: str = "flow"
) -> Callable[[], torch.Tensor]:
    """A Pyro guide that registers ``flow`` (``pyro.module``) and samples site ``name`` from
    :func:`flow_distribution`.

    Cost: one forward (noise-to-data) pass per draw; the ELBO's ``log q`` of the draw then
    comes from the round-trip cache. Choose a flow with a cheap forward (IAF, coupling).

    Args:
        flow: a ``TransformModule`` (or ``nn.Module`` transform).
        input_dim: ``D``.
        name: the model's site name.  module_name: its name in Pyro's param store.
    Raises:
        ValueError: ``input_dim < 1``.
    """
    flow_distribution(flow, input_dim)  # validate now

    def guide() -> torch.Tensor:
        pyro.module(module_name, flow)
        return pyro.sample(name, flow_distribution(flow, input_dim))

    return guide


def samples_model(
    flow: Transform,
    data: torch.Tensor,
    *,
    batch_size: int | None = None,
    name: str = "x",
    module_name: str = "flow",
) -> Callable[[], None]:
    r"""A Pyro model in which the flow is the likelihood of samples: the forward-KL fit.

    ``pyro.plate("data", N, subsample_size=batch_size)`` scales the minibatch, so with
    :func:`empty_guide` the ``Trace_ELBO`` loss is :math:`-\sum_n \log q(x_n)` estimated from
    the batch: ``N`` times :math:`\mathrm{KL}(p\,\|\,q) + H(p)` (nats) in expectation.

    Cost: one inverse (data-to-noise) pass per sample; choose a flow with a cheap inverse (MAF,
    coupling).

    Shapes:
        data: ``(N, D)``.
    Args:
        flow: a ``TransformModule``.
        data: samples of the target.
        batch_size: subsample size per step (default: all ``N``).
        name, module_name: site name and param-store name.
    Raises:
        ValueError: ``data`` not a 2-D floating tensor, or ``batch_size`` outside ``[1, N]``.
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or not data.is_floating_point():
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data must be a floating tensor of shape (N, D), got {got}")
    check_data(data, "data")
    n, d = data.shape
    if batch_size is not None and check_count(batch_size, "batch_size") > n:
        raise ValueError(f"batch_size must be an int in [1, {n}], got {batch_size!r}")

    def model() -> None:
        pyro.module(module_name, flow)
        q = flow_distribution(flow, d, like=data)
        with pyro.plate("data", n, subsample_size=batch_size) as idx:
            pyro.sample(name, q, obs=data[idx])

    return model


def empty_guide(*args, **kwargs) -> None:
    """The guide of a model without latent sites (maximum-likelihood fits)."""
