"""Invertible linear maps: fixed permutations and Glow's LU-decomposed linear / 1x1 convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from pyrogen.transforms.base import Bijector

__all__ = ["Invertible1x1Conv", "LULinear", "Permute", "QRLinear"]


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class Permute(Bijector):
    r"""Fixed permutation of the last dimension: :math:`y_i = x_{\pi(i)}`, log-det zero.

    The permutation is a buffer, so it is saved in the ``state_dict`` (unlike Pyro's
    ``Permute``) and a reloaded flow reproduces the same order.

    Cost: both directions O(D), no network pass.

    Shapes:
        x, y: ``(*batch, D)``.  ladj: ``(*batch,)`` (zeros).
    Args:
        permutation: a permutation of ``range(D)``; ``y = x[..., permutation]``.
    Raises:
        ValueError: ``permutation`` is not a permutation of ``range(D)``.
    Example:
        >>> Permute([2, 0, 1])(torch.tensor([10.0, 11.0, 12.0]))
        tensor([12., 10., 11.])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    volume_preserving = True

    def __init__(self, permutation: Sequence[int] | torch.Tensor) -> None:
        perm = torch.as_tensor(permutation, dtype=torch.long)
        n = perm.numel()
        if perm.dim() != 1 or n < 1 or not torch.equal(perm.sort().values, torch.arange(n)):
            raise ValueError(f"permutation must be a permutation of range(D), got {perm.tolist()}")
        super().__init__((n,))
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(-1, self.permutation), x.new_zeros(x.shape[:-1])

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y.index_select(-1, self.inverse_permutation), y.new_zeros(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"D={self.permutation.numel()}"


class _LUDecomposed(Bijector):
    """Parameters ``W = P L (U + diag(diag_sign * exp(log_s)))`` shared by LULinear and 1x1 conv."""

    def __init__(self, event_shape: tuple[int | None, ...], size: int, init: str) -> None:
        if init not in ("rotation", "identity"):
            raise ValueError(f"init must be 'rotation' or 'identity', got {init!r}")
        super().__init__(event_shape)
        if init == "rotation":
            q, _ = torch.linalg.qr(torch.randn(size, size, dtype=torch.float64))
            p, lower, upper = torch.linalg.lu(q)
            perm = p.argmax(dim=1)
        else:
            perm = torch.arange(size)
            lower = upper = torch.eye(size, dtype=torch.float64)
        diag = upper.diagonal()
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", perm)
        self.register_buffer("diag_sign", diag.sign().to(dtype))
        self.register_buffer("lower_mask", torch.ones(size, size).tril(-1).to(dtype))
        self.lower = nn.Parameter(lower.tril(-1).to(dtype))
        self.upper = nn.Parameter(upper.triu(1).to(dtype))
        self.log_s = nn.Parameter(diag.abs().log().to(dtype))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.log_s.numel(), dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.diag_sign * torch.exp(self.log_s))
        return lower, upper

    def weight(self) -> torch.Tensor:
        """The matrix ``W = P L U`` of shape ``(size, size)``."""
        lower, upper = self._factors()
        return (lower @ upper)[self.permutation]

    def inverse_weight(self) -> torch.Tensor:
        """``W^{-1} = U^{-1} L^{-1} P^T`` by two triangular solves, shape ``(size, size)``."""
        lower, upper = self._factors()
        eye = torch.eye(lower.shape[0], dtype=lower.dtype, device=lower.device)
        l_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, l_inv, upper=True)[:, self.permutation]


class LULinear(_LUDecomposed):
    r"""Invertible linear layer with an LU-decomposed weight (Glow, vector form).

    What it computes:

    .. math::

        y = W x + b,\quad W = P L \big(U + \operatorname{diag}(\mathrm{diag\_sign} \odot e^{\log s})
        \big),\quad \log|\det J| = \textstyle\sum_i \log s_i,

    with ``P`` a fixed permutation, ``L`` unit lower triangular, ``U`` strictly upper
    triangular and ``diag_sign`` fixed, so the determinant never crosses zero.

    Cost: both directions one ``D x D`` matrix product per input; the log-det is O(D). The
    inverse weight costs two triangular solves, O(D^3), once per call. At initialization
    ``W`` is a random rotation (``init="rotation"``, as in Glow) or the identity.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.
        bias: learn the shift ``b`` (initialised to zero).
        init: ``"rotation"`` (Glow) or ``"identity"``.
    Raises:
        ValueError: ``input_dim < 1`` or an unknown ``init``.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> f = LULinear(3)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-5)
        True
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    def __init__(self, input_dim: int, *, bias: bool = True, init: str = "rotation") -> None:
        _check_size("input_dim", input_dim)
        super().__init__((input_dim,), input_dim, init)
        self.input_dim = input_dim
        self.bias = nn.Parameter(torch.zeros(input_dim)) if bias else None

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.linear(x, self.weight(), self.bias)
        return y, self.log_s.sum().expand(x.shape[:-1])

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bias is not None:
            y = y - self.bias
        return F.linear(y, self.inverse_weight()), (-self.log_s.sum()).expand(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, bias={self.bias is not None}"


class Invertible1x1Conv(_LUDecomposed):
    r"""Glow's invertible 1x1 convolution with an LU-decomposed ``C x C`` weight.

    What it computes, at every pixel :math:`(h, w)`:

    .. math::

        y_{:, h, w} = W x_{:, h, w},\quad W = P L \big(U + \operatorname{diag}(\mathrm{diag\_sign}
        \odot e^{\log s})\big),\quad \log|\det J| = H\,W \textstyle\sum_c \log s_c.

    Cost: both directions one ``conv2d`` with a ``C x C x 1 x 1`` kernel; the log-det is O(C)
    (no determinant of a ``C x C`` matrix). The inverse kernel costs two triangular solves per
    call. Initialised to a random rotation (``init="rotation"``, Glow) or the identity.

    Shapes:
        x, y: ``(*batch, C, H, W)``.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C``.
        init: ``"rotation"`` (Glow) or ``"identity"``.
    Raises:
        ValueError: ``num_channels < 1`` or an unknown ``init``; inputs whose channel count
            differs from ``C``.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> f = Invertible1x1Conv(4)
        >>> f(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(self, num_channels: int, *, init: str = "rotation") -> None:
        _check_size("num_channels", num_channels)
        super().__init__((num_channels, None, None), num_channels, init)
        self.num_channels = num_channels

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        out = F.conv2d(x.reshape((-1, *shape[-3:])), weight[..., None, None])
        return out.reshape(shape)

    def _ladj(self, x: torch.Tensor) -> torch.Tensor:
        return (x.shape[-1] * x.shape[-2] * self.log_s.sum()).expand(x.shape[:-3])

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._conv(x, self.weight()), self._ladj(x)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._conv(y, self.inverse_weight()), -self._ladj(y)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"


class QRLinear(Bijector):
    r"""Invertible linear layer with a QR-decomposed weight.

    What it computes:

    .. math::
        y = Q R x + b,\quad Q = \textstyle\prod_{k=1}^{K} \big(I - 2 v_k v_k^\top / \|v_k\|^2\big),
        \quad R = \operatorname{triu}(U, 1) + \operatorname{diag}(e^{\log r}),\quad
        \log|\det J| = \textstyle\sum_i \log r_i,

    ``Q`` orthogonal (a product of ``K`` Householder reflections), ``R`` upper triangular with
    a positive diagonal, so the map is invertible for every value of the parameters.

    Cost: both directions one ``D x D`` matrix product per input; building ``Q`` costs
    ``O(K D^2)`` and the inverse one triangular solve, once per call. At initialization ``Q``
    is a random rotation-reflection (random ``v_k``) and ``R = I``.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.
        num_reflections: ``K`` (default ``D``, enough for every orthogonal matrix).
        bias: learn the shift ``b`` (initialised to zero).
    Raises:
        ValueError: ``input_dim < 1`` or ``num_reflections < 1``.
    References:
        Tomczak, Welling (2016). Improving Variational Auto-Encoders using Householder Flow.
        https://arxiv.org/abs/1611.09630
        Hoogeboom, van den Berg, Welling (2019). Emerging Convolutions for Generative
        Normalizing Flows (QR 1x1 convolutions). https://arxiv.org/abs/1901.11137
    Example:
        >>> f = QRLinear(3)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-5)
        True
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    def __init__(
        self, input_dim: int, *, num_reflections: int | None = None, bias: bool = True
    ) -> None:
        _check_size("input_dim", input_dim)
        num_reflections = input_dim if num_reflections is None else num_reflections
        _check_size("num_reflections", num_reflections)
        super().__init__((input_dim,))
        self.input_dim = input_dim
        self.reflections = nn.Parameter(torch.randn(num_reflections, input_dim))
        self.upper = nn.Parameter(torch.zeros(input_dim, input_dim))
        self.log_diag = nn.Parameter(torch.zeros(input_dim))
        self.bias = nn.Parameter(torch.zeros(input_dim)) if bias else None

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.eye(self.input_dim, dtype=self.upper.dtype, device=self.upper.device)
        for v in self.reflections:
            v = v / v.norm()
            q = q - 2 * torch.outer(q @ v, v)
        r = self.upper.triu(1) + torch.diag(torch.exp(self.log_diag))
        return q, r

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, r = self._factors()
        return F.linear(x, q @ r, self.bias), self.log_diag.sum().expand(x.shape[:-1])

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, r = self._factors()
        if self.bias is not None:
            y = y - self.bias
        w_inv = torch.linalg.solve_triangular(r, q.T, upper=True)
        return F.linear(y, w_inv), (-self.log_diag.sum()).expand(y.shape[:-1])

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, num_reflections={self.reflections.shape[0]}"
