"""A flow density over images: a Pyro distribution that owns its flow, with uniform
dequantization and bits/dim accounting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch import nn
from torch.distributions import Transform

from pyrogen.transforms import PixelLogit
from pyrogen.transforms.base import Bijector, fits, traced
from pyrogen.util import check_count, check_positive

__all__ = ["ImageFlow", "check_image_shape"]


def check_image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``input_shape`` as a ``(C, H, W)`` tuple of positive ints, else ValueError."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    return shape


class ImageFlow(TorchDistribution, nn.Module):
    r"""A flow density over images, as a Pyro distribution that is also the ``nn.Module``
    holding the flow's parameters (register it with ``pyro.module``; save it with
    ``state_dict``).

    The model is :math:`\epsilon \sim N(0, I)` of shape ``(C, H, W)``, :math:`h = f(\epsilon)`
    (``transform``, noise to data) and, with ``pixel_levels = L``, the inverse logit
    preprocessing :math:`v = L (\sigma(h) - \alpha) / (1 - 2\alpha)` onto the continuous pixel
    scale (:class:`~pyrogen.transforms.PixelLogit`), whose log-determinant is part of the
    density. For integer pixels :math:`k`, uniform dequantization :math:`v = k + u`,
    :math:`u \sim U[0, 1)^D`, gives the bound :math:`\log P(k) \ge \mathbb E_u \log p(k + u)`
    (Theis et al. 2016). The map's range is slightly wider than :math:`[0, L)` per pixel; the
    density's mass outside the cube :math:`[0, L)^D` is lost to the discrete model, so the
    bound stays conservative.

    - :meth:`log_prob` of integer pixels is the Monte Carlo estimate of that bound from
      ``num_draws`` dequantizations (nats per image), so ``pyro.sample("x", flow, obs=k)``
      scores images; without pixel levels it is the exact density of real-valued images.
    - :meth:`bits_per_dim` converts it, :math:`-\log P / (D \ln 2)` with :math:`D = C H W`.
    - :meth:`distribution` is the ``TransformedDistribution`` over continuous ``v`` (exact
      density in nats); :meth:`sample` draws ``v`` at a temperature :math:`T` (base
      :math:`N(0, T^2 I)`, Glow's reduced-temperature samples); ``floor`` gives pixels.
    - :meth:`expand` shares the flow; the base follows the device and dtype of the flow's
      parameters (``flow.to(device)``, ``flow.double()``).

    Shapes:
        x: ``(*sample, *batch, C, H, W)``.  log_prob: ``(*sample, *batch)`` (nats).
    Args:
        transform: a bijection on ``(C, H, W)`` (noise to data), e.g. from
            :func:`pyrogen.flows.glow`.
        input_shape: ``(C, H, W)``.
        pixel_levels: ``L`` or ``None`` (no preprocessing: a density over real images).
        alpha: margin of the logit preprocessing.
        batch_shape: batch shape of the distribution (default ``()``).
        validate_args: check the values given to :meth:`log_prob` (``None``: follow
            ``pyro.enable_validation``).
    Raises:
        ValueError: a bad ``input_shape``, ``pixel_levels < 2`` or ``alpha`` outside
            ``(0, 0.5)``; in :meth:`log_prob`, images of the wrong shape, or (while validation
            is on, and outside ``torch.func`` transforms such as ``vmap``, where data-dependent
            checks cannot run) pixels outside ``0..L-1`` or non-finite real images.
    References:
        Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models.
        https://arxiv.org/abs/1511.01844
    Example:
        >>> from pyrogen import flows
        >>> flow = flows.glow((1, 4, 4), num_levels=1, num_steps=1, hidden_channels=8,
        ...                   pixel_levels=17)
        >>> k = torch.randint(0, 17, (5, 1, 4, 4)).to(torch.get_default_dtype())
        >>> flow.expand((2, 5)).log_prob(k).shape
        torch.Size([2, 5])
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 3)
    has_rsample = True

    def __init__(
        self,
        transform: Transform,
        input_shape: Sequence[int],
        *,
        pixel_levels: int | None = 256,
        alpha: float = 0.05,
        batch_shape: Sequence[int] = (),
        validate_args: bool | None = None,
    ) -> None:
        shape = check_image_shape(input_shape)
        if not isinstance(transform, Transform):
            raise TypeError(
                f"transform must be a torch Transform (e.g. a pyrogen Bijector), got "
                f"{type(transform).__name__}"
            )
        if isinstance(transform, Bijector):
            try:
                out = transform.check_shape(shape)
            except ValueError as e:
                raise ValueError(f"transform does not fit input_shape {shape}: {e}") from e
            if not fits(out, shape):
                raise ValueError(f"transform maps input_shape {shape} to {out}, not to itself")
        if pixel_levels is not None:
            check_count(pixel_levels, "pixel_levels", minimum=2)
            PixelLogit(pixel_levels, alpha=alpha)  # validates alpha
        # Distribution.__init__ runs nn.Module.__init__ through the MRO, so attributes come after
        super().__init__(torch.Size(batch_shape), torch.Size(shape), validate_args=validate_args)
        self.transform = transform
        self.input_shape = shape
        self.pixel_levels, self.alpha = pixel_levels, alpha

    def expand(self, batch_shape, _instance=None) -> ImageFlow:
        """The same flow (shared parameters) with batch shape ``batch_shape``."""
        batch_shape = torch.Size(batch_shape)
        try:
            torch.broadcast_to(torch.empty(self.batch_shape), batch_shape)
        except RuntimeError as e:
            raise ValueError(f"cannot expand batch_shape {tuple(self.batch_shape)} to "
                             f"{tuple(batch_shape)}") from e  # fmt: skip
        return type(self)(self.transform, self.input_shape, pixel_levels=self.pixel_levels,
                          alpha=self.alpha, batch_shape=batch_shape,
                          validate_args=self._validate_args)  # fmt: skip

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "_anchor", None)  # the device buffer of earlier versions
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _like(self) -> torch.Tensor:
        p = (
            next(iter(self.transform.parameters()), None)
            if isinstance(self.transform, nn.Module)
            else None
        )
        return torch.zeros((), dtype=torch.get_default_dtype()) if p is None else p.new_zeros(())

    @property
    def num_dims(self) -> int:
        """``D = C * H * W``."""
        return math.prod(self.input_shape)

    def distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        """The density over continuous pixel values ``v`` (nats), base sd ``temperature``,
        with this distribution's batch shape."""
        check_positive(temperature, "temperature")
        loc = self._like().expand(self.batch_shape + self.event_shape)
        parts = [self.transform]
        if self.pixel_levels is not None:
            parts.append(PixelLogit(self.pixel_levels, alpha=self.alpha))
        return dist.TransformedDistribution(dist.Normal(loc, temperature).to_event(3), parts)

    def _check_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"images must be a real (float or integer) tensor, got {x.dtype}")
        if tuple(x.shape[-3:]) != self.input_shape:
            raise ValueError(
                f"images must have shape (*batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(getattr(x, 'shape', ()))}"
            )
        try:
            torch.broadcast_shapes(x.shape[:-3], self.batch_shape)
        except RuntimeError as e:
            raise ValueError(f"images of batch shape {tuple(x.shape[:-3])} do not broadcast "
                             f"against batch_shape {tuple(self.batch_shape)}") from e  # fmt: skip
        # the value checks are data-dependent: only with validation on, never under torch.func
        if self._validate_args and not traced():
            if self.pixel_levels is not None:
                bad = (x < 0) | (x > self.pixel_levels - 1) | (x != x.round()) | x.isnan()
                if bool(bad.any()):
                    raise ValueError(
                        f"images must hold pixels that are integers in "
                        f"0..{self.pixel_levels - 1}; got values from {float(x.min())} to "
                        f"{float(x.max())}"
                    )
            elif x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError("images contain non-finite values (nan or inf)")
        return x.to(self._like().dtype) if not x.is_floating_point() else x

    def log_prob(self, x: torch.Tensor, *, num_draws: int = 1) -> torch.Tensor:
        """Dequantized bound on ``log P(x)`` (nats per image), averaged over ``num_draws``
        uniform dequantizations (without pixel levels: the exact density of ``x``);
        ``(*sample, *batch)``."""
        x = self._check_pixels(x)
        check_count(num_draws, "num_draws")
        shape = torch.broadcast_shapes(x.shape[:-3], self.batch_shape)
        if x.numel() == 0:  # torch's support check cannot reshape an empty batch
            return x.new_zeros(shape)
        d = self.distribution()
        if self.pixel_levels is None:
            lp = d.log_prob(x)
        else:
            draws = [d.log_prob(x + torch.rand_like(x)) for _ in range(num_draws)]
            lp = torch.stack(draws).mean(0)
        return lp.expand(shape)

    def bits_per_dim(self, x: torch.Tensor, *, num_draws: int = 1) -> torch.Tensor:
        """:meth:`log_prob` in bits per dimension, ``(*sample, *batch)``."""
        return -self.log_prob(x, num_draws=num_draws) / (self.num_dims * math.log(2.0))

    def rsample(self, sample_shape=torch.Size(), *, temperature: float = 1.0) -> torch.Tensor:  # noqa: B008
        """A reparameterized draw on the continuous pixel scale,
        ``(*sample_shape, *batch, C, H, W)``."""
        return self.distribution(temperature).rsample(sample_shape)

    def sample(self, sample_shape=torch.Size(), *, temperature: float = 1.0) -> torch.Tensor:  # noqa: B008
        """Images on the continuous pixel scale (no gradient), ``(*sample_shape, *batch, C, H,
        W)``."""
        with torch.no_grad():
            return self.rsample(sample_shape, temperature=temperature)

    def __repr__(self) -> str:
        return (f"ImageFlow(input_shape={self.input_shape}, pixel_levels={self.pixel_levels}, "
                f"batch_shape={tuple(self.batch_shape)})")  # fmt: skip
