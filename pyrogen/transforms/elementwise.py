r"""Elementwise monotone maps that flow layers parameterize: affine with a soft bound, additive,
and the rational-quadratic spline.

``forward(x, params)`` returns :math:`y = g(x; \theta)` and :math:`\log g'(x; \theta)`
elementwise, ``inverse(y, params)`` :math:`g^{-1}(y; \theta)` and its log-derivative;
``params`` is ``(*x.shape, num_params)``. All-zero parameters give the identity.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import AffineTransform, ComposeTransform, SigmoidTransform
from torch.nn import functional as F

from pyrogen.util import check_count, check_positive, check_real

__all__ = "Additive Affine Elementwise PixelLogit RationalQuadraticSpline soft_bound".split()


def soft_bound(log_scale: torch.Tensor, bound: float | None) -> torch.Tensor:
    """Softly bound a log-scale to ``(-bound, bound)`` as ``bound * tanh(log_scale / bound)``.

    Shapes: any; returns the same shape. ``bound=None`` returns the input unchanged.
    """
    if bound is None:
        return log_scale
    return bound * torch.tanh(log_scale / bound)


def as_map(transform) -> Elementwise:
    """``transform``, or ``Affine()`` for ``None``; TypeError for anything but a map."""
    transform = Affine() if transform is None else transform
    if not isinstance(transform, Elementwise):
        raise TypeError(f"transform must be an Elementwise map, got {type(transform).__name__}")
    return transform


def check_bound(value: float | None, name: str = "log_scale_bound") -> float | None:
    """A soft bound: a finite number > 0, or ``None`` for no bound (else ValueError, or
    :class:`~pyrogen.util.ArgumentTypeError` for a non-number)."""
    return check_positive(value, name, allow_none=True)


class Elementwise:
    """Base of the elementwise maps: stateless, with ``forward(x, params)`` and
    ``inverse(y, params)`` as in the module docstring."""

    num_params: int = 0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Affine(Elementwise):
    r"""Affine map :math:`y = x e^{\tilde s} + \mu`, :math:`\tilde s = B \tanh(s / B)`;
    :math:`\log g' = \tilde s`. Parameters ``(mu, s)``; ``log_scale_bound`` is ``B`` (nats,
    finite and positive, else ValueError) or ``None`` for no bound."""

    num_params = 2

    def __init__(self, log_scale_bound: float | None = 5.0) -> None:
        self.log_scale_bound = check_bound(log_scale_bound)

    def _unpack(self, params):
        # the conditioners hand over a (..., D, 2) view of a parameter-major (..., 2, D) output:
        # unbinding that along -2 makes backward stack the two gradients into the parameter-major
        # layout, so the network's reshape needs no copy (unbind(-1) would stack them
        # interleaved, then copy)
        shift, log_scale = params.movedim(-1, -2).unbind(-2)
        return shift, soft_bound(log_scale, self.log_scale_bound)

    def forward(self, x, params):
        shift, log_scale = self._unpack(params)
        return x * torch.exp(log_scale) + shift, log_scale

    def inverse(self, y, params):
        shift, log_scale = self._unpack(params)
        neg = -log_scale  # the inverse's log-derivative, also its log-scale
        return (y - shift) * torch.exp(neg), neg


class Additive(Elementwise):
    r"""Shift :math:`y = x + \mu` (NICE); volume preserving, :math:`\log g' = 0`."""

    num_params = 1

    def forward(self, x, params):
        return x + params[..., 0], torch.zeros_like(params[..., 0])

    def inverse(self, y, params):
        return y - params[..., 0], torch.zeros_like(params[..., 0])


class RationalQuadraticSpline(Elementwise):
    r"""Monotone rational-quadratic spline on ``[-B, B]`` with identity (linear) tails.

    What it computes: ``K`` bins with widths :math:`w_k` and heights :math:`h_k` (softmax of
    the parameters, each at least ``min_bin_size`` of ``2B``) and derivatives :math:`d_k > 0` at
    the ``K - 1`` interior knots (1 at both ends: :math:`C^1` with the identity outside). In bin
    ``k``, with :math:`\xi = (x - x_k) / w_k`, :math:`s_k = h_k / w_k`,
    :math:`g(x) = y_k + h_k [s_k \xi^2 + d_k \xi (1 - \xi)] / [s_k + (d_{k+1} + d_k - 2 s_k)
    \xi (1 - \xi)]`; the inverse solves the quadratic in :math:`\xi` in closed form (Durkan
    et al. 2019, Eq. 4-8). Zero parameters give the identity. Parameters per element:
    ``3 K - 1`` (``K`` widths, ``K`` heights, ``K - 1`` derivatives).

    Args:
        num_bins: ``K >= 2``.  bound: ``B > 0``.  min_derivative: smallest knot derivative.
        min_bin_size: smallest bin width and height, as a fraction of ``2B``.
    Raises:
        ValueError: ``num_bins < 2``, a bad ``bound``, or minima that do not fit.
    References:
        Durkan, Bekasov, Murray, Papamakarios (2019). Neural Spline Flows.
        https://arxiv.org/abs/1906.04032
    Example:
        >>> g = RationalQuadraticSpline(4)
        >>> x, p = torch.linspace(-4, 4, 9), 0.5 * torch.randn(9, g.num_params)
        >>> y, _ = g.forward(x, p)
        >>> torch.allclose(g.inverse(y, p)[0], x, atol=1e-5)
        True
    """

    def __init__(
        self,
        num_bins: int = 8,
        bound: float = 3.0,
        *,
        min_bin_size: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        check_count(num_bins, "num_bins", minimum=2)
        check_positive(bound, "bound")
        check_real(min_bin_size, "min_bin_size", low=0.0, high=1.0 / num_bins)
        check_real(min_derivative, "min_derivative", low=0.0, high=1.0)
        self.num_bins, self.bound = num_bins, float(bound)
        self.min_bin_size, self.min_derivative = min_bin_size, min_derivative

    @property
    def num_params(self) -> int:
        return 3 * self.num_bins - 1

    def _knots(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Knot positions ``(*, K + 1)`` from -B to B and bin sizes ``(*, K)``."""
        k, b = self.num_bins, self.bound
        sizes = self.min_bin_size + (1 - self.min_bin_size * k) * torch.softmax(raw, dim=-1)
        knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0)) * 2 * b - b
        knots = torch.cat([knots[..., :1] * 0 - b, knots[..., 1:-1], knots[..., :1] * 0 + b], -1)
        return knots, knots[..., 1:] - knots[..., :-1]

    def _bin(self, v, params, use_heights: bool):
        """``(x_k, w_k, y_k, h_k, d_k, d_{k+1})`` of the bin holding ``v``."""
        k = self.num_bins
        xs, widths = self._knots(params[..., :k])
        ys, heights = self._knots(params[..., k : 2 * k])
        shift = math.log(math.expm1(1 - self.min_derivative))  # softplus(shift) = 1 - min
        inner = self.min_derivative + F.softplus(params[..., 2 * k :] + shift)
        ones = torch.ones_like(inner[..., :1])
        derivs = torch.cat([ones, inner, ones], dim=-1)
        knots = ys if use_heights else xs
        index = (v[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)
        tables = (xs[..., :-1], widths, ys[..., :-1], heights, derivs[..., :-1], derivs[..., 1:])
        return [t.gather(-1, index).squeeze(-1) for t in tables]

    def _spline(self, v, params, inverse: bool):
        v = torch.broadcast_tensors(v[..., None], params)[0][..., 0]
        inside = (v >= -self.bound) & (v <= self.bound)
        vc = v.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._bin(vc, params, use_heights=inverse)
        s, total = h / w, d1 + d0 - 2 * h / w
        if inverse:  # the root in [0, 1] of a xi^2 + b xi + c (Durkan et al. 2019, Eq. 6-8)
            dy = vc - y0
            a, b, c = h * (s - d0) + dy * total, h * d0 - dy * total, -s * dy
            xi = (2 * c / (-b - torch.sqrt((b**2 - 4 * a * c).clamp(min=0)))).clamp(0, 1)
            out = x0 + xi * w
        else:
            xi = ((vc - x0) / w).clamp(0, 1)
            out = y0 + h * (s * xi**2 + d0 * xi * (1 - xi)) / (s + total * xi * (1 - xi))
        t = xi * (1 - xi)
        numerator = s**2 * (d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2)
        ladj = torch.log(numerator) - 2 * torch.log(s + total * t)
        ladj = -ladj if inverse else ladj
        return torch.where(inside, out, v), torch.where(inside, ladj, torch.zeros_like(ladj))

    def forward(self, x, params):
        return self._spline(x, params, False)

    def inverse(self, y, params):
        return self._spline(y, params, True)


class PixelLogit(ComposeTransform):
    r"""Bijection of ``R`` onto the continuous pixel scale, the inverse of RealNVP's logit
    preprocessing: :math:`v = L (\sigma(z) - \alpha) / (1 - 2\alpha)`, i.e.
    :math:`z = \operatorname{logit}(\alpha + (1 - 2\alpha) v / L)`. Last in a flow's list, its
    log-determinant makes ``log_prob`` a density over pixels ``v`` (nats per image).

    Shapes: elementwise (``event_dim = 0``).  Args: num_levels ``L`` (17 for digits, 256 for
    8-bit); alpha, the margin in ``(0, 0.5)``.
    Raises: ValueError: ``num_levels`` not an int >= 2 or ``alpha`` outside ``(0, 0.5)``.
    References: Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP, Sec.
    4.1. https://arxiv.org/abs/1605.08803
    """

    def __init__(self, num_levels: int, *, alpha: float = 0.05, cache_size: int = 0) -> None:
        check_count(num_levels, "num_levels", minimum=2)
        check_real(alpha, "alpha", low=0.0, high=0.5)
        scale = num_levels / (1 - 2 * alpha)
        parts = [SigmoidTransform(), AffineTransform(-alpha * scale, scale)]
        super().__init__(parts, cache_size=cache_size)
