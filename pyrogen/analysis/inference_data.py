"""ArviZ ``InferenceData`` from an SVI guide: the guide's draws, the model replayed on them, the
posterior predictive and per-observation log-likelihoods. All ArviZ calls of pyrogen go through
this module's ``_arviz``."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from pyrogen.infer.checks import check_fixed_subsample, empty_plates_as_errors
from pyrogen.infer.importance import guess_max_plate_nesting
from pyrogen.util import check_count, progress_bar

__all__ = ["to_inference_data"]


def _arviz():
    with warnings.catch_warnings():
        # ArviZ 0.2x announces its 1.0 refactor with a FutureWarning on import.
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz

    return arviz


def _check_num_samples(num_samples: int, name: str = "num_samples", minimum: int = 1) -> None:
    check_count(num_samples, name, minimum=minimum)


def _is_latent(site: dict) -> bool:
    return (
        site["type"] == "sample"
        and not site_is_subsample(site)
        and not site["is_observed"]
        and not site["infer"].get("was_observed", False)
        and not site["infer"].get("is_auxiliary", False)
    )


def _is_observed(site: dict) -> bool:
    return site["type"] == "sample" and (
        site["infer"].get("was_observed", False) and not site["infer"].get("_deterministic", False)
    )


def _is_deterministic(site: dict) -> bool:
    return site["type"] == "sample" and site["infer"].get("_deterministic", False)


def _traces(model: Callable, guide: Callable, args, kwargs):
    """One guide draw and the model replayed on it, with observed sites un-observed (so that the
    model also draws the posterior predictive); checks that the guide covers every latent."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(
        poutine.uncondition(poutine.replay(model, trace=guide_trace))
    ).get_trace(*args, **kwargs)
    for name, site in model_trace.nodes.items():
        if _is_latent(site) and name not in guide_trace.nodes:
            raise ValueError(
                f"the guide does not match the model: latent site {name!r} of the model is not "
                f"sampled by the guide (guide sites: {sorted(guide_trace.stochastic_nodes)})"
            )
    return guide_trace, model_trace


def _dims(site: dict, shape: torch.Size, event_dim: int | None = None) -> list[str]:
    """Dimension names of a site's value (or of its log-density, ``event_dim=0``): plate names
    where plates are, else ``{site}_dim_k``. A plate's dim counts from the right of the batch
    dims, left of the site's ``event_dim`` event dims."""
    names = [f"{site['name']}_dim_{k}" for k in range(len(shape))]
    if event_dim is None:
        event_dim = getattr(site["fn"], "event_dim", 0)
    batch_ndim = len(shape) - event_dim
    for frame in site["cond_indep_stack"]:
        if frame.vectorized and frame.dim is not None and -batch_ndim <= frame.dim < 0:
            names[batch_ndim + frame.dim] = frame.name
    return names


def _log_prob(site: dict, value: torch.Tensor, *, scaled: bool) -> torch.Tensor:
    """A site's log-density at ``value`` with its mask applied (masked elements give 0) and,
    with ``scaled``, its scale (``poutine.scale``): the terms of Pyro's ``log_prob_sum``."""
    return scale_and_mask(
        site["fn"].log_prob(value), site["scale"] if scaled else 1.0, site["mask"]
    )


class _NotVectorizable(Exception):
    """A site's vectorized value does not have the particle dim in front."""


def _vectorized_traces(model: Callable, guide: Callable, args, kwargs, num_draws: int, nesting):
    """``num_draws`` guide draws in one run, inside a particle plate left of the model's plates,
    and the model replayed on them with observed sites un-observed."""

    def in_plate(fn):
        def wrapped(*a, **k):
            with pyro.plate("_num_draws", num_draws, dim=-(nesting + 1)):
                return fn(*a, **k)

        return wrapped

    guide_trace = poutine.trace(in_plate(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(
        poutine.uncondition(poutine.replay(in_plate(model), trace=guide_trace))
    ).get_trace(*args, **kwargs)
    return guide_trace, model_trace


def _per_draw(value: torch.Tensor, num_draws: int, shape: torch.Size) -> torch.Tensor:
    """``value`` (``num_draws`` draws in front, then ``shape`` up to broadcast ones) as
    ``(num_draws, *shape)``."""
    value = torch.as_tensor(value)
    if num_draws > 1 and (
        value.dim() == 0
        or value.shape[0] != num_draws
        or value.numel() != num_draws * shape.numel()
    ):
        raise _NotVectorizable
    return value.reshape(num_draws, *shape)


def _collect(groups, prototype, guide_trace, model_trace, num_draws: int) -> None:
    """Append one batch of ``num_draws`` draws (traces from :func:`_traces` when 1, from
    :func:`_vectorized_traces` otherwise) to ``groups``; shapes per draw are ``prototype``'s."""
    guide_trace.compute_log_prob()
    log_q = torch.zeros(num_draws)
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and "log_prob" in site and not site_is_subsample(site):
            log_q = log_q + _sum_per_draw(site["log_prob"], num_draws)
    lp = torch.zeros(num_draws)
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        proto = prototype.nodes.get(name)
        if proto is None:
            raise _NotVectorizable
        if _is_latent(site) or _is_deterministic(site):
            value = _per_draw(_value(site), num_draws, _value(proto).shape)
            groups["posterior"].setdefault(name, []).append(value)
            if _is_latent(site):
                log_prob = _log_prob(site, site["value"], scaled=True)
                lp = lp + _sum_per_draw(log_prob, num_draws)
        elif _is_observed(site):
            obs = site["infer"]["obs"]
            log_lik = _log_prob(site, obs, scaled=False)
            lp = lp + _sum_per_draw(_log_prob(site, obs, scaled=True), num_draws)
            shape = _log_prob(proto, proto["infer"]["obs"], scaled=False).shape
            groups["log_likelihood"].setdefault(name, []).append(
                _per_draw(log_lik, num_draws, shape)
            )
            groups["posterior_predictive"].setdefault(name, []).append(
                _per_draw(site["value"], num_draws, proto["value"].shape)
            )
    groups["sample_stats"]["lp"].append(lp)
    groups["sample_stats"]["log_q"].append(log_q)


def _value(site: dict) -> torch.Tensor:
    """A site's value; a ``pyro.deterministic`` site's own value (not a draw of its ``Delta``
    expanded by the plates, which ``poutine.uncondition`` would give)."""
    return site["infer"]["obs"] if _is_deterministic(site) else site["value"]


def _sum_per_draw(log_prob, num_draws: int) -> torch.Tensor:
    """A site's log-density summed over everything but the draws, shape ``(num_draws,)``."""
    log_prob = torch.as_tensor(log_prob)
    if num_draws == 1:
        return log_prob.sum().reshape(1)
    if log_prob.dim() == 0 or log_prob.shape[0] != num_draws:
        raise _NotVectorizable
    return log_prob.reshape(num_draws, -1).sum(-1)


def to_inference_data(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    progress: bool | None = None,
    vectorize: bool | None = None,
    **kwargs,
):
    """Turn a fitted SVI guide into an ArviZ ``InferenceData`` (Pyro's ``az.from_pyro`` takes MCMC
    only).

    Draws ``num_samples`` times from the guide; for each draw the model is replayed on the
    guide's latent values with its observed sites un-observed, which yields in one pass the
    posterior predictive draw and the log-likelihood of every observation. The draws are made
    in batches of up to 1000 inside a particle plate (as ``Trace_ELBO(vectorize_particles=True)``
    does); a model that cannot be vectorized (shapes fixed by hand, Python control flow on
    values) is run one draw at a time, with a progress bar.

    Groups (one chain, ``num_samples`` draws):
        ``posterior``: every latent and ``pyro.deterministic`` site, constrained, with dims named
        after the model's plates (event dims are ``{site}_dim_k``); ``posterior_predictive``: each
        observed site; ``log_likelihood``: the per-observation log-likelihood (nats, shape = the
        site's batch shape; 0 where the site is masked out); ``observed_data``;
        ``sample_stats``: ``lp`` = log p(x, z) and ``log_q`` = log q(z) (nats, masks and
        ``poutine.scale`` applied as in Pyro's ``log_prob_sum``).
        ``attrs`` record the inference library and method (the guide's class).

    Args:
        model, guide: a Pyro model and a guide for it (any guide, e.g. an autoguide).
        args, kwargs: the model's positional and keyword arguments.
        num_samples: number of guide draws.
        progress: a tqdm bar over the draws (``None``: only when stderr is a terminal;
            ``False``: never).
        vectorize: ``None`` (default): vectorize when the model allows, else one draw at a time;
            ``True``: vectorize or raise; ``False``: one draw at a time.
    Returns:
        ``arviz.InferenceData``.
    Raises:
        ValueError: ``num_samples < 1``; a model latent site missing from the guide; a plate
            that draws a random subsample (``subsample_size``: each draw would see other data
            points); empty data; ``vectorize=True`` and a model that cannot be vectorized.
    References:
        Kumar, Carroll, Hartikainen, Martin (2019). ArviZ a unified library for exploratory
        analysis of Bayesian models in Python. https://doi.org/10.21105/joss.01143
    """
    _check_num_samples(num_samples)
    if vectorize is not None and not isinstance(vectorize, bool):
        raise TypeError(f"vectorize must be None, True or False, got {vectorize!r}")
    az = _arviz()
    with torch.no_grad(), empty_plates_as_errors("to_inference_data"):
        check_fixed_subsample(model, args, kwargs, "to_inference_data")
        _, prototype = _traces(model, guide, args, kwargs)  # validates guide against model
        groups = None
        if vectorize is not False:
            groups = _draw_groups(model, guide, args, kwargs, num_samples, prototype, progress)
        if groups is None and vectorize:
            raise ValueError(
                "to_inference_data(vectorize=True): the model could not be vectorized over "
                "a particle plate (a site's value does not broadcast with it)"
            )
        if groups is None:
            groups = _empty_groups()
            for _ in progress_bar(range(num_samples), progress=progress, desc="to_inference_data"):
                guide_trace, model_trace = _traces(model, guide, args, kwargs)
                _collect(groups, model_trace, guide_trace, model_trace, 1)
    dims, observed = {}, {}
    for name, site in prototype.nodes.items():
        if _is_latent(site) or _is_deterministic(site):
            dims[name] = _dims(site, _value(site).shape)
        elif _is_observed(site):
            obs = site["infer"]["obs"]
            dims[name] = _dims(site, obs.shape)
            observed[name] = torch.as_tensor(obs).cpu().numpy()

    def stack(values: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(values).cpu().numpy()[None]

    data = {
        group: {name: stack(values) for name, values in sites.items()}
        for group, sites in groups.items()
    }
    # per-observation log-likelihoods have the observed site's batch shape (event dims summed)
    ll_dims = {
        name: _dims(prototype.nodes[name], values[0].shape[1:], event_dim=0)
        for name, values in groups["log_likelihood"].items()
    }
    attrs = {
        "inference_library": "pyro",
        "inference_library_version": pyro.__version__,
        "inference_method": f"SVI ({getattr(guide, '__name__', type(guide).__name__)})",
        "creation_library": "pyrogen",
    }
    idata = az.from_dict(
        posterior=data["posterior"],
        posterior_predictive=data["posterior_predictive"],
        sample_stats=data["sample_stats"],
        observed_data=observed,
        dims=dims,
        attrs=attrs,
    )
    # Per-observation log-likelihoods have the observed site's batch shape only (event dims are
    # summed), so they get their own dims.
    idata.extend(az.from_dict(log_likelihood=data["log_likelihood"], dims=ll_dims, attrs=attrs))
    return idata


def _empty_groups() -> dict[str, dict[str, list]]:
    return {
        "posterior": {},
        "posterior_predictive": {},
        "log_likelihood": {},
        "sample_stats": {"lp": [], "log_q": []},
    }


_DRAW_BATCH = 1000


def _draw_groups(model, guide, args, kwargs, num_samples, prototype, progress):
    """The draws of :func:`to_inference_data` made in vectorized batches, or ``None`` when the
    model cannot be vectorized."""
    nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    groups = _empty_groups()
    sizes = [min(_DRAW_BATCH, num_samples - i) for i in range(0, num_samples, _DRAW_BATCH)]
    for size in progress_bar(sizes, progress=progress, desc="to_inference_data (batches)"):
        try:
            if size == 1:
                guide_trace, model_trace = _traces(model, guide, args, kwargs)
            else:
                guide_trace, model_trace = _vectorized_traces(
                    model, guide, args, kwargs, size, nesting
                )
            _collect(groups, prototype, guide_trace, model_trace, size)
            if size > 1:
                for i in (0, size - 1):
                    _check_draw(model, args, kwargs, groups, prototype, i - size)
        except (_NotVectorizable, RuntimeError, ValueError, IndexError, TypeError):
            return None
    return groups


def _check_draw(model, args, kwargs, groups, prototype, i: int) -> None:
    """Rerun the model alone on draw ``i`` of the last batch (its latents conditioned) and raise
    :class:`_NotVectorizable` unless its log-joint and log-likelihoods equal the batch's: a model
    that mixes particles (e.g. sums over every dim) breaks this."""
    latents = {
        name: groups["posterior"][name][-1][i]
        for name, site in prototype.nodes.items()
        if _is_latent(site)
    }
    trace = poutine.trace(poutine.condition(model, data=latents)).get_trace(*args, **kwargs)
    lp = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        log_prob = _log_prob(site, site["value"], scaled=False)
        lp = lp + _log_prob(site, site["value"], scaled=True).sum()
        if name in groups["log_likelihood"]:
            expected = groups["log_likelihood"][name][-1][i]
            if not torch.allclose(log_prob.reshape(expected.shape), expected, 1e-4, 1e-4):
                raise _NotVectorizable
    expected = groups["sample_stats"]["lp"][-1][i]
    if not torch.allclose(torch.as_tensor(lp, dtype=expected.dtype), expected, 1e-4, 1e-3):
        raise _NotVectorizable
