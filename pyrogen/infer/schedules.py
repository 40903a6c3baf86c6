"""Schedules for the KL weight ``beta`` of :class:`~pyrogen.infer.AnnealedELBO`: constant,
linear warm-up, cyclical."""

from __future__ import annotations

import math

from pyrogen.util import check_count, check_real

__all__ = ["Constant", "Cyclical", "LinearWarmup", "check_beta"]


class Constant:
    """Schedule ``beta(step) = value`` for every step.

    Args:
        value: ``beta >= 0``.
    Raises:
        ValueError: ``value`` negative or not finite.
    Example:
        >>> Constant(0.5)(10)
        0.5
    """

    def __init__(self, value: float) -> None:
        self.value = check_beta(value, "value")

    def __call__(self, step: int) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Constant({self.value})"


class LinearWarmup:
    """Schedule rising linearly from ``start`` to ``end`` over ``num_steps`` steps, then flat.

    ``beta(step) = start + (end - start) * min(step / num_steps, 1)`` (Bowman et al. 2016).

    Args:
        num_steps: warm-up length in steps (> 0).
        start, end: ``beta`` at step 0 and after the warm-up (>= 0).
    Raises:
        ValueError: ``num_steps < 1`` or a negative ``start``/``end``.
    References:
        Bowman, Vilnis, Vinyals, Dai, Jozefowicz, Bengio (2016). Generating Sentences from a
        Continuous Space. https://arxiv.org/abs/1511.06349
    Example:
        >>> [LinearWarmup(4)(s) for s in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, num_steps: int, start: float = 0.0, end: float = 1.0) -> None:
        self.num_steps = check_count(num_steps, "num_steps")
        self.start = check_beta(start, "start")
        self.end = check_beta(end, "end")

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(step / self.num_steps, 1.0)

    def __repr__(self) -> str:
        return f"LinearWarmup({self.num_steps}, start={self.start}, end={self.end})"


class Cyclical:
    """Cyclical schedule of Fu et al.: in each period of ``period`` steps, ``beta`` rises
    linearly from 0 to ``end`` over the first ``ratio * period`` steps, then stays at ``end``.

    Args:
        period: steps per cycle (> 0).
        ratio: fraction of each cycle spent rising, in ``(0, 1]``.
        end: ``beta`` at the top of each cycle (>= 0).
    Raises:
        ValueError: ``period < 1``, ``ratio`` outside ``(0, 1]`` or ``end < 0``.
    References:
        Fu, Li, Liu, Gao, Celikyilmaz, Carin (2019). Cyclical Annealing Schedule: A Simple
        Approach to Mitigating KL Vanishing. https://arxiv.org/abs/1903.10145
    Example:
        >>> [Cyclical(4, ratio=0.5)(s) for s in range(8)]
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, period: int, ratio: float = 0.5, end: float = 1.0) -> None:
        self.period = check_count(period, "period")
        self.ratio = check_real(ratio, "ratio", low=0.0, high=1.0, high_inclusive=True)
        self.end = check_beta(end, "end")

    def __call__(self, step: int) -> float:
        phase = (step % self.period) / (self.ratio * self.period)
        return self.end * min(phase, 1.0)

    def __repr__(self) -> str:
        return f"Cyclical({self.period}, ratio={self.ratio}, end={self.end})"


def check_beta(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number ``>= 0``.

    Raises:
        TypeError: not a real number.  ValueError: negative or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)
