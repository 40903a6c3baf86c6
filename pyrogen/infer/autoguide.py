"""AutoFlow: an autoguide whose posterior is a full-rank affine map on top of a normalizing flow."""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.transforms import LowerCholeskyAffine
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.guides import prototype_hide_fn
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroParam
from torch.distributions import Transform, biject_to

from pyrogen import flows
from pyrogen.infer.path_gradient import PathGradientPosterior
from pyrogen.transforms import Autoregressive, Bijector, Compose, Elementwise
from pyrogen.util import check_count, check_module_class, check_positive, progress_bar

__all__ = ["AutoFlow"]


class _Inverse(torch.nn.Module):
    """Calls a flow's inverse and its log-determinant (for ``torch.func.functional_call``)."""

    def __init__(self, flow: Transform) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.flow.inv(y)
        return x, self.flow.inv.log_abs_det_jacobian(y, x)


class _PathDerivative(dist.TorchDistribution):
    """Samples of ``posterior``; ``log_prob`` from ``score`` (the same density with the guide's
    parameters detached), so ``Trace_ELBO``'s guide gradient is the path derivative."""

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, posterior: dist.TorchDistribution, score: Callable) -> None:
        self.posterior, self.score = posterior, score
        super().__init__(posterior.batch_shape, posterior.event_shape, validate_args=False)

    @property
    def support(self):
        return self.posterior.support

    def expand(self, batch_shape, _instance=None):
        return _PathDerivative(self.posterior.expand(batch_shape), self.score)

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        return self.posterior.rsample(sample_shape)

    def sample(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        return self.posterior.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.score(value)


class _Readout(Elementwise):
    r"""``inner`` fed with ``scale`` times its conditioner's output: :math:`g(x; c\,\theta)`.

    A reparameterization for Adam: Adam moves every weight by about ``lr`` per step whatever its
    gradient's size, so the zero-initialized output layer of a conditioner of width ``H``, a sum
    of ``H`` hidden units, moves a shift or log-scale by up to ``lr * H / 2`` nats per step when
    the weights' steps agree in sign, and by about ``lr * sqrt(H)`` when they are noise (see
    :class:`AutoFlow`'s ``output_scale``). With ``c = 1 / H`` the maps move by about ``lr``
    even when the steps agree, and with ``c = H ** -0.5`` when they are noise, as the affine
    part's location and scales do. The family of maps is unchanged (identity at zero); only
    the optimizer's geometry is."""

    def __init__(self, inner: Elementwise, scale: float) -> None:
        self.inner, self.scale, self.num_params = inner, float(scale), inner.num_params

    def forward(self, x, params):
        return self.inner.forward(x, params * self.scale)

    def inverse(self, y, params):
        return self.inner.inverse(y, params * self.scale)


# output_scale -> the power p of the readout factor H ** -p
_OUTPUT_SCALES = {"none": 0.0, "sqrt": 0.5, "width": 1.0}


def _scale_readouts(flow: Transform, power: float = 1.0) -> Transform:
    """Every autoregressive layer of ``flow`` takes its map's parameters at ``H ** -power``
    times its MADE's output (``H``: the MADE's last hidden width), see :class:`_Readout`."""
    if power == 0:
        return flow
    for layer in flow if isinstance(flow, Compose) else [flow]:
        if isinstance(layer, Autoregressive) and not isinstance(layer.transform, _Readout):
            width = layer.conditioner.output.weight.shape[-1]
            layer.transform = _Readout(layer.transform, float(width) ** -power)
    return flow


_BUILDERS = {
    "iaf": flows.iaf,
    # the configuration whose posterior accuracy examples/posteriordb_accuracy.py measures
    "maf": functools.partial(flows.maf, order="natural"),
    "nsf": flows.nsf,
    "realnvp": flows.realnvp,
    "planar": flows.planar,
    "spline_coupling": flows.spline_coupling,
}


class AutoFlow(AutoContinuous):
    r"""Autoguide over the model's packed unconstrained latents: a flow, then a full-rank affine.

    What it computes: with :math:`\epsilon \sim \mathcal N(0, I_D)` and a flow :math:`f` that
    is the identity at initialization,

    .. math::

        z = c + C\,\big(\mu + \operatorname{diag}(\sigma)\, L\, f(\epsilon)\big),

    where ``L`` is unit lower triangular and ``(c, C)`` a fixed whitening map chosen at
    initialization (``init_laplace``; the identity otherwise). At initialization the guide is
    therefore a Gaussian: the Laplace approximation at a mode, or ``init_loc_fn``'s location
    with standard deviation ``init_scale``; the affine part
    then learns location, scales and correlations (it alone is Pyro's
    ``AutoMultivariateNormal``) while the flow, acting in whitened coordinates, learns the
    non-Gaussian shape (funnels, skewed or heavy tails). Putting the affine map last keeps the
    flow's inputs at unit scale even when posterior scales span many orders of magnitude.

    Defaults: three IAF layers (sampling in the flow's cheap direction) whose MADE networks,
    of width ``max(32, D)``, use ``tanh`` units and a soft log-scale bound of 2 nats, trained
    with the path-derivative gradient. With ReLU units the flow's
    log-scales grow linearly far out in the tails, where the ELBO has few draws to pin them
    down, so the guide's tails swing with the optimizer's noise (the earlier default, two ReLU
    layers with bound 5 and the plain gradient, put the non-centred eight schools ``tau`` sd
    at +12%, -30% and +27% of the reference for seeds 0-2); ``tanh`` units make every layer
    affine far out, the bound keeps its tail scale within ``e^2`` of the bulk, and the
    path-derivative gradient removes the score term's noise near the optimum. Each MADE's
    output (shift and log-scale) enters its affine map scaled by ``1 / sqrt(H)`` (``H`` its last
    hidden width; ``output_scale="sqrt"``), a reparameterization for Adam. Adam moves every
    weight by about ``lr`` per step whatever its gradient's size, so a readout that sums ``H``
    units moves ``sqrt(H)`` times faster than the affine part's location and scales when the
    weights' steps are noise (Adam's normalized step ``|m| / sqrt(v)`` of the output weights
    had an rms of 0.1-0.3 on a 31-latent logistic regression) and up to ``H / 2`` times
    faster when they agree in sign. Unscaled, under plain ``Adam`` at lr 1e-2, that fit held
    at 56 nats for hundreds to thousands of steps, then the flow's raw log-scales went from
    about 0.2 to about 10, deep in the soft bound's flat region where their gradient vanishes,
    its shifts to about 20, and the loss ran away to thousands of nats. The path-derivative
    gradient is not at fault: in that state its mean matched the plain gradient's (a z-test
    over all 14,393 parameters, 20,000 draws each). Scaled by ``1 / sqrt(H)`` the flow keeps
    the affine part's pace, and no fit diverged; the cost is slower learning at a small
    constant learning rate: under plain ``Adam`` at lr 1e-3 (5000 steps) the non-centred eight
    schools ``tau`` sd error was +33%, +15% and +39% (seeds 0-2) against +5.5%, +4.1% and
    +10.0% unscaled (``examples/posteriordb_accuracy.py --optim adam --lr 0.001``); in
    15,000 steps the default reached +7.3%, +6.9% and +7.0%. A learning rate that decays (the
    example's ``ClippedAdam`` recipe) or three times the steps is the remedy at lr 1e-3. A
    learned gain on the readout (``benchmarks/autoflow_readout_variants.py``) learned faster at
    lr 1e-3 and fitted worse at lr 1e-2, the same trade as a fixed scale.
    ``examples/posteriordb_accuracy.py`` measures these defaults against the accuracy targets
    of its four posteriors (its ``"AutoFlow(iaf)"`` guide; ``"AutoFlow(maf)"`` is the same
    guide with MAF layers).

    Cost: one flow pass per draw for ``flow="iaf"`` (the default); ``"maf"`` samples in its
    sequential direction (one pass of arithmetic plus ``D`` small steps per layer). The
    path-derivative score of the guide's own draw is taken from the sampling pass
    (:class:`~pyrogen.infer.path_gradient.PathGradientPosterior`): one vector-Jacobian product
    per layer with a cheap inverse and, per IAF layer, one batched pass of ``D``
    vector-Jacobian products and a triangular solve, never the sequential inverse.

    Shapes:
        latent: ``(*batch, D)`` with ``D`` the total size of the unconstrained latents.
    Args:
        model: a Pyro model whose latent sites are continuous or enumerated (discrete sites
            marked by ``config_enumerate`` for ``TraceEnum_ELBO``, or hidden by
            ``poutine.block`` as for Pyro's autoguides; the guide covers the continuous ones).
        flow: ``"iaf"`` (default), ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"spline_coupling"``,
            ``"planar"`` (the builders of :mod:`pyrogen.flows`, called with this guide's
            ``num_layers``, ``hidden_dims``, ``activation`` and, where they take it,
            ``log_scale_bound``), or any callable mapping ``D`` to a
            :class:`~torch.distributions.Transform` (a ``TransformModule`` if it is
            trainable), e.g. a builder with its options bound,
            ``functools.partial(flows.nsf, num_layers=3)``.
        num_layers: flow layers (default 3; ignored for a callable ``flow``).
        hidden_dims: hidden sizes of the flow's networks (default: the builder's).
        activation: hidden nonlinearity of the flow's networks, an ``nn.Module`` class
            (``"maf"``, ``"iaf"``, ``"realnvp"``; default ``torch.nn.Tanh``).
        log_scale_bound: soft bound (nats, > 0) on each flow layer's log-scale (``"maf"``,
            ``"iaf"``, ``"realnvp"``).
        init_loc_fn: per-site initialization, as in Pyro's autoguides (e.g. ``init_to_value``).
        init_scale: initial posterior standard deviation of every unconstrained coordinate,
            > 0 (Pyro's convention), used unless the Laplace start is chosen.
        init_laplace: from ``init_loc_fn``'s location, find a mode of the log joint (L-BFGS, at
            most 200 iterations, then Newton steps) and the Laplace approximation there,
            ``N(mode, (-H)^{-1})``; the guide starts there and learns in the coordinates it
            whitens (``z = mode + C w``, ``C`` the Cholesky factor, fixed), so that posterior
            scales of 1e-3 under a prior sd of 10 or correlations of -0.99999 cost the optimizer
            nothing. The whitening pays even where the Laplace Gaussian is a poor fit and a
            narrow Gaussian at ``init_loc_fn``'s location has the higher starting ELBO (the
            non-centred eight schools: its mode has ``tau`` near 29, the posterior mean is 3.6),
            so the guide starts there whatever the two ELBOs. Where there is no finite mode (a
            funnel), the Hessian is not negative definite, or the search or the Laplace ELBO
            (256 fixed draws) is not finite, the guide starts at ``N(init, init_scale^2 I)``
            with ``C = I``.
        progress: a progress bar (stderr) over the Laplace start's stages, and over its
            row-by-row work on models that ``torch.func.vmap`` cannot vectorize: ``True``,
            ``False`` (nothing printed) or ``None`` (default: only when stderr is a terminal).
        num_quantile_draws: draws used by :meth:`median` and :meth:`quantiles` (flows have no
            closed-form quantiles; these are Monte Carlo estimates).
        path_gradient: score the guide's own samples with its parameters detached, so that
            the guide's ELBO gradient is the path derivative only ("sticking the landing",
            Roeder et al. 2017): the loss is unchanged, the gradient unbiased, exactly zero at
            the exact posterior and of lower variance near it (cost: see above). Under
            :class:`~pyrogen.infer.IWAE` it leaves ``estimator="dreg"`` (the default) and
            ``"stl"`` unchanged but turns ``"iwae"`` into ``"stl"``, which is biased for
            ``K > 1``; pass ``path_gradient=False`` for the plain IWAE gradient.
        output_scale: the factor on each MADE's output before its affine map (``"iaf"`` and
            ``"maf"``; see above): ``"sqrt"`` (default) ``1 / sqrt(H)``; ``"width"``
            ``1 / H`` (moves the maps by about ``lr`` even when Adam's steps agree in sign, as
            at its first step, but learns more slowly: under the decaying recipe of
            ``examples/posteriordb_accuracy.py`` it put the non-centred eight schools ``tau``
            sd error at +20% to +27% for seeds 0-2); ``"none"``, the unscaled output (the
            earlier default: it diverges under plain ``Adam`` at lr 1e-2, see above). The
            scale is not part of the ``state_dict``: a guide saved with another setting is
            restored by constructing it with that setting.
        scaled_output: the earlier spelling: ``True`` is ``output_scale="width"``, ``False``
            is ``output_scale="none"``; ``None`` (default) leaves ``output_scale`` in charge.
    Raises:
        ValueError: unknown ``flow``, ``init_scale <= 0``, ``num_layers < 1``,
            ``log_scale_bound <= 0``, or (on first use) a model with a discrete latent site that
            is not enumerated, ``flow="realnvp"`` with ``D < 2``,
            ``output_scale`` not one of ``"sqrt"``, ``"width"``, ``"none"``, or
            ``scaled_output`` that contradicts ``output_scale``.
        TypeError: ``activation`` is not an ``nn.Module`` class; ``scaled_output`` is not a bool
            or None.
    References:
        Roeder, Wu, Duvenaud (2017). Sticking the Landing: Simple, Lower-Variance Gradient
        Estimators for Variational Inference. https://arxiv.org/abs/1703.09194
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
        Rezende, Mohamed (2015). Variational Inference with Normalizing Flows.
        https://arxiv.org/abs/1505.05770
    Example:
        >>> def model():
        ...     pyro.sample("x", pyro.distributions.Normal(0.0, 1.0))
        >>> guide = AutoFlow(model, num_layers=1)
        >>> sorted(guide())
        ['x']
    """

    scale_constraint = constraints.softplus_positive
    scale_tril_constraint = constraints.unit_lower_cholesky

    def __init__(
        self,
        model: Callable,
        *,
        flow: str | Callable[[int], Transform] = "iaf",
        num_layers: int = 3,
        hidden_dims: Sequence[int] | None = None,
        activation: type[torch.nn.Module] = torch.nn.Tanh,
        log_scale_bound: float = 2.0,
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        init_laplace: bool = True,
        num_quantile_draws: int = 4000,
        path_gradient: bool = True,
        progress: bool | None = None,
        output_scale: str | None = None,
        scaled_output: bool | None = None,
    ) -> None:
        if not (callable(flow) or flow in _BUILDERS):
            raise ValueError(f"flow must be one of {sorted(_BUILDERS)} or a callable, got {flow!r}")
        check_positive(init_scale, "init_scale")
        check_count(num_layers, "num_layers")
        check_module_class(activation, "activation")
        check_positive(log_scale_bound, "log_scale_bound")
        check_count(num_quantile_draws, "num_quantile_draws", minimum=2)
        self._flow_spec = flow
        self._num_layers = num_layers
        self._hidden_dims = None if hidden_dims is None else tuple(hidden_dims)
        self._activation = activation
        self._log_scale_bound = float(log_scale_bound)
        self._init_scale = float(init_scale)
        self._init_laplace = bool(init_laplace)
        self._num_quantile_draws = num_quantile_draws
        self._path_gradient = bool(path_gradient)
        self._progress = progress
        if scaled_output is not None and not isinstance(scaled_output, bool):
            raise TypeError(f"scaled_output must be True, False or None, got {scaled_output!r}")
        if output_scale is not None and output_scale not in _OUTPUT_SCALES:
            raise ValueError(
                f"output_scale must be one of {sorted(_OUTPUT_SCALES)} or None, "
                f"got {output_scale!r}"
            )
        if scaled_output is not None:
            alias = "width" if scaled_output else "none"
            if output_scale not in (None, alias):
                raise ValueError(
                    f"scaled_output={scaled_output} (output_scale={alias!r}) contradicts "
                    f"output_scale={output_scale!r}; pass only output_scale"
                )
            output_scale = alias
        self._output_scale = output_scale or "sqrt"
        super().__init__(model, init_loc_fn=init_loc_fn)
        # the model without Pyro's init handler (which would draw from every site's prior while
        # the log joint is evaluated); a tuple so that a PyroModule model is not a submodule
        self._bare_model = (model,)

    @staticmethod
    def _prototype_hide_fn(msg) -> bool:
        # enumerated discrete sites are summed out by TraceEnum_ELBO, not guided
        return prototype_hide_fn(msg) or msg.get("infer", {}).get("enumerate") is not None

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if site["fn"].support.is_discrete:
                raise ValueError(
                    f"AutoFlow supports continuous latent sites only; site {name!r} has "
                    f"discrete support {site['fn'].support}. Enumerate it in the model "
                    "(pyro.infer.config_enumerate with TraceEnum_ELBO) or use another guide."
                )
        store = pyro.get_param_store()
        # restoring from the param store (ParamStore.load, then a fresh guide): the stored
        # values are kept and the Laplace start is not searched again
        restoring = f"{self._pyro_name}.center" in store
        loc = self._init_loc()
        if restoring:  # an nn.Parameter attribute would replace the stored entry
            loc = store[f"{self._pyro_name}.loc"].detach().clone().to(loc)
        self.loc = torch.nn.Parameter(loc)
        scale = torch.full_like(loc, self._init_scale)
        eye = torch.eye(self.latent_dim, dtype=loc.dtype, device=loc.device)
        # Fixed outer affine map z = center + whiten @ w; the identity unless the Laplace start
        # below is chosen, in which case the learned part works in whitened coordinates.
        center, whiten = torch.zeros_like(loc), eye
        if self._init_laplace and not restoring:
            laplace = self._laplace_start(loc, args, kwargs)
            if laplace is not None:
                center, whiten = laplace
                loc, scale = torch.zeros_like(loc), torch.ones_like(loc)
        # fixed (never given a gradient), but held in the param store so that a store
        # save/load round trip restores the guide
        self.center = PyroParam(center)
        self.whiten = PyroParam(whiten)
        with torch.no_grad():
            self.loc.copy_(loc)
        self.scale = PyroParam(scale, self.scale_constraint)
        self.scale_tril = PyroParam(eye, self.scale_tril_constraint)
        flow = self._build_flow(self.latent_dim)
        if isinstance(flow, torch.nn.Module):
            flow = flow.to(device=loc.device, dtype=loc.dtype)
        self.flow = flow

    def _log_joint(self, latent: torch.Tensor, args, kwargs) -> torch.Tensor:
        """log p(x, z) at a packed unconstrained latent, Jacobian of the constraints included."""
        values, log_det = {}, latent.new_zeros(())
        for site, unconstrained in self._unpack_latent(latent):
            transform = biject_to(site["fn"].support)
            value = transform(unconstrained)
            values[site["name"]] = value
            log_det = log_det + transform.log_abs_det_jacobian(unconstrained, value).sum()
        with poutine.block():  # keep these traces out of an enclosing guide trace
            model = poutine.condition(self._bare_model[0], data=values)
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        return trace.log_prob_sum() + log_det

    def _batched(self, fn: Callable, points: torch.Tensor, desc: str) -> torch.Tensor:
        """``fn`` at every row of ``points``: vectorized by ``torch.func.vmap`` where the model
        allows it, else one model run per row (with a progress bar)."""
        try:
            # Pyro's validation checks values in Python control flow, which vmap cannot trace;
            # a model that fails without it fails again, validated, in the row-by-row run
            with pyro.validation_enabled(False):
                return torch.func.vmap(fn)(points)
        except Exception:  # any model that vmap cannot trace runs row by row
            rows = progress_bar(points, progress=self._progress, desc=desc)
            return torch.stack([fn(p) for p in rows])

    def _gaussian_elbo(self, center, scale_tril, args, kwargs, num_draws: int = 256) -> float:
        """Monte Carlo ELBO (nats) of N(center, L L^T), fixed draws (comparable across calls)."""
        g = torch.Generator().manual_seed(0)
        eps = torch.randn(num_draws, center.numel(), generator=g, dtype=center.dtype)
        z = center + eps.to(center.device) @ scale_tril.T
        log_q = dist.MultivariateNormal(center, scale_tril=scale_tril).log_prob(z)
        log_p = self._batched(lambda v: self._log_joint(v, args, kwargs), z, "Laplace start: ELBO")
        elbo = float((log_p - log_q).mean())
        return elbo if math.isfinite(elbo) else -math.inf

    def _grad_and_hessian(self, mode: torch.Tensor, args, kwargs):
        """Gradient and Hessian of the log joint at ``mode``: one reverse-over-reverse
        ``torch.func`` pass, vectorized over the ``D`` rows (row by row, with a progress bar, if
        the model defeats ``vmap``). Returns ``(grad (D,), hessian (D, D))``."""

        def log_joint(v):
            return self._log_joint(v, args, kwargs)

        def grad_twice(v):
            grad = torch.func.grad(log_joint)(v)
            return grad, grad

        try:
            with pyro.validation_enabled(False):  # see _batched
                hessian, grad = torch.func.jacrev(grad_twice, has_aux=True)(mode.detach())
            return grad, hessian
        except Exception:  # a model that vmap cannot trace: one row at a time
            pass
        v = mode.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_joint(v), v, create_graph=True)
        eye = torch.eye(v.numel(), dtype=v.dtype, device=v.device)
        rows = progress_bar(eye, progress=self._progress, desc="AutoFlow Laplace start: Hessian")
        hessian = torch.stack([torch.autograd.grad(grad, v, e, retain_graph=True)[0] for e in rows])
        return grad.detach(), hessian

    @torch.enable_grad()
    def _laplace_start(self, loc: torch.Tensor, args, kwargs):
        """``(mode, chol((-H)^{-1}))`` at the mode that L-BFGS finds from ``loc``, if the log
        joint has a finite mode there with a negative-definite Hessian and the Laplace
        approximation has a finite ELBO; ``None`` otherwise (no finite mode, e.g. a funnel; an
        indefinite Hessian; a covariance whose Cholesky factorization fails in the dtype; a
        search or an ELBO that hits a non-finite value).

        Its three stages (mode, Newton polish, Laplace ELBO) advance a progress bar
        (``progress``)."""
        stages = ["mode (L-BFGS)", "Newton polish", "Laplace ELBO"]
        bar = progress_bar(stages, progress=self._progress, desc="AutoFlow Laplace start")
        try:
            with warnings.catch_warnings():
                # the search handles non-finite values itself (no start); Pyro's warnings about
                # the points it tried are not the user's concern
                warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
                return self._laplace_stages(loc, args, kwargs, iter(bar))
        finally:
            getattr(bar, "close", lambda: None)()

    def _laplace_stages(self, loc: torch.Tensor, args, kwargs, stages):
        next(stages)
        z = loc.detach().clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([z], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = -self._log_joint(z, args, kwargs)
            loss.backward()
            return loss

        try:
            optimizer.step(closure)
        except (RuntimeError, ValueError):  # the search left the support or hit a NaN
            return None
        mode = z.detach()
        next(stages)
        # Polish with Newton steps (exact for a Gaussian posterior): L-BFGS can stop early
        # along a ridge of near-perfect correlation. Converged when no coordinate moves by more
        # than the dtype's resolution (1e-10 relative in float64).
        tol = max(1e-10, 8 * torch.finfo(mode.dtype).eps)
        for _ in range(5):
            grad, hessian = self._grad_and_hessian(mode, args, kwargs)
            if not bool(torch.isfinite(hessian).all()):
                return None
            eigenvalues, eigenvectors = torch.linalg.eigh(-(hessian + hessian.T) / 2)
            if eigenvalues.min() <= 0:
                return None
            step = eigenvectors @ ((eigenvectors.T @ grad) / eigenvalues)
            if not bool(torch.isfinite(step).all()):
                return None
            mode = mode + step
            if bool((step.abs() <= tol * (1 + mode.abs())).all()):
                break
        cov = (eigenvectors / eigenvalues) @ eigenvectors.T
        # in float32 an ill-conditioned (-H)^{-1} can lose definiteness to rounding: no start
        chol, info = torch.linalg.cholesky_ex((cov + cov.T) / 2)
        if int(info) != 0 or not bool(torch.isfinite(chol).all()):
            return None
        next(stages)
        with torch.no_grad():
            laplace = self._gaussian_elbo(mode, chol, args, kwargs)
        next(stages, None)
        return (mode, chol) if math.isfinite(laplace) else None

    def _build_flow(self, dim: int) -> Transform:
        spec = self._flow_spec
        if callable(spec):
            return spec(dim)
        # the builder contract of pyrogen.flows: the same keywords for every builder
        kwargs = {"num_layers": self._num_layers, "activation": self._activation}
        # networks of width max(32, D): enough units for every degree of a MADE, and a step
        # cost that grows like D^2 (the builders' 2D doubles the largest matrices)
        kwargs["hidden_dims"] = self._hidden_dims or (max(32, dim),) * 2
        if "log_scale_bound" in inspect.signature(_BUILDERS[spec]).parameters:
            kwargs["log_scale_bound"] = self._log_scale_bound
        try:
            flow = _BUILDERS[spec](dim, **kwargs)
        except ValueError as error:
            raise ValueError(f"flow={spec!r} with {dim} latent dimensions: {error}") from error
        if spec not in ("iaf", "maf"):
            return flow
        return _scale_readouts(flow, _OUTPUT_SCALES[self._output_scale])

    def get_base_dist(self) -> dist.Distribution:
        """Standard normal of shape ``(D,)`` on the parameters' device and dtype."""
        return dist.Normal(torch.zeros_like(self.loc), 1.0).to_event(1)

    def get_transform(self, *args, **kwargs) -> list[Transform]:
        """The list ``[flow, learned affine, fixed whitening affine]`` applied to base noise."""
        # the flow itself, not through PyroModule's attribute hook, which would run another
        # pyro.module over every flow parameter at each access
        flow = self._modules["flow"] if "flow" in self._modules else self.__dict__["flow"]
        if isinstance(flow, torch.nn.Module):
            # update_module_params: a flow restored with ParamStore.load adopts the stored values
            pyro.module(f"{self._pyro_name}.flow", flow, update_module_params=True)
        # cache_size=1: scoring its own sample must reach the flow as the identical tensor, so
        # the flow serves its cache (an IAF inverse costs D sequential passes).
        scale_tril = self.scale[..., None] * self.scale_tril
        affine = LowerCholeskyAffine(self.loc, scale_tril=scale_tril, cache_size=1)
        center, whiten = self.center.detach(), self.whiten.detach()
        outer = LowerCholeskyAffine(center, scale_tril=whiten, cache_size=1)
        return [flow, affine, outer]

    def get_posterior(self, *args, **kwargs) -> dist.TorchDistribution:
        """The guide's distribution over the packed unconstrained latent, shape ``(D,)``.

        With ``path_gradient=True`` (and gradients enabled) its ``log_prob`` is evaluated with
        the guide's parameters detached, so the ELBO's guide gradient is the path derivative
        only (sticking the landing)."""
        transforms = self.get_transform()
        posterior = dist.TransformedDistribution(self.get_base_dist(), transforms)
        if not (self._path_gradient and torch.is_grad_enabled()):
            return posterior
        flow, affine, outer = transforms
        loc, scale_tril = affine.loc.detach(), affine.scale_tril.detach()
        inverse = _Inverse(flow)
        params = {f"flow.{k}": v.detach() for k, v in inverse.flow.named_parameters()}

        def score(z: torch.Tensor) -> torch.Tensor:
            # computed afresh (no transform cache): the cached inverse of the guide's own sample
            # would carry the live parameters' graph
            def solve(tril, v):
                return torch.linalg.solve_triangular(tril, v.unsqueeze(-1), upper=False)

            w = solve(outer.scale_tril, z - outer.loc).squeeze(-1)
            u = solve(scale_tril, w - loc).squeeze(-1)
            eps, inv_ladj = torch.func.functional_call(inverse, params, (u,))
            log_det = scale_tril.diagonal().abs().log().sum()
            log_det = log_det + outer.scale_tril.diagonal().log().sum()
            return self.get_base_dist().log_prob(eps) + inv_ladj - log_det

        if isinstance(flow, Bijector):
            affines = [(affine.loc, affine.scale_tril), (outer.loc, outer.scale_tril)]
            return PathGradientPosterior(self.get_base_dist(), flow, affines, score, posterior)
        return _PathDerivative(posterior, score)

    @torch.no_grad()
    def _draws(self, *args, **kwargs) -> torch.Tensor:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return self.get_posterior().sample((self._num_quantile_draws,))

    def _loc_scale(self, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte Carlo median and standard deviation of the unconstrained latent."""
        draws = self._draws(*args, **kwargs)
        return draws.median(0).values, draws.std(0)

    @torch.no_grad()
    def quantiles(self, quantiles, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Monte Carlo quantiles of each latent site (``num_quantile_draws`` draws), mapped to the
        constrained space. Returns ``{site: tensor of shape (len(quantiles), *site_shape)}``.

        Raises:
            ValueError: a quantile outside ``[0, 1]``.
        """
        q = torch.as_tensor(quantiles, dtype=self.loc.dtype if self.prototype_trace else None)
        if ((q < 0) | (q > 1)).any():
            raise ValueError(f"quantiles must lie in [0, 1], got {q.tolist()}")
        draws = self._draws(*args, **kwargs)
        result: dict[str, list[torch.Tensor]] = {}
        for latent in torch.quantile(draws, q.to(draws), dim=0):
            for site, value in self._unpack_latent(latent):
                result.setdefault(site["name"], []).append(biject_to(site["fn"].support)(value))
        return {name: torch.stack(values) for name, values in result.items()}
