"""Autoregressive layers over a MADE conditioner (MAF, IAF, neural spline flows): one layer,
any elementwise map, the cheap direction chosen at construction."""

from __future__ import annotations

import torch

from pyrogen.nn.networks import MADE
from pyrogen.nn.sequential import made_sequential
from pyrogen.transforms.base import Bijector, Conditional
from pyrogen.transforms.coupling import call
from pyrogen.transforms.elementwise import Affine, Elementwise, as_map

__all__ = "Autoregressive ConditionalAutoregressive ConditionalInverseAutoregressive".split()
__all__ += "ConditionalMaskedAutoregressive InverseAutoregressive MaskedAutoregressive".split()

CHEAP = ("inverse", "forward")


class Autoregressive(Bijector):
    r"""Autoregressive layer :math:`y_i = g(x_i; \theta_i(c_{<i}))`, :math:`\theta` from a MADE and
    ``c`` the data ``y`` (``cheap="inverse"``: MAF) or the noise ``x`` (``cheap="forward"``: IAF).

    What it computes: :math:`\log|\det J_f(x)| = \sum_i \log g'(x_i; \theta_i)` for the
    elementwise ``transform`` ``g`` (affine with a soft bound, rational-quadratic spline ...).

    Cost: the cheap direction is one MADE pass. The other is solved one variable at a time in
    the MADE's order, computing each hidden unit once when its inputs are final
    (:func:`~pyrogen.nn.sequential.made_sequential`): the arithmetic of one MADE pass plus
    ``D`` small steps per layer, not ``D`` passes. MAF scores data cheaply, IAF its own
    samples. Identity at initialization (the MADE's last layer is zero).

    Shapes:
        x, y: ``(*batch, D)``.  ladj: ``(*batch,)`` (nats).
    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``num_params = transform.num_params``.
        transform: the elementwise map (default ``Affine(5.0)``).
        cheap: ``"inverse"`` (MAF) or ``"forward"`` (IAF).
    Raises:
        TypeError: the conditioner is not a MADE, or ``transform`` not an elementwise map.
        ValueError: the MADE's ``num_params`` does not fit ``transform``; an unknown ``cheap``.
    References:
        Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
        Estimation. https://arxiv.org/abs/1705.07057
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
    Example:
        >>> from pyrogen.nn import MADE
        >>> from pyrogen.transforms import RationalQuadraticSpline
        >>> g = RationalQuadraticSpline(4)
        >>> f = Autoregressive(MADE(3, [16], num_params=g.num_params), g)
        >>> x = torch.randn(2, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-6)
        True
    """

    def __init__(
        self, conditioner: MADE, transform: Elementwise | None = None, *, cheap: str = "inverse"
    ) -> None:
        transform = as_map(transform)
        if not isinstance(conditioner, MADE):
            raise TypeError(f"conditioner must be a pyrogen.nn.MADE, got {conditioner!r}")
        if conditioner.num_params != (n := transform.num_params):
            raise ValueError(f"conditioner.num_params must be {n}, got {conditioner.num_params}")
        if cheap not in CHEAP:
            raise ValueError(f"cheap must be one of {CHEAP}, got {cheap!r}")
        super().__init__((conditioner.input_dim,))
        self.input_dim, self.cheap = conditioner.input_dim, cheap
        self.conditioner, self.transform = conditioner, transform

    def _params(self, c: torch.Tensor, context) -> torch.Tensor:
        return call(self.conditioner, c, context).movedim(-2, -1)  # (*batch, D, P)

    def _solve(self, target, context, step) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed point of ``c <- step(target, params(c))``, each MADE unit computed once."""
        return made_sequential(self.conditioner, step, target, context)

    def forward_and_ladj(self, x, context=None):
        if self.cheap == "forward":
            y, ladj = self.transform.forward(x, self._params(x, context))
        else:
            y, ladj = self._solve(x, context, self.transform.forward)
        return y, ladj.sum(-1)

    def inverse_and_ladj(self, y, context=None):
        if self.cheap == "inverse":
            x, ladj = self.transform.inverse(y, self._params(y, context))
        else:
            x, ladj = self._solve(y, context, self.transform.inverse)
        return x, ladj.sum(-1)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, cheap={self.cheap!r}, transform={self.transform!r}"


class ConditionalAutoregressive(Conditional, Autoregressive):
    """:class:`Autoregressive` over a MADE with ``context_dim > 0`` (else TypeError);
    ``condition(context)`` gives the plain layer (shared parameters)."""

    def __init__(self, conditioner: MADE, *args, **kwargs) -> None:
        if not isinstance(conditioner, MADE) or conditioner.context_dim < 1:
            raise TypeError("conditioner must be a pyrogen.nn.MADE with context_dim > 0")
        super().__init__(conditioner, *args, **kwargs)


class MaskedAutoregressive(Autoregressive):
    r"""Affine MAF layer :math:`y_i = x_i e^{\tilde s_i(y_{<i})} + \mu_i(y_{<i})`:
    :class:`Autoregressive` with the :class:`~pyrogen.transforms.Affine` map and
    ``cheap="inverse"``; :class:`InverseAutoregressive` has ``cheap="forward"``.

    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``num_params=2``.
        log_scale_bound: ``B`` (nats) of the soft bound ``B tanh(s / B)``, or ``None``.
    Raises:
        TypeError, ValueError: as :class:`Autoregressive`; a bad ``log_scale_bound``.
    Example:
        >>> from pyrogen.nn import MADE
        >>> f = MaskedAutoregressive(MADE(3, [16], order="reversed"))
        >>> f(InverseAutoregressive(MADE(3, [16]))(torch.randn(2, 3))).shape
        torch.Size([2, 3])
    """

    _cheap = "inverse"

    def __init__(self, conditioner: MADE, *, log_scale_bound: float | None = 5.0) -> None:
        super().__init__(conditioner, Affine(log_scale_bound), cheap=self._cheap)
        self.log_scale_bound = log_scale_bound


class InverseAutoregressive(MaskedAutoregressive):
    r"""Affine IAF layer :math:`y = x e^{\tilde s(x)} + \mu(x)`; see
    :class:`MaskedAutoregressive`."""

    _cheap = "forward"


class ConditionalMaskedAutoregressive(ConditionalAutoregressive, MaskedAutoregressive):
    """:class:`MaskedAutoregressive` over a MADE with a context."""


class ConditionalInverseAutoregressive(ConditionalAutoregressive, InverseAutoregressive):
    """:class:`InverseAutoregressive` over a MADE with a context (amortized guides)."""
