"""The public contract of pyrogen's energy models: energies, free energies, partition functions
(exact, attached or estimated by AIS), annealing paths and Markov kernels."""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution

from pyrogen.distributions.annealing import AnnealingPath, annealed_importance_sampling
from pyrogen.distributions.base import (
    AISEstimate,
    all_binary_states,
    check_expand,
    prepare_value,
)
from pyrogen.util import check_real

__all__ = ["EnergyMixin", "EnergyModel"]


class EnergyModel(TorchDistribution):
    r"""Base class of every energy model: :math:`p(x) = e^{-F(x)} / Z`, with a normalized
    ``log_prob`` or an error, never a silently unnormalized value.

    The contract. A subclass implements

    - ``free_energy(value)``: :math:`F(x) = -\log \sum_h e^{-E(x, h)}` in nats, shape
      ``(*sample, *batch)`` (the energy itself when there are no hidden units);
    - ``energy(...)``: the joint energy :math:`E` of all units (arguments model-specific);
    - ``markov_chain(value, num_steps)``: a Markov kernel leaving :math:`p` invariant (block
      Gibbs, single-site Gibbs or Langevin), used by ``sample`` and by contrastive divergence;
    - optionally ``exact_log_partition()`` (``batch``-shaped :math:`\log Z`, raising
      ``ValueError`` when too large to compute) and ``has_exact_log_partition``;
    - optionally ``annealing_path(*, data=None, base_visible_bias=None)`` returning an
      :class:`~pyrogen.distributions.AnnealingPath`, for AIS;
    - ``like`` (a parameter tensor: the dtype and device of everything it creates).

    ``parameter_batch_shape`` is the batch shape the model was built with, which
    :meth:`expand` (and so ``pyro.plate``) leaves as it is: the shape persistent chains keep
    between contrastive-divergence steps is ``(num_chains, *parameter_batch_shape,
    *event_shape)``.

    and inherits ``unnormalized_log_prob``, ``log_prob``, ``log_partition`` (exact, attached or
    AIS), ``attach_log_partition`` and an ``expand`` that keeps the parameters unexpanded
    (every method broadcasts; the results are broadcast to ``batch_shape``).

    ``log Z`` in ``log_prob``: the exact value, recomputed on every call (no cache that could
    outlive a parameter edit), when the model has one; otherwise the attached estimate;
    otherwise ``log_prob`` raises. Attach ``log_partition(method="ais").log_partition`` (or any
    estimate) with :meth:`attach_log_partition`; an attached value is the user's and is not
    updated when the parameters change.

    Raises:
        ValueError: ``log_prob`` with no exact or attached ``log Z``; values of the wrong shape.
    Example: a user's energy model, independent Bernoulli units with logits ``b``:

        >>> import torch.nn.functional as F
        >>> from pyro.distributions import constraints
        >>> from pyrogen.distributions import annealed_importance_sampling, BipartitePath
        >>> class Independent(EnergyModel):
        ...     support = constraints.independent(constraints.boolean, 1)
        ...     def __init__(self, b):
        ...         self.b = self.like = b
        ...         super().__init__(b.shape[:-1], b.shape[-1:])
        ...     def energy(self, x):
        ...         return -(self.b * x).sum(-1)
        ...     free_energy = energy
        ...     has_exact_log_partition = True
        ...     def exact_log_partition(self):
        ...         return F.softplus(self.b).sum(-1)
        ...     def markov_chain(self, value, num_steps):
        ...         return torch.bernoulli(torch.sigmoid(self.b).expand(value.shape))
        ...     def annealing_path(self, *, data=None, base_visible_bias=None):
        ...         zero = self.b.new_zeros(0)
        ...         return BipartitePath(torch.zeros_like(self.b), self.b, zero,
        ...                              lambda x: x[..., :0], lambda h: 0.0)
        >>> d = Independent(torch.tensor([0.5, -1.0, 2.0]))
        >>> states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 3)
        >>> round(float(d.log_prob(states).exp().sum()), 6)
        1.0
        >>> est = d.log_partition(method="ais", num_chains=500, num_betas=200)
        >>> bool(abs(est.log_partition - d.log_partition()) < 0.1)
        True
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False
    max_enumerable_units = 20
    has_exact_log_partition = False

    def __init__(
        self,
        batch_shape=(),
        event_shape=(),
        *,
        log_partition=None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args)
        # the batch shape of the parameters themselves: ``expand`` (a plate) keeps it
        self.parameter_batch_shape = torch.Size(batch_shape)
        self.attached_log_partition = None
        if log_partition is not None:
            self.attach_log_partition(log_partition)

    # -- to be implemented -----------------------------------------------------------------

    def free_energy(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`F(x)` in nats, shape ``(*sample, *batch)``."""
        raise NotImplementedError

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """``num_steps`` steps of a kernel leaving the model invariant, from ``value``."""
        raise NotImplementedError

    def exact_log_partition(self) -> torch.Tensor:
        """Exact :math:`\\log Z`, shape: the parameters' batch shape (broadcasts to
        ``batch_shape``)."""
        raise ValueError(f"{type(self).__name__} has no exact log Z")

    def annealing_path(self, *, data=None, base_visible_bias=None) -> AnnealingPath:
        """The :class:`~pyrogen.distributions.AnnealingPath` of AIS."""
        raise NotImplementedError(f"{type(self).__name__} has no annealing path for AIS")

    # -- provided ----------------------------------------------------------------------------

    def _value_like(self, value) -> torch.Tensor:
        """The tensor whose dtype and device a value is evaluated in (``like``)."""
        return self.like

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`-F(x)`: the log density up to the constant :math:`-\\log Z` (nats)."""
        value, shape = self._checked_value(value)
        return (-self.free_energy(value)).expand(shape)

    def attach_log_partition(self, log_partition) -> EnergyModel:
        """Use ``log_partition`` (nats, broadcastable to ``batch_shape``; e.g. the
        ``log_partition`` of an :class:`~pyrogen.distributions.AISEstimate`) as ``log Z`` in
        ``log_prob`` when no exact value exists. Returns ``self``.

        Raises:
            ValueError: a non-finite value or a shape that does not broadcast.
        """
        self.attached_log_partition = self._checked_log_partition(log_partition).detach()
        return self

    def _checked_log_partition(self, log_partition) -> torch.Tensor:
        """``log_partition`` (a number, a tensor or an ``AISEstimate``) as a finite tensor of
        the parameters' dtype and device, broadcast to ``batch_shape`` (gradients kept)."""
        if isinstance(log_partition, AISEstimate):
            log_partition = log_partition.log_partition
        like = self.like
        if isinstance(log_partition, torch.Tensor):
            value = log_partition.to(dtype=like.dtype, device=like.device)
        else:
            check_real(log_partition, "log_partition")
            value = torch.tensor(float(log_partition), dtype=like.dtype, device=like.device)
        if not bool(torch.isfinite(value.detach()).all()):
            raise ValueError(f"log_partition must be finite, got {value.detach()}")
        try:
            return value.expand(self.batch_shape)
        except RuntimeError as e:
            raise ValueError(
                f"log_partition of shape {tuple(value.shape)} does not broadcast to the batch "
                f"shape {tuple(self.batch_shape)}"
            ) from e

    def _checked_value(self, value, batch_shape=None) -> tuple[torch.Tensor, torch.Size]:
        """``value`` converted to the parameters' dtype and checked (shape; with validation
        on, the support), with the shape of its log-density (see ``prepare_value``):
        broadcast with ``batch_shape`` (default: the model's; a Markov chain's states, which
        need not match a plate, pass ``parameter_batch_shape``)."""
        if batch_shape is None:
            value, shape = prepare_value(
                value, self.event_shape, self.batch_shape, self._value_like(value)
            )
            if self._validate_args and shape.numel():
                self._validate_sample(value)
            return value, shape
        value, shape = prepare_value(value, self.event_shape, batch_shape, self._value_like(value))
        if (
            self._validate_args
            and shape.numel()
            and not torch._C._are_functorch_transforms_active()
            and not bool(self.support.check(value).all())
        ):
            raise ValueError(
                f"value must lie in the support of {type(self).__name__} ({self.support})"
            )
        return value, shape

    def log_partition(self, method: str | None = None, **kwargs):
        """:math:`\\log Z` in nats.

        Args:
            method: ``None`` (the ``log Z`` that ``log_prob`` uses: exact if the model has one,
                else the attached one), ``"exact"`` (returns a tensor of shape
                ``batch_shape``), ``"attached"``
                (the value given to :meth:`attach_log_partition`) or ``"ais"`` (annealed
                importance sampling; returns an :class:`~pyrogen.distributions.AISEstimate`;
                keyword arguments go to
                :func:`~pyrogen.distributions.annealed_importance_sampling`).
        Raises:
            ValueError: an unknown ``method``; ``"exact"`` on a model too large to enumerate;
                ``"attached"`` (or ``None`` without an exact value) with nothing attached.
        """
        if method is None and not kwargs:
            if self.has_exact_log_partition:
                method = "exact"
            elif self.attached_log_partition is not None:
                method = "attached"
            else:
                raise ValueError(
                    f"this {type(self).__name__} is too large for an exact log Z and no "
                    "estimate is attached; use log_partition(method='ais')"
                )
        if method == "ais":
            return annealed_importance_sampling(self, **kwargs)
        if kwargs:
            raise TypeError(f"method={method!r} takes no options, got {sorted(kwargs)}")
        if method == "exact":
            return self.exact_log_partition().expand(self.batch_shape)
        if method == "attached":
            if self.attached_log_partition is None:
                raise ValueError(f"no log Z is attached to this {type(self).__name__}")
            return self.attached_log_partition
        raise ValueError(f"method must be 'exact', 'attached' or 'ais', got {method!r}")

    def _normalizer(self) -> torch.Tensor:
        if self.has_exact_log_partition:
            return self.exact_log_partition()
        if self.attached_log_partition is not None:
            return self.attached_log_partition
        raise ValueError(
            f"{type(self).__name__}.log_prob needs log Z, which is too costly to compute "
            "exactly here. Estimate it and attach it: `est = d.log_partition(method='ais', "
            "num_chains=100, num_betas=10000); d.attach_log_partition(est.log_partition)`, "
            "or use d.unnormalized_log_prob(x) if a constant offset does not matter"
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Normalized :math:`\\log p(x) = -F(x) - \\log Z` in nats, shape
        ``broadcast(value.shape[:-event_dim], batch_shape)``. Integer, boolean or other-precision
        values are converted to the parameters' dtype.

        Raises:
            ValueError: no exact or attached ``log Z``; a value of the wrong shape; with
                validation on, a value outside the support.
        """
        like = self._value_like(value)
        value, shape = prepare_value(value, self.event_shape, self.batch_shape, like)
        if shape.numel() == 0:
            return like.new_zeros(shape)
        if self._validate_args:
            self._validate_sample(value)
        return (-self.free_energy(value) - self._normalizer()).expand(shape)

    def expand(self, batch_shape, _instance=None):
        """The same model with batch shape ``batch_shape`` (parameters are not copied).

        Raises:
            ValueError: ``batch_shape`` is not an expansion of ``self.batch_shape``.
        """
        batch_shape = check_expand(self.batch_shape, batch_shape)
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update(self.__dict__)
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        if self.attached_log_partition is not None:
            new.attached_log_partition = self.attached_log_partition.expand(batch_shape)
        return new

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """Every binary value, ``(2**n, *batch_shape, n)`` (``expand=False``: ``(2**n, *1s,
        n)``) for models over binary vectors with ``n <= max_enumerable_units``.

        Raises:
            NotImplementedError: a continuous model. ValueError: ``n`` too large.
        """
        if not self.has_enumerate_support:
            raise NotImplementedError(f"{type(self).__name__} has no enumerable support")
        n = self.event_shape[-1]
        if n > self.max_enumerable_units:
            raise ValueError(f"2**{n} values are too many to enumerate")
        states = all_binary_states(n, self.like)
        states = states.reshape((2**n,) + (1,) * len(self.batch_shape) + (n,))
        return states.expand((2**n, *self.batch_shape, n)) if expand else states


EnergyMixin = EnergyModel
"""Former name of :class:`EnergyModel` (kept as an alias)."""
