"""PixelCNN as a distribution over binary or categorical images."""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from pyrogen.distributions.base import (
    check_context,
    check_expand,
    conditional_log_prob,
    discrete_log_prob,
    discrete_support,
)
from pyrogen.nn.masked_conv import PixelCNNNetwork

__all__ = ["PixelCNN"]


class PixelCNN(TorchDistribution):
    r"""Autoregressive distribution over images in raster order, computed by a PixelCNN.

    What it computes: :math:`p(x) = \prod_{i,j} \prod_c p(x_{c,i,j} \mid x_{<(i,j)},
    x_{<c,i,j})`, each conditional a Bernoulli (binary pixels) or categorical read from the
    network's logits. ``log_prob`` is exact and costs **one** network pass; ``sample`` is
    ancestral and costs ``C * H * W`` sequential passes (784 for 28x28 MNIST), each over the
    pixel's causal window only. With a ``context`` (class label, or a VAE's latent code) it is a
    conditional PixelCNN and can be a VAE decoder's likelihood (PixelVAE).

    Shapes:
        values: ``(*sample, *batch, C, H, W)``; ``context``: ``(*batch, context_dim)``;
        ``log_prob``: ``broadcast(value.shape[:-3], batch_shape)`` (the value broadcasts
        against the context, as for a VAE decoder under vectorized particles). Integer, boolean
        or other-precision values are converted to the network's dtype.
    Args:
        network: a :class:`~pyrogen.nn.PixelCNNNetwork`.
        image_shape: ``(C, H, W)`` with ``C`` the network's ``data_channels``.
        context: the conditioning vectors, if the network takes them.
    Raises:
        ValueError: an ``image_shape`` whose channels disagree with the network, a missing,
            unexpected or misshapen context, values of the wrong shape; with validation on,
            values outside ``0..num_categories-1``.
        TypeError: a context whose dtype differs from the network's.
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
        if len(image_shape) != 3 or image_shape[0] != network.data_channels or min(image_shape) < 1:
            raise ValueError(
                f"image_shape must be ({network.data_channels}, H, W), got {tuple(image_shape)}"
            )
        context = check_context(context, network.context_dim, network.out.weight, "PixelCNN")
        self.network, self.context = network, context
        batch_shape = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(batch_shape, image_shape, validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return discrete_support(self.network.num_categories, 3)

    @property
    def like(self) -> torch.Tensor:
        return self.network.out.weight

    def expand(self, batch_shape, _instance=None):
        """The same distribution with batch shape ``batch_shape`` (the context is not copied).

        Raises:
            ValueError: ``batch_shape`` is not an expansion of ``batch_shape``.
        """
        batch_shape = check_expand(self.batch_shape, batch_shape)
        new = self._get_checked_instance(PixelCNN, _instance)
        new.network, new.context = self.network, self.context
        super(PixelCNN, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _log_prob(self, value: torch.Tensor, context) -> torch.Tensor:
        logits = self.network(value, context)
        return discrete_log_prob(logits, value, self.network.num_categories).sum((-3, -2, -1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` in nats (one network pass), shape
        ``broadcast(value.shape[:-3], batch_shape)``.

        Raises:
            ValueError: a value of the wrong shape; with validation on, outside the support.
        """
        validate = self._validate_sample if self._validate_args else None
        return conditional_log_prob(self, value, self._log_prob, validate)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Ancestral sampling in raster order: ``C * H * W`` network passes, each on the
        causal window of the pixel drawn (rows ``i - R .. i``, columns ``j - R .. j + R`` with
        ``R`` the network's :attr:`~pyrogen.nn.PixelCNNNetwork.receptive_field`, clipped at
        the borders), which gives the same logits as a full-image pass.

        Returns:
            ``(*sample_shape, *batch_shape, C, H, W)``; the random draws (one
            ``torch.bernoulli`` or categorical draw per pixel and channel, in raster order) are
            those of a full-image sampler, so a seed gives the same images.
        """
        return self._sample(sample_shape, self.network.receptive_field)

    def _sample(self, sample_shape, reach: int | None) -> torch.Tensor:
        # reach=None runs the network on the whole image for every pixel (the reference).
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        like = self.network.out.weight
        x = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if x.numel() == 0:
            return x
        c, h, w = self.event_shape
        for i in range(h):
            top, bottom = (0, h) if reach is None else (max(0, i - reach), i + 1)
            for j in range(w):
                left, right = (0, w) if reach is None else (max(0, j - reach), j + reach + 1)
                for ch in range(c):
                    out = self.network(x[..., top:bottom, left:right], self.context)
                    logits = out[..., ch, i - top, j - left, :]
                    if self.network.num_categories == 2:
                        x[..., ch, i, j] = torch.bernoulli(torch.sigmoid(logits.squeeze(-1)))
                    else:
                        draw = torch.distributions.Categorical(logits=logits).sample()
                        x[..., ch, i, j] = draw.to(x.dtype)
        return x
