"""Image flow layers: squeeze and one multi-scale level (the couplings are ``ImageCoupling``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrogen.transforms.base import Bijector, fits
from pyrogen.transforms.coupling import check_channels, unpack
from pyrogen.transforms.elementwise import Affine
from pyrogen.util import check_count

__all__ = ["MultiScale", "Squeeze"]


class Squeeze(Bijector):
    r"""Space-to-depth: each ``f x f`` block of pixels becomes ``f^2`` channels (RealNVP, Glow).

    :math:`y[c f^2 + a f + b, i, j] = x[c, i f + a, j f + b]`, :math:`0 \le a, b < f`: a
    permutation, :math:`\log|\det J| = 0`; a reshape and a permute each way.

    Shapes:
        x: ``(*batch, C, H, W)``, ``H`` and ``W`` divisible by ``f``.
        y: ``(*batch, C f^2, H / f, W / f)``.  ladj: ``(*batch,)`` (zeros).
    Args:
        factor: ``f >= 2``.  num_channels: ``C``, or ``None`` for any.
    Raises:
        ValueError: ``factor < 2``; sizes not divisible by ``f`` (or channels by ``f^2``).
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> s = Squeeze()
        >>> s(torch.zeros(5, 1, 4, 6)).shape, s.forward_shape((1, 4, 6))
        (torch.Size([5, 4, 2, 3]), (4, 2, 3))
    """

    def __init__(self, factor: int = 2, *, num_channels: int | None = None) -> None:
        check_count(factor, "factor", minimum=2)
        if num_channels is not None:
            check_count(num_channels, "num_channels")
        super().__init__((num_channels, None, None))
        self.factor = factor

    def _shape(self, shape, inverse: bool) -> tuple:
        """The shape after the map (``None`` stays); raises for sizes that do not divide."""
        *batch, c, h, w = shape
        f, ff = self.factor, self.factor**2
        if inverse and c is not None and c % ff:
            raise ValueError(f"channels must be divisible by factor**2={ff}, got {c}")
        if not inverse and h is not None and w is not None and (h % f or w % f):
            raise ValueError(f"height and width must be divisible by factor={f}, got {h}x{w}")
        if inverse:
            return (*batch, c and c // ff, h and h * f, w and w * f)
        return (*batch, c and c * ff, h and h // f, w and w // f)

    def forward_shape(self, shape):
        return self._shape(shape, False)

    def inverse_shape(self, shape):
        return self._shape(shape, True)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, c, h, w = x.shape
        f, n, shape = self.factor, len(batch), self._shape(x.shape, False)
        y = x.reshape(*batch, c, h // f, f, w // f, f).permute(
            *range(n), n, n + 2, n + 4, n + 1, n + 3
        )
        return y.reshape(shape), x.new_zeros(batch)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, _, h, w = y.shape
        f, n = self.factor, len(batch)
        shape = self._shape(y.shape, True)
        x = y.reshape(*batch, shape[-3], f, f, h, w).permute(
            *range(n), n, n + 3, n + 1, n + 4, n + 2
        )
        return x.reshape(shape), y.new_zeros(batch)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class MultiScale(Bijector):
    r"""One level of a multi-scale image flow (RealNVP, Glow): squeeze, flow steps, and a
    factor-out step with a learned conditional Gaussian prior, around an inner level.

    Data to noise (the inverse), for ``x`` of shape ``(C, H, W)``:
    :math:`h = f_K^{-1} \circ \dots \circ f_1^{-1}(\mathrm{squeeze}(x))`; split
    :math:`h = [h_1, h_2]`; :math:`\epsilon_2 = (h_2 - \mu(h_1)) / \sigma(h_1)` (the
    :class:`Affine` map of the prior :math:`N(\mu(h_1), \sigma(h_1)^2)`);
    :math:`\epsilon_1 = \mathrm{inner}^{-1}(h_1)`; :math:`\epsilon = \mathrm{squeeze}^{-1}
    ([\epsilon_1, \epsilon_2])` (no split without ``inner``). So
    :math:`\log|\det J_f| = \log|\det J_{\mathrm{inner}}| + \sum \log\sigma(h_1) + \sum_k
    \log|\det J_{f_k}|`: Glow's factored density. Cost: one pass of every step, the prior and
    the inner level each way; identity (up to the squeeze) when the steps are and the prior's
    last layer is zero.

    Shapes:
        x, y: ``(*batch, C, H, W)``, ``H`` and ``W`` even.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C``.
        steps: bijections on ``(4C, H/2, W/2)``, in forward (noise-to-data) order.
        inner: the next level, on ``(2C, H/2, W/2)``; ``None`` for the last level.
        prior: network ``(*, 2C, ...) -> (*, 4C, ...)`` giving the prior's mean and log-sd
            (required with ``inner``), e.g. :class:`~pyrogen.nn.ConvNet`.
        log_scale_bound: soft bound ``B`` (nats) of the prior's log-sd, or ``None``.
    Raises:
        ValueError: ``inner`` without ``prior`` or the converse, steps that are not
            :class:`Bijector`, bad channel counts of the prior or the input.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> from pyrogen.nn import ConvNet
        >>> from pyrogen.transforms import ActNorm
        >>> last = MultiScale(2, [ActNorm((8, 1, 1))])
        >>> level = MultiScale(1, [ActNorm((4, 2, 2))], inner=last, prior=ConvNet(2, 8, 4))
        >>> x = torch.randn(3, 1, 4, 4)
        >>> torch.allclose(level(level.inv(x).clone()), x, atol=1e-6)
        True
    """

    def __init__(
        self,
        num_channels: int,
        steps: Sequence[Bijector],
        *,
        inner: Bijector | None = None,
        prior: nn.Module | None = None,
        log_scale_bound: float | None = 5.0,
    ) -> None:
        check_count(num_channels, "num_channels")
        if (inner is None) != (prior is None):
            raise ValueError("inner and prior must be given together (or neither, last level)")
        steps = list(steps)
        if not all(isinstance(step, Bijector) for step in steps):
            raise ValueError(f"steps must be pyrogen Bijector instances, got {steps}")
        if prior is not None:
            check_channels(prior, 2 * num_channels, 4 * num_channels)
        affine = Affine(log_scale_bound)
        super().__init__((num_channels, None, None))
        self.affine, self.num_channels, self.log_scale_bound = affine, num_channels, log_scale_bound
        self.squeeze, self.steps, self.inner, self.prior = (
            Squeeze(2),
            nn.ModuleList(steps),
            inner,
            prior,
        )

    def _prior_params(self, h1: torch.Tensor) -> torch.Tensor:
        return unpack(self.prior(h1), -3, 2, 2 * self.num_channels, "channels", h1)

    def _prior(self, h1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (bounded) log-sd of the factored-out half given the kept half ``h1``."""
        return self.affine._unpack(self._prior_params(h1))

    def _map(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 3 or x.shape[-3] != self.num_channels:
            raise ValueError(f"expected (*batch, {self.num_channels}, H, W), got {tuple(x.shape)}")
        h, ladj = self.squeeze.forward_and_ladj(x)
        for i, step in enumerate(self.steps):  # the steps are called directly: check the shape
            if not fits(step.event_shape, h.shape[-3:]):
                raise ValueError(
                    f"x of shape {tuple(x.shape)} squeezes to {tuple(h.shape[-3:])}, which does "
                    f"not fit steps[{i}] ({type(step).__name__} with event_shape "
                    f"{step.event_shape})"
                )
        for step in reversed(self.steps) if inverse else ():
            h, step_ladj = step.inverse_and_ladj(h)
            ladj = ladj + step_ladj
        if self.inner is not None:
            h1, h2 = h.split(2 * self.num_channels, dim=-3)
            if inverse:
                e2, prior_ladj = self.affine.inverse(h2, self._prior_params(h1))
                h1, inner_ladj = self.inner.inverse_and_ladj(h1)
            else:
                h1, inner_ladj = self.inner.forward_and_ladj(h1)
                e2, prior_ladj = self.affine.forward(h2, self._prior_params(h1))
            h = torch.cat([h1, e2], dim=-3)
            ladj = ladj + inner_ladj + prior_ladj.sum((-3, -2, -1))
        for step in () if inverse else self.steps:
            h, step_ladj = step.forward_and_ladj(h)
            ladj = ladj + step_ladj
        return self.squeeze.inverse_and_ladj(h)[0], ladj

    def check_shape(self, shape) -> tuple:
        """Check an input event shape ``(C, H, W)`` against this level, its steps and its inner
        levels (see :meth:`Bijector.check_shape`)."""
        shape = super().check_shape(shape)
        c, h, w = self.squeeze.forward_shape(shape)
        for i, step in enumerate(self.steps):
            try:
                step.check_shape((c, h, w))
            except ValueError as e:
                raise ValueError(f"MultiScale steps[{i}] on {(c, h, w)}: {e}") from e
        if self.inner is not None:
            self.inner.check_shape((c // 2 if c else c, h, w))
        return shape

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, False)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(y, True)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, log_scale_bound={self.log_scale_bound}"
