"""Conditioner networks: a dense MLP and the MADE masked MLP."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pyrogen.util import check_tensor

__all__ = ["MADE", "BoundContext", "DenseNN", "made_degrees"]


def _check_dims(input_dim: int, hidden_dims: Sequence[int], context_dim: int) -> tuple[int, ...]:
    if not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
    if isinstance(hidden_dims, int) or not all(isinstance(h, int) and h >= 1 for h in hidden_dims):
        raise ValueError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}")
    if not isinstance(context_dim, int) or context_dim < 0:
        raise ValueError(f"context_dim must be a non-negative int, got {context_dim!r}")
    return tuple(hidden_dims)


def _cat_context(x: torch.Tensor, context: torch.Tensor | None, context_dim: int) -> torch.Tensor:
    """Broadcast the batch shapes of ``x`` and ``context`` and return ``context`` expanded."""
    if context is None:
        raise ValueError(f"this network needs a context of shape (*batch, {context_dim})")
    check_tensor(context, "context", torch.Size([context_dim]))
    batch = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
    return context.expand((*batch, context_dim))


class DenseNN(nn.Module):
    """Multilayer perceptron used as a coupling conditioner, optionally taking a context.

    Computes ``out = L_k(act(... act(L_1([x, context]))))``. The last layer is initialised to
    zero, so a flow layer built on it is the identity at initialization.

    Shapes:
        x: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)`` (broadcast against x).
        out: ``(*batch, output_dim)``.
    Args:
        input_dim: size of the input.
        hidden_dims: sizes of the hidden layers.
        output_dim: size of the output.
        context_dim: size of the context (0: unconditional).
        activation: hidden nonlinearity (an ``nn.Module`` class).
    Raises:
        ValueError: non-positive sizes; a missing or mis-shaped context.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        *,
        context_dim: int = 0,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden_dims = _check_dims(input_dim, hidden_dims, context_dim)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"output_dim must be a positive int, got {output_dim!r}")
        self.input_dim, self.output_dim, self.context_dim = input_dim, output_dim, context_dim
        sizes = (input_dim + context_dim, *hidden_dims)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(sizes[-1], output_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.context_dim:
            context = _cat_context(x, context, self.context_dim)
            x = torch.cat([x.expand(context.shape[:-1] + x.shape[-1:]), context], dim=-1)
        return self.net(x)


def made_degrees(input_dim: int, order: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Degrees ``1..input_dim`` of the MADE inputs for an autoregressive ``order``.

    ``order`` lists the input indices from first to last in the autoregressive ordering:
    ``"natural"`` is ``0, 1, ..., D-1``, ``"reversed"`` the opposite, ``"random"`` a random
    permutation from torch's global generator, or an explicit permutation. Returns a long tensor
    ``degrees`` of shape ``(input_dim,)`` with ``degrees[order[k]] = k + 1``.

    Raises:
        ValueError: ``order`` is neither a known name nor a permutation of ``range(input_dim)``.
    """
    if isinstance(order, str):
        if order == "natural":
            perm = torch.arange(input_dim)
        elif order == "reversed":
            perm = torch.arange(input_dim - 1, -1, -1)
        elif order == "random":
            perm = torch.randperm(input_dim)
        else:
            raise ValueError(
                f"order must be 'natural', 'reversed', 'random' or a permutation, got {order!r}"
            )
    else:
        perm = torch.as_tensor(order, dtype=torch.long)
        if perm.shape != (input_dim,) or not torch.equal(
            perm.sort().values, torch.arange(input_dim)
        ):
            raise ValueError(
                f"order must be a permutation of range({input_dim}), got {perm.tolist()}"
            )
    degrees = torch.empty(input_dim, dtype=torch.long)
    degrees[perm] = torch.arange(1, input_dim + 1)
    return degrees


class _MaskedLinear(nn.Linear):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation: an autoregressive MLP.

    Output ``out[..., :, i]`` depends only on the inputs that come before ``i`` in ``order``
    (and on the context, which feeds every unit of the first hidden layer unmasked). Hidden
    unit degrees cycle through ``1..D-1``; a unit of degree ``m`` sees inputs of degree
    ``<= m`` and feeds outputs of degree ``> m`` (Germain et al. 2015, Eq. 12-13). The last
    layer is initialised to zero (identity flows at initialization).

    Cost: one pass gives all ``D`` conditionals.

    Shapes:
        x: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
        out: ``(*batch, num_params, input_dim)`` (parameter-major, so ``out[..., k, :]`` is
            contiguous).
    Args:
        input_dim: ``D``, the number of autoregressive variables.
        hidden_dims: sizes of the hidden layers (each should be ``>= D - 1`` so that every
            conditional can depend on all its predecessors).
        num_params: outputs per variable (2 for an affine flow: shift, log-scale).
        order: autoregressive order, see :func:`made_degrees`.
        context_dim: size of the context (0: unconditional).
        activation: hidden nonlinearity (an ``nn.Module`` class).
    Raises:
        ValueError: non-positive sizes, a bad ``order``, a missing or mis-shaped context.
    References:
        Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for Distribution
        Estimation. https://arxiv.org/abs/1502.03509
    Example:
        >>> made = MADE(3, [8], num_params=2)
        >>> made(torch.randn(5, 3)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        *,
        num_params: int = 2,
        order: str | Sequence[int] | torch.Tensor = "natural",
        context_dim: int = 0,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden_dims = _check_dims(input_dim, hidden_dims, context_dim)
        if not hidden_dims:
            raise ValueError("hidden_dims must have at least one layer")
        if not isinstance(num_params, int) or num_params < 1:
            raise ValueError(f"num_params must be a positive int, got {num_params!r}")
        self.input_dim, self.num_params, self.context_dim = input_dim, num_params, context_dim
        degrees_in = made_degrees(input_dim, order)
        self.register_buffer("degrees", degrees_in)
        cycle = max(input_dim - 1, 1)
        degrees = [degrees_in]
        for h in hidden_dims:
            degrees.append(torch.arange(h) % cycle + 1)
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(degrees):
            layers.append(_MaskedLinear((d_out[:, None] >= d_in[None, :]).long()))
        out_mask = (degrees_in[:, None] > degrees[-1][None, :]).long()
        last = _MaskedLinear(out_mask.repeat(num_params, 1))  # parameter-major rows
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.hidden = nn.ModuleList(layers)
        self.output = last
        self.activation = activation()
        self.context_layer = (
            nn.Linear(context_dim, hidden_dims[0], bias=False) if context_dim else None
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden[0](x)
        if self.context_layer is not None:
            context = _cat_context(x, context, self.context_dim)
            h = h + self.context_layer(context)
        h = self.activation(h)
        for layer in self.hidden[1:]:
            h = self.activation(layer(h))
        out = self.output(h)
        return out.reshape((*out.shape[:-1], self.num_params, self.input_dim))


class BoundContext(nn.Module):
    """A conditioner with its context fixed: ``BoundContext(net, c)(x) == net(x, c)``.

    Used by ``ConditionalX.condition(context)`` so that the returned plain transform shares the
    network's parameters. Attributes of ``net`` (``input_dim``, ``output_dim`` ...) are readable
    through it.

    Shapes:
        x: as ``net``'s input.  context: ``(*batch, context_dim)``.
    """

    def __init__(self, net: nn.Module, context: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.context = context

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.context)
