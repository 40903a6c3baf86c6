"""ELBOs with a weighted or floored KL term: KL annealing (beta schedules) and free bits."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import NamedTuple

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import Delta
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan
from torch.distributions import Independent, kl_divergence

from pyrogen.infer.checks import (
    CountedSteps,
    checked_loss_and_grads,
    empty_plates_as_errors,
    nonfinite_sites,
)
from pyrogen.infer.schedules import Constant, check_beta
from pyrogen.util import check_count

__all__ = ["AnnealedELBO", "FreeBitsELBO", "KLTerm", "kl_terms"]


class KLTerm(NamedTuple):
    """One latent site's KL contribution, per element.

    Attributes:
        name: the site's name.
        kl: ``(*batch_shape, *dim_shape)``, nats, *unscaled*: ``KL(q || p)`` per batch element
            and per latent dimension. ``dim_shape`` is the site's event shape when both
            distributions are ``Independent`` over the same dims (each element is one latent
            dimension), else ``()`` (the whole event is one group).
        weight: ``batch_shape``: the site's scale times its mask (subsampling scale,
            ``poutine.scale``, masks), the factor each batch element's KL has in the ELBO.
        analytic: whether ``kl`` is the closed form (else the one-draw Monte Carlo
            ``log q(z) - log p(z)``).
        score_log_q: ``batch_shape``, the guide's ``log q(z)`` if the site is not
            reparameterizable (for a score-function term), else ``None``.
        plate_dims: the (negative) dims of the vectorized plates the site is in.
        auxiliary: the site is an auxiliary guide site (``infer={"is_auxiliary": True}``, such
            as the joint latent of Pyro's autoguides), absent from the model: ``kl`` is its
            ``log q`` alone, and only the sum of all terms is a KL.
    """

    name: str
    kl: torch.Tensor
    weight: torch.Tensor
    analytic: bool
    score_log_q: torch.Tensor | None
    plate_dims: tuple[int, ...]
    auxiliary: bool = False

    def per_dimension(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kl, weight)`` with the batch flattened: ``(B, *dim_shape)`` and ``(B, 1, ...)``
        (B = number of batch elements), ready for weighted averages over the batch."""
        weight = self.weight.reshape(-1)
        kl = self.kl.reshape(weight.shape[0], *self.kl.shape[self.weight.dim() :])
        return kl, weight.reshape(weight.shape + (1,) * (kl.dim() - 1))


def _unwrap_independent(q, p):
    """Peel matching ``Independent`` wrappers so that KLs come per latent dimension."""
    while (
        isinstance(q, Independent)
        and isinstance(p, Independent)
        and q.reinterpreted_batch_ndims == p.reinterpreted_batch_ndims
    ):
        q, p = q.base_dist, p.base_dist
    return q, p


def kl_terms(model_trace: Trace, guide_trace: Trace, *, analytic_kl: bool = True) -> list[KLTerm]:
    """Per-element, per-dimension ``KL(q || p)`` of every latent site of a traced model/guide.

    For each guide site that is not observed, the model's site of the same name gives the prior
    (conditioned on the values drawn for its parents). With ``analytic_kl`` the closed form
    ``torch.distributions.kl_divergence`` is used where one is registered (e.g. Normal/Normal,
    Bernoulli/Bernoulli), otherwise the one-draw estimate ``log q(z) - log p(z)``.

    Guides that draw an auxiliary latent and set the model's sites from it (Pyro's
    ``AutoNormal``, ``AutoDiagonalNormal``, ``AutoMultivariateNormal``, pyrogen's ``AutoFlow``:
    a site marked ``infer={"is_auxiliary": True}``, then ``Delta`` sites carrying the log-density
    of the change of variables) are supported: the auxiliary site contributes its ``log q`` (no
    prior; ``KLTerm.auxiliary``) and each ``Delta`` site ``log_density - log p(z)``, so that the
    terms sum to the one-draw estimate of ``KL(q || p)`` of the whole latent (not per site).

    Shapes:
        see :class:`KLTerm`.
    Args:
        model_trace, guide_trace: one draw: ``get_importance_trace`` output, or the traces of
            ``poutine.trace`` (their plate sites are skipped).
        analytic_kl: use closed forms where available.
    Raises:
        ValueError: a guide site missing from the model (and not marked auxiliary).
    """
    out = []
    for name, g in guide_trace.nodes.items():
        if g["type"] != "sample" or g["is_observed"] or site_is_subsample(g):
            continue
        dims = tuple(f.dim for f in g["cond_indep_stack"] if f.vectorized)
        # an auxiliary guide site has no prior: its term is log q, weighted by its own scale
        auxiliary = name not in model_trace.nodes and bool(
            (g.get("infer") or {}).get("is_auxiliary")
        )
        if name not in model_trace.nodes and not auxiliary:
            raise ValueError(f"guide site {name!r} does not appear in the model")
        m = g if auxiliary else model_trace.nodes[name]
        q, p = _unwrap_independent(g["fn"], m["fn"])
        analytic = False
        kl = None
        # Pyro's registered KL(Delta || p) = -log p(v) leaves out the Delta's log_density (the
        # change-of-variables term autoguides put there): a Delta site takes the estimate below
        if analytic_kl and not auxiliary and not isinstance(q, Delta):
            try:
                kl = kl_divergence(q, p)
                analytic = True
            except NotImplementedError:
                kl = None
        if kl is None:
            log_q = q.log_prob(g["value"])
            if not g["fn"].has_rsample:
                # the direct gradient of log q at a fixed non-reparameterized draw has mean zero
                # and only adds variance; the score term carries this site's gradient
                log_q = log_q.detach()
            kl = log_q if auxiliary else log_q - p.log_prob(g["value"])
        ones = kl.new_ones(g["fn"].batch_shape)
        weight = scale_and_mask(ones, m["scale"], m["mask"]).expand(ones.shape)
        score = None if g["fn"].has_rsample else g["fn"].log_prob(g["value"])
        out.append(KLTerm(name, kl, weight, analytic, score, dims, auxiliary))
    return out


def _pad(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape((1,) * (ndim - t.dim()) + t.shape)


def _sum_except(t: torch.Tensor, keep: tuple[int, ...], ndim: int) -> torch.Tensor:
    """Pad ``t`` to ``ndim`` dims and sum (keeping dims) every dim not in ``keep``."""
    t = _pad(t, ndim)
    drop = [d for d in range(-ndim, 0) if d not in keep and t.shape[d] != 1]
    return t.sum(drop, keepdim=True) if drop else t


def _per_element(term: KLTerm, mask_dims: torch.Tensor | None = None) -> torch.Tensor:
    """The site's weighted KL per batch element (``batch_shape``), summed over latent dims."""
    kl = term.kl * term.weight.reshape(
        term.weight.shape + (1,) * (term.kl.dim() - term.weight.dim())
    )
    if mask_dims is not None:
        kl = kl * mask_dims
    return kl.reshape((*term.weight.shape, -1)).sum(-1)


def _weighted(term: KLTerm) -> torch.Tensor:
    """The site's KL summed with its ELBO weights (nats)."""
    kl, weight = term.per_dimension()
    return (kl * weight).sum()


class _SplitELBO(CountedSteps, Trace_ELBO):
    """ELBO written as reconstruction minus a per-site KL penalty; subclasses choose the penalty.

    ``loss`` is :math:`-(\\mathbb E_q[\\log p(x \\mid z)] - \\text{penalty})` in nats; the
    surrogate adds a score-function term for non-reparameterizable guide sites with the
    (detached) per-draw objective as reward. ``loss_and_grads`` checks the loss and every
    gradient before writing any ``.grad`` (``pyrogen.infer.checks``) and counts the step.
    """

    def __init__(
        self,
        *,
        analytic_kl: bool = True,
        num_particles: int = 1,
        vectorize_particles: bool = False,
        max_plate_nesting: float = float("inf"),
        jit: bool = False,
    ) -> None:
        check_count(num_particles, "num_particles")
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
        )
        self.analytic_kl = bool(analytic_kl)
        self.jit = bool(jit)
        self._compiled = None
        self.num_steps = 0
        self._traces: list[tuple[Trace, Trace]] = []

    def _penalty(self, terms: list[KLTerm], coeff: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _coeff(self) -> float:
        raise NotImplementedError

    def _particle(self, model_trace: Trace, guide_trace: Trace, coeff):
        log_lik = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample" and site["is_observed"]:
                log_lik = log_lik + site["log_prob_sum"]
        terms = kl_terms(model_trace, guide_trace, analytic_kl=self.analytic_kl)
        objective = torch.as_tensor(log_lik - self._penalty(terms, coeff))
        surrogate = objective
        score_terms = [t for t in terms if t.score_log_q is not None]
        if score_terms:
            pieces = [
                site["log_prob"].detach()
                for site in model_trace.nodes.values()
                if site["type"] == "sample" and site["is_observed"]
            ]
            pieces += [-p.detach() for p in self._element_penalties(terms, coeff)]
            for t in score_terms:
                # Rao-Blackwellize by plates: element n of the site is rewarded with the terms
                # of its own plate elements only (as Pyro's Trace_ELBO does)
                ndim = max(p.dim() for p in [*pieces, t.score_log_q])
                reward = sum(_sum_except(p, t.plate_dims, ndim) for p in pieces)
                log_q = _pad(t.score_log_q, ndim) * (_pad(t.weight, ndim) != 0)
                surrogate = surrogate + (reward * log_q).sum()
        return -objective, -surrogate

    def _element_penalties(self, terms: list[KLTerm], coeff) -> list[torch.Tensor]:
        """Each site's penalty per batch element (shape ``batch_shape``), for score rewards."""
        raise NotImplementedError

    def _loss_and_surrogate(self, coeff, model, guide, args, kwargs):
        loss = surrogate = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            self._traces.append((model_trace, guide_trace))  # kept for a failure's diagnosis
            lp, sp = self._particle(model_trace, guide_trace, coeff)
            loss = loss + lp / self.num_particles
            surrogate = surrogate + sp / self.num_particles
        return loss, surrogate

    def loss_and_surrogate(self, model: Callable, guide: Callable, *args, **kwargs):
        """Return ``(loss, surrogate_loss)`` tensors (nats) at the current schedule value."""
        coeff = self._coeff()
        if not self.jit:
            with empty_plates_as_errors(type(self).__name__):
                return self._loss_and_surrogate(coeff, model, guide, args, kwargs)
        if self._compiled is None:
            weakself = weakref.ref(self)

            @pyro.ops.jit.trace(ignore_warnings=True)
            def compiled(coeff, *args, **kwargs):
                kwargs.pop("_pyro_model_id")
                kwargs.pop("_pyro_guide_id")
                return weakself()._loss_and_surrogate(coeff, model, guide, args, kwargs)

            self._compiled = compiled
        kwargs = {**kwargs, "_pyro_model_id": id(model), "_pyro_guide_id": id(guide)}
        # the coefficient is an input of the compiled graph, so schedules keep working under jit
        return self._compiled(torch.tensor(float(coeff)), *args, **kwargs)

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The loss in nats at the current schedule value (no gradients, no step counted)."""
        self._traces = []
        try:
            with torch.no_grad():
                loss, _ = self.loss_and_surrogate(model, guide, *args, **kwargs)
            loss = float(torch.as_tensor(loss).detach())
            if not math.isfinite(loss):  # diagnosed only on failure: is it the data?
                lines, bad_data = self._explain(model, guide, args, kwargs)
                if bad_data:
                    raise ValueError(
                        f"{type(self).__name__}.loss: {'; '.join(lines)} (the data are not finite)"
                    )
        finally:
            self._traces = []
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """The loss as a tensor whose gradient is the surrogate's."""
        loss, surrogate = self.loss_and_surrogate(model, guide, *args, **kwargs)
        return torch.as_tensor(loss).detach() + (surrogate - torch.as_tensor(surrogate).detach())

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the surrogate; return the loss (float, nats); count the step.

        Raises:
            ValueError: an observed value is not finite (naming the site).
            FloatingPointError: the loss or a gradient is not finite (naming the step and the
                sites, KL terms or parameters); nothing is updated and the step is not counted.
        """
        self._traces = []
        try:
            loss = checked_loss_and_grads(
                lambda: self.loss_and_surrogate(model, guide, *args, **kwargs),
                where=f"{type(self).__name__} step {self.num_steps}",
                explain=lambda: self._explain(model, guide, args, kwargs),
            )
        finally:
            self._traces = []
        self.num_steps += 1
        return loss

    def _explain(self, model, guide, args, kwargs) -> tuple[list[str], bool]:
        """Name the sites and KL terms that are not finite in the traces of the failed step."""
        if not self._traces:  # compiled (jit): replay the loss once, uncompiled, to look inside
            with torch.no_grad(), poutine.block():
                self._loss_and_surrogate(self._coeff(), model, guide, args, kwargs)
        lines, bad_data = [], False
        for i, (model_trace, guide_trace) in enumerate(self._traces):
            found, bad = nonfinite_sites([("model", model_trace), ("guide", guide_trace)])
            lines += [f"particle {i}: {line}" for line in found]
            bad_data = bad_data or bad
            if not found:
                terms = kl_terms(model_trace, guide_trace, analytic_kl=self.analytic_kl)
                lines += [
                    f"particle {i}: the KL term of site {t.name!r} is not finite"
                    for t in terms
                    if not bool(torch.isfinite(t.kl).all())
                ]
        return lines, bad_data


class AnnealedELBO(_SplitELBO):
    r"""ELBO with its KL term weighted by ``beta`` from a schedule (beta-VAE, KL annealing).

    What it computes, per draw :math:`z \sim q`:

    .. math:: \mathcal L_\beta = \log p(x \mid z) - \beta \sum_{\text{latent sites}}
        \mathrm{KL}\big(q(z_s) \,\|\, p(z_s \mid \text{parents})\big),

    with the closed-form KL where ``torch.distributions.kl_divergence`` has one (and
    ``analytic_kl``), else :math:`\log q(z_s) - \log p(z_s)`. ``beta = 1`` is the ELBO;
    ``beta = 0`` is the reconstruction term alone (which ``poutine.scale`` cannot express:
    it rejects a zero scale). ``loss`` is :math:`-\mathcal L_\beta` in nats, averaged over
    ``num_particles``. The schedule is evaluated at :attr:`step`, which every successful
    ``loss_and_grads`` call (one ``SVI.step``) advances by one; ``loss`` and
    ``differentiable_loss`` do not advance it. :meth:`state_dict` / :meth:`load_state_dict`
    save and restore it (``{"num_steps": int}``, loadable with ``torch.load(...,
    weights_only=True)``), so a resumed run continues the schedule where it stopped.

    A step whose loss or gradient is not finite raises inside ``loss_and_grads``, before any
    ``.grad`` is written, so ``SVI.step`` never reaches its optimizer: parameters, optimizer
    state and the step counter are unchanged; the message names the step and the sites (an
    observed value, a ``log_prob``) or KL terms that went non-finite.

    With ``jit=True`` the loss is compiled with ``pyro.ops.jit.trace`` (like ``JitTrace_ELBO``,
    same restrictions) with ``beta`` as an input of the compiled graph, so the schedule is
    honoured; torch >= 2.10 deprecates ``torch.jit.trace`` and says so with a
    ``DeprecationWarning``.

    Non-reparameterizable guide sites get a score-function term whose reward for each plate
    element is the detached part of :math:`\mathcal L_\beta` in that element's plates (the
    plate Rao-Blackwellization of Pyro's ``Trace_ELBO``; Pyro's ``TraceGraph_ELBO`` also uses
    the dependency graph and baselines, see ``examples/discrete_latents.py``).

    Args:
        beta: a number ``>= 0`` or a schedule: a callable ``step -> beta`` such as
            :class:`LinearWarmup` or :class:`Cyclical`.
        analytic_kl: use closed-form KLs where available.
        num_particles, vectorize_particles, max_plate_nesting: as in ``pyro.infer.Trace_ELBO``.
        jit: compile the loss with ``pyro.ops.jit.trace``.
    Raises:
        ValueError: ``beta < 0`` (now, or when a schedule returns one), ``num_particles < 1``;
            in ``loss_and_grads``, a non-finite observed value (naming the site).
        TypeError: ``beta`` neither a number nor callable.
        FloatingPointError: in ``loss_and_grads``, a non-finite loss or gradient.
    References:
        Higgins et al. (2017). beta-VAE: Learning Basic Visual Concepts with a Constrained
        Variational Framework. https://openreview.net/forum?id=Sy2fzU9gl
        Bowman et al. (2016). Generating Sentences from a Continuous Space.
        https://arxiv.org/abs/1511.06349
    Example:
        >>> from pyrogen.infer import LinearWarmup
        >>> elbo = AnnealedELBO(LinearWarmup(1000))
        >>> elbo.beta
        0.0
    """

    def __init__(self, beta: float | Callable[[int], float] = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if callable(beta):
            self.schedule = beta
        else:
            self.schedule = Constant(check_beta(beta, "beta"))
        check_beta(self.schedule(0), "beta")

    @property
    def step(self) -> int:
        """The schedule's step: the number of successful ``loss_and_grads`` calls (an alias of
        :attr:`num_steps`, saved by :meth:`state_dict`)."""
        return self.num_steps

    @step.setter
    def step(self, value: int) -> None:
        self.num_steps = value

    @property
    def beta(self) -> float:
        """The KL weight at the current :attr:`step`."""
        return check_beta(self.schedule(self.step), "beta")

    def _coeff(self) -> float:
        return self.beta

    def _penalty(self, terms: list[KLTerm], coeff) -> torch.Tensor | float:
        return coeff * sum(_weighted(t) for t in terms)

    def _element_penalties(self, terms: list[KLTerm], coeff) -> list[torch.Tensor]:
        return [coeff * _per_element(t) for t in terms]


class FreeBitsELBO(_SplitELBO):
    r"""ELBO with a floor of ``free_bits`` nats on the KL of every latent dimension.

    What it computes (Kingma et al. 2016, eq. 15): for every latent site and every latent
    dimension ``d`` (an element of the event of an ``Independent`` guide/prior pair; the whole
    site when either is not factorized), the KL averaged over the batch (every plate element and
    particle) :math:`\overline{\mathrm{KL}}_d`, and

    .. math:: \mathcal L_\lambda = \log p(x \mid z) - \sum_d \max(\lambda,
        \overline{\mathrm{KL}}_d) \cdot N_d,

    with :math:`N_d` the ELBO weight of the site summed over the batch (the batch size times the
    subsampling scale: the number of data points represented). Dimensions whose average KL is
    below :math:`\lambda` get no KL gradient, so the encoder may use them freely. ``loss`` is
    :math:`-\mathcal L_\lambda` in nats; ``free_bits = 0`` gives the ordinary ELBO where the
    KLs are analytic (a Monte Carlo KL estimate can be negative and is floored at 0 too). Masked
    batch elements are left out of the average (a site masked out entirely contributes
    nothing). Particles, ``jit``, score-function terms, the finite-step check and
    ``state_dict`` (the step count) as in :class:`AnnealedELBO`.

    Args:
        free_bits: :math:`\lambda >= 0`, nats per latent dimension (despite the name).
        analytic_kl, num_particles, vectorize_particles, max_plate_nesting, jit: as in
            :class:`AnnealedELBO`.
    Raises:
        ValueError: ``free_bits < 0``, ``num_particles < 1``; in ``loss_and_grads``, a
            non-finite observed value (naming the site); in any loss, a guide with an
            auxiliary latent site (Pyro's autoguides, ``AutoFlow``: per-site KLs are not
            defined; :class:`AnnealedELBO` accepts them).
        FloatingPointError: in ``loss_and_grads``, a non-finite loss or gradient.
    References:
        Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling (2016). Improved Variational
        Inference with Inverse Autoregressive Flow. https://arxiv.org/abs/1606.04934
    Example:
        >>> FreeBitsELBO(free_bits=0.5).free_bits
        0.5
    """

    def __init__(self, free_bits: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.free_bits = check_beta(free_bits, "free_bits")

    def _coeff(self) -> float:
        return self.free_bits

    @staticmethod
    def _mean_kl(term: KLTerm) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean_kl, represented)`` per latent dimension: the weighted batch average of the
        KL and the total weight; a dimension with no weight (every element masked out) has
        mean 0 and contributes nothing."""
        if term.auxiliary:
            raise ValueError(
                f"FreeBitsELBO floors the KL of each latent dimension, which needs a guide that "
                f"samples every latent site from its own distribution; guide site {term.name!r} "
                "is an auxiliary latent (as Pyro's autoguides and AutoFlow draw, setting the "
                "model's sites from it), for which per-site KLs are not defined. "
                "Use AnnealedELBO, or a guide with one distribution per latent site"
            )
        kl, weight = term.per_dimension()
        represented = weight.sum(0)
        total = (kl * weight).sum(0)
        return torch.where(represented > 0, total / represented.clamp(min=1e-30), 0.0), represented

    def _penalty(self, terms: list[KLTerm], coeff) -> torch.Tensor | float:
        total = 0.0
        for t in terms:
            mean_kl, represented = self._mean_kl(t)
            total = total + (torch.clamp(mean_kl, min=coeff) * represented).sum()
        return total

    def _element_penalties(self, terms: list[KLTerm], coeff) -> list[torch.Tensor]:
        out = []
        for t in terms:
            above = (self._mean_kl(t)[0] > coeff).to(t.kl.dtype)
            out.append(_per_element(t, above))  # floored dimensions carry no KL gradient
        return out
