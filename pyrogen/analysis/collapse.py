"""Posterior-collapse diagnostics for latent-variable models: KL per latent dimension and
active units."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from pyrogen.infer.elbo import kl_terms
from pyrogen.infer.importance import guess_max_plate_nesting, trace_particles
from pyrogen.util import check_count, check_nonnegative

__all__ = ["active_units", "kl_per_dimension"]


@torch.no_grad()
def kl_per_dimension(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1,
    analytic_kl: bool = True,
    **kwargs,
) -> dict[str, torch.Tensor]:
    r"""Average :math:`\mathrm{KL}(q(z_d \mid x) \,\|\, p(z_d))` of every latent dimension.

    For each latent site of the guide, the KL of each latent dimension (an element of the event
    of an ``Independent`` guide/prior pair; the whole site otherwise) averaged over the batch
    (the data points passed in, weighted by mask) and over ``num_samples`` draws: the quantity
    free bits floors. Closed-form KLs where ``torch.distributions.kl_divergence`` has one.
    Dimensions with a KL near 0 carry no information about ``x`` (collapsed).

    Shapes:
        returns a dict from site name to a tensor of shape ``dim_shape`` in nats (e.g.
        ``(latent_dim,)`` for a diagonal Normal).
    Args:
        model, guide: the model and its (amortized) guide; ``*args, **kwargs`` go to both.
        num_samples: draws per data point (Monte Carlo KLs and hierarchical priors need > 1).
        analytic_kl: use closed forms where available.
    Raises:
        ValueError: ``num_samples < 1``, or a guide site missing from the model.
    References:
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
    """
    check_count(num_samples, "num_samples")
    nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    model_trace, guide_trace = trace_particles(
        model, guide, args, kwargs, num_particles=num_samples, max_plate_nesting=nesting
    )
    out = {}
    for term in kl_terms(model_trace, guide_trace, analytic_kl=analytic_kl):
        kl, weight = term.per_dimension()
        out[term.name] = (kl * weight).sum(0) / weight.sum(0)
    return out


@torch.no_grad()
def active_units(
    model: Callable,
    guide: Callable,
    *args,
    threshold: float = 0.01,
    num_samples: int = 100,
    **kwargs,
) -> dict[str, tuple[torch.Tensor, int]]:
    r"""Active latent units (Burda, Grosse, Salakhutdinov 2016).

    What it computes: a latent dimension ``u`` is *active* when
    :math:`A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z \mid x)}[z_u]\big) > \text{threshold}`:
    the posterior mean moves with the data. The posterior means are the guide distribution's
    ``mean`` where it has one in closed form, else the average of ``num_samples`` draws, in
    which case the Monte Carlo noise of those averages (the batch mean of
    :math:`\mathrm{Var}_q(z_u) / S`) is subtracted so that collapsed units do not look active;
    the covariance is over the batch elements (every data-plate element passed in).

    Shapes:
        returns a dict from site name to ``(A, num_active)``, ``A`` of shape ``event_shape``
        (the per-unit variance of the posterior mean, in the latent's units squared).
    Args:
        model, guide: the model and an amortized guide; ``*args, **kwargs`` go to both (pass
            the held-out data).
        threshold: activity threshold (Burda et al. use 0.01).
        num_samples: draws per data point when the guide's mean has no closed form.
    Raises:
        ValueError: ``threshold < 0``, ``num_samples < 1``, or a latent site with fewer than
            two batch elements (no variance across data points).
    References:
        Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders, section 5.2.
        https://arxiv.org/abs/1509.00519
    """
    check_nonnegative(threshold, "threshold")
    check_count(num_samples, "num_samples")
    nesting = guess_max_plate_nesting(model, guide, args, kwargs)

    def particles(*a, **k):
        # only the guide runs with the particles (a model pass per draw can cost gigabytes)
        with pyro.plate("_active_units_particles", num_samples, dim=-(nesting + 1)):
            return guide(*a, **k)

    guide_trace = prune_subsample_sites(poutine.trace(particles).get_trace(*args, **kwargs))
    out = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        try:
            mean = fn.mean
        except NotImplementedError:
            mean = None
        from_draws = mean is None or not bool(torch.isfinite(mean).all())
        # batch dims: the particle plate (leftmost, num_samples draws), then the model's plates
        shape = (1,) * (nesting + 1 - len(fn.batch_shape)) + tuple(fn.batch_shape)
        values = site["value"] if from_draws else mean
        values = values.expand(fn.batch_shape + fn.event_shape).reshape(shape + fn.event_shape)
        batch = values.mean(0).reshape(-1, *fn.event_shape)
        if batch.shape[0] < 2:
            raise ValueError(
                f"site {name!r} has {batch.shape[0]} batch element(s); active units need the "
                "posterior means of several data points"
            )
        variance = batch.var(0)
        if from_draws and num_samples > 1:
            # remove the Monte Carlo noise of the estimated means: E_x[Var_q(z) / S]
            within = values.var(0).reshape(-1, *fn.event_shape).mean(0) / num_samples
            variance = (variance - within).clamp(min=0)
        out[name] = (variance, int((variance > threshold).sum()))
    return out
