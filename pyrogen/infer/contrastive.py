"""Contrastive divergence (CD-k and persistent CD) as a loss for ``pyro.infer.SVI``."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, SVI
from pyro.optim import Adam
from pyro.util import warn_if_nan

from pyrogen.distributions import BernoulliRBM
from pyrogen.infer.checks import (
    CountedSteps,
    accumulate_grads,
    check_observed_support,
    checked_loss_and_grads,
    empty_plates_as_errors,
)
from pyrogen.infer.rbm_cd import (
    GibbsKernel,
    RBMSite,
    _gibbs,
    find_rbm_site,
    rbm_free_energy_gap,
    read_params,
    signature,
)
from pyrogen.util import (
    check_binary_data,
    check_count,
    check_nonnegative,
    check_positive,
    progress_bar,
)

__all__ = ["ContrastiveDivergence", "fit_rbm"]


def _energy_model(fn):
    """The energy-based distribution behind a site's ``fn`` (unwrapping Pyro's expansions)."""
    while not hasattr(fn, "markov_chain") and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn if hasattr(fn, "markov_chain") and hasattr(fn, "free_energy") else None


class ContrastiveDivergence(CountedSteps, ELBO):
    r"""Contrastive divergence: an SVI loss whose gradient is the CD-k (or persistent CD)
    estimate of the negative log-likelihood gradient of energy-based observations.

    What it computes: for every observed site whose distribution is one of pyrogen's energy
    models (``BernoulliRBM``, ``GaussianBernoulliRBM``, ``BoltzmannMachine``,
    ``EnergyBasedDistribution``), with data :math:`v^+_{1..B}` and negative samples
    :math:`v^-_{1..M}` (gradients stopped),

    .. math::
        \text{surrogate} = s \Big(\sum_{n=1}^B F(v^+_n) - \frac{B}{M} \sum_{m=1}^M F(v^-_m)
        \Big), \qquad \nabla \approx -\nabla \sum_n \log p(v^+_n),

    since :math:`\nabla_\theta \log p(v) = -\nabla F(v) + \mathbb E_p[\nabla F]`; ``s`` is the
    site's scale (subsampling). The negatives are ``num_gibbs_steps`` steps of the model's
    Markov chain (block Gibbs for RBMs, Gibbs sweeps for Boltzmann machines, Langevin for
    continuous EBMs) started at the data (CD-k, Hinton 2002; ``M = B``), or continued from
    ``num_chains`` persistent chains that survive between steps (PCD, Tieleman 2008). For
    continuous EBMs, ``replay_buffer > 0`` keeps that many past negatives and restarts 95% of
    the chains from it and 5% from noise (Du and Mordatch 2019). With exact model samples
    (CD with infinitely many steps) the gradient is exactly the log-likelihood gradient.

    ``loss`` and ``loss_and_grads`` return the surrogate's value (nats; a free-energy gap, *not*
    a log-likelihood: evaluate with ``log_prob`` where ``log Z`` is available). Only
    ``loss_and_grads`` (``SVI.step``) and ``differentiable_loss`` advance the persistent chains
    and the replay buffer; ``loss`` (``svi.evaluate_loss``) leaves them as they were. Latent
    sites are not supported (use an empty guide).

    The observed data are checked against the model's support (finite values; zeros and ones
    for binary units) before any chain runs. A step whose surrogate or gradient is not finite
    raises inside ``loss_and_grads`` before any ``.grad`` is written and before the persistent
    chains or the replay buffer change, so ``SVI.step`` never reaches its optimizer and the step
    changes nothing. :meth:`state_dict` holds the step count, the persistent chains and the
    replay buffers (tensors keyed by site name, loadable with ``torch.load(...,
    weights_only=True)``), so that a resumed run continues the same chains.

    Args:
        num_gibbs_steps: ``k >= 1``, chain steps per SVI step.
        persistent: keep the chains between steps (PCD).
        num_chains: number of persistent chains (default: the first batch's size); CD uses the
            batch.
        replay_buffer: size of the replay buffer for continuous EBMs (0: none).
        energy_penalty: :math:`\alpha \ge 0`; adds :math:`\alpha s B (\overline{F(v^+)^2} +
            \overline{F(v^-)^2})`, the energy regularizer of Du and Mordatch (2019) that keeps
            a continuous EBM's energies from drifting to :math:`\pm\infty` (0: off).
        fast: the closed-form step for a model that is one observed ``BernoulliRBM`` site
            (parameters read with ``pyro.param``, the data passed as an argument; CD or PCD,
            no replay buffer or energy penalty). The first call with a given argument
            signature (tensor shapes, dtypes and devices, other arguments' values) traces the
            model once (its random draws undone unless it initialized parameters, so that
            a resumed run repeats the uninterrupted one); later calls with that
            signature read the parameters through ``pyro.param`` (so ``SVI`` optimizes them)
            and take the step of :func:`~pyrogen.infer.rbm_cd.rbm_free_energy_gap` without
            running the model, as Pyro's JIT losses assume a model whose structure is fixed.
            The chains draw the same random numbers as the traced path; the update agrees
            with it to rounding. ``False``: trace the model at every step.
    Raises:
        ValueError: ``num_gibbs_steps < 1``, ``num_chains < 1``, ``replay_buffer < 0``,
            ``energy_penalty < 0``; on use, a model without an energy-based observed site, or
            with latent sites, or observed values outside the model's support or not finite,
            or a replay buffer on a binary model.
        FloatingPointError: on use, a non-finite surrogate or gradient (naming the step and
            the site's term).
    References:
        Hinton (2002). Training Products of Experts by Minimizing Contrastive Divergence.
        https://doi.org/10.1162/089976602760128018
        Tieleman (2008). Training Restricted Boltzmann Machines using Approximations to the
        Likelihood Gradient. https://doi.org/10.1145/1390156.1390290
        Du, Mordatch (2019). Implicit Generation and Modeling with Energy-Based Models.
        https://arxiv.org/abs/1903.08689
    Example:
        >>> from pyrogen.distributions import BernoulliRBM
        >>> def model(v):
        ...     w = pyro.param("w", 0.01 * torch.randn(6, 3))
        ...     b, c = pyro.param("b", torch.zeros(6)), pyro.param("c", torch.zeros(3))
        ...     with pyro.plate("data", len(v)):
        ...         pyro.sample("v", BernoulliRBM(w, b, c), obs=v)
        >>> svi = pyro.infer.SVI(model, lambda v: None, pyro.optim.SGD({"lr": 0.1}),
        ...                      ContrastiveDivergence(num_gibbs_steps=1))
        >>> loss = svi.step(torch.bernoulli(torch.full((20, 6), 0.5)))
    """

    def __init__(
        self,
        num_gibbs_steps: int = 1,
        *,
        persistent: bool = False,
        num_chains: int | None = None,
        replay_buffer: int = 0,
        energy_penalty: float = 0.0,
        fast: bool = True,
    ) -> None:
        check_count(num_gibbs_steps, "num_gibbs_steps")
        if num_chains is not None:
            check_count(num_chains, "num_chains")
        check_count(replay_buffer, "replay_buffer", minimum=0)
        self.energy_penalty = check_nonnegative(energy_penalty, "energy_penalty")
        super().__init__()
        self.num_gibbs_steps = num_gibbs_steps
        self.persistent = bool(persistent)
        self.num_chains = num_chains
        self.replay_buffer = replay_buffer
        self.chains: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.num_steps = 0
        self._terms: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self.fast = bool(fast)
        self._sites: dict = {}  # (model, signature) -> RBMSite or None, rebuilt on demand

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        raise NotImplementedError("ContrastiveDivergence traces the model only")

    def _negatives(self, name: str, fn, data: torch.Tensor, new_state: dict) -> torch.Tensor:
        """The negative samples; the chains and buffer they leave go to ``new_state`` (kept
        only once the step has passed its checks)."""
        event = fn.event_shape
        if not self.persistent and not self.replay_buffer:
            return fn.markov_chain(data.detach(), self.num_gibbs_steps)
        # chains keep the parameters' own batch dims (a batched model: one set of chains per
        # member) and pool every other leading dim of the data (the rows of its plates)
        trailing = (*getattr(fn, "parameter_batch_shape", ()), *event)
        data = data.detach()
        flat = data.expand(torch.broadcast_shapes(data.shape, trailing)).reshape(-1, *trailing)
        if self.persistent:
            start = self.chains.get(name)
            if start is None or start.shape[1:] != flat.shape[1:]:
                m = self.num_chains or flat.shape[0]
                start = flat[torch.randint(flat.shape[0], (m,), device=flat.device)]
        else:
            m = self.num_chains or flat.shape[0]
            start = self._replay_start(name, fn, flat, m)
        chains = fn.markov_chain(start, self.num_gibbs_steps)
        if self.persistent:
            new_state["chains"][name] = chains
        if self.replay_buffer:
            old = self.buffers.get(name)
            merged = chains if old is None else torch.cat([chains, old])
            new_state["buffers"][name] = merged[: self.replay_buffer]
        return chains

    def _replay_start(self, name: str, fn, flat: torch.Tensor, m: int) -> torch.Tensor:
        if not hasattr(fn, "init_scale"):
            raise ValueError(
                f"ContrastiveDivergence: replay_buffer applies to continuous energy models "
                f"(EnergyBasedDistribution, whose init_scale starts fresh chains); site "
                f"{name!r} is a {type(fn).__name__}: use persistent=True instead"
            )
        noise = fn.init_scale * torch.randn((m, *flat.shape[1:]), dtype=flat.dtype)
        noise = noise.to(flat.device)
        buffer = self.buffers.get(name)
        if buffer is None:
            return noise
        take = torch.rand(m, device=flat.device) < 0.95
        picks = buffer[torch.randint(buffer.shape[0], (m,), device=flat.device)]
        mask = take.reshape((m,) + (1,) * (flat.dim() - 1))
        return torch.where(mask, picks, noise)

    def _check_data(self, name: str, fn, data: torch.Tensor) -> None:
        check_observed_support(f"ContrastiveDivergence step {self.num_steps}", name, fn, data)

    def _surrogate(self, model: Callable, args, kwargs) -> tuple[torch.Tensor, dict]:
        """The surrogate and the chain state it leaves (``{"chains": ..., "buffers": ...}``)."""
        with empty_plates_as_errors(f"ContrastiveDivergence step {self.num_steps}"):
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        new_state: dict[str, dict[str, torch.Tensor]] = {"chains": {}, "buffers": {}}
        self._terms = []
        total = None
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
                continue
            if not site["is_observed"]:
                raise ValueError(
                    f"ContrastiveDivergence supports observed energy-based sites only; site "
                    f"{name!r} is latent"
                )
            fn = _energy_model(site["fn"])
            if fn is None:
                continue
            data = site["value"]
            self._check_data(name, fn, data)
            negatives = self._negatives(name, fn, data, new_state)
            positive = fn.free_energy(data)
            negative = fn.free_energy(negatives)
            self._terms.append((name, positive, negative))
            scale = site["scale"]
            batch = positive.numel()
            term = scale * (positive.sum() - batch * negative.mean())
            if self.energy_penalty:
                penalty = (positive**2).mean() + (negative**2).mean()
                term = term + scale * batch * self.energy_penalty * penalty
            total = term if total is None else total + term
        if total is None:
            raise ValueError(
                "the model has no observed site with an energy-based distribution "
                "(BernoulliRBM, GaussianBernoulliRBM, BoltzmannMachine, EnergyBasedDistribution)"
            )
        return total, new_state

    def _commit(self, new_state: dict) -> None:
        self.chains.update(new_state["chains"])
        self.buffers.update(new_state["buffers"])

    def _explain(self) -> tuple[list[str], bool]:
        lines = []
        for name, positive, negative in self._terms:
            if not bool(torch.isfinite(positive).all()):
                lines.append(f"site {name!r}: the free energy of the data is not finite")
            if not bool(torch.isfinite(negative).all()):
                lines.append(
                    f"site {name!r}: the free energy of the negative samples is not finite"
                )
        return lines, False

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The surrogate's value (nats, no gradients). The negatives are drawn from the current
        chains, which are then left as they were (as is the replay buffer), so that
        ``svi.evaluate_loss`` between steps changes training only through the random numbers
        it draws."""
        with torch.no_grad():
            site = self._rbm_site(model, args, kwargs)
            step = None if site is None else self._rbm_step(site, args, kwargs, grads=False)
            if step is not None:
                total = step[0]
            else:
                total, _ = self._surrogate(model, args, kwargs)
            value = float(total)
        self._terms = []
        warn_if_nan(value, "loss")
        return value

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """The surrogate as a tensor whose gradient is the CD estimate (the chains advance).

        Raises:
            FloatingPointError: a non-finite surrogate (the chains are then left as they were).
        """
        total, new_state = self._surrogate(model, args, kwargs)
        if not bool(torch.isfinite(total.detach())):
            lines, _ = self._explain()
            raise FloatingPointError(
                f"ContrastiveDivergence: non-finite surrogate {float(total.detach())}; "
                + ("; ".join(lines) or "no term could be singled out")
            )
        self._terms = []
        self._commit(new_state)
        return total

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the CD gradient into the parameters; return the surrogate's value;
        count the step. The surrogate and every gradient are checked first: a non-finite step
        raises with parameters, gradients, optimizer state and chains unchanged.

        Raises:
            ValueError: observed values outside the support or not finite.
            FloatingPointError: a non-finite surrogate or gradient.
        """
        site = self._rbm_site(model, args, kwargs)
        step = None if site is None else self._rbm_step(site, args, kwargs, grads=True)
        if step is not None:
            value, (params, grads), new_state = step
            accumulate_grads(params, grads)
            self._commit(new_state)
            self.num_steps += 1
            return float(value)
        new_state: dict = {}

        def compute():
            total, state = self._surrogate(model, args, kwargs)
            new_state.update(state)
            return total, total

        try:
            value = checked_loss_and_grads(
                compute,
                where=f"ContrastiveDivergence step {self.num_steps}",
                explain=self._explain,
            )
        finally:
            self._terms = []
        self._commit(new_state)
        self.num_steps += 1
        return value

    def _rbm_site(self, model: Callable, args: tuple, kwargs: dict) -> RBMSite | None:
        """The model's :class:`~pyrogen.infer.rbm_cd.RBMSite` for this call's signature, traced
        once; ``None`` when the closed-form step does not apply."""
        if not self.fast or self.energy_penalty or self.replay_buffer:
            return None
        key = signature(args, kwargs)
        if key is None:
            return None
        if (model, key) not in self._sites:
            if len(self._sites) > 32:
                self._sites.clear()
            known = set(pyro.get_param_store().keys())
            devices = [a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda]
            rng = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices[:1]]
            with (
                empty_plates_as_errors(f"ContrastiveDivergence step {self.num_steps}"),
                poutine.block(),
            ):
                trace = poutine.trace(model).get_trace(*args, **kwargs)
            if set(pyro.get_param_store().keys()) <= known:
                # no parameter was initialized: undo the model's draws (e.g. a plate's
                # subsample), which the untraced steps do not make, so that a resumed run
                # repeats the uninterrupted one
                torch.set_rng_state(rng[0])
                for d, state in zip(devices[:1], rng[1], strict=True):
                    torch.cuda.set_rng_state(state, d)
            self._sites[(model, key)] = find_rbm_site(trace, model, args, kwargs)
        site = self._sites[(model, key)]
        store = pyro.get_param_store()
        if site is not None and not all(name in store for name in site.params):
            del self._sites[(model, key)]  # the store was cleared: trace again
            return self._rbm_site(model, args, kwargs)
        return site

    def _rbm_step(self, site: RBMSite, args: tuple, kwargs: dict, grads: bool):
        """The closed-form CD step: check the data, run the chains, return the surrogate (and
        the gradients) with the chain state it leaves; nothing is written. ``None`` when a
        parameter was re-created with a constraint (the traced path then runs)."""
        data = site.data(args, kwargs)
        if data.is_floating_point():
            # x - x^2 is 0 exactly at 0 and 1 and nonzero (or NaN) at every other value, inf
            # and NaN included: one fused op
            outside = bool(torch.addcmul(data, data, data, value=-1).any())
        else:
            outside = not torch.equal(data, data.bool().to(data.dtype))
        if outside:
            raise ValueError(
                f"ContrastiveDivergence step {self.num_steps}: the observed values of site "
                f"{site.name!r} lie outside the support of BernoulliRBM ({site.support}) or "
                "are not finite; nothing was updated"
            )
        rbm = read_params(site)
        if rbm is None:
            return None
        new_state: dict[str, dict[str, torch.Tensor]] = {"chains": {}, "buffers": {}}
        negatives = self._rbm_negatives(site.name, rbm, data, new_state)
        out = rbm_free_energy_gap(data, negatives, *rbm, site.scale, grads=grads)
        value, gradients = out if grads else (out, ())
        # one check covers the gradients too: they are sums of bounded terms (binary rows times
        # p(v) in [0, 1]), non-finite only where p(v) is NaN, and a NaN p(v) makes S NaN
        number = float(value)
        if not math.isfinite(number):
            free = [GibbsKernel(*rbm).free_energy(v) for v in (data, negatives)]
            self._terms = [(site.name, *free)]
            lines, _ = self._explain()
            self._terms = []
            raise FloatingPointError(
                f"ContrastiveDivergence step {self.num_steps}: non-finite "
                f"loss (loss = {number}); {'; '.join(lines) or 'no term could be singled out'}. "
                "Nothing was updated: parameters, gradients and optimizer state are as before "
                "this step"
            )
        return number, (list(rbm), gradients), new_state

    def _rbm_negatives(self, name: str, rbm, data: torch.Tensor, new_state: dict):
        """:meth:`_negatives` for the closed-form step (data ``(B, V)``, unbatched parameters,
        no replay buffer): the same draws in the same order, without the general path's
        shape bookkeeping."""
        with torch.no_grad():
            return self._rbm_chains(name, rbm, data, new_state)

    def _rbm_chains(self, name: str, rbm, data: torch.Tensor, new_state: dict):
        if self.persistent:
            start = self.chains.get(name)
            if start is None or start.shape[1:] != data.shape[1:]:
                m = self.num_chains or data.shape[0]
                start = data[torch.randint(data.shape[0], (m,), device=data.device)]
            chains = _gibbs(start, *rbm, self.num_gibbs_steps)
            new_state["chains"][name] = chains
            return chains
        return _gibbs(data, *rbm, self.num_gibbs_steps)

    def _state_types(self) -> dict:
        return {"num_steps": int, "chains": dict, "buffers": dict}

    def state_dict(self) -> dict:
        """``{"num_steps": int, "chains": {site: tensor}, "buffers": {site: tensor}}``: the
        persistent chains ``(num_chains, *parameter_batch_shape, *event_shape)`` and the replay
        buffers."""
        return {
            **super().state_dict(),
            "chains": {k: v.detach().clone() for k, v in self.chains.items()},
            "buffers": {k: v.detach().clone() for k, v in self.buffers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (e.g. read back with ``torch.load(path,
        weights_only=True)``).

        Raises:
            TypeError, ValueError: missing, unexpected or mistyped entries.
        """
        super().load_state_dict(state)
        for key in ("chains", "buffers"):
            for name, value in state[key].items():
                if not isinstance(name, str) or not isinstance(value, torch.Tensor):
                    raise TypeError(
                        f"ContrastiveDivergence.load_state_dict: {key!r} must map site names to "
                        f"tensors, got {type(name).__name__} -> {type(value).__name__}"
                    )
        self.chains = {k: v.detach().clone() for k, v in state["chains"].items()}
        self.buffers = {k: v.detach().clone() for k, v in state["buffers"].items()}


def fit_rbm(
    data: torch.Tensor,
    n_hidden: int,
    *,
    loss: ContrastiveDivergence | None = None,
    epochs: int = 100,
    batch_size: int = 50,
    lr: float = 0.01,
    init_scale: float = 0.01,
    seed: int | None = None,
    progress: bool | None = None,
) -> BernoulliRBM:
    r"""Train a :class:`~pyrogen.distributions.BernoulliRBM` on binary data with ``pyro.infer.SVI``.

    The model is ``pyro.sample("v", BernoulliRBM(W, b, c), obs=batch)`` inside a subsampled
    data plate and the guide is empty; the loss is ``loss`` (default CD-1), the optimizer
    ``pyro.optim.Adam({"lr": lr})``. Initialization (Hinton 2010, "A Practical Guide to
    Training RBMs"): ``W ~ N(0, init_scale^2)``, visible biases at the logits of the data's
    mean activations, hidden biases 0. Runs in its own parameter-store scope, so the global
    param store is untouched.

    Shapes:
        data: ``(N, n_visible)`` with values in {0, 1}.
    Args:
        data: training data.
        n_hidden: hidden units (>= 1).
        loss: a :class:`ContrastiveDivergence` (default ``ContrastiveDivergence(1)``).
        epochs, batch_size: passes over the data, mini-batch size (>= 1).
        lr: Adam learning rate (> 0).
        init_scale: standard deviation of the initial weights (>= 0).
        seed: seeds torch's generator for the fit (``pyro.set_rng_seed``); two fits with the
            same seed give identical parameters. ``None`` uses the current generator state.
        progress: a tqdm bar over the epochs (``None``: only when stderr is a terminal;
            ``False``: never).
    Returns:
        the trained RBM (parameters detached); its attribute ``loss_history`` is a list of
        ``epochs`` floats, the mean surrogate loss per mini-batch of each epoch (nats, a
        free-energy gap, not a log-likelihood).
    Raises:
        ValueError: non-binary ``data``, a non-positive count or ``lr``.
    References:
        Hinton (2010). A Practical Guide to Training Restricted Boltzmann Machines.
        https://www.cs.toronto.edu/~hinton/absps/guideTR.pdf
    """
    check_binary_data(data)
    for name, value in (("n_hidden", n_hidden), ("epochs", epochs), ("batch_size", batch_size)):
        check_count(value, name)
    check_positive(lr, "lr")
    check_nonnegative(init_scale, "init_scale")
    if loss is not None and not isinstance(loss, ContrastiveDivergence):
        raise TypeError(f"loss must be a ContrastiveDivergence, got {type(loss).__name__}")
    loss = ContrastiveDivergence(1) if loss is None else loss
    n_visible = data.shape[1]
    mean = data.mean(0).clamp(0.01, 0.99)

    def model(batch):
        w = pyro.param("weight", init_scale * torch.randn(n_visible, n_hidden).to(data))
        b = pyro.param("visible_bias", torch.logit(mean))
        c = pyro.param("hidden_bias", data.new_zeros(n_hidden))
        with pyro.plate("data", len(data), subsample_size=len(batch)):
            pyro.sample("v", BernoulliRBM(w, b, c), obs=batch)

    def guide(batch):
        pass

    if seed is not None:
        pyro.set_rng_seed(seed)
    history: list[float] = []
    with pyro.get_param_store().scope():
        svi = SVI(model, guide, Adam({"lr": lr}), loss)
        for epoch in progress_bar(range(epochs), progress=progress, desc="fit_rbm"):
            perm = torch.randperm(len(data), device=data.device)
            values = []
            for i in range(0, len(data), batch_size):
                value = svi.step(data[perm[i : i + batch_size]])
                if not math.isfinite(value):
                    raise FloatingPointError(f"non-finite loss {value} in epoch {epoch}")
                values.append(value)
            history.append(sum(values) / len(values))
        params = [pyro.param(n).detach().clone() for n in ("weight", "visible_bias", "hidden_bias")]
    rbm = BernoulliRBM(*params)
    rbm.loss_history = history
    return rbm
