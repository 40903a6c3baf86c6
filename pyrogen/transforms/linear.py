"""Invertible linear and affine maps: fixed permutations, LU- and QR-decomposed linear layers,
Glow's 1x1 convolution and ActNorm."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pyrogen.transforms.base import Bijector
from pyrogen.util import check_count, check_positive

__all__ = "ActNorm Invertible1x1Conv LULinear Permute QRLinear".split()


_INITS = ("rotation", "identity")


class Permute(Bijector):
    r"""Fixed permutation of the last dimension: :math:`y_i = x_{\pi(i)}`, log-det zero.

    The permutation is a buffer, saved in the ``state_dict``. Cost: O(D) each way.

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

    volume_preserving = True

    def __init__(self, permutation: Sequence[int] | torch.Tensor) -> None:
        if isinstance(permutation, torch.Tensor):
            integral = not (permutation.is_floating_point() or permutation.is_complex())
        else:
            if isinstance(permutation, (str, bytes)) or not hasattr(permutation, "__len__"):
                raise ValueError(f"permutation must be a sequence of ints, got {permutation!r}")
            integral = all(isinstance(i, numbers.Integral) for i in permutation)
        if not integral:
            raise ValueError(f"permutation must hold ints, got {permutation!r}")
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
        w = torch.eye(size, dtype=torch.float64)
        if init == "rotation":
            w = torch.linalg.qr(torch.randn(size, size, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w)
        perm = p.argmax(dim=1)
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

    What it computes: :math:`y = W x + b`, :math:`W = P L (U + \operatorname{diag}(\sigma \odot
    e^{\log s}))`, :math:`\log|\det J| = \sum_i \log s_i`; ``P`` a fixed permutation, ``L``
    unit lower and ``U`` strictly upper triangular, the signs :math:`\sigma` fixed (the
    determinant never crosses zero). Cost: one ``D x D`` product per input each way; the inverse
    weight is two triangular solves per call. Initialization: a random rotation
    (``init="rotation"``, Glow) or the identity.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.  bias: learn ``b`` (zero at first).  init: ``"rotation"``/``"identity"``.
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

    def __init__(self, input_dim: int, *, bias: bool = True, init: str = "rotation") -> None:
        check_count(input_dim, "input_dim")
        super().__init__((input_dim,), input_dim, init)
        self.input_dim = input_dim
        self.bias = nn.Parameter(torch.zeros(input_dim)) if bias else None

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, bias={self.bias is not None}"


class Invertible1x1Conv(_LUDecomposed):
    r"""Glow's invertible 1x1 convolution :math:`y_{:, h, w} = W x_{:, h, w}` with the
    LU-decomposed ``C x C`` weight of :class:`LULinear`; :math:`\log|\det J| = H W \sum_c \log
    s_c`. Cost: one ``conv2d`` with a ``1 x 1`` kernel each way.

    Shapes:
        x, y: ``(*batch, C, H, W)``.  ladj: ``(*batch,)`` (nats).
    Args:
        num_channels: ``C``.  init: ``"rotation"`` (Glow) or ``"identity"``.
    Raises:
        ValueError: ``num_channels < 1``, an unknown ``init``, inputs without ``C`` channels.
    Example:
        >>> Invertible1x1Conv(4)(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, num_channels: int, *, init: str = "rotation") -> None:
        check_count(num_channels, "num_channels")
        super().__init__((num_channels, None, None), num_channels, init)
        self.num_channels, self.bias = num_channels, None

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"


class QRLinear(_Linear):
    r"""Invertible linear layer with a QR-decomposed weight.

    What it computes: :math:`y = Q R x + b`, :math:`Q = \prod_{k=1}^{K} (I - 2 v_k v_k^\top /
    \|v_k\|^2)` orthogonal (``K`` Householder reflections), :math:`R = \operatorname{triu}(U, 1)
    + \operatorname{diag}(e^{\log r})` upper triangular with a positive diagonal (invertible for
    all parameters); :math:`\log|\det J| = \sum_i \log r_i`. Cost: one ``D x D`` product per
    input each way; ``Q`` costs ``O(K D^2)`` and the inverse one triangular solve per call.
    Initialization: ``Q`` random orthogonal, ``R = I``.

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.  num_reflections: ``K`` (default ``D``: every orthogonal matrix).
        bias: learn ``b`` (zero at first).
    Raises:
        ValueError: ``input_dim < 1`` or ``num_reflections < 1``.
    References:
        Tomczak, Welling (2016). Improving Variational Auto-Encoders using Householder Flow.
        https://arxiv.org/abs/1611.09630
    Example:
        >>> f = QRLinear(3)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-5)
        True
    """

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


class ActNorm(Bijector):
    r"""Per-channel affine map with data-dependent initialization (Glow's ActNorm).

    What it computes, per channel ``c`` (the first event dimension), with ``n`` the product of
    the other event sizes: :math:`y = x e^{\log\sigma_c} + \mu_c`,
    :math:`\log|\det J| = n \sum_c \log\sigma_c`. When its first call is an inverse (it first
    sees data) or on :meth:`initialize`, it sets :math:`\mu_c, \log\sigma_c` to the batch's
    per-channel mean and log-sd; a first forward call keeps the identity. ``initialized`` is a
    buffer, so a reloaded model is not re-initialised. Cost: O(size of x) each way.

    Shapes:
        x, y: ``(*batch, *event_shape)``.  ladj: ``(*batch,)`` (nats).
    Args:
        event_shape: ``(D,)`` or ``(C, H, W)``.  eps: added to the sd at initialization.
    Raises:
        ValueError: a bad ``event_shape``, ``eps <= 0``, or fewer than 2 values per channel.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> f = ActNorm((2,))
        >>> x = f.inv(3.0 + 2.0 * torch.randn(1000, 2))
        >>> bool(x.mean(0).abs().max() < 1e-4), bool((x.std(0) - 1).abs().max() < 1e-2)
        (True, True)
    """

    def __init__(self, event_shape: Sequence[int], *, eps: float = 1e-6) -> None:
        event_shape = tuple(event_shape)
        if not event_shape or not all(isinstance(n, int) and n >= 1 for n in event_shape):
            raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape!r}")
        check_positive(eps, "eps")
        super().__init__(event_shape)
        self.eps = eps
        param_shape = (event_shape[0],) + (1,) * (len(event_shape) - 1)
        self.shift = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _ladj(self, x: torch.Tensor) -> torch.Tensor:
        per_channel = math.prod(self.event_shape[1:])
        batch = x.shape[: x.dim() - len(self.event_shape)]
        return (per_channel * self.log_scale.sum()).expand(batch)

    @torch.no_grad()
    def initialize(self, y: torch.Tensor) -> None:
        """Set shift and log-scale from data ``y`` of shape ``(*batch, *event_shape)``."""
        first = y.dim() - len(self.event_shape)
        channel_first = y.movedim(first, 0).reshape(self.event_shape[0], -1)
        if channel_first.shape[1] < 2:
            raise ValueError("ActNorm needs at least 2 values per channel to initialize")
        self.shift.copy_(channel_first.mean(1).reshape(self.shift.shape))
        self.log_scale.copy_(torch.log(channel_first.std(1) + self.eps).reshape(self.shift.shape))
        self.initialized.fill_(True)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.initialized.fill_(True)
        return x * torch.exp(self.log_scale) + self.shift, self._ladj(x)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.initialized):
            self.initialize(y)
        return (y - self.shift) * torch.exp(-self.log_scale), -self._ladj(y)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"
