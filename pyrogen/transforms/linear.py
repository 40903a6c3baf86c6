"""Invertible linear maps: fixed permutations, LU- and QR-decomposed linear layers, Glow's 1x1
convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from pyrogen.transforms.base import Bijector
from pyrogen.util import check_count

__all__ = "Invertible1x1Conv LULinear Permute QRLinear".split()


_INITS = ("rotation", "identity")


class Permute(Bijector):
    r"""Fixed permutation of the last dimension: :math:`y_i = x_{\pi(i)}`, log-det zero.

    The permutation is a buffer, saved in the ``state_dict`` (unlike Pyro's ``Permute``).
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


class _Linear(Bijector):
    """``y = W x + b`` on the last dimension (vectors) or on the channels at every pixel
    (images, no bias); a subclass gives ``_weight(inverse) -> (W or W^{-1}, log|det W|)``."""

    def _weight(self, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _map(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        w, log_det = self._weight(inverse)
        if len(self.event_shape) == 1:
            bias = self.bias
            if inverse and bias is not None:
                x = x - bias
            y = F.linear(x, w, None if inverse else bias)
            return y, (-log_det if inverse else log_det).expand(x.shape[:-1])
        shape = x.shape
        y = F.conv2d(x.reshape((-1, *shape[-3:])), w[..., None, None]).reshape(shape)
        log_det = shape[-1] * shape[-2] * log_det
        return y, (-log_det if inverse else log_det).expand(shape[:-3])

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, False)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(y, True)


class _LUDecomposed(_Linear):
    """Parameters ``W = P L (U + diag(diag_sign * exp(log_s)))`` shared by LULinear and 1x1 conv."""

    def __init__(self, event_shape: tuple[int | None, ...], size: int, init: str) -> None:
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        super().__init__(event_shape)
        if init == "rotation":
            p, lower, upper = torch.linalg.lu(torch.linalg.qr(torch.randn(size, size).double())[0])
            perm = p.argmax(dim=1)
        else:
            perm, lower = torch.arange(size), torch.eye(size, dtype=torch.float64)
            upper = lower
        diag, dtype = upper.diagonal(), torch.get_default_dtype()
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

    def _weight(self, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inverse_weight() if inverse else self.weight(), self.log_s.sum()


class LULinear(_LUDecomposed):
    r"""Invertible linear layer with an LU-decomposed weight (Glow, vector form).

    What it computes: :math:`y = W x + b`, :math:`W = P L (U + \operatorname{diag}(\sigma
    \odot e^{\log s}))`, :math:`\log|\det J| = \sum_i \log s_i`, with ``P`` a fixed
    permutation, ``L`` unit lower triangular, ``U`` strictly upper triangular and the signs
    :math:`\sigma` fixed, so the determinant never crosses zero.

    Cost: both directions one ``D x D`` matrix product per input; the log-det is O(D); the
    inverse weight costs two triangular solves once per call. At initialization ``W`` is a
    random rotation (``init="rotation"``, Glow) or the identity.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.  bias: learn the shift ``b`` (zero at initialization).
        init: ``"rotation"`` or ``"identity"``.
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
        check_count(input_dim, "input_dim")
        super().__init__((input_dim,), input_dim, init)
        self.input_dim = input_dim
        self.bias = nn.Parameter(torch.zeros(input_dim)) if bias else None

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, bias={self.bias is not None}"


class Invertible1x1Conv(_LUDecomposed):
    r"""Glow's invertible 1x1 convolution: :math:`y_{:, h, w} = W x_{:, h, w}` at every pixel,
    with the LU-decomposed ``C x C`` weight of :class:`LULinear`;
    :math:`\log|\det J| = H W \sum_c \log s_c` (no determinant of a ``C x C`` matrix).

    Cost: both directions one ``conv2d`` with a ``C x C x 1 x 1`` kernel.

    Shapes:
        x, y: ``(*batch, C, H, W)``.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C``.  init: ``"rotation"`` (Glow) or ``"identity"``.
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
        check_count(num_channels, "num_channels")
        super().__init__((num_channels, None, None), num_channels, init)
        self.num_channels, self.bias = num_channels, None

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"


class QRLinear(_Linear):
    r"""Invertible linear layer with a QR-decomposed weight.

    What it computes: :math:`y = Q R x + b`, with
    :math:`Q = \prod_{k=1}^{K} (I - 2 v_k v_k^\top / \|v_k\|^2)` orthogonal (``K``
    Householder reflections) and :math:`R = \operatorname{triu}(U, 1) +
    \operatorname{diag}(e^{\log r})` upper triangular with a positive diagonal, so the map is
    invertible for every value of the parameters; :math:`\log|\det J| = \sum_i \log r_i`.

    Cost: both directions one ``D x D`` matrix product per input; building ``Q`` costs
    ``O(K D^2)`` and the inverse one triangular solve, once per call. At initialization ``Q``
    is a random orthogonal matrix (random ``v_k``) and ``R = I``.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.  num_reflections: ``K`` (default ``D``: every orthogonal matrix).
        bias: learn the shift ``b`` (zero at initialization).
    Raises:
        ValueError: ``input_dim < 1`` or ``num_reflections < 1``.
    References:
        Tomczak, Welling (2016). Improving Variational Auto-Encoders using Householder Flow.
        https://arxiv.org/abs/1611.09630
        Hoogeboom, van den Berg, Welling (2019). Emerging Convolutions for Generative
        Normalizing Flows. https://arxiv.org/abs/1901.11137
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
        check_count(input_dim, "input_dim")
        check_count(input_dim if num_reflections is None else num_reflections, "num_reflections")
        super().__init__((input_dim,))
        self.input_dim = input_dim
        self.reflections = nn.Parameter(torch.randn(num_reflections or input_dim, input_dim))
        self.upper = nn.Parameter(torch.zeros(input_dim, input_dim))
        self.log_diag = nn.Parameter(torch.zeros(input_dim))
        self.bias = nn.Parameter(torch.zeros(input_dim)) if bias else None

    def _weight(self, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.eye(self.input_dim, dtype=self.upper.dtype, device=self.upper.device)
        for v in self.reflections:
            v = v / v.norm()
            q = q - 2 * torch.outer(q @ v, v)
        r = self.upper.triu(1) + torch.diag(torch.exp(self.log_diag))
        w = torch.linalg.solve_triangular(r, q.T, upper=True) if inverse else q @ r
        return w, self.log_diag.sum()

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, num_reflections={self.reflections.shape[0]}"
