"""The sequential direction of a MADE in about one network pass (degree-blocked evaluation)."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

from pyrogen.nn.networks import MADE
from pyrogen.util import check_tensor

__all__ = ["made_sequential", "unit_degrees"]

# activations with an in-place form (applied to rows of a preallocated buffer)
_INPLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}


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


def _masked(layer, mask_index: int = 0) -> torch.Tensor:
    return layer.weight * layer.mask[mask_index]


class _Structure:
    """What a MADE's sequential solve needs that depends only on its masks and order: the
    units of each layer sorted by degree, the number of units of degree ``<= m`` and, per
    step, the rows each layer computes.

    ``counts[j][m + 1]`` is the number of units of layer ``j`` (0: the inputs in the MADE's
    order) of degree ``<= m``; ``rows[j][k]`` are the rows that consumer ``j`` (1..L: hidden
    layer ``j``, L + 1: the parameters) computes at step ``k``.
    """

    def __init__(self, made: MADE) -> None:
        D, P = made.input_dim, made.num_params
        self.order = made.orders[0]
        self.position = torch.argsort(self.order)
        self.perms, self.counts = [], [[0, *range(D + 1)]]
        for d in unit_degrees(made):
            perm = torch.argsort(d, stable=True)
            ends = torch.searchsorted(d[perm], torch.arange(D + 1, device=d.device), right=True)
            self.perms.append(perm)
            self.counts.append([0, *ends.tolist()])
        self.rows = [None] + [[(c[k], c[k + 1]) for k in range(D)] for c in self.counts[1:]]
        self.rows.append([(k * P, k * P + P) for k in range(D)])
        # rows of the sorted output weight (position, parameter) -> rows of made.output
        p, k = torch.meshgrid(torch.arange(P), self.order.cpu(), indexing="xy")
        self.out_rows = (p * D + k).reshape(-1).to(self.order.device)

    @staticmethod
    def key(made: MADE) -> tuple:
        """Identifies the masks and order (storage, in-place version, device)."""
        buffers = [made.orders, *(m.mask for m in [*made.hidden, made.output])]
        return tuple((b.data_ptr(), b._version, b.device) for b in buffers)

    def weights(self, made: MADE) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The masked weights ``(rows, sources)`` and biases ``(rows, 1)`` of every consumer,
        rows and sources sorted by degree (differentiable)."""
        weights, biases, previous = [], [], self.order
        for layer, perm in zip(made.hidden, self.perms, strict=True):
            weights.append(_masked(layer)[perm][:, previous])
            biases.append(layer.bias[perm][:, None])
            previous = perm
        weights.append(_masked(made.output)[self.out_rows][:, previous])
        biases.append(made.output.bias[self.out_rows][:, None])
        return weights, biases


_STRUCTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _structure(made: MADE) -> _Structure:
    key = _Structure.key(made)
    cached = _STRUCTURES.get(made)
    if cached is None or cached[0] != key:
        cached = _STRUCTURES[made] = (key, _Structure(made))
    return cached[1]


def made_sequential(
    made: MADE,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    target: torch.Tensor,
    context: torch.Tensor | None = None,
    *,
    block_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve an autoregressive system through a MADE, one variable at a time, computing each
    hidden unit once.

    What it computes: for the variables :math:`v_1, \dots, v_D` in the MADE's order (mask set
    0), :math:`(c_{v_k}, l_{v_k}) = \mathrm{solve}(v_k, \theta_{v_k})` with
    :math:`\theta = \mathrm{MADE}(c, \mathrm{context})`, i.e. the fixed point that ``D``
    full passes of ``c <- solve(MADE(c))`` reach. In a MADE a hidden unit of degree ``m``
    depends only on the inputs of degree ``<= m``, so it is computed once, at step ``m``, from
    values that are already final (the context enters the first layer once).

    How: the steps are taken in blocks of ``block_size``. At the start of a block one matrix
    product per layer gives every unit of the block's degrees (and the parameters of its
    variables) the contribution of all units that are already final; each step then adds
    only the contributions of the units computed earlier in the same block (a product over at
    most ``block_size`` degrees) before the nonlinearity. The arithmetic of all ``D`` steps
    is that of one masked network pass, most of it in products as wide as a block, plus ``D``
    small products per layer. Without autograd the units are written in place into
    feature-major buffers whose per-step views are made once and kept for the next call with
    the same MADE and batch size (the weights and masks are read afresh at every call); with
    autograd nothing is written in place.

    Shapes:
        target: ``(*batch, D)``, ``t`` (e.g. the noise of a MAF).
        context: ``(*batch, context_dim)``, broadcast against ``target``.
        step: ``(t_v (n, 1), params (n, 1, num_params)) -> (c_v (n, 1), ladj (n, 1))`` for one
            variable over the flattened batch of size ``n``.
        returns: ``c`` and ``ladj``, both ``(*batch, D)``.
    Args:
        block_size: steps per block (>= 1); the results do not depend on it beyond rounding.
    Raises:
        ValueError: the MADE one-hot encodes categorical inputs (``input_categories``); a
            context is missing or given to a MADE without one; ``block_size < 1``.
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
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    D = made.input_dim
    batch = target.shape[:-1]
    if context is not None:
        # the checks of the network's own forward (the cheap direction): shape, dtype, device,
        # and finite entries while validation is on
        check_finite = False if torch._C._are_functorch_transforms_active() else None
        check_tensor(
            context,
            "context",
            torch.Size([made.context_dim]),
            like=made.output.weight,
            check_finite=check_finite,
        )
        batch = torch.broadcast_shapes(batch, context.shape[:-1])
        context = context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
    n = batch.numel()
    s = _structure(made)
    flat = target.expand(*batch, D).reshape(n, D)
    if torch.is_grad_enabled():
        c, ladj = _solve_autograd(s, made, step, flat, context, block_size)
    else:
        c, ladj = _buffers(s, made, n, block_size, context is not None).solve(step, flat, context)
    c = c.index_select(0, s.position).T.reshape(*batch, D)
    return c, ladj.index_select(0, s.position).T.reshape(*batch, D)


def _blocks(D: int, block_size: int):
    return [(k0, min(k0 + block_size, D)) for k0 in range(0, D, block_size)]


def _known(s: _Structure, j: int, k0: int) -> int:
    """Sources of consumer ``j`` final when the block starting at step ``k0`` begins (the
    inputs of degree ``<= k0``, the hidden units of degree ``< k0``)."""
    return s.counts[j - 1][k0 + 1] if j == 1 else s.counts[j - 1][k0]


def _solve_autograd(s, made, step, flat, context, block_size):
    """The blocked solve with autograd: new tensors only, concatenated where read. Returns
    ``c`` and ``ladj`` feature-major ``(D, n)`` in the MADE's order."""
    D, n, L = made.input_dim, flat.shape[0], len(s.perms)
    weights, biases = s.weights(made)
    if made.context_layer is not None:
        biases[0] = biases[0] + made.context_layer(context)[:, s.perms[0]].T
    targets = flat.T.index_select(0, s.order)
    values = [[] for _ in range(L + 1)]  # per source layer: its blocks (start, rows x n)

    def read(j: int, a: int, b: int) -> torch.Tensor:
        parts = [v[max(a - r, 0) : b - r] for r, v in values[j] if r < b and r + len(v) > a]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    ladjs = []
    for k0, k1 in _blocks(D, block_size):
        pre, known = [None] * (L + 2), [0] * (L + 2)
        for j in range(1, L + 2):
            r0, r1 = s.rows[j][k0][0], s.rows[j][k1 - 1][1]
            known[j] = _known(s, j, k0)
            b = biases[j - 1][r0:r1].expand(r1 - r0, n)
            if r1 > r0 and known[j]:
                b = torch.addmm(b, weights[j - 1][r0:r1, : known[j]], read(j - 1, 0, known[j]))
            pre[j] = (r0, b)
        for k in range(k0, k1):
            for j in range(1, L + 2):
                lo, hi = s.rows[j][k]
                if hi == lo:
                    continue
                r0, block = pre[j]
                v, need = block[lo - r0 : hi - r0], s.counts[j - 1][k + 1]
                if need > known[j]:
                    w = weights[j - 1][lo:hi, known[j] : need]
                    v = torch.addmm(v, w, read(j - 1, known[j], need))
                if j <= L:
                    values[j].append((lo, made.activation(v)))
            column, ladj = step(targets[k][:, None], v.T[:, None, :])
            values[0].append((k, column.T))
            ladjs.append(ladj.T)
    return torch.cat([v for _, v in values[0]]), torch.cat(ladjs)


class _Buffers:
    """The blocked solve without autograd, in preallocated feature-major buffers written in
    place, with every per-step view made once (kept for the next call of the same MADE and
    batch size; the weights are copied in again at every call)."""

    def __init__(self, s: _Structure, made: MADE, n: int, block_size: int, context: bool):
        D, L, like = made.input_dim, len(s.perms), made.output.weight
        self.s = s
        weights, biases = s.weights(made)
        self.weights = [w.detach().clone() for w in weights]
        self.biases = [b.detach().clone() for b in biases]
        if context:
            self.biases[0] = like.new_empty(len(s.perms[0]), n)
        self.targets = like.new_empty(D, n)
        self.values = [like.new_empty(D, n)] + [like.new_empty(len(p), n) for p in s.perms]
        self.values.append(like.new_empty(len(s.out_rows), n))  # the parameters
        self.inplace = _INPLACE.get(type(made.activation))
        self.activation = made.activation
        self.program = []
        for k0, k1 in _blocks(D, block_size):
            first, steps = [], []
            known = [0] + [_known(s, j, k0) for j in range(1, L + 2)]
            for j in range(1, L + 2):
                r0, r1 = s.rows[j][k0][0], s.rows[j][k1 - 1][1]
                if r1 > r0:
                    w = self.weights[j - 1][r0:r1, : known[j]] if known[j] else None
                    src = self.values[j - 1][: known[j]]
                    first.append((self.biases[j - 1][r0:r1], w, src, self.values[j][r0:r1]))
            for k in range(k0, k1):
                ops = []
                for j in range(1, L + 2):
                    lo, hi = s.rows[j][k]
                    need = s.counts[j - 1][k + 1]
                    if hi == lo:
                        continue
                    w = src = None
                    if need > known[j]:
                        w = self.weights[j - 1][lo:hi, known[j] : need]
                        src = self.values[j - 1][known[j] : need]
                    ops.append((self.values[j][lo:hi], w, src, j <= L))
                params = self.values[L + 1][k * made.num_params : (k + 1) * made.num_params]
                t = self.targets[k][:, None]
                steps.append((ops, t, params.T[:, None, :], self.values[0][k : k + 1]))
            self.program.append((first, steps))

    def solve(self, step, flat: torch.Tensor, context: torch.Tensor | None):
        s, made = self.s, self.made
        weights, biases = s.weights(made)
        for buffer, value in zip(self.weights + self.biases, weights + biases, strict=True):
            buffer.copy_(value)
        if context is not None:
            ctx = made.context_layer(context)[:, s.perms[0]].T
            torch.add(made.hidden[0].bias[s.perms[0]][:, None], ctx, out=self.biases[0])
        torch.index_select(flat.T, 0, s.order, out=self.targets)
        inplace, activation, ladjs = self.inplace, self.activation, []
        for first, steps in self.program:
            for b, w, src, out in first:
                if w is None:
                    out.copy_(b)
                else:
                    torch.addmm(b, w, src, out=out)
            for ops, t, params, column in steps:
                for out, w, src, hidden in ops:
                    if w is not None:
                        out.addmm_(w, src)
                    if hidden:
                        if inplace is not None:
                            inplace(out)
                        else:
                            out.copy_(activation(out))
                c, ladj = step(t, params)
                column.copy_(c.T)
                ladjs.append(ladj.T)
        return self.values[0].clone(), torch.cat(ladjs)


_BUFFERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _buffers(s: _Structure, made: MADE, n: int, block_size: int, context: bool) -> _Buffers:
    w = made.output.weight
    key = (id(s), n, block_size, context, w.dtype, w.device)
    cached = _BUFFERS.get(made)
    if cached is None or cached[0] != key:
        cached = _BUFFERS[made] = (key, _Buffers(s, made, n, block_size, context))
        cached[1].made = made
    return cached[1]
