"""Base classes: a bijection with one fused method per direction and a round-trip cache; the
composition of bijections; conditioning on a context."""

from __future__ import annotations

import functools
import itertools
import operator
import weakref
from collections.abc import Sequence

import torch
from pyro.distributions.conditional import (
    ConditionalTransformModule,
    _ConditionalInverseTransformModule,
)
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints

from pyrogen.util import check_tensor

__all__ = "Bijector Compose Conditional ConditionalBijector ConditionalCompose Conditioned".split()

_TOKENS = itertools.count()


def fits(event_shape: Sequence[int | None], shape: Sequence[int | None]) -> bool:
    """Whether ``shape`` matches ``event_shape`` (same length; ``None`` on either side matches
    any size)."""
    return len(event_shape) == len(shape) and all(
        e is None or s is None or e == s for e, s in zip(event_shape, shape, strict=True)
    )


def traced() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jacrev ...) is running: no data-dependent
    checks and no cache then."""
    return torch._C._are_functorch_transforms_active()


class _RoundTrip:
    """``b = op(a)`` with its forward log-det, and what it was computed from."""

    def __init__(self, inverse: bool, a, b, ladj, params: tuple, others: tuple) -> None:
        self.inverse, self.a, self.b, self.ladj, self.token = inverse, a, b, ladj, next(_TOKENS)
        self.grad, self.params, self.others = torch.is_grad_enabled(), params, others
        self.values = tuple(p.detach().clone() for p in params)
        self.versions = (a._version, b._version, *(t._version for t in others))

    def valid(self, params: tuple, others: tuple) -> bool:
        now = (self.a._version, self.b._version, *(t._version for t in others))
        return (
            self.grad == torch.is_grad_enabled()
            and (len(params), len(others)) == (len(self.params), len(self.others))
            and all(map(operator.is_, params + others, self.params + self.others))
            and now == self.versions
            and all(map(torch.equal, params, self.values))
        )


class Bijector(TransformModule):
    r"""Base class of pyrogen's learnable bijections.

    A subclass implements ``forward_and_ladj(x) -> (y, ladj)`` with :math:`y = f(x)`,
    :math:`\mathrm{ladj} = \log|\det \partial f / \partial x|`, and
    ``inverse_and_ladj(y) -> (x, ladj)`` with the inverse's log-determinant; this class derives
    torch's ``_call``, ``_inverse`` and ``log_abs_det_jacobian`` from them.

    What is cached: only the **round trip** of the last call. After ``y = f(x)`` (or
    ``x = f.inv(y)``) the layer keeps ``(x, y, ladj)`` and serves ``f.inv(y)`` (``f(x)``) and
    ``log_abs_det_jacobian(x, y)`` from it, so sampling then scoring the sample, or scoring data
    then asking for the log-det, costs one pass. A call in the same direction is always computed.
    The entry is served only while all of these hold, and is dropped otherwise:

    - ``y`` (``x``) is the very tensor this layer returned, and neither was modified in place;
    - the gradient mode is the one it was computed in;
    - every parameter is the same object with the same values (compared with a copy taken at
      the call: this sees ``ClippedAdam``'s ``p.data`` writes, ``load_state_dict``,
      ``pyro.module(..., update_module_params=True)``, ``torch.func.functional_call``), and
      buffers are the same objects at the same version;
    - no ``backward()`` has run through its graph.

    Under ``torch.func`` transforms nothing is cached and the finite-input check (data-dependent
    control flow) is skipped. ``with_cache`` returns ``self``. One pass without any cache:
    :meth:`pyrogen.distributions.FlowDistribution.rsample_and_log_prob`.

    Shapes:
        x: ``(*batch, *event_shape)``.  y: ``(*batch, *forward_shape(event_shape))``.
        ladj: ``(*batch,)``, in nats.
    Args:
        event_shape: the domain's event shape; ``None`` marks a size that may vary.
    Raises:
        TypeError, ValueError: (:func:`pyrogen.util.check_tensor`) inputs of the wrong dtype,
            device or shape, or non-finite ones while Pyro validation is on.
    """

    __repr__ = nn.Module.__repr__
    bijective = True

    def __init__(self, event_shape: tuple[int | None, ...]) -> None:
        super().__init__(cache_size=0)
        self.event_shape = tuple(event_shape)
        self.domain = self.codomain = constraints.independent(constraints.real, len(event_shape))
        self._cache: tuple | None = None

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``y = f(x)`` and ``log|det df/dx|`` of shape ``(*batch,)``."""
        raise NotImplementedError

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``x = f^{-1}(y)`` and ``log|det df^{-1}/dy|`` of shape ``(*batch,)``."""
        raise NotImplementedError

    # -- the round-trip cache -------------------------------------------------------------------
    def _state(self) -> tuple[tuple, tuple]:
        """Parameters (checked by identity and value) and other tensors the result depends on
        (buffers, a bound context: checked by identity and version)."""
        modules = list(self.modules())  # one walk (a module tree walk costs ~50 us)
        params = (p for m in modules for p in m._parameters.values() if p is not None)
        buffers = (b for m in modules for b in m._buffers.values() if b is not None)
        return tuple(params), tuple(buffers)

    def _store(self, entry: _RoundTrip, computed: tuple[torch.Tensor, ...]) -> None:
        self._cache = None if traced() else entry
        # drop the entry when backward runs through it (its graph is then freed); the hook holds
        # a weak reference and a token, not the tensors (a cycle through autograd nodes that
        # Python's collector cannot see would leak every step's graph)
        ref, token = weakref.ref(self), entry.token

        def forget(_grad_outputs):
            owner = ref()
            if owner is not None and owner._cache is not None and owner._cache.token == token:
                owner._cache = None

        for t in computed:
            if t.grad_fn is not None and self._cache is not None:
                t.grad_fn.register_prehook(forget)

    def _served(self, output, inverse: bool, source=None) -> _RoundTrip | None:
        """The entry ``output = op(source)`` made in direction ``inverse``, if still valid."""
        entry = self._cache
        if entry is None or entry.b is not output or entry.inverse != inverse or traced():
            return None
        if (source is not None and entry.a is not source) or not entry.valid(*self._state()):
            return None
        return entry

    def _round_trip_call(self, v: torch.Tensor, inverse: bool) -> torch.Tensor:
        entry = self._served(v, not inverse)  # v is what the other direction produced
        if entry is not None:
            return entry.a
        shape = self.forward_shape(self.event_shape) if inverse else self.event_shape
        self._check_input(v, "y" if inverse else "x", shape)
        out, ladj = self.inverse_and_ladj(v) if inverse else self.forward_and_ladj(v)
        params, others = ((), ()) if traced() else self._state()
        self._store(
            _RoundTrip(inverse, v, out, -ladj if inverse else ladj, params, others), (out, ladj)
        )
        return out

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self._round_trip_call(x, False)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._round_trip_call(y, True)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward log-determinant at ``x`` (nats), shape ``(*batch,)``: served when ``(x, y)``
        is the round trip of the last call, otherwise computed from ``x``."""
        entry = self._served(y, False, x) or self._served(x, True, y)
        if entry is not None:
            return entry.ladj
        self._check_input(x, "x", self.event_shape)
        return self.forward_and_ladj(x)[1]

    def _check_input(self, value: torch.Tensor, name: str, event_shape) -> None:
        like = next(iter(self.parameters()), None)
        check_tensor(value, name, event_shape, like=like, check_finite=False if traced() else None)

    def check_shape(self, shape) -> tuple:
        """Check that an input of event shape ``shape`` fits this bijection (for composite ones,
        every part); return the output's event shape. Construction-time checks (e.g. of
        :class:`~pyrogen.distributions.ImageFlow`) use it; no tensor is computed.

        Raises:
            ValueError: ``shape`` does not fit, naming the part.
        """
        shape = tuple(shape)
        if not fits(self.event_shape, shape):
            raise ValueError(
                f"event shape {shape} does not fit {type(self).__name__} with event_shape "
                f"{self.event_shape}"
            )
        return tuple(self.forward_shape(shape))

    def clear_cache(self) -> None:
        """Drop the cached round trip."""
        self._cache = None

    def with_cache(self, cache_size: int = 1) -> Bijector:
        """The round-trip cache of a :class:`Bijector` is always on; returns ``self``."""
        return self

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"] = None
        return state


class Compose(Bijector, nn.ModuleList):
    r"""Composition of bijections in list order (the first is applied first to base noise).

    Its fused methods call every part's once (one cache entry and one input check per call).
    Parts are ``flow[i]``, saved under ``"i."`` as in Pyro's ``ComposeTransformModule``.

    Raises:
        ValueError: an empty list or a part that is not a :class:`Bijector`.
    """

    def __init__(self, parts: Sequence[Bijector]) -> None:
        parts = list(parts)
        bad = [i for i, part in enumerate(parts) if not isinstance(part, Bijector)]
        if not parts or bad:
            raise ValueError(f"parts must be a non-empty list of pyrogen Bijectors, got {parts}")
        super().__init__(parts[0].event_shape)
        self.extend(parts)
        shape = parts[0].event_shape
        for i, part in enumerate(parts[:-1]):
            shape = tuple(part.forward_shape(shape))
            if not fits(parts[i + 1].event_shape, shape):
                raise ValueError(
                    f"parts[{i}] returns event shape {shape}, which does not fit parts[{i + 1}] "
                    f"({type(parts[i + 1]).__name__} with event_shape "
                    f"{parts[i + 1].event_shape})"
                )

    def check_shape(self, shape) -> tuple:
        for i, part in enumerate(self):
            try:
                shape = part.check_shape(shape)
            except ValueError as e:
                raise ValueError(f"parts[{i}]: {e}") from e
        return tuple(shape)

    def forward_shape(self, shape):
        return functools.reduce(lambda s, part: part.forward_shape(s), self, shape)

    def inverse_shape(self, shape):
        return functools.reduce(lambda s, part: part.inverse_shape(s), reversed(list(self)), shape)

    def _run(self, x, context, inverse: bool):
        ladj = 0
        for part in reversed(list(self)) if inverse else self:
            fused = part.inverse_and_ladj if inverse else part.forward_and_ladj
            x, part_ladj = fused(x, context) if isinstance(part, Conditional) else fused(x)
            ladj = ladj + part_ladj
        return x, ladj

    def forward_and_ladj(self, x, context=None):
        return self._run(x, context, False)

    def inverse_and_ladj(self, y, context=None):
        return self._run(y, context, True)


class Conditional(ConditionalTransformModule):
    """Mixin making a layer conditional, ``class ConditionalX(Conditional, X)``: ``X``'s fused
    methods pass ``context`` to the conditioner (``conditioner(x, context)``), and
    ``condition(context)`` returns a plain :class:`Bijector` sharing the parameters (Pyro's
    ``ConditionalTransformModule`` interface)."""

    def condition(self, context: torch.Tensor) -> Bijector:
        """The bijection for ``context`` of shape ``(*batch, context_dim)``."""
        return Conditioned(self, context)

    @property
    def inv(self) -> ConditionalTransformModule:
        """The conditional inverse (``inv.condition(context)`` is ``condition(context).inv``);
        calling it without a context raises ValueError."""
        return _ConditionalInverse(self)


class _ConditionalInverse(_ConditionalInverseTransformModule):
    """Pyro's conditional inverse, with a clear error when it is called unconditioned."""

    def forward(self, *args, **kwargs):
        raise ValueError(
            "this conditional transform needs a context: call .condition(context) first "
            "(e.g. flow.condition(context).inv(y))"
        )


class Conditioned(Bijector):
    """A conditional layer with its ``context`` bound (the cache also checks the context);
    raises TypeError if ``context`` is not a tensor."""

    def __init__(self, layer: Conditional, context: torch.Tensor) -> None:
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        super().__init__(layer.event_shape)
        self.layer, self.context = layer, context
        self.forward_shape, self.inverse_shape = layer.forward_shape, layer.inverse_shape

    def _state(self) -> tuple[tuple, tuple]:
        params, others = self.layer._state()
        return params, (*others, self.context)

    def forward_and_ladj(self, x):
        return self.layer.forward_and_ladj(x, self.context)

    def inverse_and_ladj(self, y):
        return self.layer.inverse_and_ladj(y, self.context)


class ConditionalCompose(Conditional, Compose):
    """A :class:`Compose` whose conditional parts all receive its context."""


ConditionalBijector = Conditional
