"""Per-data-point importance weights of a model/guide pair, and the importance-weighted
estimate of ``log p(x)`` that VAE papers report."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import Delta
from pyro.infer.enum import get_importance_trace
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites

from pyrogen.infer.checks import (
    check_fixed_subsample,
    check_guide_covers,
    empty_plates_as_errors,
    nonfinite_sites,
)
from pyrogen.util import check_count, progress_bar

__all__ = [
    "LogLikelihood",
    "LogWeights",
    "guess_max_plate_nesting",
    "importance_log_weights",
    "log_likelihood",
    "replay_model_detached",
    "trace_particles",
]

PARTICLE_PLATE = "_pyrogen_particles"


class LogWeights(NamedTuple):
    """Log importance weights ``log p(x, z_k) - log q(z_k)`` arranged per data point.

    Attributes:
        log_weights: ``(K, *data_shape)`` in nats, where ``K`` is the number of particles and
            ``data_shape`` the sizes of the *data plates* (below), in order of their ``dim``.
            Every other plate and event dimension is summed.
        log_joint: ``(K, *data_shape)``, the model's part ``log p(x, z_k)`` alone.
        data_plates: the names of the data plates: the vectorized plates that hold every
            sample site of the model (observed or not) and every latent site of the guide whose
            log-density varies between particles. The
            model factorizes over them given the parameters, so ``log p(x)`` is a sum of
            per-element terms. Empty when a site lies outside every plate (e.g. a global
            latent), in which case the weights are joint over the whole data set.
        scale: the subsampling factor of the data plates (``full_size / subsample_size``,
            product over plates): multiply a sum over ``data_shape`` by it to estimate the sum
            over the full data set.
        global_log_weight: ``()``, nats (scaled): the terms that are the same for every
            particle: latents whose guide is a point mass (``Delta``, e.g. ``AutoDelta``),
            their model sites and observed sites, when identical across particles. They are
            taken out of the log-mean-exp exactly and do not restrict the data plates: the
            bound is ``scale * sum(logmeanexp(log_weights)) + global_log_weight``.
        global_sites: their names.
        reparam_log_q: ``(K, *data_shape)``, the guide's log-density of its reparameterized
            sites arranged like ``log_weights`` (``None`` when it has none).
        score_log_q: ``(K, *data_shape)``, the guide's log-density of its
            non-reparameterizable sites (``None`` when it has none); the score-function term.
    """

    log_weights: torch.Tensor
    log_joint: torch.Tensor
    data_plates: tuple[str, ...]
    scale: float
    global_log_weight: torch.Tensor
    global_sites: tuple[str, ...]
    reparam_log_q: torch.Tensor | None
    score_log_q: torch.Tensor | None


def _sample_sites(trace: Trace, *, latent_only: bool):
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or (latent_only and site["is_observed"]):
            continue
        yield name, site


def _frames(site) -> dict[str, object]:
    return {
        f.name: f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE
    }


def _arrange(value: torch.Tensor, keep_dims: list[int], ndim: int) -> torch.Tensor:
    """Left-pad ``value`` to ``ndim`` dims and sum every dim not in ``keep_dims`` (negative)."""
    value = value.reshape((1,) * (ndim - value.dim()) + value.shape)
    drop = [d for d in range(-ndim, 0) if d not in keep_dims and value.shape[d] != 1]
    return value.sum(drop, keepdim=True) if drop else value


def importance_log_weights(
    model_trace: Trace, guide_trace: Trace, *, particle_dim: int
) -> LogWeights:
    """Arrange the log importance weights of a traced model/guide pair per data point.

    Both traces must hold ``log_prob`` (``Trace.compute_log_prob``); the guide's is taken as
    computed, so a caller may have replaced it (e.g. sticking-the-landing). Scales from
    ``poutine.scale`` and masks are kept; the data plates' subsampling scale is divided out
    (reported in :attr:`LogWeights.scale`) so that the log-mean-exp over particles acts on the
    unscaled per-data-point weights.

    Shapes:
        ``log_weights``: ``(K, *data_shape)``.
    Args:
        model_trace, guide_trace: traces of one importance draw (vectorized over particles
            along ``particle_dim``), subsample sites pruned.
        particle_dim: the (negative) dim of the particle plate (see :func:`trace_particles`).
    Raises:
        ValueError: a trace without sample sites.
    """
    model_sites = list(_sample_sites(model_trace, latent_only=False))
    guide_sites = list(_sample_sites(guide_trace, latent_only=True))
    if not model_sites:
        raise ValueError("the model has no sample sites; nothing to weight")
    ndim = max([-particle_dim] + [site["log_prob"].dim() for _, site in model_sites + guide_sites])

    def padded(site) -> torch.Tensor:
        lp = site["log_prob"]
        return lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)

    point_masses = {name for name, site in guide_sites if _is_point_mass(site["fn"])}
    fixed = {("guide", name) for name in point_masses}
    fixed |= {
        ("model", name)
        for name, site in model_sites
        if (name in point_masses or site["is_observed"])
        and _particle_constant(padded(site), particle_dim)
    }
    varying = [
        site
        for kind, sites in (("model", model_sites), ("guide", guide_sites))
        for name, site in sites
        if (kind, name) not in fixed
    ]
    shared: dict[str, object] = {}
    for i, site in enumerate(varying):
        frames = _frames(site)
        shared = frames if i == 0 else {k: v for k, v in shared.items() if k in frames}
    data_frames = sorted(shared.values(), key=lambda f: f.dim)
    scale = math.prod(
        (f.full_size / f.size) if f.full_size is not None else 1.0 for f in data_frames
    )
    keep = [f.dim for f in data_frames] + [particle_dim]

    def total(kind, sites) -> torch.Tensor | None:
        out = None
        for name, site in sites:
            if (kind, name) not in fixed:
                term = _arrange(padded(site), keep, ndim)
                out = term if out is None else out + term
        return out

    global_term = 0.0
    for kind, sites, sign in (("model", model_sites, 1), ("guide", guide_sites, -1)):
        for name, site in sites:
            if (kind, name) in fixed:
                global_term = global_term + sign * padded(site).narrow(particle_dim, 0, 1).sum()
    zero = model_sites[0][1]["log_prob"].new_zeros(())
    log_p = total("model", model_sites)
    log_p = zero.reshape((1,) * ndim) if log_p is None else log_p
    reparam = [(n, s) for n, s in guide_sites if s["fn"].has_rsample]
    score = [(n, s) for n, s in guide_sites if not s["fn"].has_rsample]
    log_q_r, log_q_s = total("guide", reparam), total("guide", score)
    log_w = log_p
    for term in (log_q_r, log_q_s):
        if term is not None:
            log_w = log_w - term
    order = [particle_dim] + [f.dim for f in data_frames]
    full = list(log_w.shape)
    full[particle_dim] = max(
        [1]
        + [
            f.size
            for _, site in model_sites + guide_sites
            for f in site["cond_indep_stack"]
            if f.name == PARTICLE_PLATE
        ]
    )

    def layout(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = (t / scale).expand(full)
        rest = [d for d in range(-ndim, 0) if d not in order]
        return t.permute(*order, *rest).reshape([t.shape[d] for d in order])

    return LogWeights(
        layout(log_w),
        layout(log_p),
        tuple(f.name for f in data_frames),
        scale,
        zero + global_term,
        tuple(sorted(name for _, name in fixed)),
        layout(log_q_r),
        layout(log_q_s),
    )


def _is_point_mass(fn) -> bool:
    """Whether a guide distribution is a point mass (``Delta``, possibly wrapped)."""
    while not isinstance(fn, Delta) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, Delta)


def _particle_constant(log_prob: torch.Tensor, particle_dim: int) -> bool:
    """Whether a site's (padded) log-density is identical for every particle (and there are
    several particles to compare)."""
    first = log_prob.narrow(particle_dim, 0, 1)
    return log_prob.shape[particle_dim] > 1 and torch.equal(log_prob, first.expand_as(log_prob))


def _particles(fn: Callable, num_particles: int, max_plate_nesting: int) -> Callable:
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1))(fn)


def trace_particles(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    max_plate_nesting: int,
) -> tuple[Trace, Trace]:
    """Trace ``guide`` then ``model`` against it, with ``num_particles`` draws vectorized in an
    outermost plate at ``dim = -(max_plate_nesting + 1)``; log-densities computed (the guide's
    through ``compute_score_parts``), subsample sites pruned.

    Returns:
        ``(model_trace, guide_trace)``.
    Raises:
        ValueError: a guide that does not sample every latent site of the model; empty data
            (a plate of size 0).
    """
    # Pyro only warns about model latents missing from the guide; check_guide_covers raises
    with empty_plates_as_errors("importance sampling"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found vars in model but not guide")
        model_trace, guide_trace = get_importance_trace(
            "flat",
            max_plate_nesting + 1,
            _particles(model, num_particles, max_plate_nesting),
            _particles(guide, num_particles, max_plate_nesting),
            args,
            kwargs,
        )
    check_guide_covers(model_trace, guide_trace)
    return model_trace, guide_trace


def replay_model_detached(
    model: Callable,
    guide_trace: Trace,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    max_plate_nesting: int,
    keep: tuple[str, ...] = (),
) -> Trace:
    """Re-run ``model`` (wrapped as in :func:`trace_particles`) on the guide's values with their
    gradients stopped (except the sites named in ``keep``); log-densities computed, subsample
    sites pruned. Used where a gradient must reach the model's parameters but not the guide's
    through the per-particle draws (DReG)."""
    detached = Trace()
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample":
            value = site["value"] if name in keep else site["value"].detach()
            detached.add_node(name, **{**site, "value": value})
    wrapped = _particles(model, num_particles, max_plate_nesting)
    trace = poutine.trace(poutine.replay(wrapped, trace=detached)).get_trace(*args, **kwargs)
    trace = prune_subsample_sites(trace)
    trace.compute_log_prob()
    return trace


def guess_max_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    """The number of vectorized plate dims that ``model`` and ``guide`` use (one dry run)."""
    with poutine.block(), empty_plates_as_errors("a dry run of the model and guide"):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        f.dim
        for trace in (model_trace, guide_trace)
        for site in prune_subsample_sites(trace).nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    ]
    return -min(dims) if dims else 0


class LogLikelihood(NamedTuple):
    """Result of :func:`log_likelihood`.

    Attributes:
        log_likelihood: ``data_shape`` (the data plates' sizes, or ``()``), nats per data point.
        stderr: same shape: Monte Carlo standard error of each estimate (delta method), nats.
        data_plates: the plates the estimate factorizes over (see :class:`LogWeights`).
        global_log_weight: ``()``, nats: the part of the log-weight that is the same for every
            draw (e.g. the prior of a point-estimated global latent), not included in
            ``log_likelihood``; the total estimate of the data set's ``log p(x, z_global)`` is
            ``log_likelihood.sum() + global_log_weight``.
    """

    log_likelihood: torch.Tensor
    stderr: torch.Tensor
    data_plates: tuple[str, ...]
    global_log_weight: torch.Tensor


@torch.no_grad()
def log_likelihood(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 5000,
    batch_size: int = 500,
    max_plate_nesting: int | None = None,
    progress: bool | None = None,
    **kwargs,
) -> LogLikelihood:
    r"""Importance-weighted estimate of :math:`\log p(x)` for every data point.

    What it computes: with draws :math:`z_k \sim q(z \mid x_n)`, :math:`k = 1..S`,

    .. math:: \log \hat p(x_n) = \log \frac1S \sum_k \frac{p(x_n, z_k)}{q(z_k \mid x_n)},

    the IWAE bound with ``K = S`` (Burda, Grosse, Salakhutdinov 2016): a stochastic lower bound
    in expectation that converges to :math:`\log p(x_n)` as ``S`` grows. It is computed per
    element of the model's data plates (see :class:`LogWeights`); a model with latents outside
    every plate gets one joint estimate. The standard error is the delta-method error of the
    weight average, :math:`\sqrt{(\overline{w^2}/\bar w^2 - 1)/S}` nats. Memory is bounded by
    running ``batch_size`` particles at a time and combining the log-sum-exps.

    Shapes:
        returns tensors of shape ``data_shape`` (e.g. ``(N,)`` for one data plate of size N).
    Args:
        model, guide: a Pyro model and guide; the guide is called with the same arguments.
        args, kwargs: passed to both model and guide (e.g. the data).
        num_samples: ``S >= 2``, importance draws per data point (DESIGN: report K=5000).
        batch_size: particles per vectorized pass (memory ~ ``batch_size`` times one pass).
        max_plate_nesting: the model's plate nesting; guessed with one dry run when ``None``.
        progress: a tqdm bar over the importance draws (``None``: only when stderr is a
            terminal; ``False``: never).
    Raises:
        ValueError: ``num_samples < 2`` (a point-mass guide site or a term constant across
            particles is found by comparing draws) or ``batch_size < 1``; a plate that draws a
            random subsample (``subsample_size``: the batches would score different data
            points).
    References:
        Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders.
        https://arxiv.org/abs/1509.00519
    Example:
        >>> import pyro.distributions as dist
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
        >>> x = torch.tensor([0.0, 1.0])
        >>> r = log_likelihood(model, guide, x, num_samples=10)
        >>> torch.allclose(r.log_likelihood, dist.Normal(0.0, 2**0.5).log_prob(x))
        True
    """
    # two draws at least: point-mass and particle-constant terms are told apart across draws
    check_count(num_samples, "num_samples", minimum=2)
    check_count(batch_size, "batch_size")
    if max_plate_nesting is not None:
        check_count(max_plate_nesting, "max_plate_nesting", minimum=0)
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    check_fixed_subsample(model, args, kwargs, "log_likelihood")
    lse1 = lse2 = global_term = None
    plates: tuple[str, ...] = ()
    done = 0
    bar = progress_bar(None, progress=progress, total=num_samples, desc="log_likelihood")
    while done < num_samples:
        k = min(max(batch_size, 2), num_samples - done)
        if num_samples - done - k == 1:
            k += 1  # never a single-draw chunk: point-mass terms are detected across draws
        model_trace, guide_trace = trace_particles(
            model, guide, args, kwargs, num_particles=k, max_plate_nesting=max_plate_nesting
        )
        lw = importance_log_weights(model_trace, guide_trace, particle_dim=-(max_plate_nesting + 1))
        plates, global_term = lw.data_plates, lw.global_log_weight
        a, b = lw.log_weights.logsumexp(0), (2 * lw.log_weights).logsumexp(0)
        lse1 = a if lse1 is None else torch.logaddexp(lse1, a)
        lse2 = b if lse2 is None else torch.logaddexp(lse2, b)
        done += k
        if bar is not None:
            bar.update(k)
    if bar is not None:
        bar.close()
    bad, bad_data = nonfinite_sites([("model", model_trace)])
    if bad_data:
        raise ValueError(f"log_likelihood: {'; '.join(bad)} (the data are not finite)")
    estimate = lse1 - math.log(num_samples)
    rel_var = (lse2 - 2 * lse1 + math.log(num_samples)).exp() - 1
    stderr = (rel_var.clamp(min=0) / num_samples).sqrt()
    return LogLikelihood(estimate, stderr, plates, global_term)
