"""Shared machinery of pyrogen's energy-based distributions: parameter checks, exact
enumeration of binary layers, and the honest-normalization contract of ``log_prob``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = [
    "AISEstimate",
    "EnergyMixin",
    "all_binary_states",
    "broadcast_params",
    "discrete_log_prob",
    "discrete_support",
    "enumerated_logsumexp",
    "sample_enumerated",
]

CHUNK = 2**14


class AISEstimate(NamedTuple):
    """Result of annealed importance sampling.

    Attributes:
        log_partition: ``batch_shape``, the estimate :math:`\\log \\hat Z` in nats
            (:math:`\\hat Z` is unbiased for ``Z``; its log is biased low, by about
            ``stderr**2 / 2``).
        stderr: ``batch_shape``, the delta-method standard error of :math:`\\log \\hat Z` from
            the spread of the importance weights, nats.
        log_weights: ``(num_chains, *batch_shape)``, the final log importance weights.
    """

    log_partition: torch.Tensor
    stderr: torch.Tensor
    log_weights: torch.Tensor


def discrete_support(num_categories: int, event_dim: int):
    """The support of ``event_dim``-dimensional arrays of values in ``0..num_categories-1``
    (boolean for two categories)."""
    from pyro.distributions import constraints

    k = num_categories
    base = constraints.boolean if k == 2 else constraints.integer_interval(0, k - 1)
    return constraints.independent(base, event_dim)


def discrete_log_prob(logits: torch.Tensor, value: torch.Tensor, num_categories: int):
    """Elementwise log-probability of ``value`` under Bernoulli (one logit, ``num_categories ==
    2``) or categorical logits in the last dimension of ``logits`` (shape ``value.shape +
    (num_logits,)``)."""
    import torch.nn.functional as F

    if num_categories == 2:
        return -F.binary_cross_entropy_with_logits(logits.squeeze(-1), value, reduction="none")
    return torch.log_softmax(logits, -1).gather(-1, value.long().unsqueeze(-1)).squeeze(-1)


def broadcast_params(
    params: dict[str, torch.Tensor], event_shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, torch.Tensor], torch.Size]:
    """Check each parameter's trailing shape and dtype/device, broadcast the batch dims.

    Raises:
        TypeError: a parameter that is not a floating tensor, or dtypes that differ.
        ValueError: a wrong trailing shape, devices that differ, or batch shapes that do not
            broadcast.
    """
    first_name, first = next(iter(params.items()))
    batch_shapes = []
    for name, value in params.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got "
                f"{getattr(value, 'dtype', type(value).__name__)}"
            )
        shape = tuple(event_shapes[name])
        k = len(shape)
        if value.dim() < k or tuple(value.shape[value.dim() - k :]) != shape:
            expected = ", ".join(str(s) for s in shape)
            raise ValueError(
                f"{name} must have shape (*batch, {expected}), got {tuple(value.shape)}"
            )
        if value.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but {first_name} has {first.dtype}")
        if value.device != first.device:
            raise ValueError(f"{name} is on {value.device} but {first_name} is on {first.device}")
        batch_shapes.append(value.shape[: value.dim() - k])
    try:
        batch = torch.broadcast_shapes(*batch_shapes)
    except RuntimeError as e:
        shapes = {n: tuple(s) for n, s in zip(params, batch_shapes, strict=True)}
        raise ValueError(f"parameter batch shapes do not broadcast: {shapes}") from e
    expanded = {
        name: value.expand(batch + tuple(event_shapes[name])) for name, value in params.items()
    }
    return expanded, batch


def all_binary_states(n: int, like: torch.Tensor, start: int = 0, stop: int | None = None):
    """The binary vectors with integer codes ``start .. stop - 1`` (unit ``i`` is bit ``i``).

    Shapes:
        returns ``(stop - start, n)`` with ``like``'s dtype and device.
    """
    stop = 2**n if stop is None else stop
    codes = torch.arange(start, stop, device=like.device)
    bits = torch.arange(n, device=like.device)
    return ((codes.unsqueeze(-1) >> bits) & 1).to(like.dtype)


def _batched(states: torch.Tensor, batch_dims: int) -> torch.Tensor:
    return states.reshape(states.shape[:1] + (1,) * batch_dims + states.shape[1:])


def enumerated_logsumexp(
    log_f: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    like: torch.Tensor,
    *,
    batch_dims: int | None = None,
    extra: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """:math:`\\log \\sum_{s \\in \\{0,1\\}^n} e^{\\log f(s)}` (+ ``extra``), in chunks of
    :math:`2^{14}` states. ``log_f`` maps states ``(S, *1s, n)`` to ``(S, *batch)``."""
    if batch_dims is None:
        batch_dims = like.dim() - 2
    total = None
    for start in range(0, 2**n, CHUNK):
        states = all_binary_states(n, like, start, min(start + CHUNK, 2**n))
        part = torch.logsumexp(log_f(_batched(states, batch_dims)), dim=0)
        total = part if total is None else torch.logaddexp(total, part)
    return total + extra


def sample_enumerated(
    log_f: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    sample_shape: torch.Size,
    batch_shape: torch.Size,
    like: torch.Tensor,
) -> torch.Tensor:
    """Exact draws from :math:`p(s) \\propto e^{\\log f(s)}` over :math:`s \\in \\{0,1\\}^n`.

    Shapes:
        returns ``sample_shape + batch_shape + (n,)``.
    """
    states = all_binary_states(n, like)
    logits = log_f(_batched(states, len(batch_shape))).expand((2**n, *batch_shape))
    logits = logits.movedim(0, -1)
    index = torch.distributions.Categorical(logits=logits).sample(sample_shape)
    return states[index]


class EnergyMixin:
    """``log_prob`` that is normalized or raises; ``log_partition``; ``attach_log_partition``.

    A subclass defines ``free_energy(value)`` (nats), ``_enumerable()``,
    ``_exact_log_partition()``, ``_params()`` and, for AIS, ``_ais_path(base)``.
    """

    max_enumerable_units = 20

    def _init_energy(self, log_partition: torch.Tensor | None) -> None:
        self._attached = None
        self._log_z_cache = None
        if log_partition is not None:
            self.attach_log_partition(log_partition)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`-F(v)`: the log density up to the constant :math:`-\\log Z` (nats)."""
        return -self.free_energy(value)

    def attach_log_partition(self, log_partition) -> EnergyMixin:
        """Use ``log_partition`` (nats, broadcastable to ``batch_shape``; e.g. the
        ``log_partition`` of an :class:`AISEstimate`) as ``log Z`` in ``log_prob`` when it
        cannot be enumerated. Returns ``self``.

        Raises:
            ValueError: a non-finite value or a shape that does not broadcast.
        """
        value = torch.as_tensor(log_partition, dtype=self._params()[0].dtype)
        value = value.to(self._params()[0].device).detach()
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"log_partition must be finite, got {value}")
        try:
            value = value.expand(self.batch_shape)
        except RuntimeError as e:
            raise ValueError(
                f"log_partition of shape {tuple(value.shape)} does not broadcast to the batch "
                f"shape {tuple(self.batch_shape)}"
            ) from e
        self._attached = value
        return self

    def _cache_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self._params())

    def log_partition(self, method: str = "exact", **kwargs):
        """:math:`\\log Z` in nats.

        Args:
            method: ``"exact"`` (enumeration, at most ``max_enumerable_units`` units in the
                enumerated layer; returns a tensor of shape ``batch_shape``) or ``"ais"``
                (annealed importance sampling; returns an :class:`AISEstimate`; keyword
                arguments go to :func:`~pyrogen.distributions.annealed_importance_sampling`).
        Raises:
            ValueError: an unknown ``method``, or ``"exact"`` on a model too large to enumerate.
        """
        if method == "ais":
            from pyrogen.distributions.annealing import annealed_importance_sampling

            return annealed_importance_sampling(self, **kwargs)
        if method != "exact":
            raise ValueError(f"method must be 'exact' or 'ais', got {method!r}")
        if kwargs:
            raise TypeError(f"method='exact' takes no options, got {sorted(kwargs)}")
        if not self._enumerable():
            raise ValueError(
                f"{type(self).__name__} is too large for an exact log Z (more than "
                f"{self.max_enumerable_units} units in the layer to enumerate); use "
                "method='ais'"
            )
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self._params())
        key = self._cache_key()
        if not grad and self._log_z_cache is not None and self._log_z_cache[0] == key:
            return self._log_z_cache[1]
        value = self._exact_log_partition()
        if not grad:
            self._log_z_cache = (key, value)
        return value

    def _normalizer(self) -> torch.Tensor:
        if self._enumerable():
            return self.log_partition()
        if self._attached is not None:
            return self._attached
        raise ValueError(
            f"{type(self).__name__}.log_prob needs log Z, which is too costly to enumerate "
            f"here (more than {self.max_enumerable_units} units in the smaller layer). "
            "Estimate it and attach it: `est = d.log_partition(method='ais', num_chains=100, "
            "num_betas=10000); d.attach_log_partition(est.log_partition)`, or use "
            "d.unnormalized_log_prob(v) if a constant offset does not matter"
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Normalized :math:`\\log p(v) = -F(v) - \\log Z` in nats (see the class docstring for
        where ``log Z`` comes from). Shape ``(*sample, *batch)``.

        Raises:
            ValueError: no exact or attached ``log Z``; with validation on, a value outside the
                support or of the wrong shape.
        """
        if self._validate_args:
            self._validate_sample(value)
        return -self.free_energy(value) - self._normalizer()
