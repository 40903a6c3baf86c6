"""Planar flow with an invertibility-preserving reparameterization and a numerical inverse."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pyrogen.transforms.base import Bijector, traced
from pyrogen.util import check_count, check_real

__all__ = ["Planar"]

# softplus(_SHIFT) == 1, so m(0) = 0 and the layer is the identity when u = 0.
_SHIFT = math.log(math.e - 1.0)


class Planar(Bijector):
    r"""Planar flow :math:`y = x + \hat u \tanh(w^\top x + b)` (Rezende & Mohamed 2015).

    What it computes: :math:`\hat u = u + (m(w^\top u) - w^\top u) w / \|w\|^2` with
    :math:`m(a) = \max(\operatorname{softplus}(a + \log(e - 1)), \sqrt{\epsilon}) - 1`
    (:math:`\epsilon` the dtype's machine epsilon), so :math:`w^\top \hat u = m > -1` also
    after rounding (invertible for all parameters, the Newton steps of the inverse never divide
    by zero) and ``m(0) = 0`` (identity at ``u = 0``, the initialization);
    :math:`\log|\det J| = \log(1 + w^\top\hat u\,(1 - \tanh^2(w^\top x + b)))`.

    Inverse: :math:`a = w^\top x + b` solves :math:`a + c \tanh a = w^\top y + b =: t`,
    :math:`c = w^\top \hat u` (increasing, root in :math:`[t - |c|, t + |c|]`), by Newton steps
    from :math:`a_0 = \operatorname{sign}(t)\max(|t| - c, 0)`, where they approach the root
    from one side (bisection of the bracket as a safeguard), until
    :math:`|a + c\tanh a - t| \le \mathrm{inverse\_tol}\,(1 + |t| + |c|)` for every element
    (converged elements are frozen); then :math:`x = y - \hat u \tanh a`. Parameter gradients
    come from one differentiable Newton step at the root.

    Cost: forward one O(D) pass; inverse at most ``max_inverse_iters`` O(D) passes (at most 19
    over ``c`` from -0.999999 to 1e6 and ``|t|`` up to 1e8 in float64 and float32; all of them,
    without a convergence error, under ``torch.func``).

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        input_dim: ``D``.
        inverse_tol: relative tolerance of the root find (``None``: ``32 * eps`` of the dtype);
            at least the machine epsilon of the dtype it runs in (float64: 2.2e-16, float32:
            1.2e-7), since no root find resolves more.
        max_inverse_iters: iteration cap of the root find.
    Raises:
        ValueError: ``input_dim < 1``, ``inverse_tol`` not a finite number >= 2.2e-16 (checked
            again against the input's dtype by the inverse), ``max_inverse_iters < 1``.
        RuntimeError: from the inverse, when the root find does not converge within the cap.
    References:
        Rezende, Mohamed (2015). Variational Inference with Normalizing Flows.
        https://arxiv.org/abs/1505.05770
    Example:
        >>> f = Planar(2)
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(f(x), x)  # identity at initialization
        True
    """

    def __init__(
        self, input_dim: int, *, inverse_tol: float | None = None, max_inverse_iters: int = 100
    ) -> None:
        check_count(input_dim, "input_dim")
        check_count(max_inverse_iters, "max_inverse_iters")
        eps64 = torch.finfo(torch.float64).eps
        check_real(inverse_tol, "inverse_tol", low=eps64, low_inclusive=True, allow_none=True)
        super().__init__((input_dim,))
        self.input_dim, self.inverse_tol = input_dim, inverse_tol
        self.max_inverse_iters = max_inverse_iters
        bound = 1.0 / math.sqrt(input_dim)
        self.u = nn.Parameter(torch.zeros(input_dim))
        self.w = nn.Parameter(torch.empty(input_dim).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(()))

    def _constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`\\hat u` and :math:`c = w^\\top \\hat u = m(w^\\top u)` (taken as ``m``, not
        recomputed as a dot product that could round to -1)."""
        wu = self.w @ self.u
        floor = torch.finfo(wu.dtype).eps ** 0.5
        m = F.softplus(wu + _SHIFT).clamp(min=floor) - 1.0
        return self.u + (m - wu) * self.w / (self.w @ self.w), m

    def u_hat(self) -> torch.Tensor:
        """The constrained vector :math:`\\hat u` of shape ``(input_dim,)``."""
        return self._constrained()[0]

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_hat, c = self._constrained()
        t = torch.tanh(x @ self.w + self.b)
        return x + u_hat * t.unsqueeze(-1), torch.log1p(c * (1 - t * t))

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_hat, c = self._constrained()
        target = y @ self.w + self.b
        with torch.no_grad():
            a = self._solve(target.detach(), c.detach())
        # One differentiable Newton step at the root: same value, implicit-function gradients.
        th = torch.tanh(a)
        a = a - (a + c * th - target) / (1 + c * (1 - th * th))
        t = torch.tanh(a)
        x = y - u_hat * t.unsqueeze(-1)
        return x, -torch.log1p(c * (1 - t * t))

    def _solve(self, target: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(target.dtype).eps
        if self.inverse_tol is not None and self.inverse_tol < eps:
            raise ValueError(
                f"inverse_tol={self.inverse_tol:g} is below the resolution of {target.dtype} "
                f"(eps = {eps:.3g}): the root find cannot reach it; use inverse_tol >= {eps:.3g}"
                " or None"
            )
        tol = self.inverse_tol or 32 * eps
        scale = tol * (1 + target.abs() + c.abs())
        lo, hi = target - c.abs(), target + c.abs()
        # start on the side of the root from which Newton's iterates are monotone: the root has
        # the sign of t and lies between t and t - c sign(t); g(a) = a + c tanh(a) is concave
        # (c > 0) or convex (c < 0) on that side of 0, so from a = sign(t) max(|t| - c, 0) the
        # Newton steps approach the root from one side and never leave the bracket
        a = torch.sign(target) * (target.abs() - c).clamp(min=0)
        for _ in range(self.max_inverse_iters):
            th = torch.tanh(a)
            f = a + c * th - target
            done = f.abs() <= scale
            if not traced() and bool(done.all()):  # no stopping under torch.func
                return a
            lo = torch.where(f < 0, a, lo)
            hi = torch.where(f > 0, a, hi)
            newton = a - f / (1 + c * (1 - th * th))
            inside = (newton >= lo) & (newton <= hi)
            # converged elements stay where they are (a Newton step of 0 lands on the bracket)
            a = torch.where(done, a, torch.where(inside, newton, (lo + hi) / 2))
        if traced():
            return a
        raise RuntimeError(
            f"Planar inverse did not converge in {self.max_inverse_iters} iterations (max "
            f"residual {f.abs().max().item():.3g}, tolerance {tol:.3g}); raise max_inverse_iters"
        )

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"
