"""Restricted Boltzmann machines (Bernoulli and Gaussian visible units) as Pyro distributions."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import Bernoulli, Normal, constraints

from pyrogen.distributions.annealing import BipartitePath, base_rate_bias
from pyrogen.distributions.base import broadcast_params, enumerated_logsumexp, sample_enumerated
from pyrogen.distributions.energy_model import EnergyModel
from pyrogen.util import bernoulli_draw, check_count

__all__ = ["BernoulliRBM", "GaussianBernoulliRBM"]


def _too_large(model) -> str:
    return (
        f"{type(model).__name__} is too large for an exact log Z (more than "
        f"{model.max_enumerable_units} units in the layer to enumerate); use "
        "log_partition(method='ais')"
    )


class _RBM(EnergyModel):
    """Shared parts of the two RBMs: shapes, conditionals, block Gibbs, exact enumeration."""

    arg_constraints: ClassVar[dict] = {
        "weight": constraints.real,
        "visible_bias": constraints.real,
        "hidden_bias": constraints.real,
    }
    has_rsample = False

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        *,
        num_gibbs_steps: int = 1000,
        log_partition: torch.Tensor | None = None,
        validate_args: bool | None = None,
        **extra: torch.Tensor,
    ) -> None:
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            raise ValueError(
                "weight must be a tensor of shape (*batch, n_visible, n_hidden), got "
                f"{getattr(weight, 'shape', type(weight).__name__)}"
            )
        n_visible, n_hidden = weight.shape[-2:]
        params, batch_shape = broadcast_params(
            {"weight": weight, "visible_bias": visible_bias, "hidden_bias": hidden_bias, **extra},
            {
                "weight": (n_visible, n_hidden),
                "visible_bias": (n_visible,),
                "hidden_bias": (n_hidden,),
                **{k: (n_visible,) for k in extra},
            },
        )
        for name, value in params.items():
            setattr(self, name, value)
        self.num_gibbs_steps = check_count(num_gibbs_steps, "num_gibbs_steps")
        super().__init__(
            batch_shape,
            torch.Size([n_visible]),
            log_partition=log_partition,
            validate_args=validate_args,
        )

    @property
    def like(self) -> torch.Tensor:
        return self.weight

    @property
    def n_visible(self) -> int:
        return self.weight.shape[-2]

    @property
    def n_hidden(self) -> int:
        return self.weight.shape[-1]

    def _visible_input(self, v: torch.Tensor) -> torch.Tensor:
        """The visible units' input to the hidden layer, ``v^T W`` (Gaussian: ``(v/sigma)^T W``)."""
        v = v.to(self.weight.dtype)
        if self.weight.dim() == 2:
            return v @ self.weight
        return (v.unsqueeze(-2) @ self.weight).squeeze(-2)

    def _hidden_input(self, h: torch.Tensor) -> torch.Tensor:
        """``W h``, shape ``(*, n_visible)``."""
        h = h.to(self.weight.dtype)
        if self.weight.dim() == 2:
            return h @ self.weight.T
        return (self.weight @ h.unsqueeze(-1)).squeeze(-1)

    def hidden_given_visible(self, v: torch.Tensor) -> Bernoulli:
        """:math:`p(h \\mid v)`: independent Bernoullis, ``batch_shape + (n_hidden,)`` event 1."""
        return Bernoulli(logits=self.hidden_bias + self._visible_input(v)).to_event(1)

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Run ``num_steps`` sweeps of block Gibbs sampling (``h ~ p(h|v)``, then ``v ~ p(v|h)``)
        from the visible state ``value`` and return the final visible state (no gradient).

        Shapes:
            value, returns: ``(*sample, *batch_shape, n_visible)``.
        Raises:
            ValueError: ``num_steps < 0``; ``value`` of the wrong width or, with validation
                on, outside the support (e.g. NaN).
        """
        check_count(num_steps, "num_steps", minimum=0)
        v, _ = self._checked_value(value.detach(), self.parameter_batch_shape)
        with torch.no_grad():
            for _ in range(num_steps):
                h = bernoulli_draw(torch.sigmoid(self.hidden_bias + self._visible_input(v)))
                v = self._draw_visible(h)
        return v

    def _draw_visible(self, h: torch.Tensor) -> torch.Tensor:
        """A draw of :math:`p(v \\mid h)` (no gradient)."""
        return self.visible_given_hidden(h).sample()

    def _enumerate_hidden_ok(self) -> bool:
        return self.n_hidden <= self.max_enumerable_units

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _log_partition_by_hidden(self) -> torch.Tensor:
        return enumerated_logsumexp(
            self._log_marginal_hidden, self.n_hidden, self.weight, extra=self._log_z_constant()
        )

    def _log_z_constant(self) -> torch.Tensor | float:
        return 0.0

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Exact draws when the hidden layer is enumerable (``n_hidden <= 20``): ``h`` from its
        marginal, then ``v ~ p(v | h)``; otherwise ``num_gibbs_steps`` block-Gibbs sweeps from
        uniformly random visible states (approximate; increase ``num_gibbs_steps`` to mix).

        Shapes:
            returns ``sample_shape + batch_shape + (n_visible,)``.
        """
        shape = torch.Size(sample_shape)
        if (shape + self.batch_shape).numel() == 0:
            return self.like.new_zeros(shape + self.batch_shape + self.event_shape)
        with torch.no_grad():
            if self._enumerate_hidden_ok():
                h = sample_enumerated(
                    self._log_marginal_hidden, self.n_hidden, shape, self.batch_shape, self.weight
                )
                return self._draw_visible(h)
            return self.markov_chain(self._random_visible(shape), self.num_gibbs_steps)


class BernoulliRBM(_RBM):
    r"""Restricted Boltzmann machine with binary visible and hidden units.

    What it computes: with :math:`v \in \{0,1\}^{V}`, :math:`h \in \{0,1\}^{H}`,

    .. math::
        E(v, h) = -v^\top W h - b^\top v - c^\top h, \qquad
        p(v) = \frac{1}{Z} \sum_h e^{-E(v, h)} = \frac{e^{-F(v)}}{Z},

    with the free energy :math:`F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j +
    (v^\top W)_j)` and :math:`\log Z = \log \sum_h \exp(c^\top h + \sum_i
    \operatorname{softplus}(b_i + (W h)_i))` (or the same sum over ``v``). ``log_prob`` is the
    normalized :math:`-F(v) - \log Z` in nats: ``log Z`` is exact when the smaller layer has at
    most ``max_enumerable_units`` (20) units (the enumeration costs :math:`2^{\min(V, H)}`
    passes, recomputed on every call); otherwise it is the estimate attached with
    :meth:`attach_log_partition` (e.g. ``rbm.log_partition(method="ais")``), and without one
    ``log_prob`` raises instead of returning an unnormalized value. Conditionals are
    :math:`p(h_j = 1 \mid v) = \sigma(c_j + (v^\top W)_j)` and :math:`p(v_i = 1 \mid h) =
    \sigma(b_i + (W h)_i)`.

    Shapes:
        weight: ``(*batch, V, H)``.  visible_bias: ``(*batch, V)``.
        hidden_bias: ``(*batch, H)`` (batch dims broadcast).
        Samples and values: ``(*sample, *batch, V)``.
        ``log_prob``, ``free_energy``: ``(*sample, *batch)``.
    Args:
        weight, visible_bias, hidden_bias: :math:`W, b, c` (real).
        num_gibbs_steps: block-Gibbs sweeps per ``sample`` when exact sampling is impossible.
        log_partition: an estimate of ``log Z`` (nats, ``batch_shape``) to use when it cannot be
            enumerated.
        validate_args: Pyro/torch argument validation (binary values, finite parameters).
    Raises:
        ValueError: parameter shapes that do not agree, ``num_gibbs_steps < 1``; with validation
            on, non-binary values or non-finite parameters; ``log_prob`` with no exact or
            attached ``log Z``.
    References:
        Smolensky (1986). Information processing in dynamical systems: foundations of harmony
        theory. Hinton (2002). Training Products of Experts by Minimizing Contrastive
        Divergence. https://doi.org/10.1162/089976602760128018
    Example:
        >>> rbm = BernoulliRBM(torch.randn(4, 3), torch.zeros(4), torch.zeros(3))
        >>> states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4)
        >>> round(float(rbm.log_prob(states).exp().sum()), 6)
        1.0
    """

    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = True

    def __init__(self, weight, visible_bias, hidden_bias, **kwargs) -> None:
        super().__init__(weight, visible_bias, hidden_bias, **kwargs)

    def visible_given_hidden(self, h: torch.Tensor) -> Bernoulli:
        """:math:`p(v \\mid h)`: independent Bernoullis, event shape ``(n_visible,)``."""
        return Bernoulli(logits=self.visible_bias + self._hidden_input(h)).to_event(1)

    def _draw_visible(self, h: torch.Tensor) -> torch.Tensor:
        return bernoulli_draw(torch.sigmoid(self.visible_bias + self._hidden_input(h)))

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)` in nats, shape ``broadcast(v, h)[:-1]``."""
        return -(
            (self._visible_input(v) * h).sum(-1)
            + (self.visible_bias * v).sum(-1)
            + (self.hidden_bias * h).sum(-1)
        )

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -\\log \\sum_h e^{-E(v,h)}` in nats, shape ``(*sample, *batch)``."""
        return -(self.visible_bias * v).sum(-1) - F.softplus(
            self.hidden_bias + self._visible_input(v)
        ).sum(-1)

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        return (self.hidden_bias * h).sum(-1) + F.softplus(
            self.visible_bias + self._hidden_input(h)
        ).sum(-1)

    @property
    def has_exact_log_partition(self) -> bool:
        return min(self.n_visible, self.n_hidden) <= self.max_enumerable_units

    def exact_log_partition(self) -> torch.Tensor:
        """:math:`\\log Z` by enumerating the smaller layer (:math:`2^{\\min(V, H)}` states),
        shape: the parameters' batch shape.

        Raises:
            ValueError: both layers have more than ``max_enumerable_units`` units.
        """
        if not self.has_exact_log_partition:
            raise ValueError(_too_large(self))
        if self.n_hidden <= self.n_visible:
            return self._log_partition_by_hidden()
        return enumerated_logsumexp(lambda v: -self.free_energy(v), self.n_visible, self.weight)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        if (shape + self.batch_shape).numel() == 0:
            return self.like.new_zeros(shape + self.batch_shape + self.event_shape)
        if not self._enumerate_hidden_ok() and self.n_visible <= self.max_enumerable_units:
            with torch.no_grad():
                return sample_enumerated(
                    lambda v: -self.free_energy(v),
                    self.n_visible,
                    shape,
                    self.batch_shape,
                    self.weight,
                )
        return super().sample(shape)

    def _random_visible(self, shape: torch.Size) -> torch.Tensor:
        probs = self.visible_bias.new_full(shape + self.batch_shape + self.event_shape, 0.5)
        return bernoulli_draw(probs)

    def annealing_path(self, *, data=None, base_visible_bias=None) -> BipartitePath:
        """The path of Salakhutdinov and Murray (2008) from independent visible units with
        biases :math:`b_A` (``base_visible_bias``, else the base rate of ``data``, else 0; hidden
        units free) to the RBM, with block-Gibbs transitions (a
        :class:`~pyrogen.distributions.BipartitePath`, visible = even, hidden = odd)."""
        shape = (*self.batch_shape, self.n_visible)
        base = base_rate_bias(data, base_visible_bias, torch.Size(shape), self.weight)
        return BipartitePath(
            base,
            self.visible_bias,
            self.hidden_bias,
            self._visible_input,
            self._hidden_input,
        )


class GaussianBernoulliRBM(_RBM):
    r"""RBM with real-valued (Gaussian) visible units and binary hidden units.

    What it computes: with :math:`v \in \mathbb R^V`, :math:`h \in \{0,1\}^H` and visible
    standard deviations :math:`\sigma`,

    .. math::
        E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2} - c^\top h
                  - \sum_{ij} \frac{v_i}{\sigma_i} W_{ij} h_j,

    so :math:`p(v \mid h) = \mathcal N(b + \sigma \odot W h, \operatorname{diag}\sigma^2)`,
    :math:`p(h_j = 1 \mid v) = \sigma(c_j + ((v / \sigma)^\top W)_j)`, the free energy is
    :math:`F(v) = \sum_i (v_i - b_i)^2 / (2\sigma_i^2) - \sum_j \operatorname{softplus}(c_j +
    ((v/\sigma)^\top W)_j)`, and (Gaussian integral for each ``h``)

    .. math::
        \log Z = \log \sum_h \exp\Big(c^\top h + \sum_i \big(\tfrac{b_i}{\sigma_i} (W h)_i +
        \tfrac12 (W h)_i^2\big)\Big) + \sum_i \log(\sqrt{2\pi}\, \sigma_i),

    exact by enumerating ``h`` when ``H <= 20``, otherwise attached as for
    :class:`BernoulliRBM`. ``scale`` (:math:`\sigma`) may be a learned parameter or fixed
    (e.g. 1 for standardized data, the usual choice).

    Shapes:
        as :class:`BernoulliRBM`; ``scale``: ``(*batch, V)``.
    Args:
        weight, visible_bias, hidden_bias: :math:`W, b, c`.
        scale: :math:`\sigma > 0`.
        num_gibbs_steps, log_partition, validate_args: as in :class:`BernoulliRBM`.
    Raises:
        ValueError: as :class:`BernoulliRBM`; with validation on, ``scale <= 0``.
    References:
        Hinton, Salakhutdinov (2006). Reducing the Dimensionality of Data with Neural Networks.
        Cho, Ilin, Raiko (2011). Improved Learning of Gaussian-Bernoulli Restricted Boltzmann
        Machines. https://doi.org/10.1007/978-3-642-21735-7_2
    Example:
        >>> rbm = GaussianBernoulliRBM(torch.randn(2, 3), torch.zeros(2), torch.zeros(3),
        ...                            torch.ones(2))
        >>> rbm.sample((5,)).shape
        torch.Size([5, 2])
    """

    arg_constraints: ClassVar[dict] = {**_RBM.arg_constraints, "scale": constraints.positive}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, weight, visible_bias, hidden_bias, scale, **kwargs) -> None:
        super().__init__(weight, visible_bias, hidden_bias, scale=scale, **kwargs)

    def _validate_sample(self, value: torch.Tensor) -> None:
        # Pyro's real support admits +-inf, where the free energy is inf - inf = NaN
        super()._validate_sample(value)
        if not bool(torch.isfinite(value).all()):
            raise ValueError(
                "value contains non-finite values (inf); GaussianBernoulliRBM has real-valued "
                "visible units"
            )

    def _visible_input(self, v: torch.Tensor) -> torch.Tensor:
        return super()._visible_input(v / self.scale)

    def visible_given_hidden(self, h: torch.Tensor) -> Normal:
        """:math:`p(v \\mid h) = \\mathcal N(b + \\sigma \\odot W h, \\sigma^2)`, event 1."""
        loc = self.visible_bias + self.scale * self._hidden_input(h)
        return Normal(loc, self.scale.expand(loc.shape)).to_event(1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)` in nats."""
        quadratic = (((v - self.visible_bias) / self.scale) ** 2 / 2).sum(-1)
        return quadratic - (self.hidden_bias * h).sum(-1) - (self._visible_input(v) * h).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v)` in nats, shape ``(*sample, *batch)``."""
        quadratic = (((v - self.visible_bias) / self.scale) ** 2 / 2).sum(-1)
        return quadratic - F.softplus(self.hidden_bias + self._visible_input(v)).sum(-1)

    def _log_marginal_hidden(self, h: torch.Tensor) -> torch.Tensor:
        wh = self._hidden_input(h)
        return (self.hidden_bias * h).sum(-1) + (
            self.visible_bias / self.scale * wh + wh**2 / 2
        ).sum(-1)

    def _log_z_constant(self) -> torch.Tensor:
        return (torch.log(self.scale) + 0.5 * math.log(2 * math.pi)).sum(-1)

    @property
    def has_exact_log_partition(self) -> bool:
        return self.n_hidden <= self.max_enumerable_units

    def exact_log_partition(self) -> torch.Tensor:
        """:math:`\\log Z` by enumerating the hidden layer (Gaussian integral over ``v``).

        Raises:
            ValueError: more than ``max_enumerable_units`` hidden units.
        """
        if not self.has_exact_log_partition:
            raise ValueError(_too_large(self))
        return self._log_partition_by_hidden()

    def _random_visible(self, shape: torch.Size) -> torch.Tensor:
        full = shape + self.batch_shape + self.event_shape
        return self.visible_bias.expand(full) + self.scale.expand(full) * torch.randn(
            full, dtype=self.scale.dtype, device=self.scale.device
        )

    def annealing_path(self, *, data=None, base_visible_bias=None):
        raise NotImplementedError(
            "AIS is implemented for binary models; a GaussianBernoulliRBM with up to 20 hidden "
            "units has an exact log Z"
        )
