"""Image flow layers: coupling with convolutional conditioners (checkerboard and channel masks)
and one multi-scale level (squeeze, flow steps, factor-out with a learned Gaussian prior)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import constraints

from pyrogen.transforms.base import Bijector
from pyrogen.transforms.coupling import _check_bound, soft_bound
from pyrogen.transforms.squeeze import Squeeze
from pyrogen.util import check_count

__all__ = ["ImageCoupling", "MultiScale"]

MASKS = ("channel", "checkerboard")


def _check_channels(conditioner: nn.Module, expected_in: int, expected_out: int) -> None:
    got_in = getattr(conditioner, "in_channels", expected_in)
    got_out = getattr(conditioner, "out_channels", expected_out)
    if (got_in, got_out) != (expected_in, expected_out):
        raise ValueError(
            f"conditioner must map {expected_in} to {expected_out} channels, "
            f"got {got_in} to {got_out}"
        )


def _sum_event(t: torch.Tensor) -> torch.Tensor:
    return t.sum((-3, -2, -1))


class ImageCoupling(Bijector):
    r"""Affine coupling of an image with a convolutional conditioner (RealNVP, Glow).

    What it computes, with a binary mask :math:`m` (1 = passed through) and
    :math:`(\mu, s) = \mathrm{conditioner}(x \odot m)`, :math:`\tilde s = B\tanh(s / B)`:

    .. math::
        y = m \odot x + (1 - m) \odot \big(x \odot e^{\tilde s} + \mu\big),\qquad
        \log|\det J| = \textstyle\sum_{c,h,w} (1 - m) \odot \tilde s.

    ``mask="checkerboard"``: :math:`m_{chw} = (h + w + \mathrm{parity}) \bmod 2`; the
    conditioner sees all ``C`` channels (masked) and returns ``2 C`` (shift, log-scale).
    ``mask="channel"``: the first ``C // 2`` channels pass through (the last ones when
    ``parity=1``); the conditioner maps them to ``2 (C - C // 2)`` channels. Additive
    coupling (NICE, Glow's additive variant) sets :math:`\tilde s = 0` and needs only the
    shift (``C`` or ``C - C // 2`` output channels).

    Cost: both directions one conditioner pass. Identity at initialization when the
    conditioner's last layer is zero (:class:`~pyrogen.nn.ConvNet`).

    Shapes:
        x, y: ``(*batch, C, H, W)``.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C`` (>= 2 for the channel mask).
        conditioner: a network ``(*, C_in, H, W) -> (*, C_out, H, W)`` as described above.
        mask: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1, which half is passed through.
        additive: shift only (volume preserving).
        log_scale_bound: ``B`` (nats), or ``None`` for no bound.
    Raises:
        ValueError: an unknown mask, bad parity, ``num_channels < 2`` with the channel mask, a
            conditioner whose ``in_channels``/``out_channels`` do not match, or an input with
            the wrong number of channels.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> from pyrogen.nn import ConvNet
        >>> f = ImageCoupling(2, ConvNet(2, 8, 4), mask="checkerboard")
        >>> x = torch.randn(3, 2, 4, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x)
        True
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(
        self,
        num_channels: int,
        conditioner: nn.Module,
        *,
        mask: str = "checkerboard",
        parity: int = 0,
        additive: bool = False,
        log_scale_bound: float | None = 5.0,
    ) -> None:
        check_count(num_channels, "num_channels")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}")
        if mask == "channel" and num_channels < 2:
            raise ValueError(f"the channel mask needs num_channels >= 2, got {num_channels}")
        _check_bound(log_scale_bound)
        per = 1 if additive else 2
        if mask == "checkerboard":
            _check_channels(conditioner, num_channels, per * num_channels)
        else:
            kept = num_channels // 2 if parity == 0 else num_channels - num_channels // 2
            _check_channels(conditioner, kept, per * (num_channels - kept))
        super().__init__((num_channels, None, None))
        self.num_channels, self.mask, self.parity = num_channels, mask, parity
        self.additive, self.log_scale_bound = additive, log_scale_bound
        self.conditioner = conditioner

    def _checker(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.arange(x.shape[-2], device=x.device)
        w = torch.arange(x.shape[-1], device=x.device)
        return ((h[:, None] + w[None, :] + self.parity) % 2).to(x.dtype)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.num_channels // 2
        if self.parity == 0:
            return x[..., :half, :, :], x[..., half:, :, :]
        return x[..., half:, :, :], x[..., :half, :, :]

    def _join(self, kept: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        kept = kept.expand(changed.shape[:-3] + kept.shape[-3:])
        return torch.cat([kept, changed] if self.parity == 0 else [changed, kept], dim=-3)

    def _shift_log_scale(self, x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.conditioner(x_in)
        if self.additive:
            return out, None
        shift, log_scale = out.chunk(2, dim=-3)
        return shift, soft_bound(log_scale, self.log_scale_bound)

    def _couple(self, x: torch.Tensor, sign: int) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-3] != self.num_channels:
            raise ValueError(f"expected {self.num_channels} channels, got {x.shape[-3]}")
        if self.mask == "checkerboard":
            m = self._checker(x)
            shift, log_scale = self._shift_log_scale(x * m)
            shift = shift * (1 - m)
            if log_scale is None:
                y = x + sign * shift
                return y, x.new_zeros(()).expand(y.shape[:-3])
            log_scale = log_scale * (1 - m)
            y = (
                x * torch.exp(log_scale) + shift
                if sign > 0
                else (x - shift) * torch.exp(-log_scale)
            )
            return y, sign * _sum_event(log_scale)
        kept, changed = self._split(x)
        shift, log_scale = self._shift_log_scale(kept)
        if log_scale is None:
            new = changed + sign * shift
            return self._join(kept, new), x.new_zeros(()).expand(new.shape[:-3])
        if sign > 0:
            new = changed * torch.exp(log_scale) + shift
        else:
            new = (changed - shift) * torch.exp(-log_scale)
        return self._join(kept, new), sign * _sum_event(log_scale)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(x, 1)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(y, -1)

    def extra_repr(self) -> str:
        return (
            f"num_channels={self.num_channels}, mask={self.mask!r}, parity={self.parity}, "
            f"additive={self.additive}, log_scale_bound={self.log_scale_bound}"
        )


class MultiScale(Bijector):
    r"""One level of a multi-scale image flow (RealNVP, Glow): squeeze, flow steps, and a
    factor-out (split) step with a learned conditional Gaussian prior, around an inner level.

    Written in the data-to-noise (inverse) direction, as the papers do, for an image ``x``
    of shape ``(C, H, W)``:

    1. :math:`h = \mathrm{squeeze}(x)`, shape ``(4C, H/2, W/2)``;
    2. :math:`h = f_K^{-1} \circ \dots \circ f_1^{-1}(h)` (the ``steps``, e.g. ActNorm,
       1x1 convolution, coupling);
    3. split the channels, :math:`h = [h_1, h_2]`; factor :math:`h_2` out with the prior
       :math:`h_2 \mid h_1 \sim N(\mu(h_1), \operatorname{diag} \sigma(h_1)^2)`, i.e.
       :math:`\epsilon_2 = (h_2 - \mu(h_1)) / \sigma(h_1)`;
    4. :math:`\epsilon_1 = \mathrm{inner}^{-1}(h_1)` (the next level; without ``inner`` there
       is no split and :math:`\epsilon = h`);
    5. :math:`\epsilon = \mathrm{squeeze}^{-1}([\epsilon_1, \epsilon_2])`, the shape of ``x``.

    The conditional prior is an affine map of standard normal noise, so a whole multi-scale
    flow is one bijection from a standard normal of the image's shape; its log-determinant is

    .. math::
        \log|\det J_{f}(\epsilon)| = \log|\det J_{\mathrm{inner}}| +
        \textstyle\sum \log\sigma(h_1) + \sum_k \log|\det J_{f_k}|,

    and ``TransformedDistribution(Normal(0, 1) over (C, H, W), [level]).log_prob(x)`` equals
    the factored-out Gaussian log-densities plus the inner level's base density plus the
    steps' log-determinants, as in Glow. The forward map (``forward_and_ladj``) runs the same
    operations in reverse order.

    Cost: both directions one pass of every step, the prior network and the inner level.
    Identity (up to the squeeze permutations) at initialization when the steps are and the
    prior's last layer is zero.

    Shapes:
        x, y: ``(*batch, C, H, W)``, ``H`` and ``W`` even.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C``.
        steps: bijections on ``(4C, H/2, W/2)``, in forward (noise-to-data) order.
        inner: the next level, a bijection on ``(2C, H/2, W/2)``; ``None`` for the last
            level (no split).
        prior: network ``(*, 2C, H/2, W/2) -> (*, 4C, H/2, W/2)`` giving the prior's mean and
            log-sd (required with ``inner``), e.g. :class:`~pyrogen.nn.ConvNet`.
        log_scale_bound: soft bound ``B`` (nats) of the prior's log-sd, or ``None``.
    Raises:
        ValueError: ``num_channels < 1``, a missing ``prior`` with ``inner`` (or the
            converse), steps that are not :class:`Bijector` instances, a prior with the wrong
            channel counts, or inputs of the wrong shape.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
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

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

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
        for i, step in enumerate(steps):
            if not isinstance(step, Bijector):
                raise ValueError(
                    f"steps[{i}] must be a pyrogen Bijector, got {type(step).__name__}"
                )
        if prior is not None:
            _check_channels(prior, 2 * num_channels, 4 * num_channels)
        _check_bound(log_scale_bound)
        super().__init__((num_channels, None, None))
        self.num_channels, self.log_scale_bound = num_channels, log_scale_bound
        self.squeeze = Squeeze(2)
        self.steps = nn.ModuleList(steps)
        self.inner, self.prior = inner, prior

    def _prior(self, h1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.prior(h1).chunk(2, dim=-3)
        return mean, soft_bound(log_scale, self.log_scale_bound)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[-3] != self.num_channels:
            raise ValueError(f"expected (*batch, {self.num_channels}, H, W), got {tuple(x.shape)}")

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x)
        h, ladj = self.squeeze.forward_and_ladj(x)
        if self.inner is not None:
            half = 2 * self.num_channels
            h1, inner_ladj = self.inner.forward_and_ladj(h[..., :half, :, :])
            mean, log_scale = self._prior(h1)
            h2 = mean + torch.exp(log_scale) * h[..., half:, :, :]
            h = torch.cat([h1, h2], dim=-3)
            ladj = ladj + inner_ladj + _sum_event(log_scale)
        for step in self.steps:
            h, step_ladj = step.forward_and_ladj(h)
            ladj = ladj + step_ladj
        y, _ = self.squeeze.inverse_and_ladj(h)
        return y, ladj

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(y)
        h, ladj = self.squeeze.forward_and_ladj(y)
        for step in reversed(self.steps):
            h, step_ladj = step.inverse_and_ladj(h)
            ladj = ladj + step_ladj
        if self.inner is not None:
            half = 2 * self.num_channels
            h1, h2 = h[..., :half, :, :], h[..., half:, :, :]
            mean, log_scale = self._prior(h1)
            e2 = (h2 - mean) * torch.exp(-log_scale)
            e1, inner_ladj = self.inner.inverse_and_ladj(h1)
            h = torch.cat([e1, e2], dim=-3)
            ladj = ladj + inner_ladj - _sum_event(log_scale)
        x, _ = self.squeeze.inverse_and_ladj(h)
        return x, ladj

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, log_scale_bound={self.log_scale_bound}"
