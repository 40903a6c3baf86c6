"""Training deep Boltzmann machines: the mean-field variational bound with persistent chains."""

from __future__ import annotations

from collections.abc import Callable

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO

from pyrogen.distributions import DeepBoltzmannMachine
from pyrogen.util import check_count

__all__ = ["MeanFieldPCD"]


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
            sites.
        FloatingPointError: a non-finite surrogate, before any gradient is written.
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
        """Restore the chains saved by :meth:`state_dict`."""
        self.chains = {name: [s.clone() for s in c] for name, c in state["chains"].items()}

    def _sites(self, model: Callable, args, kwargs):
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
                sites.append((name, dbm, site["value"], site["scale"]))
        if not sites:
            raise ValueError("the model has no observed site with a DeepBoltzmannMachine")
        return sites

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
        chains)."""
        return self._surrogate(model, args, kwargs)[0]

    def _surrogate(self, model: Callable, args, kwargs):
        surrogate, value = None, 0.0
        for name, dbm, data, scale in self._sites(model, args, kwargs):
            data = data.to(dbm.like.dtype)
            with torch.no_grad():
                mu = dbm.mean_field(data)
            chains = dbm.gibbs_chain(self._chains(name, dbm, data), self.num_gibbs_steps)
            self.chains[name] = chains
            positive = dbm.energy(data, *mu)
            negative = dbm.energy(*chains)
            term = scale * (positive.sum() - positive.numel() * negative.mean())
            surrogate = term if surrogate is None else surrogate + term
            value += float(self._free_energy(dbm, data, mu, scale).detach())
        return surrogate, value

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Back-propagate the learning signal into the parameters; return the variational free
        energy (nats).

        Raises:
            FloatingPointError: a non-finite surrogate (nothing is back-propagated).
        """
        surrogate, value = self._surrogate(model, args, kwargs)
        if not bool(torch.isfinite(surrogate.detach())):
            raise FloatingPointError(f"MeanFieldPCD: non-finite surrogate {float(surrogate)}")
        if surrogate.requires_grad:
            surrogate.backward()
        return value
