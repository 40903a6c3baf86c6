"""Adversarial Variational Bayes: implicit guides trained against a discriminator."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer import ELBO
from pyro.optim import PyroOptim
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from torch import nn
from torch.func import functional_call

from pyrogen.infer.checks import (
    CountedSteps,
    check_observed_support,
    checked_grads,
    checked_loss_and_grads,
    empty_plates_as_errors,
    nonfinite_sites,
    register_module,
    trace_params,
)
from pyrogen.util import check_count, check_optim

__all__ = ["AVB"]


def _latent_sites(trace: Trace) -> list[dict]:
    return [
        site
        for site in prune_subsample_sites(trace).nodes.values()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
        and not site["name"].startswith("_")
    ]


def _stack(values: list[torch.Tensor], event_dims: list[int], names: list[str]) -> torch.Tensor:
    """Flatten each latent's event and concatenate: ``(*batch, D)``; the batches must agree."""
    flat = [
        v.reshape((*v.shape[: v.dim() - e], -1)) for v, e in zip(values, event_dims, strict=True)
    ]
    batches = {tuple(f.shape[:-1]) for f in flat}
    if len(batches) != 1 or len(next(iter(batches))) != 1:
        shapes = {n: tuple(v.shape) for n, v in zip(names, values, strict=True)}
        raise ValueError(
            "AVB needs every latent site to have one batch dim (the data plate) of one size, "
            f"got {shapes}"
        )
    return torch.cat(flat, -1)


class AVB(CountedSteps, ELBO):
    r"""Adversarial Variational Bayes (Mescheder, Nowozin, Geiger 2017) for ``pyro.infer.SVI``.

    The guide is **implicit**: it draws its own noise and returns each latent through a point
    mass, ``pyro.sample("z", dist.Delta(g(x, eps), event_dim=1))``, so that
    :math:`q_\phi(z \mid x)` has no tractable density. A discriminator
    :math:`T_\psi(z, x)` is trained by logistic regression to tell guide draws (label 1) from
    prior draws (label 0); its optimum is :math:`T^*(z, x) = \log q_\phi(z \mid x) - \log
    p(z)`, so the ELBO is estimated as

    .. math::
        \mathcal L(\theta, \phi) = \mathbb E_{q_\phi(z \mid x)}
            \big[\log p_\theta(x \mid z) - T_\psi(z, x)\big],

    and because :math:`\mathbb E_q[\nabla_\phi \log q_\phi] = 0` the path gradient through
    :math:`z` with :math:`T` held fixed is the ELBO gradient when :math:`T = T^*`.

    With ``adaptive_contrast=True`` the contrast is a Gaussian :math:`r(z \mid x)` with the mean
    :math:`\mu(x)` and sd :math:`\sigma(x)` of ``num_moment_samples`` guide draws (stopped
    gradients). The discriminator then separates the normalized guide draws
    :math:`(z - \mu) / \sigma` from :math:`N(0, I)` draws, estimates :math:`\log q - \log r`,
    which is close to 0 for near-Gaussian posteriors (an easier task), and the ELBO becomes
    :math:`\mathbb E_q[\log p(x, z) - \log r(z \mid x) - T((z - \mu)/\sigma, x)]`.

    ``loss_and_grads`` (called by ``SVI.step``) first runs ``discriminator_steps`` updates of
    the discriminator with its own optimizer, then returns the loss :math:`-\mathcal L` in
    nats (a sum over the data plate times its subsampling scale) and leaves the model and
    guide gradients. ``loss`` evaluates :math:`-\mathcal L` without updating anything. The
    discriminator's parameters live in the param store under ``"avb_discriminator"``; they
    never receive gradients from the ELBO step.

    Each discriminator update checks its loss and gradients before its optimizer runs, and the
    ELBO's loss and gradients are checked before any ``.grad`` is written, so the update that
    goes non-finite raises and changes neither parameters nor optimizer state. To resume,
    save ``pyro.get_param_store().get_state()`` and :meth:`state_dict` (step count,
    discriminator weights and optimizer state); the discriminator is registered with
    ``pyro.module(..., update_module_params=True)`` so that it takes restored values.

    Requirements: every latent site of the guide has exactly one batch dim (the data plate,
    the first dim of its value) and is reparameterized (``Delta`` of a differentiable function
    of noise); the prior has no learnable parameters (AVB's objective gives them no gradient).
    The discriminator is called as ``discriminator(z, *args)`` with ``z`` of shape ``(N, D)``
    (all latents flattened and concatenated in the guide's order) and the model's positional
    arguments, and returns ``(N,)`` or ``(N, 1)`` logits.

    Known instability (the paper's section 3.3): the ELBO estimate is only as good as the
    discriminator, which lags behind a moving guide; it can underestimate
    :math:`\log q - \log p` (the KL term), so that the estimate exceeds :math:`\log p(x)`;
    without adaptive contrast :math:`T^*` is large and far from linear when the posterior is
    narrow relative to the prior. On binarized 8x8 digits (``examples/avb_digits.py``, figures
    on its results page ``docs/results/avb_digits.rst``) the discriminator's test "ELBO" lies
    far above the importance-sampled test :math:`\log p(x)`, with and without adaptive
    contrast, and above a Gaussian-guide VAE of the same size. Use ``adaptive_contrast=True``,
    and report held-out likelihoods by importance sampling with an explicit proposal, never the
    discriminator's estimate.

    Args:
        discriminator: ``nn.Module`` described above.
        discriminator_optim: a ``pyro.optim`` optimizer for it.
        discriminator_steps: discriminator updates per ``loss_and_grads`` call (>= 0).
        adaptive_contrast: use the Gaussian contrast :math:`r`.
        num_moment_samples: guide draws per step for :math:`\mu, \sigma` (>= 2; adaptive
            contrast only).
    Raises:
        TypeError: a discriminator that is not an ``nn.Module``.
        ValueError: bad counts; at run time, a guide latent missing from the model or with the
            wrong batch shape, a non-reparameterized guide site, or a discriminator output of
            the wrong shape.
    References:
        Mescheder, Nowozin, Geiger (2017). Adversarial Variational Bayes: Unifying Variational
        Autoencoders and Generative Adversarial Networks. https://arxiv.org/abs/1701.04722
    """

    def __init__(
        self,
        discriminator: nn.Module,
        discriminator_optim: PyroOptim,
        *,
        discriminator_steps: int = 1,
        adaptive_contrast: bool = False,
        num_moment_samples: int = 16,
    ) -> None:
        if not isinstance(discriminator, nn.Module):
            raise TypeError(
                f"discriminator must be an nn.Module, got {type(discriminator).__name__}"
            )
        check_optim(discriminator_optim, "discriminator_optim")
        check_count(discriminator_steps, "discriminator_steps", minimum=0)
        check_count(num_moment_samples, "num_moment_samples", minimum=2)
        super().__init__(num_particles=1)
        self.discriminator, self.discriminator_optim = discriminator, discriminator_optim
        self.discriminator_steps = discriminator_steps
        self.adaptive_contrast = adaptive_contrast
        self.num_moment_samples = num_moment_samples
        self.num_steps = 0
        self._traces: list = []
        # in the param store from the start, so that a checkpoint made before the first
        # discriminator update has its entries (update_module_params: restored values are taken)
        register_module("avb_discriminator", discriminator, "AVB")

    # -- pieces ---------------------------------------------------------------------------

    def _guide_latents(self, guide, args, kwargs) -> tuple[Trace, torch.Tensor]:
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
        sites = _latent_sites(trace)
        if not sites:
            raise ValueError("the guide has no latent sample sites")
        for site in sites:
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"AVB needs reparameterized guide sites; {site['name']!r} is not "
                    "(write it as Delta(g(x, eps)))"
                )
        z = _stack(
            [s["value"] for s in sites], [s["fn"].event_dim for s in sites],
            [s["name"] for s in sites],
        )  # fmt: skip
        return trace, z

    def _moments(self, guide, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), poutine.block():
            draws = [
                self._guide_latents(guide, args, kwargs)[1] for _ in range(self.num_moment_samples)
            ]
            draws = torch.stack(draws)
        scale = draws.std(0)
        return draws.mean(0), scale.clamp_min(torch.finfo(scale.dtype).eps ** 0.5)

    def _call(self, z: torch.Tensor, args, params=None) -> torch.Tensor:
        if params is None:
            out = self.discriminator(z, *args)
        else:
            out = functional_call(self.discriminator, params, (z, *args))
        if out.shape not in ((z.shape[0],), (z.shape[0], 1)):
            raise ValueError(
                f"the discriminator must return shape ({z.shape[0]},) or ({z.shape[0]}, 1), "
                f"got {tuple(out.shape)}"
            )
        return out.reshape(z.shape[0])

    def discriminator_step(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """One logistic-regression update of the discriminator: guide draws against prior
        draws (or, with adaptive contrast, normalized guide draws against ``N(0, I)``).

        Returns:
            the discriminator's loss (nats per pair of draws), a float.
        """
        with empty_plates_as_errors("AVB"):
            moments = self._moments(guide, args, kwargs) if self.adaptive_contrast else None
            return self._discriminator_update(model, guide, args, kwargs, moments)

    def _discriminator_update(
        self, model, guide, args, kwargs, moments, where=None, check_data=True, kept=None
    ) -> float:
        where = where or f"AVB step {self.num_steps}: discriminator update"
        with torch.no_grad(), poutine.block():
            guide_trace, zq = self._guide_latents(guide, args, kwargs)
            prior = None
            if moments is None:
                prior = poutine.trace(model).get_trace(*args, **kwargs)
            elif check_data:  # the model's observed values, without drawing from its prior
                prior = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                    *args, **kwargs
                )
            if check_data:  # before the first update changes anything
                for name, site in prior.nodes.items():
                    if site["type"] == "sample" and site["is_observed"]:
                        check_observed_support(where, name, site["fn"], site["value"])
            if moments is not None:
                mu, sigma = moments
                zq, zp = (zq - mu) / sigma, torch.randn_like(zq)
            else:
                sites = [prior.nodes.get(s["name"]) for s in _latent_sites(guide_trace)]
                zp = _stack(
                    [s["value"] for s in sites], [s["fn"].event_dim for s in sites],
                    [s["name"] for s in sites],
                )  # fmt: skip

        def loss() -> torch.Tensor:
            # update_module_params: after a param-store restore, use the restored values
            pyro.module("avb_discriminator", self.discriminator, update_module_params=True)
            t_q, t_p = self._call(zq, args), self._call(zp, args)
            return F.softplus(-t_q).mean() + F.softplus(t_p).mean()

        def explain() -> tuple[list[str], bool]:
            lines = []
            if not bool(torch.isfinite(zq).all()):
                lines.append("the guide's draws of the latents are not finite")
            if not bool(torch.isfinite(zp).all()):
                lines.append("the prior's (or contrast's) draws are not finite")
            return lines, False

        with poutine.block(), poutine.trace(param_only=True) as capture:
            value = loss()
        params = trace_params(capture.trace)
        grads = checked_grads(value, value, params, where=where, explain=explain, kept=kept)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.discriminator_optim([p for p, g in zip(params, grads, strict=True) if g is not None])
        for p in params:
            p.grad = None
        return float(value.detach())

    def _elbo(self, model, guide, args, kwargs, moments=None) -> torch.Tensor:
        guide_trace, z = self._guide_latents(guide, args, kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        self._traces = [("model", model_trace), ("guide", guide_trace)]
        model_trace.compute_log_prob()
        latents = _latent_sites(guide_trace)
        for site in latents:
            node = model_trace.nodes.get(site["name"])
            if node is None or node["type"] != "sample" or node["is_observed"]:
                raise ValueError(f"guide latent {site['name']!r} is not a latent of the model")
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        scale = latents[0]["scale"]
        elbo = sum(
            site["log_prob"].sum()
            for site in model_trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
        if self.adaptive_contrast:
            mu, sigma = moments if moments is not None else self._moments(guide, args, kwargs)
            t = self._call((z - mu) / sigma, args, frozen)
            log_r = dist.Normal(mu, sigma).log_prob(z).sum(-1)
            log_prior = sum(model_trace.nodes[s["name"]]["log_prob"] for s in latents)
            elbo = elbo + (log_prior - scale * (log_r + t)).sum()
        else:
            elbo = elbo - scale * self._call(z, args, frozen).sum()
        return elbo

    # -- ELBO interface ---------------------------------------------------------------------

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        raise NotImplementedError("AVB traces the guide, the model and the prior itself")

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """:math:`-\\mathcal L` (nats) with the current discriminator; updates nothing."""
        with torch.no_grad(), empty_plates_as_errors("AVB"):
            value = -float(self._elbo(model, guide, args, kwargs))
        self._traces = []
        return value

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """``discriminator_steps`` discriminator updates, then :math:`-\\mathcal L` (nats) with
        gradients for the model's and guide's parameters (not the discriminator's); counts the
        step.

        Each discriminator update is checked before its optimizer runs, and the ELBO's loss and
        gradients before any ``.grad`` is written, so ``SVI.step`` stops before its optimizer
        (discriminator updates earlier in the same call are kept).

        Raises:
            ValueError: an observed value that is not finite or outside the model's support
                (naming the site), found before the first discriminator update changes
                anything.
            FloatingPointError: a non-finite loss or gradient, naming the step and the update,
                site or parameter.
        """
        with empty_plates_as_errors("AVB"):
            return self._loss_and_grads(model, guide, args, kwargs)

    def _loss_and_grads(self, model: Callable, guide: Callable, args, kwargs) -> float:
        # the guide's moments (adaptive contrast) are drawn once per call: the guide does not
        # change during the discriminator updates
        moments = self._moments(guide, args, kwargs) if self.adaptive_contrast else None
        for i in range(self.discriminator_steps):
            where = (
                f"AVB step {self.num_steps}: discriminator update {i + 1} of "
                f"{self.discriminator_steps}"
            )
            kept = f"the {i} earlier discriminator update(s) of this step were kept" if i else None
            self._discriminator_update(model, guide, args, kwargs, moments, where, i == 0, kept)

        def compute():
            loss = -self._elbo(model, guide, args, kwargs, moments)
            return loss, loss

        kept = None
        if self.discriminator_steps:
            kept = f"the {self.discriminator_steps} discriminator update(s) of this step were kept"
        try:
            value = checked_loss_and_grads(
                compute,
                where=f"AVB step {self.num_steps}: ELBO",
                explain=lambda: nonfinite_sites(self._traces),
                kept=kept,
            )
        finally:
            self._traces = []
        self.num_steps += 1
        return value

    def _state_types(self) -> dict:
        return {"num_steps": int, "discriminator": dict, "discriminator_optim": dict}

    def state_dict(self) -> dict:
        """``{"num_steps": int, "discriminator": its state_dict, "discriminator_optim": the
        pyro.optim state}``, loadable with ``torch.load(path, weights_only=True)``; the model's
        and guide's parameters live in Pyro's param store (save its ``get_state()``)."""
        return {
            **super().state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optim": self.discriminator_optim.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a freshly built ``AVB``.

        Raises:
            TypeError, ValueError: missing, unexpected or mistyped entries.
        """
        super().load_state_dict(state)
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optim.set_state(state["discriminator_optim"])
