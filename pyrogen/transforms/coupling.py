"""Coupling layers (NICE, RealNVP, Glow, spline coupling): one structure for vectors and
images, any elementwise map, plain and conditional."""

from __future__ import annotations

import torch
from torch import nn

from pyrogen.transforms.base import Bijector, Conditional
from pyrogen.transforms.elementwise import (
    Additive,
    Affine,
    Elementwise,
    as_map,
    soft_bound,  # noqa: F401 - its 0.1 import path
)
from pyrogen.util import check_count

__all__ = "AffineCoupling ConditionalAffineCoupling ConditionalCoupling".split()
__all__ += "Coupling ImageCoupling soft_bound".split()

MASKS = ("split", "channel", "checkerboard")


def check_channels(conditioner: nn.Module, expected_in: int, expected_out: int) -> None:
    names = (("in_channels", expected_in), ("out_channels", expected_out))
    got = tuple(getattr(conditioner, name, default) for name, default in names)
    if got != (expected_in, expected_out):
        raise ValueError(f"conditioner must map {expected_in} to {expected_out} channels: {got}")


def call(conditioner: nn.Module, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """``conditioner(x, context)``, or ``conditioner(x)`` without a context."""
    return conditioner(x) if context is None else conditioner(x, context)


def unpack(
    out: torch.Tensor, axis: int, num_params: int, size: int, what: str, like=None
) -> torch.Tensor:
    """Conditioner output with ``num_params * size`` entries on ``axis`` (parameter-major) to
    ``(*x.shape, num_params)``; raises ValueError for any other size, or (given ``like``, the
    conditioner's input) trailing sizes after ``axis`` other than ``like``'s (no broadcasting
    of, e.g., a 1x1 output over an image)."""
    if not isinstance(out, torch.Tensor) or out.dim() < -axis:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"conditioner must return a tensor with {what} on dim {axis}, got {got}")
    if out.shape[axis] != num_params * size:
        raise ValueError(
            f"conditioner returned {out.shape[axis]} {what}, expected {num_params * size} "
            f"({num_params} parameters for each of {size})"
        )
    if like is not None and axis < -1:
        tail, expected = out.shape[out.dim() + axis + 1 :], like.shape[like.dim() + axis + 1 :]
        if tail != expected:
            raise ValueError(
                f"conditioner returned trailing sizes {tuple(tail)} after its {what}, expected "
                f"{tuple(expected)} (those of its input)"
            )
    return out.unflatten(axis, (num_params, size)).movedim(axis - 1, -1)


def check_conditioner(conditioner) -> nn.Module:
    """``conditioner`` if it is an ``nn.Module``, else TypeError naming it."""
    if not isinstance(conditioner, nn.Module):
        raise TypeError(
            "conditioner must be an nn.Module (e.g. pyrogen.nn.DenseNN or ConvNet), got "
            f"{type(conditioner).__name__}"
        )
    return conditioner


class Coupling(Bijector):
    r"""Coupling layer: one part of the input parameterizes an elementwise map of the rest.

    What it computes, with a binary mask :math:`m` (1 = passed through),
    :math:`\theta = \mathrm{conditioner}(x_m)` and ``g = transform``
    (:class:`~pyrogen.transforms.Affine`, :class:`~pyrogen.transforms.Additive`,
    :class:`~pyrogen.transforms.RationalQuadraticSpline`):
    :math:`y = m \odot x + (1 - m) \odot g(x; \theta)`,
    :math:`\log|\det J| = \sum (1 - m) \odot \log g'(x; \theta)`.
    ``"split"`` (vectors) and ``"channel"`` (images) pass the first ``split_dim`` features or
    channels (the last with ``parity=1``; default half) and the conditioner returns ``P``
    values for each other one (``P = transform.num_params``, parameter-major);
    ``"checkerboard"`` passes pixels with :math:`h + w + \mathrm{parity}` odd, the conditioner
    sees all ``C`` channels masked and returns ``P C``. Cost: one conditioner pass each way;
    the identity at initialization when the conditioner's last layer is zero.

    Shapes:
        x, y: ``(*batch, D)`` or ``(*batch, C, H, W)``.  ladj: ``(*batch,)`` (nats).
    Args:
        event_shape: ``(D,)`` or ``(C, H, W)`` (``H``, ``W`` may be ``None``).
        conditioner: the network; with a context it is called ``conditioner(x, context)``.
        transform: the elementwise map (default ``Affine(5.0)``).
        mask: ``"split"``, ``"channel"`` or ``"checkerboard"``.
        split_dim, parity: which features or channels pass through.
    Raises:
        ValueError: a bad ``mask``/``split_dim``/``parity``, a conditioner whose declared or
            returned number of features or channels does not fit.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
        Durkan, Bekasov, Murray, Papamakarios (2019). Neural Spline Flows.
        https://arxiv.org/abs/1906.04032
    Example:
        >>> from pyrogen.nn import DenseNN
        >>> from pyrogen.transforms import RationalQuadraticSpline
        >>> g = RationalQuadraticSpline(4)
        >>> f = Coupling((3,), DenseNN(1, [8], 2 * g.num_params), transform=g, split_dim=1)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x)
        True
    """

    def __init__(
        self,
        event_shape: tuple[int | None, ...],
        conditioner: nn.Module,
        *,
        transform: Elementwise | None = None,
        mask: str = "split",
        split_dim: int | None = None,
        parity: int = 0,
    ) -> None:
        transform = as_map(transform)
        check_conditioner(conditioner)
        if mask not in MASKS or isinstance(parity, bool) or parity not in (0, 1):
            raise ValueError(f"mask must be in {MASKS}, parity 0 or 1; got {mask!r}, {parity!r}")
        event_shape = tuple(event_shape)
        if len(event_shape) != (1 if mask == "split" else 3):
            raise ValueError(f"mask={mask!r} needs a matching event_shape, got {event_shape}")
        size, p = check_count(event_shape[0], "event_shape[0]"), transform.num_params
        kept = size // 2 if parity == 0 else size - size // 2
        kept = size if mask == "checkerboard" else kept if split_dim is None else split_dim
        if mask != "checkerboard" and not (type(kept) is int and 1 <= kept < size):
            raise ValueError(
                f"split_dim must be an int with 1 <= split_dim < input_dim={size}, got "
                f"{split_dim!r} (the channel mask needs num_channels >= 2)"
            )
        changed = size if mask == "checkerboard" else size - kept
        if mask != "split":
            check_channels(conditioner, kept, p * changed)
        out = getattr(conditioner, "output_dim", None) if mask == "split" else None
        if out is not None and out != p * changed:
            raise ValueError(
                f"conditioner.output_dim must be {p * changed} for input_dim={size}, "
                f"split_dim={kept} and {p} parameters per feature; got {out}"
            )
        super().__init__(event_shape)
        self.conditioner, self.transform = conditioner, transform
        self.mask, self.parity, self.split_dim = mask, parity, kept

    def _couple(self, x, context, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.transform.inverse if inverse else self.transform.forward
        dims = tuple(range(-len(self.event_shape), 0))
        axis, what = (-1, "features") if self.mask == "split" else (-3, "channels")
        p, size = self.transform.num_params, x.shape[axis]
        if self.mask == "checkerboard":
            h, w = (torch.arange(n, device=x.device) for n in x.shape[-2:])
            m = ((h[:, None] + w[None, :] + self.parity) % 2).to(x.dtype)
            params = unpack(call(self.conditioner, x * m, context), axis, p, size, what, x)
            y, ladj = g(x, params)
            return torch.where(m.bool(), x, y), (ladj * (1 - m)).sum(dims)
        swap = self.parity == 1  # the last split_dim entries pass through
        first = size - self.split_dim if swap else self.split_dim
        kept, changed = x.split([first, size - first], dim=axis)[:: -1 if swap else 1]
        out = call(self.conditioner, kept, context)
        new, ladj = g(changed, unpack(out, axis, p, changed.shape[axis], what, kept))
        kept = kept.expand(new.shape[: new.dim() + axis] + kept.shape[kept.dim() + axis :])
        return torch.cat([new, kept] if swap else [kept, new], dim=axis), ladj.sum(dims)

    def forward_and_ladj(self, x, context=None):
        return self._couple(x, context, inverse=False)

    def inverse_and_ladj(self, y, context=None):
        return self._couple(y, context, inverse=True)

    def extra_repr(self) -> str:
        return (
            f"event_shape={self.event_shape}, mask={self.mask!r}, split_dim={self.split_dim}, "
            f"parity={self.parity}, transform={self.transform!r}"
        )


class ConditionalCoupling(Conditional, Coupling):
    """:class:`Coupling` whose conditioner also takes a ``context``; ``condition(context)``
    gives the plain layer (shared parameters). So do ``ConditionalAffineCoupling`` and the
    other ``Conditional*`` classes."""


def _affine(additive: bool, log_scale_bound: float | None) -> Elementwise:
    return Additive() if additive else Affine(log_scale_bound)


class AffineCoupling(Coupling):
    r"""Affine (RealNVP) or additive (NICE) coupling of vectors: :class:`Coupling` with the split
    mask and the affine map, :math:`y_b = x_b e^{\tilde s(x_a)} + \mu(x_a)`.

    Args:
        split_dim: passed-through features ``d``, ``1 <= d < D``.
        conditioner: ``(*, d) -> (*, 2 (D - d))`` (shift, then log-scale; ``D - d`` if additive).
        input_dim: ``D``; read from ``conditioner.output_dim`` when omitted.
        additive: NICE's shift.  log_scale_bound: ``B`` (nats) of the soft bound, or ``None``.
    Raises:
        ValueError: as :class:`Coupling`; no ``input_dim`` and no ``conditioner.output_dim``.
    Example:
        >>> from pyrogen.nn import DenseNN
        >>> f = AffineCoupling(2, DenseNN(2, [16], 4))
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x)
        True
    """

    def __init__(
        self,
        split_dim: int,
        conditioner: nn.Module,
        *,
        input_dim: int | None = None,
        additive: bool = False,
        log_scale_bound: float | None = 5.0,
    ) -> None:
        transform = _affine(additive, log_scale_bound)
        check_conditioner(conditioner)
        check_count(split_dim, "split_dim")
        if input_dim is None:
            out = getattr(conditioner, "output_dim", None)
            if out is None:
                raise ValueError("input_dim is required when the conditioner has no output_dim")
            input_dim = split_dim + out // transform.num_params
        check_count(input_dim, "input_dim")
        super().__init__((input_dim,), conditioner, transform=transform, split_dim=split_dim)
        self.input_dim, self.additive, self.log_scale_bound = input_dim, additive, log_scale_bound


class ConditionalAffineCoupling(Conditional, AffineCoupling):
    """:class:`AffineCoupling` whose conditioner takes ``(x_a, context)``.

    Example:
        >>> from pyrogen.nn import DenseNN
        >>> f = ConditionalAffineCoupling(1, DenseNN(1, [8], 2, context_dim=3))
        >>> f.condition(torch.randn(5, 3))(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """


class ImageCoupling(Coupling):
    r"""Affine or additive coupling of images (RealNVP, Glow): :class:`Coupling` with the
    ``"checkerboard"`` or ``"channel"`` mask and the affine map.

    Args:
        num_channels: ``C``.  conditioner, mask, parity: as in :class:`Coupling`.
        additive: shift only.  log_scale_bound: ``B`` (nats) or ``None``.
    Example:
        >>> from pyrogen.nn import ConvNet
        >>> f = ImageCoupling(2, ConvNet(2, 8, 4), mask="checkerboard")
        >>> x = torch.randn(3, 2, 4, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x)
        True
    """

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
        if mask not in MASKS[1:]:
            raise ValueError(f"mask must be one of {MASKS[1:]}, got {mask!r}")
        check_count(num_channels, "num_channels")
        g = _affine(additive, log_scale_bound)
        super().__init__(
            (num_channels, None, None), conditioner, transform=g, mask=mask, parity=parity
        )
        self.num_channels, self.additive, self.log_scale_bound = (
            num_channels,
            additive,
            log_scale_bound,
        )
