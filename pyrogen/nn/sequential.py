"""The sequential direction of a MADE in about one network pass (degree-blocked evaluation)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pyrogen.nn.networks import MADE

__all__ = ["made_sequential", "unit_degrees"]


def unit_degrees(made: MADE, mask_index: int = 0) -> list[torch.Tensor]:
    """The largest input degree each unit of each hidden layer depends on (0: none).

    A unit of effective degree ``m`` is a function of the inputs of degree ``<= m`` only (the
    masks' nominal degrees bound it from above), so it can be computed as soon as those inputs
    are known.

    Shapes:
        returns one long tensor ``(hidden_dims[l],)`` per hidden layer.
    """
    degree = torch.argsort(made.orders[mask_index]) + 1
    out = []
    for layer in made.hidden:
        mask = layer.mask[mask_index].to(torch.long)
        degree = (mask * degree).amax(-1)
        out.append(degree)
    return out


class _Prefix:
    """Units filled in blocks; ``prefix(e)`` is the first ``e`` of them. Without autograd the
    blocks are written into one buffer; with it they are concatenated (no in-place writes)."""

    def __init__(self, n: int, width: int, like: torch.Tensor, grad: bool) -> None:
        self.grad = grad
        self.blocks: list[torch.Tensor] = []
        self.buffer = None if grad else like.new_empty(n, width)
        self.size, self.cat = 0, None

    def append(self, block: torch.Tensor) -> None:
        if self.grad:
            self.blocks.append(block)
            self.cat = None
        else:
            self.buffer[:, self.size : self.size + block.shape[1]] = block
        self.size += block.shape[1]

    def prefix(self, end: int) -> torch.Tensor:
        if not self.grad:
            return self.buffer[:, :end]
        if self.cat is None:
            self.cat = torch.cat(self.blocks, -1)
        return self.cat[:, :end]


def made_sequential(
    made: MADE,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    target: torch.Tensor,
    context: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve an autoregressive system through a MADE, one variable at a time, computing each
    hidden unit once.

    What it computes: for the variables :math:`v_1, \dots, v_D` in the MADE's order (mask set
    0), :math:`(c_{v_k}, l_{v_k}) = \mathrm{solve}(v_k, \theta_{v_k})` with
    :math:`\theta = \mathrm{MADE}(c, \mathrm{context})`, i.e. the fixed point that ``D``
    full passes of ``c <- solve(MADE(c))`` reach. In a MADE a hidden unit of degree ``m``
    depends only on the inputs of degree ``<= m``, so it is computed once, right after the
    ``m``-th variable, from values that are already final (the context enters the first layer
    once): the arithmetic of all ``D`` steps adds up to one network pass, plus ``D`` small
    steps per layer.

    Shapes:
        target: ``(*batch, D)``, ``t`` (e.g. the noise of a MAF).
        context: ``(*batch, context_dim)``, broadcast against ``target``.
        step: ``(t_v (n, 1), params (n, 1, num_params)) -> (c_v (n, 1), ladj (n, 1))`` for one
            variable over the flattened batch of size ``n``.
        returns: ``c`` and ``ladj``, both ``(*batch, D)``.
    Raises:
        ValueError: the MADE one-hot encodes categorical inputs (``input_categories``); a
            context is missing or given to a MADE without one.
    References:
        Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for Distribution
        Estimation. https://arxiv.org/abs/1502.03509
    Example:
        >>> made = MADE(3, [8], num_params=1)
        >>> _ = torch.nn.init.normal_(made.output.weight)
        >>> x = torch.randn(4, 3)
        >>> c, _ = made_sequential(made, lambda t, p: (t + p[..., 0], 0 * t), x)
        >>> torch.allclose(c, x + made(c)[..., 0, :], atol=1e-6)
        True
    """
    if made.input_categories:
        raise ValueError("made_sequential needs real inputs (input_categories=None)")
    if (context is None) != (made.context_layer is None):
        raise ValueError(
            f"context must be given exactly when the MADE has context_dim > 0 "
            f"(context_dim={made.context_dim}, context {'missing' if context is None else 'given'})"
        )
    D, P = made.input_dim, made.num_params
    batch = target.shape[:-1]
    if context is not None:
        batch = torch.broadcast_shapes(batch, context.shape[:-1])
        context = context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
    n = batch.numel()
    flat = target.expand(*batch, D).reshape(n, D)
    grad = torch.is_grad_enabled()
    order = made.orders[0]
    degrees = unit_degrees(made)
    # each layer's units sorted by degree; ends[l][k] = number of units of degree <= k
    perms = [torch.argsort(d, stable=True) for d in degrees]
    ends = [
        torch.searchsorted(d[p], torch.arange(D + 1), right=True).tolist()
        for d, p in zip(degrees, perms, strict=True)
    ]
    weights, biases, previous = [], [], order
    for layer, perm in zip(made.hidden, perms, strict=True):
        w = layer.weight * layer.mask[0]
        weights.append(w[perm][:, previous])
        biases.append(layer.bias[perm].expand(n, -1))
        previous = perm
    if made.context_layer is not None:
        biases[0] = biases[0] + made.context_layer(context)[:, perms[0]]
    w_out = (made.output.weight * made.output.mask[0]).reshape(P, D, -1)[:, :, previous]
    b_out = made.output.bias.reshape(P, D)
    like = made.output.weight
    inputs = _Prefix(n, D, like, grad)
    hidden = [_Prefix(n, w.shape[0], like, grad) for w in weights]
    columns, ladjs = [None] * D, [None] * D

    def fill(k: int) -> None:  # the units of degree k, once the first k variables are known
        source, width = inputs, k
        for layer, (w, b, end) in enumerate(zip(weights, biases, ends, strict=True)):
            lo, hi = end[k - 1] if k else 0, end[k]
            if hi > lo:
                pre = b[:, lo:hi]
                if width:
                    pre = torch.addmm(pre, source.prefix(width), w[lo:hi, :width].T)
                hidden[layer].append(made.activation(pre))
            source, width = hidden[layer], end[k]

    fill(0)
    for k in range(D):
        v = int(order[k])
        e = ends[-1][k]
        params = b_out[:, v].expand(n, -1)
        if e:
            params = torch.addmm(params, hidden[-1].prefix(e), w_out[:, v, :e].T)
        column, ladj = step(flat[:, v : v + 1], params[:, None, :])
        columns[v], ladjs[v] = column[:, 0], ladj[:, 0]
        if k < D - 1:
            inputs.append(columns[v][:, None])
            fill(k + 1)
    c = torch.stack(columns, -1).reshape(*batch, D)
    return c, torch.stack(ladjs, -1).reshape(*batch, D)
