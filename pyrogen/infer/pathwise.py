"""The gradient of a flow guide's log-density with respect to its own draw, from the base noise
and the cheap direction only (the path derivative of sticking-the-landing and DReG).

:mod:`pyrogen.infer.path_gradient` computes the same score for AutoFlow by another method (each
layer's Jacobian in closed form, for few draws); this module's degree-blocked solve needs no
``D x D`` matrix per draw, for many draws (see that module's docstring)."""

from __future__ import annotations

import torch
from torch.distributions import Independent, TransformedDistribution

from pyrogen.nn.networks import MADE
from pyrogen.transforms.autoregressive import Autoregressive
from pyrogen.transforms.base import Bijector, Compose, Conditional, Conditioned

__all__ = ["log_prob_grad", "path_log_prob"]


def _leaves(t):
    if isinstance(t, Conditioned):
        yield from _leaves(t.layer)
    elif isinstance(t, Compose):
        for part in t:
            yield from _leaves(part)
    else:
        yield t


def _flow(fn):
    """``(TransformedDistribution, number of extra event dims)`` under ``Independent`` wrappers,
    or ``(None, 0)``."""
    extra = 0
    while isinstance(fn, Independent):
        extra += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return (fn, extra) if isinstance(fn, TransformedDistribution) else (None, 0)


def log_prob_grad(fn, value: torch.Tensor) -> torch.Tensor | None:
    r"""The gradient :math:`\partial \log q(z) / \partial z` at ``z = value`` with ``q``'s
    parameters held fixed, for a flow distribution ``q`` whose autoregressive layers have the
    cheap forward (IAF), without running any layer's sequential inverse.

    What it computes: for :math:`z = f_L \circ \dots \circ f_1(\epsilon)`, with
    :math:`s_0 = \nabla_\epsilon \log p_0(\epsilon)` and, layer by layer,
    :math:`s_l = (s_{l-1} - \nabla_x \log|\det J_l(x)|)\, J_l(x)^{-1}` (the chain rule for
    :math:`\log q_l(f_l(x)) = \log q_{l-1}(x) - \log|\det J_l(x)|`), it returns :math:`s_L`.
    The base noise :math:`\epsilon` is the round trip of the draw (served by the layers' cache
    when ``value`` is the very tensor ``q`` sampled, otherwise computed by one inverse); the
    intermediate values are recomputed in the cheap direction. For an autoregressive layer with
    the cheap forward, :math:`J_l` is triangular in the MADE's order and the row-vector solve
    :math:`r J_l = v` runs through the transposed network by units of decreasing degree, each
    unit's back-propagated value computed once: the arithmetic of one backward pass plus ``D``
    small steps. Any other layer contributes the vector-Jacobian product of its inverse.

    Cost: about two MADE passes per autoregressive layer and no sequential pass of the network,
    against ``D`` passes (or one degree-blocked sequential pass and its backward) for
    differentiating ``q.log_prob(value.detach())``.

    Shapes:
        value: ``sample_shape + batch_shape + event_shape``; returns the same shape.
    Args:
        fn: a distribution; ``TransformedDistribution`` (possibly under ``Independent``) over
            pyrogen layers, at least one of them an autoregressive layer with
            ``cheap="forward"`` and none with ``cheap="inverse"``.
        value: a draw of ``fn``.
    Returns:
        the gradient (no graph), or ``None`` when ``fn`` is not such a flow (differentiate
        ``fn.log_prob(value.detach())`` instead).
    References:
        Roeder, Wu, Duvenaud (2017). Sticking the Landing. https://arxiv.org/abs/1703.09194
        Vaitl, Nicoli, Nakajima, Kessel (2022). Gradients should stay on path: better estimators
        of the reverse- and forward KL divergence for normalizing flows.
        https://arxiv.org/abs/2207.08219
    Example:
        >>> from pyrogen import flows
        >>> import pyro.distributions as dist
        >>> q = dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1),
        ...                                  [flows.iaf(3, num_layers=2)])
        >>> z = q.rsample((4,))
        >>> log_prob_grad(q, z).shape
        torch.Size([4, 3])
    """
    flow, _ = _flow(fn)
    if flow is None:
        return None
    leaves = [leaf for t in flow.transforms for leaf in _leaves(t)]
    autoregressive = [leaf for leaf in leaves if isinstance(leaf, Autoregressive)]
    if not any(leaf.cheap == "forward" for leaf in autoregressive) or any(
        leaf.cheap == "inverse" or leaf.conditioner.input_categories for leaf in autoregressive
    ):
        return None
    with torch.enable_grad():
        x = value
        for t in reversed(flow.transforms):
            x = t.inv(x)  # served by the round-trip cache for the draw itself
        x = x.detach().requires_grad_()
        (s,) = torch.autograd.grad(flow.base_dist.log_prob(x).sum(), x)
    x = x.detach()
    for t in flow.transforms:
        x, s = _forward_score(t, x, s, None)
    return s.expand(value.shape)


def path_log_prob(fn, value: torch.Tensor, log_prob: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\log q(z)` at ``z = value`` as a tensor whose gradient is the path derivative
    only: :math:`\partial \log q(z)/\partial z \cdot \partial z / \partial \phi` with ``q``'s
    parameters :math:`\phi` stopped (sticking-the-landing; the guide term of DReG).

    For a flow with cheap-forward autoregressive layers it uses :func:`log_prob_grad` (no
    sequential inverse); otherwise it differentiates ``fn.log_prob(value.detach())``.

    Shapes:
        value: ``sample_shape + batch_shape + event_shape``; returns
        ``sample_shape + batch_shape``.
    Args:
        fn, value: a distribution and a reparameterized draw of it.
        log_prob: ``fn.log_prob(value)`` when already computed (saves one evaluation).
    """
    if log_prob is None:
        log_prob = fn.log_prob(value)
    score = log_prob_grad(fn, value)
    if score is not None:
        event_dims = len(fn.event_shape)
        path = score * (value - value.detach())
        path = path.sum(tuple(range(-event_dims, 0))) if event_dims else path
        return log_prob.detach() + path
    at_stopped_draw = fn.log_prob(value.detach())
    return log_prob - (at_stopped_draw - at_stopped_draw.detach())


def _forward_score(t, x, s, context):
    """``(f(x), s_out)``: the layer's output and the score after it (see :func:`log_prob_grad`)."""
    if isinstance(t, Conditioned):
        return _forward_score(t.layer, x, s, t.context)
    if isinstance(t, Compose):
        for part in t:
            x, s = _forward_score(part, x, s, context if isinstance(part, Conditional) else None)
        return x, s
    if isinstance(t, Autoregressive) and t.cheap == "forward":
        return _autoregressive_score(t, x, s, context)
    extra = (context,) if isinstance(t, Conditional) else ()
    with torch.enable_grad():
        if isinstance(t, Bijector):
            y = t.forward_and_ladj(x, *extra)[0].detach().requires_grad_()
            x_of_y, inverse_ladj = t.inverse_and_ladj(y, *extra)
        else:  # a torch transform
            y = t(x).detach().requires_grad_()
            x_of_y = t.inv(y)
            inverse_ladj = -t.log_abs_det_jacobian(x_of_y, y)
        (s_y,) = torch.autograd.grad((s * x_of_y).sum() + inverse_ladj.sum(), y)
    return y.detach(), s_y


def _activation_grads(made: MADE, pres: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    with torch.enable_grad():
        for pre in pres:
            pre = pre.detach().requires_grad_()
            out.append(torch.autograd.grad(made.activation(pre).sum(), pre)[0])
    return out


def _backward_degrees(made: MADE) -> list[torch.Tensor]:
    """Per hidden layer, each unit's *backward degree*: the lowest degree of the outputs it
    reaches, minus one (``D`` when it reaches none). A unit's back-propagated value depends only
    on the outputs of higher degree, and it sees only inputs of degree ``<=`` its backward
    degree (the autoregressive property)."""
    D, P = made.input_dim, made.num_params
    rows = (made.degrees - 1).repeat(P)  # output rows are parameter-major
    out = [torch.where(made.output.mask[0].bool(), rows[:, None], D).amin(0)]
    for lin in reversed(made.hidden[1:]):
        out.insert(0, torch.where(lin.mask[0].bool(), out[0][:, None], D).amin(0))
    return out


def _autoregressive_score(layer: Autoregressive, x, s, context):
    r"""One cheap-forward autoregressive layer: its output and
    :math:`r = (s - \nabla_x \mathrm{ladj})\, J^{-1}`, with
    :math:`J = \mathrm{diag}(\partial y/\partial x) + (\partial y/\partial\theta)(\partial\theta
    /\partial x)` lower triangular in the MADE's order.

    The row-vector solve :math:`r J = v` runs by decreasing degree ``t``: :math:`r_t` needs the
    back-propagated values of the first-layer units that see input ``t``, and a unit's value
    is final once the outputs above its backward degree are solved (:func:`_backward_degrees`).
    The units are sorted by decreasing backward degree, so at step ``t`` the block of backward
    degree ``t`` is computed in every layer, last layer first, from a prefix of the layer above,
    and pushed into the input gradients: the arithmetic of one backward pass plus ``D`` small
    steps.
    """
    made, g = layer.conditioner, layer.transform
    D, P, L = made.input_dim, made.num_params, len(made.hidden)
    with torch.no_grad():
        back = _backward_degrees(made)
        perms = [torch.argsort(b, descending=True, stable=True) for b in back]
        ts = torch.arange(D + 2, device=x.device)
        counts = [(b[None, :] >= ts[:, None]).sum(1).tolist() for b in back]
        # weights with the units in sorted order; inputs and outputs in the variables' order
        weights, biases, previous = [], [], None
        for lin, perm in zip(made.hidden, perms, strict=True):
            w = (lin.weight * lin.mask[0])[perm]
            weights.append(w if previous is None else w[:, previous])
            biases.append(lin.bias[perm])
            previous = perm
        w_out = (made.output.weight * made.output.mask[0])[:, previous]  # (P * D, H_L)
        batch, ctx = x.shape[:-1], None
        if made.context_layer is not None:
            ctx = torch.nn.functional.linear(context, made.context_layer.weight[perms[0]])
            batch = torch.broadcast_shapes(batch, ctx.shape[:-1])
            ctx = ctx.expand(*batch, ctx.shape[-1]).reshape(-1, ctx.shape[-1])
        n = batch.numel()
        xs = x.expand(*batch, D).reshape(n, D)
        s = s.expand(*batch, D).reshape(n, D)
        pres, h = [], xs
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            pre = torch.addmm(b, h, w.T)
            pres.append(pre if i or ctx is None else pre.add_(ctx))
            h = made.activation(pre)
        theta = torch.addmm(made.output.bias, h, w_out.T).reshape(n, P, D).transpose(1, 2)
    act = _activation_grads(made, pres)
    with torch.enable_grad():
        x_leaf = xs.detach().requires_grad_()
        theta_leaf = theta.detach().requires_grad_()
        y, ladj = g.forward(x_leaf, theta_leaf)
        dy_dx, dy_dtheta = torch.autograd.grad(y.sum(), (x_leaf, theta_leaf), retain_graph=True)
        dl_dx, dl_dtheta = torch.autograd.grad(
            ladj.sum(), (x_leaf, theta_leaf), allow_unused=True, materialize_grads=True
        )
    with torch.no_grad():
        # v = s - d ladj / dx: the ladj's dependence through the network is one backward pass
        grad = dl_dtheta.transpose(1, 2).reshape(n, P * D) @ w_out
        for i in range(L - 1, 0, -1):
            grad = (grad * act[i]) @ weights[i]
        v = s - dl_dx - (grad * act[0]) @ weights[0]
        # the solve, variables by decreasing degree
        desc = made.orders[0].flip(0).tolist()
        w_top = w_out.reshape(P, D, -1)[:, desc].transpose(0, 1).reshape(D * P, -1)
        g_theta = dy_dtheta[:, desc].reshape(n, D * P)
        cot = v.new_zeros(n, D * P)  # r_i dy_i / dtheta_i, by decreasing degree
        units = [v.new_zeros(n, w.shape[0]) for w in weights]
        r = v.new_empty(n, D)
        for k, var in enumerate(desc):
            t = D - k  # the variable of degree t; the k of degree > t are solved
            for i in range(L - 1, -1, -1) if k else ():
                lo, hi = counts[i][t + 1], counts[i][t]
                if hi == lo:
                    continue
                if i == L - 1:
                    total = cot[:, : k * P] @ w_top[: k * P, lo:hi]
                else:
                    width = counts[i + 1][t]
                    total = units[i + 1][:, :width] @ weights[i + 1][:width, lo:hi]
                units[i][:, lo:hi] = total.mul_(act[i][:, lo:hi])
                if i == 0:  # push the block into every input's gradient
                    v.sub_(units[0][:, lo:hi] @ weights[0][lo:hi])
            r[:, var] = v[:, var] / dy_dx[:, var]
            cot[:, k * P : (k + 1) * P] = r[:, var, None] * g_theta[:, k * P : (k + 1) * P]
    return y.detach().reshape(*batch, D), r.reshape(*batch, D)
