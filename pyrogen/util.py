"""Small shared helpers: input validation."""

from __future__ import annotations

import torch

__all__ = ["check_count", "check_module_class", "check_tensor", "progress_bar"]


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


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """Validate a count argument (a number of steps, samples, units, ...).

    Args:
        value: the argument.
        name: its name, used in the error message.
        minimum: the smallest allowed value.
    Returns:
        ``value``.
    Raises:
        ValueError: ``value`` is not an int (``bool`` is rejected) or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


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
