"""Small shared helpers: input validation."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "ArgumentTypeError",
    "check_binary_data",
    "check_context",
    "check_count",
    "check_data",
    "check_module_class",
    "check_nonnegative",
    "check_optim",
    "check_positive",
    "check_real",
    "check_tensor",
    "progress_bar",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string, a bool, a list where a number is meant).

    A ``TypeError``; also a ``ValueError``, which is what earlier releases raised for such
    arguments, so that handlers written for either keep working.
    """


def bernoulli_draw(probs: torch.Tensor) -> torch.Tensor:
    """Independent Bernoulli draws ``1.0`` with probability ``probs`` (else ``0.0``), in
    ``probs``' dtype: ``U < p`` for ``U ~ Uniform[0, 1)``, the law of ``torch.bernoulli(probs)``
    at about half its cost on the CPU (the Gibbs samplers' inner step). The comparison runs in
    place on the uniforms (one allocation, no boolean intermediate and no cast).

    Shapes:
        probs, returns: any shape ``(*s,)``; ``probs`` in ``[0, 1]``, unchecked.
    """
    # detached: the in-place comparison would otherwise mark the draws as requiring grad
    return torch.rand_like(probs).lt_(probs.detach())


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_real(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = False,
    high_inclusive: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Validate a real hyper-parameter: a finite number (not a bool or a string) in an interval.

    Args:
        value: the argument.
        name: its name, used in the error message.
        low, high: the interval's ends (``None``: unbounded on that side).
        low_inclusive, high_inclusive: whether the ends are allowed.
        allow_none: accept ``None`` (returned as is).
    Returns:
        ``value`` as a float (or ``None``).
    Raises:
        ArgumentTypeError: (a ``TypeError`` and a ``ValueError``) not a real number.
        ValueError: ``nan``, ``inf`` or outside the interval.
    """
    if value is None and allow_none:
        return None
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    wanted = "a finite number" + (" " + " and ".join(parts) if parts else "")
    wanted += " or None" if allow_none else ""
    if not _is_real(value):
        raise ArgumentTypeError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v >= low if low_inclusive else v > low
    if ok and high is not None:
        ok = v <= high if high_inclusive else v < high
    if not ok:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return v


def check_positive(value, name: str, *, allow_none: bool = False) -> float | None:
    """A finite number ``> 0`` (``inf``, ``nan``, 0, negatives, bools and strings are
    rejected); see :func:`check_real`."""
    return check_real(value, name, low=0.0, allow_none=allow_none)


def check_nonnegative(value, name: str) -> float:
    """A finite number ``>= 0``; see :func:`check_real`."""
    return check_real(value, name, low=0.0, low_inclusive=True)


def check_data(
    value, name: str = "data", *, min_dim: int = 1, min_rows: int = 1, floating: bool = True
) -> torch.Tensor:
    """Validate training or evaluation data: a tensor with at least ``min_dim`` dims and
    ``min_rows`` rows along dim 0, floating-point if ``floating``, with finite entries.

    Cost: one reduction over the data (``isfinite``) when it is floating-point.

    Raises:
        TypeError: not a tensor, or an integer/boolean tensor where floats are needed.
        ValueError: too few dims or rows (empty data), or non-finite entries.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got {tuple(value.shape)}")
    if value.dim() and value.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} row(s) along dim 0, got shape "
            f"{tuple(value.shape)} (empty data)"
        )
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return value


def check_tensor(
    value: torch.Tensor,
    name: str,
    event_shape: tuple[int | None, ...],
    *,
    like: torch.Tensor | None = None,
    check_finite: bool | None = None,
) -> None:
    """Validate an input tensor of a transform or network.

    Args:
        value: the tensor to check, shape ``(*batch, *event_shape)``.
        name: the argument's name, used in error messages.
        event_shape: the expected rightmost dimensions; ``None`` entries match any size.
        like: a parameter whose dtype and device ``value`` must share (``None``: no check).
        check_finite: require finite entries; ``None`` follows
            ``torch.distributions.Distribution._validate_args`` (set by ``pyro.enable_validation``).

    Raises:
        TypeError: ``value`` is not a floating-point tensor, or its dtype differs from ``like``'s.
        ValueError: wrong rightmost shape, a device different from ``like``'s, or non-finite
            entries while validation is on.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    k = len(event_shape)
    tail = value.shape[value.dim() - k :] if value.dim() >= k else None
    if tail is None or any(e not in (None, t) for e, t in zip(event_shape, tail, strict=True)):
        expected = ", ".join("*" if e is None else str(e) for e in event_shape)
        raise ValueError(f"{name} must have shape (*batch, {expected}), got {tuple(value.shape)}")
    if like is not None:
        if value.dtype != like.dtype:
            raise TypeError(
                f"{name} has dtype {value.dtype} but the parameters have dtype {like.dtype}; "
                f"convert one of them (e.g. module.to({value.dtype}))"
            )
        if value.device != like.device:
            raise ValueError(
                f"{name} is on device {value.device} but the parameters are on {like.device}; "
                f"move one of them (e.g. module.to('{value.device}'))"
            )
    if check_finite is None:
        check_finite = torch.distributions.Distribution._validate_args
    if check_finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def check_context(context, context_dim: int, like: torch.Tensor, owner: str):
    """Validate the ``context`` of a conditional distribution: ``None`` exactly when
    ``context_dim == 0``, else a tensor ``(*batch, context_dim)`` of ``like``'s dtype and device.

    Raises:
        ValueError: a missing or unexpected context, a wrong last dim or device, or NaN/inf
            entries (while validation is on).
        TypeError: a non-tensor, or a dtype other than the network's.
    """
    if not context_dim:
        if context is not None:
            raise ValueError(f"this {owner} takes no context, got one")
        return None
    if context is None:
        raise ValueError(f"this {owner} needs a context of shape (*batch, {context_dim})")
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
    if context.dim() < 1 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context must have shape (*batch, {context_dim}), got {tuple(context.shape)}"
        )
    if context.dtype != like.dtype:
        raise TypeError(
            f"context has dtype {context.dtype} but the network has dtype {like.dtype}; "
            f"convert one of them (e.g. context.to({like.dtype}))"
        )
    if context.device != like.device:
        raise ValueError(f"context is on {context.device} but the network is on {like.device}")
    # finite entries while validation is on, as check_tensor checks (not inside torch.func
    # transforms, where a data-dependent bool cannot be taken)
    check_finite = not torch._C._are_functorch_transforms_active() and bool(
        torch.distributions.Distribution._validate_args
    )
    if check_finite and not bool(torch.isfinite(context).all()):
        raise ValueError("context contains non-finite values (nan or inf)")
    return context


def check_binary_data(value, name: str = "data") -> torch.Tensor:
    """Validate training data of a binary model: a non-empty floating ``(N, D)`` tensor of
    zeros and ones (one scan of the values).

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: not 2-D, no rows, or values other than 0 and 1 (including nan).
    """
    check_data(value, name, min_dim=2)
    if value.dim() != 2 or not bool(((value == 0) | (value == 1)).all()):
        raise ValueError(f"{name} must be a (N, n_visible) tensor of zeros and ones")
    return value


def check_optim(value, name: str):
    """Validate an optimizer argument: a ``pyro.optim.PyroOptim`` (e.g.
    ``pyro.optim.Adam({"lr": 1e-3})``), not a ``torch.optim`` class or a string.

    Raises:
        TypeError: anything else.
    """
    from pyro.optim import PyroOptim

    if not isinstance(value, PyroOptim):
        raise TypeError(
            f"{name} must be a pyro.optim optimizer (e.g. pyro.optim.Adam({{'lr': 1e-3}})), got "
            f"{value!r}"
        )
    return value


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """Validate a count argument (a number of steps, samples, units, ...).

    Args:
        value: the argument.
        name: its name, used in the error message.
        minimum: the smallest allowed value.
    Returns:
        ``value``.
    Raises:
        ArgumentTypeError: (a ``TypeError`` and a ``ValueError``) ``value`` is not an int
            (``bool``, floats and strings are rejected).
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(
            f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_module_class(value, name: str) -> type[torch.nn.Module]:
    """Validate an argument that must be an ``nn.Module`` class (e.g. ``torch.nn.Tanh``), not
    an instance or a function.

    Returns:
        ``value``.
    Raises:
        TypeError: ``value`` is not a subclass of ``torch.nn.Module``.
    """
    if not (isinstance(value, type) and issubclass(value, torch.nn.Module)):
        raise TypeError(f"{name} must be an nn.Module class (e.g. torch.nn.Tanh), got {value!r}")
    return value


def progress_bar(iterable, *, progress: bool | None = None, total: int | None = None, desc=None):
    """``iterable`` wrapped in a ``tqdm`` progress bar written to stderr, or unchanged.

    Args:
        progress: ``True`` shows the bar, ``False`` never; ``None`` (default) shows it only
            when stderr is an interactive terminal, so tests and CI logs stay quiet.
        total, desc: passed to ``tqdm``.
    Returns:
        the iterable, wrapped when a bar is shown and ``tqdm`` is installed (it is imported
        lazily; without it the iterable is returned unchanged).
    """
    import sys

    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not progress:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)
