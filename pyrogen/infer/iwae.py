"""The importance-weighted bound (IWAE) per data point, with the IWAE, DReG and STL gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan

from pyrogen.infer.checks import (
    CountedSteps,
    check_guide_covers,
    checked_loss_and_grads,
    empty_plates_as_errors,
    nonfinite_sites,
)
from pyrogen.infer.importance import (
    PARTICLE_PLATE,
    guess_max_plate_nesting,
    importance_log_weights,
    trace_particles,
)
from pyrogen.infer.pathwise import log_prob_grad
from pyrogen.util import check_count

__all__ = ["IWAE"]

ESTIMATORS = ("dreg", "iwae", "stl")


class IWAE(CountedSteps, ELBO):
    r"""Importance-weighted bound of Burda et al., computed per data point, for ``pyro.infer.SVI``.

    What it computes: with ``K`` draws :math:`z_{k} \sim q(z \mid x_n)` per data point and
    :math:`\log w_{k} = \log p(x_n, z_{k}) - \log q(z_{k} \mid x_n)`,

    .. math::
        \mathcal L_K = \sum_n \log \frac1K \sum_{k=1}^K w_{k},
        \qquad \mathcal L_1 = \text{ELBO} \le \mathcal L_K \le \mathcal L_{K+1} \le \log p(x).

    The log-mean-exp is taken for each element of the *data plates* (the vectorized plates that
    contain every sample site of the model and every latent site of the guide, see
    :class:`~pyrogen.infer.importance.LogWeights`) and then summed over the batch and multiplied
    by the plates' subsampling scale, so a subsampled ``pyro.plate("data", N,
    subsample_size=B)`` gives an unbiased estimate of the full-data bound. A latent outside every
    plate (a global latent with a non-degenerate guide) makes the weights joint: one
    log-mean-exp over the whole data set, which is still a valid bound. ``loss`` is
    :math:`-\mathcal L_K` in nats. The ``K`` particles run vectorized in an outermost plate.

    Gradient estimators (``estimator``), with normalized weights
    :math:`\tilde w_k = w_k / \sum_j w_j`:

    - ``"iwae"``: the gradient of :math:`\mathcal L_K` itself,
      :math:`\sum_k \tilde w_k \nabla \log w_k`; non-reparameterizable guide sites add the score
      term :math:`\mathcal L_K^{(n)} \nabla \log q(z_{1:K})` (unbiased, high variance).
    - ``"stl"`` (sticking the landing): as ``"iwae"`` but :math:`\log q` is evaluated with its
      parameters' gradient stopped, so the guide's gradient is the path derivative only; it is
      exactly zero when ``q`` is the true posterior.
    - ``"dreg"`` (doubly reparameterized): model parameters get the ``"iwae"`` gradient; guide
      parameters get :math:`\sum_k \tilde w_k^2\, \partial \log w_k / \partial z_k \cdot
      \partial z_k / \partial \phi` with :math:`\log q` stopped as in STL. Unbiased for the
      same objective, with a signal-to-noise ratio that does not decay as ``K`` grows. One
      pass of the model serves both weightings (the model's view of the draw scales its
      gradient by :math:`\tilde w_k` on the way back).

    ``"stl"`` and ``"dreg"`` need every guide site to be reparameterizable and the gradient of
    ``log q`` at the draw with the guide's parameters held fixed. For a flow guide whose
    autoregressive layers have the cheap forward (IAF) it comes from the base noise, by a
    triangular solve through each MADE at the cost of about two network passes
    (:func:`~pyrogen.infer.pathwise.log_prob_grad`), never the sequential inverse; other sites
    differentiate ``log q`` at the detached draw.

    Shapes:
        ``loss``: a float (nats). Particles: ``K`` in a plate at
        ``dim = -(max_plate_nesting + 1)``, so a model's batch dims must be declared by plates.
    Args:
        num_particles: ``K >= 1``.
        estimator: ``"dreg"`` (default), ``"iwae"`` or ``"stl"``.
        max_plate_nesting: the model's plate nesting; guessed with one dry run when ``inf``.
    A step whose loss or gradient is not finite raises inside ``loss_and_grads`` before any
    ``.grad`` is written, so ``SVI.step`` never reaches its optimizer (parameters and optimizer
    state unchanged). :meth:`state_dict` holds the step count.

    Raises:
        ValueError: ``num_particles < 1``, an unknown ``estimator``; on first use, a
            non-reparameterizable guide site with ``"stl"``/``"dreg"`` (naming the site); in
            ``loss_and_grads``, a non-finite observed value (naming the site).
        FloatingPointError: in ``loss_and_grads``, a non-finite loss or gradient, naming the
            step and the sites or parameters.
    References:
        Burda, Grosse, Salakhutdinov (2016). Importance Weighted Autoencoders.
        https://arxiv.org/abs/1509.00519
        Roeder, Wu, Duvenaud (2017). Sticking the Landing: Simple, Lower-Variance Gradient
        Estimators for Variational Inference. https://arxiv.org/abs/1703.09194
        Tucker, Lawson, Gu, Maddison (2019). Doubly Reparameterized Gradient Estimators for
        Monte Carlo Objectives. https://arxiv.org/abs/1810.04152
    Example:
        >>> import pyro.distributions as dist
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     loc = pyro.param("loc", torch.zeros(len(x)))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Normal(loc, 1.0))
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), IWAE(10))
        >>> loss = svi.step(torch.tensor([0.0, 1.0]))
    """

    def __init__(
        self,
        num_particles: int = 5,
        estimator: str = "dreg",
        *,
        max_plate_nesting: float = float("inf"),
    ) -> None:
        check_count(num_particles, "num_particles")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if max_plate_nesting != float("inf"):
            check_count(max_plate_nesting, "max_plate_nesting", minimum=0)
        super().__init__(num_particles=num_particles, vectorize_particles=True)
        self.estimator = estimator
        self._nesting = None if max_plate_nesting == float("inf") else int(max_plate_nesting)
        self.num_steps = 0
        self._failed_traces: list[tuple[str, Trace]] = []

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        raise NotImplementedError("IWAE traces all particles at once; see loss_and_surrogate")

    def _traces(self, model, guide, args, kwargs) -> tuple[Trace, Trace]:
        if self._nesting is None:
            self._nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        return trace_particles(
            model,
            guide,
            args,
            kwargs,
            num_particles=self.num_particles,
            max_plate_nesting=self._nesting,
        )

    def _stop_log_q_gradient(self, guide_trace: Trace) -> None:
        """Replace each guide site's ``log_prob`` by one whose parameter gradient is stopped but
        whose gradient through the draw is kept (the STL/DReG path derivative); see
        :func:`~pyrogen.infer.pathwise.path_log_prob` (no sequential inverse for IAF guides)."""
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"estimator={self.estimator!r} needs reparameterizable guide sites, but site "
                    f"{name!r} ({type(site['fn']).__name__}) is not; use estimator='iwae'"
                )
            fn, value = site["fn"], site["value"]
            score = log_prob_grad(fn, value)
            if score is None:
                stopped = scale_and_mask(fn.log_prob(value.detach()), site["scale"], site["mask"])
                site["log_prob"] = site["log_prob"] - (stopped - stopped.detach())
                continue
            path = score * (value - value.detach())  # zero, with the path gradient
            path = path.sum(tuple(range(-len(fn.event_shape), 0))) if fn.event_shape else path
            site["log_prob"] = site["log_prob"].detach() + scale_and_mask(
                path, site["scale"], site["mask"]
            )

    def _dreg_traces(self, model, guide, args, kwargs) -> tuple[Trace, Trace, dict]:
        """As :meth:`_traces`, but the model sees each latent draw through an identity whose
        backward multiplies the gradient by a per-particle factor set later (``scales[name]``):
        one model pass serves both DReG terms."""
        if self._nesting is None:
            self._nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        particles = pyro.plate(PARTICLE_PLATE, self.num_particles, dim=-(self._nesting + 1))
        with empty_plates_as_errors("importance sampling"):
            guide_trace = poutine.trace(particles(guide)).get_trace(*args, **kwargs)
        replay, scales = Trace(), {}
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample":
                continue
            value = site["value"]
            if not site["is_observed"] and value.requires_grad:
                value, scales[name] = value.view_as(value), 1.0
                value.register_hook(lambda grad, name=name: grad * scales[name])
            replay.add_node(name, **{**site, "value": value})
        with empty_plates_as_errors("importance sampling"):
            model_trace = poutine.trace(poutine.replay(particles(model), trace=replay)).get_trace(
                *args, **kwargs
            )
        check_guide_covers(model_trace, guide_trace)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self._nesting + 1)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        model_trace.compute_log_prob()
        guide_trace.compute_score_parts()
        if is_validation_enabled():
            for trace in (model_trace, guide_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample":
                        check_site_shape(site, self._nesting + 1)
        return model_trace, guide_trace, scales

    def _gradient_scales(self, guide_trace: Trace, lw, weights, scales: dict) -> None:
        """``scales[name]``: the normalized weights laid out for each hooked latent site's value
        (1 for the point-mass sites, whose gradient is the ``"iwae"`` one)."""
        ndim = self._nesting + 1
        for name in scales:
            site = guide_trace.nodes.get(name)
            if site is None or name in lw.global_sites:
                scales[name] = 1.0
                continue
            dims = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized}
            target = [1] * ndim
            target[-ndim] = self.num_particles
            for plate in lw.data_plates:
                target[dims[plate]] = weights.shape[1 + lw.data_plates.index(plate)]
            batch_ndim = site["value"].dim() - len(site["fn"].event_shape)
            shape = [1] * (batch_ndim - ndim) + target + [1] * len(site["fn"].event_shape)
            scales[name] = weights.reshape(shape)

    def loss_and_surrogate(self, model: Callable, guide: Callable, *args, **kwargs):
        """Return ``(loss, surrogate_loss)``: :math:`-\\mathcal L_K` (tensor, nats) and a tensor
        whose gradient is the chosen estimator's gradient of ``loss`` (under ``"dreg"`` the
        returned ``loss`` is detached: the model sees the draws through the rescaling identity,
        so only ``surrogate`` carries gradients).

        ``"dreg"`` runs the model once: with :math:`\\bar z` the model's view of the draw,
        whose gradient is multiplied by :math:`\\tilde w_k` on the way back, the surrogate
        :math:`\\sum_k \\tilde w_k \\log p(x, \\bar z_k) - \\tilde w_k^2 \\log q_{\\bot}(z_k)`
        gives the model's parameters :math:`\\sum_k \\tilde w_k \\nabla \\log p` and the
        guide's :math:`\\sum_k \\tilde w_k^2 \\partial \\log w_k / \\partial z_k \\cdot
        \\partial z_k / \\partial \\phi`.
        """
        if self.estimator == "dreg":
            model_trace, guide_trace, scales = self._dreg_traces(model, guide, args, kwargs)
        else:
            model_trace, guide_trace = self._traces(model, guide, args, kwargs)
        self._failed_traces = [("model", model_trace), ("guide", guide_trace)]
        if self.estimator != "iwae":
            self._stop_log_q_gradient(guide_trace)
        particle_dim = -(self._nesting + 1)
        lw = importance_log_weights(model_trace, guide_trace, particle_dim=particle_dim)
        log_w = lw.log_weights
        bound_per_point = log_w.logsumexp(0) - math.log(self.num_particles)
        bound = bound_per_point.sum() * lw.scale + lw.global_log_weight
        weights = torch.softmax(log_w.detach(), dim=0)
        if self.estimator == "dreg":
            self._gradient_scales(guide_trace, lw, weights, scales)
            surrogate = (weights * lw.log_joint).sum()
            if lw.reparam_log_q is not None:
                surrogate = surrogate - (weights**2 * lw.reparam_log_q).sum()
        else:
            surrogate = (weights * log_w).sum()
            if lw.score_log_q is not None:
                surrogate = surrogate + (bound_per_point.detach() * lw.score_log_q.sum(0)).sum()
        surrogate = surrogate * lw.scale + lw.global_log_weight
        if self.estimator == "dreg":  # the draws' gradients are rescaled on the way back
            bound = bound.detach()
        return -bound, -surrogate

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """:math:`-\\mathcal L_K` in nats (a float; no gradients)."""
        with torch.no_grad():
            model_trace, guide_trace = self._traces(model, guide, args, kwargs)
            lw = importance_log_weights(model_trace, guide_trace, particle_dim=-(self._nesting + 1))
            bound = lw.log_weights.logsumexp(0) - math.log(self.num_particles)
            loss = -(float(bound.sum()) * lw.scale + float(lw.global_log_weight))
        if not math.isfinite(loss):  # diagnosed only on failure: is it the data?
            bad, bad_data = nonfinite_sites([("model", model_trace)])
            if bad_data:
                raise ValueError(f"IWAE.loss: {'; '.join(bad)} (the data are not finite)")
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """:math:`-\\mathcal L_K` as a tensor whose gradient is the chosen estimator's."""
        loss, surrogate = self.loss_and_surrogate(model, guide, *args, **kwargs)
        self._failed_traces = []
        return loss.detach() + (surrogate - surrogate.detach())

    def _state_types(self) -> dict:
        return {"num_steps": int, "max_plate_nesting": (int, type(None))}

    def state_dict(self) -> dict:
        """``{"num_steps": int, "max_plate_nesting": int or None}`` (the nesting once guessed:
        a resumed run does not repeat the dry run, which would draw random numbers)."""
        return {**super().state_dict(), "max_plate_nesting": self._nesting}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (e.g. from ``torch.load(path, weights_only=True)``).

        Raises:
            TypeError, ValueError: missing, unexpected or mistyped entries.
        """
        super().load_state_dict(state)
        nesting = state["max_plate_nesting"]
        if nesting is not None and nesting < 0:
            raise ValueError(f"max_plate_nesting must be >= 0 or None, got {nesting}")
        self._nesting = nesting

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the estimator's gradient into the parameters; return the loss (float,
        nats); count the step (:attr:`num_steps`, saved by :meth:`state_dict`).

        The loss and every gradient are checked before any ``.grad`` is written, so a
        non-finite step raises before ``SVI.step`` reaches its optimizer and changes nothing.

        Raises:
            ValueError: an observed value is not finite (naming the site).
            FloatingPointError: the loss or a gradient is not finite (naming the step and the
                sites whose ``log_prob`` is not finite, or the parameters).
        """
        try:
            loss = checked_loss_and_grads(
                lambda: self.loss_and_surrogate(model, guide, *args, **kwargs),
                where=f"IWAE({self.num_particles}, {self.estimator!r}) step {self.num_steps}",
                explain=lambda: nonfinite_sites(self._failed_traces),
            )
        finally:
            self._failed_traces = []
        self.num_steps += 1
        return loss
