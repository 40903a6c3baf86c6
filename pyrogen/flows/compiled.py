"""An opt-in compiled ``log_prob`` for flow distributions (``torch.compile``, one graph)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions import TransformedDistribution
from torch.distributions.utils import _sum_rightmost

from pyrogen.transforms.base import Bijector

__all__ = ["compile", "log_prob_function"]


def log_prob_function(
    distribution: TransformedDistribution,
) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""``distribution.log_prob`` as a plain function of the value, with no cache and no input
    checks: every pyrogen layer runs its fused inverse :math:`x = f^{-1}(y)` with
    :math:`\log|\det J_{f^{-1}}(y)|`, other transforms ``t.inv`` and
    ``-t.log_abs_det_jacobian``; then :math:`\log p(y) = \log p_0(x) + \sum_k
    \log|\det J_{f_k^{-1}}|`.

    It computes what ``distribution.log_prob`` computes (the round-trip cache aside), in a
    form ``torch.compile`` traces as one graph.

    Shapes:
        value: ``(sample_shape, batch_shape, event_shape)`` concatenated; returns
        ``(sample_shape, batch_shape)`` (nats).
    Raises:
        TypeError: ``distribution`` is not a :class:`pyro.distributions.TransformedDistribution`.
    """
    if not isinstance(distribution, TransformedDistribution):
        raise TypeError(
            "distribution must be a pyro TransformedDistribution, "
            f"got {type(distribution).__name__}"
        )
    base, transforms = distribution.base_dist, list(distribution.transforms)
    event_dim = len(distribution.event_shape)

    def log_prob(value: torch.Tensor) -> torch.Tensor:
        y, total, dim = value, 0.0, event_dim
        for t in reversed(transforms):
            dim += t.domain.event_dim - t.codomain.event_dim
            if isinstance(t, Bijector):
                x, ladj = t.inverse_and_ladj(y)  # the inverse's log-det, summed over its event
                total = total + _sum_rightmost(ladj, dim - t.domain.event_dim)
            else:
                x = t.inv(y)
                total = total - _sum_rightmost(
                    t.log_abs_det_jacobian(x, y), dim - t.domain.event_dim
                )
            y = x
        return _sum_rightmost(base.log_prob(y), dim - len(base.event_shape)) + total

    return log_prob


def compile(
    distribution: TransformedDistribution, **options
) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""``torch.compile`` of :func:`log_prob_function`: the flow's ``log_prob`` (and, through
    autograd, its gradient) compiled. Layers whose scoring direction is closed-form (MAF,
    RealNVP and the other couplings, the spline layers, LU and QR linear maps, an initialized
    ``ActNorm``) compile into one graph with no graph breaks. Layers whose ``log_prob`` needs
    an iterative inverse, ``Planar`` (Newton's stopping test) and IAF (scoring is its
    sequential direction), break the graph at those data-dependent checks: they compile in
    pieces, with the same values as eager.

    Use it for training loops where one flow scores many batches of the same shape: the
    first call compiles (seconds to a minute, forward and backward), later calls run the
    compiled kernels. The distribution's parameters are read at every call (training
    updates are seen); a new batch shape recompiles.

    Shapes:
        as :func:`log_prob_function`.
    Args:
        distribution: a :class:`pyro.distributions.TransformedDistribution` (e.g.
            :class:`~pyrogen.distributions.FlowDistribution`) over pyrogen layers.
        options: passed to ``torch.compile`` (e.g. ``mode="max-autotune-no-cudagraphs"``).
    Raises:
        TypeError: as :func:`log_prob_function`.
    Example:
        >>> import pyro.distributions as dist
        >>> from pyrogen import flows
        >>> q = dist.TransformedDistribution(
        ...     dist.Normal(torch.zeros(3), 1.0).to_event(1), flows.maf(3, num_layers=2)
        ... )
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(flows.log_prob_function(q)(x), q.log_prob(x), atol=1e-6)
        True
        >>> log_prob = flows.compile(q)  # doctest: +SKIP
        >>> log_prob(x).mean().neg().backward()  # compiles forward and backward  # doctest: +SKIP
    """
    return torch.compile(log_prob_function(distribution), **options)
