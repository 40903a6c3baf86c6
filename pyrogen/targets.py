"""Target densities for fitting flows by reverse KL: banana, ring, Neal's funnel, a Gaussian
mixture and the two-moons energy, each with ``log_prob``, ``unnormalized_log_prob``, its
``log_partition`` and an exact sampler.

Every target is a :class:`pyro.distributions.TorchDistribution` with ``event_shape = (D,)``
and ``batch_shape = ()`` (use ``.expand`` for more). ``log_prob`` is normalized (nats);
``unnormalized_log_prob(x) = log_prob(x) + log_partition`` is what a reverse-KL fit gets to
see. ``log_partition`` is exact in closed form except for :class:`TwoMoonsEnergy`, whose
value is integrated numerically on a fine grid the first time it is asked for
(``log_partition_is_exact`` says which).
"""

from __future__ import annotations

import math
from functools import cache
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyrogen.util import check_count, check_positive, check_real

__all__ = ["Banana", "GaussianMixture", "NealsFunnel", "Ring", "Target", "TwoMoonsEnergy"]

_LOG_2PI = math.log(2 * math.pi)


def _positive(name: str, value: float) -> float:
    return check_positive(value, name)


class Target(TorchDistribution):
    """Base class of the targets: a normalized density on ``R^D`` with a known normalizer.

    Subclasses define ``unnormalized_log_prob``, ``_exact_log_partition`` (or ``None``) and
    ``sample``.

    Attributes:
        plot_limits: ``((x_min, x_max), (y_min, y_max))`` of a window holding almost all mass
            of the first two coordinates (for figures and grid integration).
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False
    plot_limits: tuple[tuple[float, float], tuple[float, float]] = ((-4.0, 4.0), (-4.0, 4.0))

    def __init__(self, dim: int) -> None:
        super().__init__(torch.Size(), torch.Size((dim,)), validate_args=False)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(x) + log Z`` (nats). Shapes: value ``(*batch, D)`` -> ``(*batch,)``."""
        raise NotImplementedError

    def _exact_log_partition(self) -> float | None:
        return None

    @property
    def log_partition_is_exact(self) -> bool:
        """Whether :attr:`log_partition` is a closed form (else numerically integrated)."""
        return self._exact_log_partition() is not None

    @property
    def log_partition(self) -> float:
        """``log Z = log integral exp(unnormalized_log_prob(x)) dx`` in nats."""
        exact = self._exact_log_partition()
        return exact if exact is not None else _grid_log_partition(self)

    def _check(self, value: torch.Tensor) -> None:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
        if value.shape[-1:] != self.event_shape:
            raise ValueError(
                f"value must be a tensor of shape (*batch, {self.event_shape[0]}), got "
                f"{tuple(value.shape)}"
            )
        if (
            torch.distributions.Distribution._validate_args
            and not torch._C._are_functorch_transforms_active()
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ):
            raise ValueError("value contains non-finite values (nan or inf)")

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Normalized log density (nats). Shapes: value ``(*batch, D)`` -> ``(*batch,)``.

        Raises:
            ValueError: ``value``'s last dimension is not ``D``.
        """
        return self.unnormalized_log_prob(value) - self.log_partition

    def _draw(self, sample_shape, fn) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        n = shape.numel()
        return fn(n).to(torch.get_default_dtype()).reshape(shape + self.event_shape)


def _grid_log_partition(target: Target) -> float:
    """``log Z`` of a target without a closed form, integrated once per class and arguments.

    A subclass integrated this way stores its constructor arguments (numbers) as attributes of
    the same names, so that the cache key ``(class, arguments)`` rebuilds it."""
    args = tuple(
        sorted(
            (k, v)
            for k, v in vars(target).items()
            if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)
        )
    )
    return _grid_cached(type(target), args)


@cache
def _grid_cached(cls: type, args: tuple, num_points: int = 1201) -> float:
    """Trapezoidal rule in float64 on ``num_points^2`` nodes over ``plot_limits`` (exponentially
    accurate for a smooth integrand that vanishes at the window's edge)."""
    target = cls(**dict(args))
    (x0, x1), (y0, y1) = target.plot_limits
    xs = torch.linspace(x0, x1, num_points, dtype=torch.float64)
    ys = torch.linspace(y0, y1, num_points, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)
    log_p = target.unnormalized_log_prob(grid)
    cell = math.log((xs[1] - xs[0]).item() * (ys[1] - ys[0]).item())
    return float(torch.logsumexp(log_p.reshape(-1), 0)) + cell


class Banana(Target):
    r"""Twisted Gaussian ("banana", Haario et al. 1999) in 2-D.

    What it computes: :math:`x_1 \sim N(0, a^2)`, :math:`x_2 \mid x_1 \sim N(b (x_1^2 - a^2),
    1)`, so :math:`\log \tilde p(x) = -x_1^2/(2a^2) - (x_2 - b(x_1^2 - a^2))^2/2` and
    :math:`\log Z = \log(2\pi a)` exactly (the twist has unit Jacobian). Sampling is exact.

    Args:
        a: scale of ``x_1`` (> 0).
        b: curvature (any finite number).
    Raises:
        ValueError: ``a <= 0`` or a non-finite ``b``.
    References:
        Haario, Saksman, Tamminen (1999). Adaptive proposal distribution for random walk
        Metropolis algorithm. https://doi.org/10.1007/s001800050022
    Example:
        >>> Banana().log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    plot_limits = ((-6.0, 6.0), (-5.0, 13.0))

    def __init__(self, a: float = 2.0, b: float = 0.5) -> None:
        self.a = _positive("a", a)
        self.b = check_real(b, "b")
        super().__init__(2)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check(value)
        x1, x2 = value[..., 0], value[..., 1]
        return -0.5 * (x1 / self.a) ** 2 - 0.5 * (x2 - self.b * (x1**2 - self.a**2)) ** 2

    def _exact_log_partition(self) -> float:
        return _LOG_2PI + math.log(self.a)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        def draw(n):
            x1 = self.a * torch.randn(n, dtype=torch.float64)
            x2 = torch.randn(n, dtype=torch.float64) + self.b * (x1**2 - self.a**2)
            return torch.stack([x1, x2], -1)

        return self._draw(sample_shape, draw)


class Ring(Target):
    r"""Ring in 2-D: a Gaussian profile of width ``s`` around the circle of radius ``r``.

    What it computes: :math:`\log \tilde p(x) = -(\lVert x\rVert - r)^2 / (2 s^2)`, and in polar
    coordinates :math:`Z = 2\pi \int_0^\infty \rho\, e^{-(\rho - r)^2/(2s^2)} d\rho =
    2\pi [s^2 e^{-r^2/(2s^2)} + r s \sqrt{2\pi}\, \Phi(r/s)]` exactly. Sampling is exact: the
    radius by rejection from the envelope :math:`(r + s|t|)\varphi(t)`,
    :math:`t = (\rho - r)/s`, the angle uniform.

    Args:
        radius: ``r`` (> 0).  scale: ``s`` (> 0).
    Raises:
        ValueError: a non-positive or non-finite argument.
    Example:
        >>> round(Ring().log_partition, 4)
        2.0637
    """

    def __init__(self, radius: float = 2.0, scale: float = 0.25) -> None:
        self.radius = _positive("radius", radius)
        self.scale = _positive("scale", scale)
        lim = self.radius + 8 * self.scale
        self.plot_limits = ((-lim, lim), (-lim, lim))
        super().__init__(2)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check(value)
        return -0.5 * ((value.norm(dim=-1) - self.radius) / self.scale) ** 2

    def _exact_log_partition(self) -> float:
        r, s = self.radius, self.scale
        phi = 0.5 * math.erfc(-r / (s * math.sqrt(2)))
        return math.log(
            2
            * math.pi
            * (s**2 * math.exp(-0.5 * (r / s) ** 2) + r * s * math.sqrt(2 * math.pi) * phi)
        )

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        r, s = self.radius, self.scale
        p_normal = r / (r + s * math.sqrt(2 / math.pi))

        def draw(n):
            out = torch.empty(0, dtype=torch.float64)
            while out.numel() < n:
                m = 2 * (n - out.numel()) + 16
                gauss = torch.randn(m, dtype=torch.float64)
                u = torch.rand(m, dtype=torch.float64).clamp_min(1e-300)
                sign = torch.where(torch.rand(m) < 0.5, -1.0, 1.0).to(torch.float64)
                rayleigh = sign * torch.sqrt(-2 * torch.log(u))
                t = torch.where(torch.rand(m, dtype=torch.float64) < p_normal, gauss, rayleigh)
                rho = r + s * t
                accept = torch.rand(m, dtype=torch.float64) * (r + s * t.abs()) < rho
                out = torch.cat([out, rho[accept & (rho > 0)]])
            rho = out[:n]
            angle = 2 * math.pi * torch.rand(n, dtype=torch.float64)
            return torch.stack([rho * torch.cos(angle), rho * torch.sin(angle)], -1)

        return self._draw(sample_shape, draw)


class NealsFunnel(Target):
    r"""Neal's funnel in ``D`` dimensions: :math:`v \sim N(0, 3^2)`, :math:`x_i \mid v \sim
    N(0, e^{v})` for ``i = 1..D-1``; ``value = (v, x_1, ..., x_{D-1})``.

    ``unnormalized_log_prob`` drops the Gaussian constants only, so
    :math:`\log Z = \tfrac12 \log(2\pi \cdot 9) + \tfrac{D-1}{2}\log 2\pi` exactly. Sampling is
    exact (by construction).

    Args:
        dim: ``D >= 2``.
    Raises:
        ValueError: ``dim < 2``.
    References:
        Neal (2003). Slice sampling. https://doi.org/10.1214/aos/1056562461
    Example:
        >>> NealsFunnel(5).sample((3,)).shape
        torch.Size([3, 5])
    """

    plot_limits = ((-9.0, 9.0), (-12.0, 12.0))

    def __init__(self, dim: int = 2) -> None:
        check_count(dim, "dim", minimum=2)
        self.dim = dim
        super().__init__(dim)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check(value)
        v, x = value[..., 0], value[..., 1:]
        return -(v**2) / 18 - 0.5 * (x**2).sum(-1) * torch.exp(-v) - 0.5 * (self.dim - 1) * v

    def _exact_log_partition(self) -> float:
        return 0.5 * (_LOG_2PI + math.log(9.0)) + 0.5 * (self.dim - 1) * _LOG_2PI

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        def draw(n):
            v = 3 * torch.randn(n, 1, dtype=torch.float64)
            return torch.cat(
                [v, torch.exp(v / 2) * torch.randn(n, self.dim - 1, dtype=torch.float64)], -1
            )

        return self._draw(sample_shape, draw)


class GaussianMixture(Target):
    r"""Equal-weight mixture of ``K`` isotropic 2-D Gaussians of scale ``s`` on a circle.

    What it computes: :math:`\log \tilde p(x) = \log \sum_k e^{-\lVert x - \mu_k\rVert^2/(2s^2)}`
    with :math:`\mu_k = R(\cos 2\pi k/K, \sin 2\pi k/K)`, so :math:`\log Z = \log(2\pi s^2 K)`
    exactly. Well-separated components make reverse-KL fits drop modes. Sampling is exact.

    Args:
        num_components: ``K >= 1``.  radius: ``R`` (> 0).  scale: ``s`` (> 0).
    Raises:
        ValueError: ``num_components < 1`` or a non-positive radius or scale.
    Example:
        >>> GaussianMixture(3).sample((4,)).shape
        torch.Size([4, 2])
    """

    def __init__(self, num_components: int = 4, radius: float = 3.0, scale: float = 0.5) -> None:
        self.num_components = check_count(num_components, "num_components")
        self.radius = _positive("radius", radius)
        self.scale = _positive("scale", scale)
        lim = self.radius + 8 * self.scale
        self.plot_limits = ((-lim, lim), (-lim, lim))
        super().__init__(2)

    def locs(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """Component means, shape ``(K, 2)`` (dtype and device of ``like``)."""
        kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
        angle = 2 * math.pi * torch.arange(self.num_components, **kw) / self.num_components
        return self.radius * torch.stack([torch.cos(angle), torch.sin(angle)], -1)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check(value)
        sq = ((value.unsqueeze(-2) - self.locs(value)) ** 2).sum(-1)
        return torch.logsumexp(-0.5 * sq / self.scale**2, -1)

    def _exact_log_partition(self) -> float:
        return _LOG_2PI + 2 * math.log(self.scale) + math.log(self.num_components)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        def draw(n):
            k = torch.randint(self.num_components, (n,))
            loc = self.locs(torch.zeros((), dtype=torch.float64))[k]
            return loc + self.scale * torch.randn(n, 2, dtype=torch.float64)

        return self._draw(sample_shape, draw)


class TwoMoonsEnergy(Target):
    r"""The "two moons" energy of Rezende and Mohamed (2015), a density known only up to ``Z``.

    What it computes: :math:`\log \tilde p(x) = -\tfrac12 ((\lVert x\rVert - 2)/0.4)^2 +
    \log(e^{-\frac12((x_1 - 2)/0.6)^2} + e^{-\frac12((x_1 + 2)/0.6)^2})`. ``log Z`` has no
    closed form: it is integrated on a 1201x1201 float64 grid over ``plot_limits`` on first use
    (trapezoidal rule; error far below 1e-6 nats). Sampling is exact, by rejection from
    :class:`Ring` ``(2, 0.4)``, whose density bounds it up to the factor 2.

    References:
        Rezende, Mohamed (2015). Variational Inference with Normalizing Flows, Table 1 (U1).
        https://arxiv.org/abs/1505.05770
    Example:
        >>> TwoMoonsEnergy().sample((5,)).shape
        torch.Size([5, 2])
    """

    plot_limits = ((-4.5, 4.5), (-4.5, 4.5))

    def __init__(self) -> None:
        super().__init__(2)

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check(value)
        ring = -0.5 * ((value.norm(dim=-1) - 2) / 0.4) ** 2
        x1 = value[..., 0]
        bumps = torch.stack([-0.5 * ((x1 - 2) / 0.6) ** 2, -0.5 * ((x1 + 2) / 0.6) ** 2], -1)
        return ring + torch.logsumexp(bumps, -1)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        proposal = Ring(2.0, 0.4)

        def draw(n):
            out = torch.empty(0, 2, dtype=torch.float64)
            while out.shape[0] < n:
                m = 3 * (n - out.shape[0]) + 16
                x = proposal.sample((m,)).double()
                log_ratio = self.unnormalized_log_prob(x) - proposal.unnormalized_log_prob(x)
                accept = torch.rand(m, dtype=torch.float64).log() < log_ratio - math.log(2.0)
                out = torch.cat([out, x[accept]])
            return out[:n]

        return self._draw(sample_shape, draw)
