"""Contrastive divergence for a Bernoulli RBM in closed form: the step that
:class:`~pyrogen.infer.ContrastiveDivergence` takes without tracing the model once it has seen
that the model is one fully observed ``BernoulliRBM`` site."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch
import torch.nn.functional as F

from pyrogen.distributions import BernoulliRBM
from pyrogen.util import bernoulli_draw

__all__ = [
    "GibbsKernel",
    "RBMSite",
    "find_rbm_site",
    "rbm_free_energy_gap",
    "read_params",
    "signature",
]

_SCALARS = (int, float, str, bool, type(None))


def signature(args: tuple, kwargs: dict) -> tuple | None:
    """What a call's structure may depend on: each tensor argument's shape, dtype and device,
    and the value of every other argument (``None`` when one is not a plain scalar)."""
    out = []
    for key, value in [*enumerate(args), *sorted(kwargs.items())]:
        if isinstance(value, torch.Tensor):
            out.append((key, tuple(value.shape), value.dtype, value.device, value.requires_grad))
        elif isinstance(value, _SCALARS):
            out.append((key, type(value), value))
        else:
            return None
    return tuple(out)


class RBMSite(NamedTuple):
    """A model that is one observed ``BernoulliRBM`` site, as seen in one traced call.

    Attributes:
        model: the model callable it was traced from.
        signature: :func:`signature` of that call.
        name: the site's name.
        source: where the observed value came from: ``(0, i)`` for ``args[i]``, ``(1, key)``
            for ``kwargs[key]``.
        params: every ``pyro.param`` name the model read, in order (all handed to the
            optimizer, as when the model runs).
        weight, visible_bias, hidden_bias: the names of the RBM's parameters.
        scale: the site's scale (subsampling), a float.
        support: the RBM's support, for the data check.
    """

    model: Callable
    signature: tuple
    name: str
    source: tuple
    params: tuple[str, ...]
    weight: str
    visible_bias: str
    hidden_bias: str
    scale: float
    support: object

    def data(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The observed value of a call with the same signature."""
        kind, key = self.source
        return args[key] if kind == 0 else kwargs[key]


def _same(t: torch.Tensor, p: torch.Tensor) -> bool:
    """``t`` is ``p`` or a full view of it (the distribution's ``expand`` to its own shape)."""
    return t is p or (
        t._base is p
        and t.shape == p.shape
        and t.stride() == p.stride()
        and t.storage_offset() == p.storage_offset()
    )


def find_rbm_site(trace, model: Callable, args: tuple, kwargs: dict) -> RBMSite | None:
    """The :class:`RBMSite` of a traced call, or ``None`` unless all of these hold: the trace
    has exactly one sample site besides plates' subsample sites, observed, with a
    ``BernoulliRBM`` of unbatched parameters that are unconstrained ``pyro.param`` values
    themselves (or full views of them), no mask and a constant scale; its value is one of the
    call's tensor arguments (the same object, of shape ``(batch, n_visible)``); and
    :func:`signature` is defined."""
    key = signature(args, kwargs)
    if key is None:
        return None
    samples = [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and type(site["fn"]).__name__ != "_Subsample"
    ]
    if len(samples) != 1:
        return None
    name, site = samples[0]
    fn, value = site["fn"], site["value"]
    if type(fn) is not BernoulliRBM or not site["is_observed"] or site["mask"] is not None:
        return None
    if fn.weight.dim() != 2 or value.dim() != 2 or isinstance(site["scale"], torch.Tensor):
        return None
    params = {}
    for pname, node in trace.nodes.items():
        if node["type"] == "param":
            params.setdefault(pname, node["value"])
    names = {}
    for attr in ("weight", "visible_bias", "hidden_bias"):
        tensor = getattr(fn, attr)
        match = [n for n, p in params.items() if _same(tensor, p) and p.unconstrained() is p]
        if len(match) != 1:
            return None
        names[attr] = match[0]
    sources = [(0, i) for i, a in enumerate(args) if a is value]
    sources += [(1, k) for k, a in kwargs.items() if a is value]
    if len(sources) != 1:
        return None
    return RBMSite(
        model, key, name, sources[0], tuple(params), **names, scale=float(site["scale"]),
        support=fn.support,
    )  # fmt: skip


def _gibbs(v, weight, visible_bias, hidden_bias, num_steps: int) -> torch.Tensor:
    """``BernoulliRBM.markov_chain``: block Gibbs sweeps, the same draws in the same order."""
    v = v.detach() if v.dtype == weight.dtype else v.detach().to(weight.dtype)
    for _ in range(num_steps):
        h = bernoulli_draw(torch.sigmoid(torch.addmm(hidden_bias, v, weight)))
        v = bernoulli_draw(torch.sigmoid(torch.addmm(visible_bias, h, weight.T)))
    return v


class GibbsKernel:
    """The Markov chain of a ``BernoulliRBM`` with the given parameters, without building the
    distribution (``markov_chain`` and ``event_shape``, what the CD loss asks of a model)."""

    def __init__(self, weight, visible_bias, hidden_bias) -> None:
        self.weight, self.visible_bias, self.hidden_bias = weight, visible_bias, hidden_bias
        self.event_shape = torch.Size([weight.shape[0]])

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        with torch.no_grad():
            return _gibbs(value, self.weight, self.visible_bias, self.hidden_bias, num_steps)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v)` in nats, shape ``v.shape[:-1]``."""
        with torch.no_grad():
            v = v.to(self.weight.dtype)
            pre = self.hidden_bias + v @ self.weight
            return -(v @ self.visible_bias) - F.softplus(pre).sum(-1)


def rbm_free_energy_gap(
    data: torch.Tensor,
    negatives: torch.Tensor,
    weight: torch.Tensor,
    visible_bias: torch.Tensor,
    hidden_bias: torch.Tensor,
    scale: float,
    *,
    grads: bool = True,
):
    r"""The CD surrogate of a ``BernoulliRBM`` site and its gradient in closed form (no autograd).

    What it computes: with :math:`F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j +
    (v^\top W)_j)`, :math:`p(v) = \sigma(c + W^\top v)`, ``B`` data rows and ``M`` negatives,

    .. math::
        S = s \Big(\sum_n F(v^+_n) - \frac BM \sum_m F(v^-_m)\Big), \quad
        \nabla_W S = s\Big(-\sum_n v^+_n p(v^+_n)^\top + \frac BM \sum_m v^-_m
        p(v^-_m)^\top\Big),

    :math:`\nabla_b S = s(-\sum_n v^+_n + \frac BM \sum_m v^-_m)`, :math:`\nabla_c S =
    s(-\sum_n p(v^+_n) + \frac BM \sum_m p(v^-_m))`.

    Shapes:
        data: ``(B, V)``.  negatives: ``(M, V)``.  weight: ``(V, H)``.  returns ``S`` (``()``)
        and, with ``grads``, ``(grad_weight, grad_visible_bias, grad_hidden_bias)``.
    """
    with torch.no_grad():
        # one pass over data and negatives stacked, each row weighted by its coefficient in S
        rows = torch.cat([data, negatives])
        rows = rows if rows.dtype == weight.dtype else rows.to(weight.dtype)
        num_pos, num_neg = data.shape[0], negatives.shape[0]
        unit, coef = _coefficients(num_pos, num_neg, float(scale), rows.dtype, rows.device)
        pre = torch.addmm(hidden_bias, rows, weight)
        # visible units are binary: -1 per data row and B / M per negative sum exactly when
        # B / M is an integer or a power of two (1 in the usual case), so that equal counts give
        # exactly 0
        grad_b = torch.mv(rows.T, unit).mul_(scale)
        value = torch.dot(grad_b, visible_bias) + (coef.T @ F.softplus(pre)).sum()
        if not grads:
            return value
        weighted = torch.sigmoid(pre).mul_(coef)  # coefficient times p(v), (B + M, H)
        grad_c = weighted.sum(0)
        grad_w = (weighted.T @ rows).T  # the (H, V) product: BLAS's faster layout here
    return value, (grad_w, grad_b, grad_c)


@functools.lru_cache(maxsize=16)
def _coefficients(num_pos: int, num_neg: int, scale: float, dtype, device):
    """The rows' coefficients in :func:`rbm_free_energy_gap`'s ``S``: ``unit`` of shape
    ``(B + M,)``, ``-1`` for the data and ``B / M`` for the negatives, and ``coef = scale *
    unit`` of shape ``(B + M, 1)`` (cached: the same for every step of a training run; never
    written to)."""
    unit = torch.full((num_pos + num_neg,), -1.0, dtype=dtype, device=device)
    unit[num_pos:] = num_pos / num_neg
    return unit, (scale * unit)[:, None]


def read_params(site: RBMSite) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Read every parameter the model reads through ``pyro.param`` (so that ``SVI`` hands them
    all to its optimizer, as when the model runs); return the RBM's weight and biases, or
    ``None`` when one of them is no longer unconstrained (it was re-created with a
    constraint)."""
    values = {name: pyro.param(name) for name in site.params}
    rbm = values[site.weight], values[site.visible_bias], values[site.hidden_bias]
    return rbm if all(p.unconstrained() is p for p in rbm) else None
