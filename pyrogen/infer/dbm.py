"""Training deep Boltzmann machines: the mean-field variational bound with persistent chains."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, SVI
from pyro.optim import Adam

from pyrogen.distributions import BernoulliRBM, DeepBoltzmannMachine
from pyrogen.infer.checks import (
    check_observed_support,
    check_state_keys,
    checked_loss_and_grads,
    empty_plates_as_errors,
)
from pyrogen.infer.contrastive import ContrastiveDivergence
from pyrogen.util import check_binary_data, check_count, check_positive

__all__ = ["MeanFieldPCD", "pretrain_dbm"]


def _dbm(fn):
    while not isinstance(fn, DeepBoltzmannMachine) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn if isinstance(fn, DeepBoltzmannMachine) else None


class MeanFieldPCD(ELBO):
    r"""The learning procedure of Salakhutdinov and Hinton (2009) for deep Boltzmann machines,
    as a loss for ``pyro.infer.SVI``: mean-field for the data term, persistent Markov chains
    for the model term.

    What it computes: for every observed site whose distribution is a
    :class:`~pyrogen.distributions.DeepBoltzmannMachine`, with data :math:`v_{1..B}`, their
    mean-field posteriors :math:`\mu(v_n)` (:meth:`~pyrogen.distributions.
    DeepBoltzmannMachine.mean_field`, held fixed) and ``num_chains`` persistent full states
    :math:`x_{1..M} = (v, h^1, \dots, h^L)` advanced by ``num_gibbs_steps`` block-Gibbs sweeps
    per step,

    .. math::
        \text{surrogate} = s \Big(\sum_{n=1}^B E(v_n, \mu(v_n)) - \frac{B}{M}
        \sum_{m=1}^M E(x_m)\Big),

    whose gradient is the stochastic-approximation estimate of the negative gradient of the
    variational bound :math:`\sum_n -(E(v_n, \mu) - \mathcal H(q_n)) - B \log Z` (the entropy
    does not depend on the parameters; :math:`\nabla \log Z = -\mathbb E_p[\nabla E]`);
    ``s`` is the site's scale (subsampling).

    ``loss`` and ``loss_and_grads`` return :math:`s \sum_n (E(v_n, \mu) - \mathcal H(q_n))`,
    the variational free energy in nats: an upper bound on :math:`-\sum_n \log p(v_n)` up to the
    constant :math:`B \log Z` (not a log-likelihood; evaluate with
    ``log_likelihood_lower_bound`` and a ``log Z``). ``loss`` (e.g. ``svi.evaluate_loss``) does
    not advance the chains and draws no random numbers, so evaluating between steps does not
    change training. Latent sites are not supported (use an empty guide).

    Args:
        num_gibbs_steps: block-Gibbs sweeps of the persistent chains per step (>= 1).
        num_chains: number of persistent chains (>= 1); started from random training rows with
            hidden layers drawn from their mean-field posteriors.
    Raises:
        ValueError: bad counts; on use, a model without an observed DBM site, or with latent
            sites; observed values that are empty, of the wrong width, not binary or not
            finite (naming the site; the chains and parameters are left as they were).
        FloatingPointError: a non-finite free energy, surrogate or gradient, before any
            gradient or chain is written.
    References:
        Salakhutdinov, Hinton (2009). Deep Boltzmann Machines. AISTATS.
        http://proceedings.mlr.press/v5/salakhutdinov09a.html
        Tieleman (2008). Training Restricted Boltzmann Machines using Approximations to the
        Likelihood Gradient. https://doi.org/10.1145/1390156.1390290
    Example:
        >>> import pyro
        >>> from pyrogen.distributions import DeepBoltzmannMachine
        >>> def model(v):
        ...     w = [pyro.param("w0", 0.01 * torch.randn(6, 4)),
        ...          pyro.param("w1", 0.01 * torch.randn(4, 3))]
        ...     b = [pyro.param(f"b{i}", torch.zeros(n)) for i, n in enumerate((6, 4, 3))]
        ...     with pyro.plate("data", len(v)):
        ...         pyro.sample("v", DeepBoltzmannMachine(w, b), obs=v)
        >>> svi = pyro.infer.SVI(model, lambda v: None, pyro.optim.Adam({"lr": 0.01}),
        ...                      MeanFieldPCD(num_chains=10))
        >>> loss = svi.step(torch.bernoulli(torch.full((20, 6), 0.5)))
    """

    def __init__(self, num_gibbs_steps: int = 1, *, num_chains: int = 100) -> None:
        super().__init__()
        self.num_gibbs_steps = check_count(num_gibbs_steps, "num_gibbs_steps")
        self.num_chains = check_count(num_chains, "num_chains")
        self.chains: dict[str, list[torch.Tensor]] = {}

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        raise NotImplementedError("MeanFieldPCD traces the model only")

    def state_dict(self) -> dict:
        """The persistent chains, for ``torch.save`` and exact resumption."""
        return {"chains": {name: [s.clone() for s in c] for name, c in self.chains.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the chains saved by :meth:`state_dict` (``{"chains": {site: [v, h1, ...,
        hL]}}``, e.g. read back with ``torch.load(path, weights_only=True)``).

        Raises:
            TypeError, ValueError: missing, unexpected or mistyped entries (a site name that
                is not a string, chains that are not a list of one tensor per layer).
        """
        check_state_keys(state, {"chains": dict}, "MeanFieldPCD")
        for name, chain in state["chains"].items():
            if not isinstance(name, str):
                raise TypeError(
                    f"MeanFieldPCD.load_state_dict: 'chains' must map site names to lists of "
                    f"tensors, got a key of type {type(name).__name__}"
                )
            if (
                not isinstance(chain, (list, tuple))
                or len(chain) < 2
                or not all(isinstance(t, torch.Tensor) for t in chain)
            ):
                raise TypeError(
                    f"MeanFieldPCD.load_state_dict: the chains of site {name!r} must be a list "
                    f"of tensors [v, h1, ..., hL] (one per layer), got {type(chain).__name__}"
                )
        self.chains = {name: [s.clone() for s in c] for name, c in state["chains"].items()}

    def _sites(self, model: Callable, args, kwargs):
        with empty_plates_as_errors("MeanFieldPCD"):
            trace = poutine.trace(model).get_trace(*args, **kwargs)
        sites = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
                continue
            if not site["is_observed"]:
                raise ValueError(
                    f"MeanFieldPCD supports observed DBM sites only; site {name!r} is latent"
                )
            dbm = _dbm(site["fn"])
            if dbm is not None:
                self._check_data(name, dbm, site["value"])
                sites.append((name, dbm, site["value"], site["scale"]))
        if not sites:
            raise ValueError("the model has no observed site with a DeepBoltzmannMachine")
        return sites

    @staticmethod
    def _check_data(name: str, dbm: DeepBoltzmannMachine, data: torch.Tensor) -> None:
        width = dbm.layer_sizes[0]
        if data.dim() == 0 or data.shape[-1] != width:
            raise ValueError(
                f"MeanFieldPCD: the observed value of site {name!r} must end in the "
                f"{width} visible units of its DeepBoltzmannMachine, got shape "
                f"{tuple(data.shape)}"
            )
        if data.numel() == 0:
            raise ValueError(f"MeanFieldPCD: the observed value of site {name!r} is empty")
        check_observed_support("MeanFieldPCD", name, dbm, data)

    def _chains(self, name: str, dbm: DeepBoltzmannMachine, data: torch.Tensor):
        chains = self.chains.get(name)
        sizes = [c.shape[-1] for c in chains] if chains is not None else None
        if chains is None or tuple(sizes) != dbm.layer_sizes:
            flat = data.detach().reshape(-1, dbm.layer_sizes[0]).to(dbm.like.dtype)
            v = flat[torch.randint(len(flat), (self.num_chains,), device=flat.device)]
            with torch.no_grad():
                chains = [v, *(torch.bernoulli(m) for m in dbm.mean_field(v))]
        return chains

    def _free_energy(self, dbm, data, mu, scale) -> torch.Tensor:
        return scale * dbm.variational_free_energy(data, [m.detach() for m in mu]).sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The variational free energy (nats); the chains are left as they are."""
        with torch.no_grad():
            total = 0.0
            for _, dbm, data, scale in self._sites(model, args, kwargs):
                total += float(self._free_energy(dbm, data, dbm.mean_field(data), scale))
        return total

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """The surrogate as a tensor whose gradient is the learning signal (advances the
        chains).

        Raises:
            FloatingPointError: a non-finite surrogate (the chains are then left as they were).
        """
        surrogate, _, chains = self._surrogate(model, args, kwargs)
        if not bool(torch.isfinite(surrogate.detach())):
            raise FloatingPointError(
                f"MeanFieldPCD: non-finite surrogate {float(surrogate.detach())}; the chains "
                "are as before"
            )
        self.chains.update(chains)
        return surrogate

    def _surrogate(self, model: Callable, args, kwargs):
        """``(surrogate, free energy tensor, new chains)``; nothing is written."""
        surrogate, value, new_chains = None, 0.0, {}
        for name, dbm, data, scale in self._sites(model, args, kwargs):
            data = data.to(dbm.like.dtype)
            with torch.no_grad():
                mu = dbm.mean_field(data)
            chains = dbm.gibbs_chain(self._chains(name, dbm, data), self.num_gibbs_steps)
            new_chains[name] = chains
            positive = dbm.energy(data, *mu)
            negative = dbm.energy(*chains)
            term = scale * (positive.sum() - positive.numel() * negative.mean())
            surrogate = term if surrogate is None else surrogate + term
            value = value + self._free_energy(dbm, data, mu, scale).detach()
        return surrogate, value, new_chains

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the learning signal into the parameters; return the variational free
        energy (nats). The free energy, the surrogate and every gradient are checked first: a
        step that fails raises with parameters, gradients, optimizer state and chains
        unchanged.

        Raises:
            ValueError: observed values that are empty, of the wrong width, outside the
                support or not finite (naming the site).
            FloatingPointError: a non-finite free energy, surrogate or gradient.
        """
        new_chains: dict = {}

        def compute():
            surrogate, value, chains = self._surrogate(model, args, kwargs)
            new_chains.update(chains)
            return value, surrogate

        value = checked_loss_and_grads(compute, where="MeanFieldPCD step")
        self.chains.update(new_chains)
        return value


def _fit_tied_rbm(data, n_hidden, *, visible_copies, hidden_copies, loss, epochs, batch_size, lr):
    """An RBM whose visible (or hidden) layer is ``visible_copies`` (``hidden_copies``) copies of
    one layer sharing weights and biases, trained by ``loss`` with SVI; returns ``(W, b, c)``."""
    n_visible = data.shape[1]
    mean = data.mean(0).clamp(0.01, 0.99)
    doubled = data.repeat(1, visible_copies)

    def model(batch):
        w = pyro.param("weight", lambda: 0.01 * torch.randn(n_visible, n_hidden).to(data))
        b = pyro.param("visible_bias", lambda: torch.logit(mean))
        c = pyro.param("hidden_bias", lambda: data.new_zeros(n_hidden))
        rbm = BernoulliRBM(
            w.repeat(visible_copies, hidden_copies),
            b.repeat(visible_copies),
            c.repeat(hidden_copies),
        )
        with pyro.plate("data", len(doubled), subsample=torch.arange(len(batch))):
            pyro.sample("v", rbm, obs=batch)

    with pyro.get_param_store().scope():
        svi = SVI(model, lambda batch: None, Adam({"lr": lr}), loss)
        for epoch in range(epochs):
            perm = torch.randperm(len(doubled), device=data.device)
            for i in range(0, len(doubled), batch_size):
                value = svi.step(doubled[perm[i : i + batch_size]])
                if not math.isfinite(value):
                    raise FloatingPointError(f"non-finite loss {value} in epoch {epoch}")
        return tuple(
            pyro.param(n).detach().clone() for n in ("weight", "visible_bias", "hidden_bias")
        )


def pretrain_dbm(
    data: torch.Tensor,
    hidden_sizes: Sequence[int],
    *,
    epochs: int = 100,
    batch_size: int = 50,
    lr: float = 0.01,
    loss: Callable[[], ContrastiveDivergence] | None = None,
    **kwargs,
) -> DeepBoltzmannMachine:
    r"""Greedy layer-wise pretraining of a deep Boltzmann machine (Salakhutdinov and Hinton
    2009, section 3.1).

    The RBMs of a stack are trained bottom-up on the activations below (binary draws of
    :math:`p(h \mid \text{below})`), and modified so that composing them does not count a
    layer's input twice: the bottom RBM has two copies of the visible layer sharing weights
    (:math:`p(h^1 \mid v) = \sigma(c + 2 W_0^\top v)`), the top RBM two copies of its hidden
    layer (:math:`p(h^{L-1} \mid h^L) = \sigma(b + 2 W_{L-1} h^L)`), and middle RBMs (for
    ``L > 2``) are ordinary RBMs whose weights are halved when composed. The DBM takes the
    weights, the bottom RBM's visible biases, the top RBM's hidden biases, and the average of the
    two biases offered to each middle layer. Fine-tune with :class:`MeanFieldPCD`.

    Shapes:
        data: ``(N, n_visible)`` binary.
    Args:
        data: training data.
        hidden_sizes: ``[n_1, ..., n_L]`` with ``L >= 2``.
        epochs, batch_size, lr: per RBM (Adam).
        loss: a factory of the CD loss for each RBM (default: PCD-1 with 50 chains).
        kwargs: passed to :class:`~pyrogen.distributions.DeepBoltzmannMachine`.
    Raises:
        ValueError: non-binary data, fewer than 2 hidden layers, bad counts.
    References:
        Salakhutdinov, Hinton (2009). Deep Boltzmann Machines. AISTATS.
        http://proceedings.mlr.press/v5/salakhutdinov09a.html
    """
    check_binary_data(data)
    check_positive(lr, "lr")
    hidden_sizes = [check_count(h, "hidden_sizes entries") for h in hidden_sizes]
    if len(hidden_sizes) < 2:
        raise ValueError(f"hidden_sizes must have at least 2 layers, got {hidden_sizes}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        check_count(value, name)
    make = loss or (lambda: ContrastiveDivergence(1, persistent=True, num_chains=50))
    weights, biases_below, biases_above = [], [], []
    below = data
    last = len(hidden_sizes) - 1
    for i, n in enumerate(hidden_sizes):
        copies_v, copies_h = (2, 1) if i == 0 else ((1, 2) if i == last else (1, 1))
        w, b, c = _fit_tied_rbm(
            below,
            n,
            visible_copies=copies_v,
            hidden_copies=copies_h,
            loss=make(),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
        )
        weights.append(w if i in (0, last) else w / 2)
        biases_below.append(b)
        biases_above.append(c)
        with torch.no_grad():
            below = torch.bernoulli(torch.sigmoid(c + copies_v * (below @ w)))
    biases = [biases_below[0]]
    biases += [(biases_above[i] + biases_below[i + 1]) / 2 for i in range(last)]
    biases.append(biases_above[-1])
    return DeepBoltzmannMachine(weights, biases, **kwargs)
