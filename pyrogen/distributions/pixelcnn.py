"""PixelCNN as a distribution over binary or categorical images."""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from pyrogen.distributions.base import discrete_log_prob, discrete_support
from pyrogen.nn.masked_conv import PixelCNNNetwork

__all__ = ["PixelCNN"]


class PixelCNN(TorchDistribution):
    r"""Autoregressive distribution over images in raster order, computed by a PixelCNN.

    What it computes: :math:`p(x) = \prod_{i,j} \prod_c p(x_{c,i,j} \mid x_{<(i,j)},
    x_{<c,i,j})`, each conditional a Bernoulli (binary pixels) or categorical read from the
    network's logits. ``log_prob`` is exact and costs **one** network pass; ``sample`` is
    ancestral and costs ``C * H * W`` sequential passes (slow for large images: 784 passes for
    28x28 MNIST). With a ``context`` (class label, or a VAE's latent code) it is a
    conditional PixelCNN and can be a VAE decoder's likelihood (PixelVAE).

    Shapes:
        values: ``(*sample, *batch, C, H, W)``; ``context``: ``(*batch, context_dim)``;
        ``log_prob``: ``(*sample, *batch)``.
    Args:
        network: a :class:`~pyrogen.nn.PixelCNNNetwork`.
        image_shape: ``(C, H, W)`` with ``C`` the network's ``data_channels``.
        context: the conditioning vectors, if the network takes them.
    Raises:
        ValueError: an ``image_shape`` whose channels disagree with the network, a missing
            context; with validation on, values outside ``0..num_categories-1`` or of the
            wrong shape.
    References:
        van den Oord, Kalchbrenner, Kavukcuoglu (2016). Pixel Recurrent Neural Networks.
        https://arxiv.org/abs/1601.06759
        Gulrajani et al. (2017). PixelVAE: A Latent Variable Model for Natural Images.
        https://arxiv.org/abs/1611.05013
    Example:
        >>> net = PixelCNNNetwork(hidden_channels=8, num_layers=1)
        >>> d = PixelCNN(net, (1, 2, 2))
        >>> states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4).reshape(16, 1, 2, 2)
        >>> round(float(d.log_prob(states).exp().sum().detach()), 5)
        1.0
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self,
        network: PixelCNNNetwork,
        image_shape,
        context: torch.Tensor | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(network, PixelCNNNetwork):
            raise TypeError(f"network must be a PixelCNNNetwork, got {type(network).__name__}")
        image_shape = torch.Size(image_shape)
        if len(image_shape) != 3 or image_shape[0] != network.data_channels:
            raise ValueError(
                f"image_shape must be ({network.data_channels}, H, W), got {tuple(image_shape)}"
            )
        if network.context_dim and context is None:
            raise ValueError(
                f"this PixelCNN needs a context of shape (*batch, {network.context_dim})"
            )
        self.network, self.context = network, context
        batch_shape = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(batch_shape, image_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return discrete_support(self.network.num_categories, 3)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PixelCNN, _instance)
        batch_shape = torch.Size(batch_shape)
        new.network = self.network
        new.context = (
            None
            if self.context is None
            else self.context.expand(batch_shape + self.context.shape[-1:])
        )
        super(PixelCNN, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` in nats (one network pass)."""
        if self._validate_args:
            self._validate_sample(value)
        logits = self.network(value, self.context)
        return discrete_log_prob(logits, value, self.network.num_categories).sum((-3, -2, -1))

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Ancestral sampling in raster order: ``C * H * W`` network passes."""
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        like = self.network.out.weight
        x = torch.zeros(shape, dtype=like.dtype, device=like.device)
        c, h, w = self.event_shape
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    logits = self.network(x, self.context)[..., ch, i, j, :]
                    if self.network.num_categories == 2:
                        x[..., ch, i, j] = torch.bernoulli(torch.sigmoid(logits.squeeze(-1)))
                    else:
                        draw = torch.distributions.Categorical(logits=logits).sample()
                        x[..., ch, i, j] = draw.to(x.dtype)
        return x
