"""A transformed distribution that samples and scores its samples in one forward pass."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions.utils import _sum_rightmost

from pyrogen.transforms.base import Bijector, Conditional

__all__ = ["FlowDistribution"]


class FlowDistribution(dist.TransformedDistribution):
    r"""Pyro's :class:`~pyro.distributions.TransformedDistribution` with fused sampling and
    scoring: :math:`x = f_K \circ \dots \circ f_1(\epsilon)`, :math:`\epsilon \sim` ``base``,

    .. math::
        \log q(x) = \log p(\epsilon) - \textstyle\sum_k \log|\det J_{f_k}|,

    computed during the one forward pass that draws ``x``. pyrogen layers
    (:class:`~pyrogen.transforms.Bijector`) run their fused ``forward_and_ladj``, which uses no
    cache at all, so what is done with the draw afterwards (``.clone()``, ``.detach()``,
    slicing) does not matter; other transforms in the list are called as ``t(x)`` and
    ``t.log_abs_det_jacobian(x, y)``. ``log_prob`` of other values is
    :class:`~pyro.distributions.TransformedDistribution`'s (inverse direction).

    Cost: :meth:`rsample_and_log_prob` is one forward pass of every transform (for an IAF, one
    MADE pass per layer; scoring the same draw with ``log_prob`` would take ``D`` sequential
    passes per layer without a cache hit).

    Shapes:
        sample: ``(*sample_shape, *batch_shape, *event_shape)``.
        log_prob: ``(*sample_shape, *batch_shape)`` (nats).
    Args:
        base_distribution, transforms, validate_args: as
            :class:`~pyro.distributions.TransformedDistribution`.
    Example:
        >>> from pyrogen import flows
        >>> q = FlowDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), flows.iaf(3))
        >>> x, log_q = q.rsample_and_log_prob((4,))
        >>> torch.allclose(log_q, q.log_prob(x.detach().clone()), atol=1e-6)
        True
    """

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        event_dim = len(self.base_dist.event_shape)
        log_prob = self.base_dist.log_prob(x)
        for t in self.transforms:
            if isinstance(t, Bijector) and not isinstance(t, Conditional):
                y, ladj = t.forward_and_ladj(x)
            else:
                y = t(x)
                ladj = t.log_abs_det_jacobian(x, y)
            log_prob = log_prob - _sum_rightmost(ladj, event_dim - t.domain.event_dim)
            event_dim += t.codomain.event_dim - t.domain.event_dim
            x = y
        return x, log_prob

    def rsample_and_log_prob(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        """A reparameterized draw and its log-density (nats), in one forward pass."""
        return self._forward(self.base_dist.rsample(sample_shape))

    def sample_and_log_prob(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        """A draw (no gradient) and its log-density (nats), in one forward pass."""
        with torch.no_grad():
            return self._forward(self.base_dist.sample(sample_shape))
