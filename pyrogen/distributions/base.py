"""Shared helpers of pyrogen's distributions: parameter and value checks, ``expand`` and
``log_prob`` shape rules, and exact enumeration of binary and categorical events."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pyrogen.util import check_context  # its former home

__all__ = [
    "AISEstimate",
    "all_binary_states",
    "all_discrete_states",
    "broadcast_params",
    "check_context",
    "check_expand",
    "conditional_log_prob",
    "discrete_log_prob",
    "discrete_support",
    "enumerated_logsumexp",
    "prepare_value",
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

    def __repr__(self) -> str:
        """The estimate and its standard error, and the weights' shape (not their values)."""

        def short(t):
            t = torch.as_tensor(t)
            return f"{t.item():.4f}" if t.numel() == 1 else f"tensor(shape={tuple(t.shape)})"

        lw = torch.as_tensor(self.log_weights)
        return (
            f"AISEstimate(log_partition={short(self.log_partition)}, "
            f"stderr={short(self.stderr)}, num_chains={lw.shape[0] if lw.dim() else 1}, "
            f"log_weights=tensor(shape={tuple(lw.shape)}))"
        )


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


def validating() -> bool:
    """Whether data-dependent checks run: torch/Pyro validation on (``pyro.enable_validation``)
    and no ``torch.func`` transform active."""
    return bool(
        torch.distributions.Distribution._validate_args
        and not torch._C._are_functorch_transforms_active()
    )


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
        if validating() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains non-finite values (nan or inf)")
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
    if torch.Size(sample_shape).numel() == 0 or torch.Size(batch_shape).numel() == 0:
        return like.new_zeros((*sample_shape, *batch_shape, n))
    logits = log_f(_batched(states, len(batch_shape))).expand((2**n, *batch_shape))
    logits = logits.movedim(0, -1)
    index = torch.distributions.Categorical(logits=logits).sample(sample_shape)
    return states[index]


def all_discrete_states(num_categories: int, event_shape: torch.Size, like: torch.Tensor):
    """Every array of shape ``event_shape`` with values in ``0..num_categories-1``, in
    lexicographic order of the flattened event (first unit most significant).

    Shapes:
        returns ``(num_categories ** n, *event_shape)`` with ``like``'s dtype and device.
    """
    n = int(torch.Size(event_shape).numel())
    codes = torch.arange(num_categories**n, device=like.device)
    powers = num_categories ** torch.arange(n - 1, -1, -1, device=like.device)
    digits = (codes.unsqueeze(-1) // powers) % num_categories
    return digits.to(like.dtype).reshape(-1, *event_shape)


def check_expand(old: torch.Size, new) -> torch.Size:
    """The batch shape ``new`` for :meth:`expand` of a distribution of batch shape ``old``,
    with the rule of ``torch.Tensor.expand``: ``new`` has at least as many dims, and each of
    ``old``'s (right-aligned) sizes is 1 or equals ``new``'s.

    Raises:
        ValueError: ``new`` is not an expansion of ``old``, e.g. ``(2, 4) -> (2, 2, 1)``.
    """
    try:
        new = torch.Size(new)
    except TypeError as e:
        raise TypeError(f"batch_shape must be a sequence of ints, got {new!r}") from e
    ok = len(new) >= len(old) and all(
        o in (1, n) for o, n in zip(reversed(old), reversed(new), strict=False)
    )
    if not ok:
        raise ValueError(
            f"cannot expand a distribution of batch shape {tuple(old)} to {tuple(new)} (each "
            "existing size must be 1 or kept, and no dimension may be removed)"
        )
    return new


def prepare_value(
    value, event_shape: torch.Size, batch_shape: torch.Size, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Size]:
    """Check a value's shape, convert its dtype to ``like``'s, and return it with the shape of
    its ``log_prob``: ``broadcast(value.shape[:-event_dim], batch_shape)``.

    Integer, boolean and floating values of another precision are converted to the parameters'
    dtype (a discrete value is exact in any float dtype); the log-probability has the
    parameters' dtype.

    Raises:
        TypeError: ``value`` is not a tensor, or is complex.
        ValueError: the rightmost dims differ from ``event_shape``, the batch dims do not
            broadcast with ``batch_shape``, or ``value`` is on another device.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
    if value.is_complex():
        raise TypeError(f"value must be a real tensor, got dtype {value.dtype}")
    k = len(event_shape)
    if value.dim() < k or value.shape[value.dim() - k :] != event_shape:
        raise ValueError(
            f"value must have shape (*batch, {', '.join(map(str, event_shape))}), got "
            f"{tuple(value.shape)}"
        )
    if value.device != like.device:
        raise ValueError(f"value is on {value.device} but the parameters are on {like.device}")
    try:
        shape = torch.broadcast_shapes(value.shape[: value.dim() - k], batch_shape)
    except RuntimeError as e:
        raise ValueError(
            f"value of shape {tuple(value.shape)} does not broadcast with batch_shape "
            f"{tuple(batch_shape)} + event_shape {tuple(event_shape)}"
        ) from e
    if value.dtype != like.dtype:
        value = value.to(like.dtype)
    return value, shape


def conditional_log_prob(dist, value, log_prob_fn, validate=None):
    """``log_prob`` of an autoregressive distribution with an optional ``dist.context``:
    converts and checks ``value`` (:func:`prepare_value`), calls ``validate(value)`` (the
    distribution's support check, when validation is on), broadcasts it against
    the context's batch shape, calls ``log_prob_fn(value, context)`` (shape: their common batch
    shape) and broadcasts the result to ``broadcast(value batch, batch_shape)``."""
    k = len(dist.event_shape)
    value, shape = prepare_value(value, dist.event_shape, dist.batch_shape, dist.like)
    if shape.numel() == 0:
        return dist.like.new_zeros(shape)
    if validate is not None:
        validate(value)
    context = dist.context
    if context is not None:
        full = torch.broadcast_shapes(value.shape[: value.dim() - k], context.shape[:-1])
        value = value.expand(full + dist.event_shape)
        context = context.expand(full + context.shape[-1:])
    return log_prob_fn(value, context).expand(shape)
