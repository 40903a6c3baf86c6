"""Conditioner networks: a dense MLP and the MADE masked MLP."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pyrogen.util import check_count, check_module_class, check_tensor

__all__ = ["MADE", "BoundContext", "DenseNN", "made_degrees"]


def _check_dims(input_dim: int, hidden_dims: Sequence[int], context_dim: int) -> tuple[int, ...]:
    check_count(input_dim, "input_dim")
    message = f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}"
    if isinstance(hidden_dims, (numbers.Integral, str)) or not hasattr(hidden_dims, "__iter__"):
        raise ValueError(message)
    dims = tuple(hidden_dims)  # once: a generator is read a single time
    if not all(
        isinstance(h, numbers.Integral) and not isinstance(h, (bool, np.bool_)) and h >= 1
        for h in dims
    ):
        raise ValueError(message)
    check_count(context_dim, "context_dim", minimum=0)
    return tuple(int(h) for h in dims)  # NumPy integers too, as check_count allows


def _validating() -> bool:
    """Whether data-dependent (full-tensor) checks run: Pyro/torch validation on and no
    ``torch.func`` transform active."""
    return (
        torch.distributions.Distribution._validate_args
        and not torch._C._are_functorch_transforms_active()
    )


def check_mask_index(value, num_masks: int, *, allow_none: bool = False) -> int | None:
    """``value`` as a Python ``int`` in ``[0, num_masks)``: an ``int``, any other integral
    number (a NumPy integer) or a 0-d integer tensor (``torch.randint(num_masks, ())``); with
    ``allow_none``, ``None`` is returned as it is.

    Raises:
        TypeError: a bool, a float, a string, or a tensor that is not a 0-d integer tensor.
        ValueError: a value outside ``[0, num_masks)``.
    """
    if value is None and allow_none:
        return None
    expected = "an int" + (" or None" if allow_none else "")
    if isinstance(value, torch.Tensor):
        dtype = value.dtype
        if value.dim() or dtype == torch.bool or dtype.is_floating_point or dtype.is_complex:
            raise TypeError(
                f"mask_index must be {expected} (or a 0-d integer tensor), got a tensor of "
                f"shape {tuple(value.shape)} and dtype {value.dtype}"
            )
        value = value.item()
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"mask_index must be {expected}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if not 0 <= value < num_masks:
        raise ValueError(f"mask_index must be in [0, {num_masks}), got {value}")
    return value


def _check_input(x, name: str, event_shape, like: torch.Tensor) -> None:
    """Cheap per-call check of a network input: a floating tensor of ``like``'s dtype and
    device with the right rightmost sizes (no scan of the values)."""
    check_tensor(x, name, event_shape, like=like, check_finite=False)


def _cat_context(x: torch.Tensor, context: torch.Tensor | None, context_dim: int) -> torch.Tensor:
    """Broadcast the batch shapes of ``x`` and ``context`` and return ``context`` expanded.

    Raises:
        ValueError: a missing context, a wrong last dim, or a batch shape that does not
            broadcast against ``x.shape[:-1]``.
        TypeError: a context that is not a floating tensor of ``x``'s dtype.
    """
    if context is None:
        raise ValueError(f"this network needs a context of shape (*batch, {context_dim})")
    check_finite = False if torch._C._are_functorch_transforms_active() else None
    check_tensor(context, "context", torch.Size([context_dim]), like=x, check_finite=check_finite)
    try:
        batch = torch.broadcast_shapes(x.shape[:-1], context.shape[:-1])
    except RuntimeError as e:
        raise ValueError(
            f"context must have shape (*batch, {context_dim}) with a batch shape that "
            f"broadcasts against x's batch shape {tuple(x.shape[:-1])}, got "
            f"{tuple(context.shape)}"
        ) from e
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
        ValueError: non-positive sizes; a missing or mis-shaped context (a batch shape that
            does not broadcast against ``x``'s).
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
        check_count(output_dim, "output_dim")
        check_module_class(activation, "activation")
        self.input_dim, self.output_dim, self.context_dim = input_dim, output_dim, context_dim
        sizes = (input_dim + context_dim, *hidden_dims)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            # in place after a linear layer (its output is not needed by backward)
            layers += [
                nn.Linear(a, b),
                activation(inplace=True) if activation is nn.ReLU else activation(),
            ]
        last = nn.Linear(sizes[-1], output_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        _check_input(x, "x", (self.input_dim,), self.net[0].weight)
        if self.context_dim:
            context = _cat_context(x, context, self.context_dim)
            x = torch.cat([x.expand(context.shape[:-1] + x.shape[-1:]), context], dim=-1)
        elif context is not None:
            raise ValueError("this network takes no context (context_dim=0), got one")
        return self.net(x)


def made_degrees(
    input_dim: int,
    order: str | Sequence[int] | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Degrees ``1..input_dim`` of the MADE inputs for an autoregressive ``order``.

    ``order`` lists the input indices from first to last in the autoregressive ordering:
    ``"natural"`` is ``0, 1, ..., D-1``, ``"reversed"`` the opposite, ``"random"`` a random
    permutation (from ``generator``, or torch's global one), or an explicit permutation.
    Returns a long tensor ``degrees`` of shape ``(input_dim,)`` with
    ``degrees[order[k]] = k + 1``.

    Raises:
        ValueError: ``order`` is neither a known name nor a permutation of ``range(input_dim)``.
    """
    check_count(input_dim, "input_dim")
    if isinstance(order, str):
        if order == "natural":
            perm = torch.arange(input_dim)
        elif order == "reversed":
            perm = torch.arange(input_dim - 1, -1, -1)
        elif order == "random":
            perm = torch.randperm(input_dim, generator=generator)
        else:
            raise ValueError(
                f"order must be 'natural', 'reversed', 'random' or a permutation, got {order!r}"
            )
    else:
        values = order.tolist() if isinstance(order, torch.Tensor) else list(order)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in values):
            raise ValueError(f"order must be a permutation of range({input_dim}), got {values}")
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
    """Linear layer with a stack of masks ``(num_masks, out, in)``; one is used per call."""

    def __init__(self, masks: torch.Tensor) -> None:
        super().__init__(masks.shape[2], masks.shape[1])
        self.register_buffer("mask", masks.to(self.weight.dtype))

    def forward(self, x: torch.Tensor, mask_index: int = 0) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask[mask_index], self.bias)


DEGREES = ("cyclic", "random")


class MADE(nn.Module):
    r"""Masked autoencoder for distribution estimation: an autoregressive MLP (the network;
    :class:`pyrogen.distributions.MADE` is the distribution over discrete vectors built on it).

    Output ``out[..., :, i]`` depends only on the inputs that come before ``i`` in the order
    (and on the context, which feeds every unit of the first hidden layer unmasked). A hidden
    unit of degree ``m`` sees inputs of degree ``<= m`` and feeds outputs of degree ``> m``
    (Germain et al. 2015, Eq. 12-13). Hidden degrees cycle through ``1..D-1``
    (``degrees="cyclic"``) or are drawn uniformly from ``[min previous, D - 1]``
    (``"random"``, the paper's choice). With ``num_masks > 1`` it holds several (order,
    connectivity) mask sets (set 0 uses ``order``, the others random orders), chosen per call
    by ``mask_index``: order-agnostic training and ensembles. The last layer is initialised to
    zero (identity flows at initialization).

    Cost: one pass gives all ``D`` conditionals.

    Shapes:
        x: ``(*batch, input_dim)`` (category indices when ``input_categories`` is set).
        context: ``(*batch, context_dim)``.
        out: ``(*batch, num_params, input_dim)`` (parameter-major: ``out[..., k, :]`` is
            contiguous).
    Args:
        input_dim: ``D``, the number of autoregressive variables.
        hidden_dims: sizes of the hidden layers (each should be ``>= D - 1`` so that every
            conditional can depend on all its predecessors).
        num_params: outputs per variable (2 for an affine flow: shift, log-scale).
        order: autoregressive order of mask set 0, see :func:`made_degrees`.
        context_dim: size of the context (0: unconditional).
        activation: hidden nonlinearity (an ``nn.Module`` class).
        degrees: ``"cyclic"`` or ``"random"`` hidden degrees.
        num_masks: number of mask sets.
        seed: seed of the random orders and degrees (``None``: torch's global generator);
            masks are buffers, saved in the ``state_dict``.
        input_categories: ``K > 2`` to one-hot encode categorical inputs (``None``: real or
            binary inputs used as they are).
    Raises:
        ValueError: non-positive sizes, a bad ``order`` or ``degrees``, a ``mask_index`` out of
            range, a missing or mis-shaped context (a batch shape that does not broadcast
            against ``x``'s), or a context given to a network without one.
        TypeError: a ``mask_index`` that is not an integer (``int``, NumPy integer or 0-d
            integer tensor).
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
        degrees: str = "cyclic",
        num_masks: int = 1,
        seed: int | None = None,
        input_categories: int | None = None,
    ) -> None:
        super().__init__()
        hidden_dims = _check_dims(input_dim, hidden_dims, context_dim)
        if not hidden_dims:
            raise ValueError("hidden_dims must have at least one layer")
        for name, value in (("num_params", num_params), ("num_masks", num_masks)):
            check_count(value, name)
        check_module_class(activation, "activation")
        if degrees not in DEGREES:
            raise ValueError(f"degrees must be one of {DEGREES}, got {degrees!r}")
        if input_categories is not None:
            check_count(input_categories, "input_categories", minimum=3)
        self.input_dim, self.num_params, self.context_dim = input_dim, num_params, context_dim
        self.num_masks, self.input_categories = num_masks, input_categories
        g = None if seed is None else torch.Generator().manual_seed(seed)
        orders, masks = [], [[] for _ in range(len(hidden_dims) + 1)]
        for m in range(num_masks):
            degree_in = made_degrees(input_dim, order if m == 0 else "random", generator=g)
            layer_degrees = [degree_in]
            for h in hidden_dims:
                if degrees == "cyclic":
                    layer_degrees.append(torch.arange(h) % max(input_dim - 1, 1) + 1)
                else:
                    low = min(int(layer_degrees[-1].min()), input_dim - 1)
                    high = max(input_dim, low + 1)
                    layer_degrees.append(torch.randint(low, high, (h,), generator=g))
            for i, (d_in, d_out) in enumerate(itertools.pairwise(layer_degrees)):
                mask = (d_out[:, None] >= d_in[None, :]).long()
                if i == 0 and input_categories:
                    mask = mask.repeat_interleave(input_categories, dim=1)
                masks[i].append(mask)
            out = (degree_in[:, None] > layer_degrees[-1][None, :]).long()
            masks[-1].append(out.repeat(num_params, 1))  # parameter-major rows
            orders.append(torch.argsort(degree_in))
        self.register_buffer("orders", torch.stack(orders))
        self.hidden = nn.ModuleList(_MaskedLinear(torch.stack(stack)) for stack in masks[:-1])
        self.output = _MaskedLinear(torch.stack(masks[-1]))
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.activation = activation()
        self.context_layer = (
            nn.Linear(context_dim, hidden_dims[0], bias=False) if context_dim else None
        )
        self._register_load_state_dict_pre_hook(_upgrade_state_dict)

    @property
    def degrees(self) -> torch.Tensor:
        """Input degrees ``(input_dim,)`` of mask set 0 (``degrees[orders[0][k]] = k + 1``)."""
        return torch.argsort(self.orders[0]) + 1

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask_index: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        if self.input_categories:
            k = self.input_categories
            if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.input_dim:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"x must be category indices (*, {self.input_dim}), got {got}")
            if _validating() and bool(((x < 0) | (x >= k) | (x != x.round())).any()):
                raise ValueError(f"x must hold category indices in 0..{k - 1}")
            x = F.one_hot(x.long(), k).to(self.output.weight.dtype)
            x = x.flatten(-2)
        return self.forward_features(x, context, mask_index=mask_index)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if type(self.activation) is nn.ReLU and not torch.jit.is_tracing():
            # in place on a fresh linear output, which backward does not need (not under
            # torch.jit.trace, whose graph may replay it on a view of a parameter)
            return torch.relu_(h)
        return self.activation(h)

    def forward_features(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask_index: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        """As :meth:`forward`, with categorical inputs already one-hot encoded and flattened,
        ``(*batch, input_dim * input_categories)``."""
        mask_index = check_mask_index(mask_index, self.num_masks)
        _check_input(x, "x", (self.hidden[0].in_features,), self.output.weight)
        h = self.hidden[0](x, mask_index)
        if self.context_layer is not None:
            context = _cat_context(x, context, self.context_dim)
            h = h + self.context_layer(context)
        elif context is not None:
            raise ValueError("this network takes no context (context_dim=0), got one")
        h = self._activate(h)
        for layer in self.hidden[1:]:
            h = self._activate(layer(h, mask_index))
        out = self.output(h, mask_index)
        return out.reshape((*out.shape[:-1], self.num_params, self.input_dim))


def _upgrade_state_dict(state_dict, prefix, *args) -> None:
    """Load a single-mask ``state_dict`` saved before mask sets (``degrees``, 2-D masks)."""
    degrees = state_dict.pop(prefix + "degrees", None)
    if degrees is not None:
        state_dict[prefix + "orders"] = torch.argsort(degrees)[None]
    for key in list(state_dict):
        if key.startswith(prefix) and key.endswith(".mask") and state_dict[key].dim() == 2:
            state_dict[key] = state_dict[key][None]


class BoundContext(nn.Module):
    """A conditioner with its context fixed: ``BoundContext(net, c)(x) == net(x, c)``.

    Used by ``ConditionalX.condition(context)`` so that the returned plain transform shares the
    network's parameters. Attributes of ``net`` (``input_dim``, ``output_dim`` ...) are readable
    through it.

    Shapes:
        x: as ``net``'s input.  context: ``(*batch, context_dim)``.
    """

    def __init__(self, net: nn.Module, context: torch.Tensor) -> None:
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
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
