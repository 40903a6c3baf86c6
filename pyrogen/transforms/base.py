"""Base class of every pyrogen bijection: one fused method per direction, one cache."""

from __future__ import annotations

import itertools
import weakref

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from pyrogen.util import check_tensor

__all__ = ["Bijector", "ConditionalBijector"]

_TOKENS = itertools.count()


class Bijector(TransformModule):
    r"""Base class of pyrogen's learnable bijections.

    A subclass implements two fused methods,

    - ``forward_and_ladj(x) -> (y, ladj)`` with :math:`y = f(x)` and
      :math:`\mathrm{ladj} = \log|\det \partial f(x) / \partial x|`, and
    - ``inverse_and_ladj(y) -> (x, ladj)`` with :math:`x = f^{-1}(y)` and
      :math:`\mathrm{ladj} = \log|\det \partial f^{-1}(y) / \partial y|`,

    and this class derives torch's ``_call``, ``_inverse`` and ``log_abs_det_jacobian`` from them.
    It owns the only cache: the last ``(x, y, ladj)`` computed in either direction, keyed on the
    identity of the tensor, so that sampling then scoring the same sample (or scoring then
    asking for the log-det) costs one pass. The cache is always on (size 1); ``with_cache``
    returns ``self``. Unlike torch's and Pyro's caches, an entry is dropped as soon as
    ``backward()`` runs through it or a parameter is modified in place, so re-scoring the same
    data tensor after an optimizer step never returns results of the old parameters (nor a
    freed graph). Inputs are validated (:func:`pyrogen.util.check_tensor`) on every uncached
    call.

    Shapes:
        x: ``(*batch, *event_shape)``.  y: ``(*batch, *forward_shape(event_shape))``.
        ladj: ``(*batch,)``, in nats.
    Args:
        event_shape: the event shape of the domain (the input of the forward map); ``None``
            marks a size that may vary (image height and width of a 1x1 convolution).
    """

    __repr__ = nn.Module.__repr__
    bijective = True

    def __init__(self, event_shape: tuple[int | None, ...]) -> None:
        super().__init__(cache_size=0)
        self.event_shape = tuple(event_shape)
        self._cache: tuple | None = None
        self._param_tuple: tuple[torch.Tensor, ...] | None = None

    # -- the two methods a subclass writes ------------------------------------------------------
    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``y = f(x)`` and ``log|det df/dx|`` of shape ``(*batch,)``."""
        raise NotImplementedError

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``x = f^{-1}(y)`` and ``log|det df^{-1}/dy|`` of shape ``(*batch,)``."""
        raise NotImplementedError

    # -- derived --------------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, (nn.Parameter, nn.Module)):
            self.__dict__["_param_tuple"] = None
        super().__setattr__(name, value)

    def _params(self) -> tuple[torch.Tensor, ...]:
        """Parameters, then floating buffers, walked once (module traversal costs ~50 us)."""
        params = self._param_tuple
        if params is None:
            floating = (b for b in self.buffers() if b.is_floating_point())
            params = self._param_tuple = (*self.parameters(), *floating)
        return params

    def _reference_parameter(self) -> torch.Tensor | None:
        params = self._params()
        return params[0] if params else None

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._params())

    def _lookup(self, value: torch.Tensor, slot: int):
        """The cached triple if ``value`` is its entry ``slot`` and the entry is still valid."""
        cache = self._cache
        if cache is None or value is not cache[slot] or cache[3] != self._versions():
            return None
        return cache

    def _store(
        self, x, y, ladj, computed: tuple[torch.Tensor, ...], versions: tuple[int, ...]
    ) -> None:
        """Cache ``(x, y, ladj)``; forget it as soon as backward runs through it.

        A cached graph is freed by ``backward()``, and the optimizer step that follows changes
        the parameters (``ClippedAdam`` writes through ``p.data``, invisible to ``_version``),
        so an entry that backward has passed through must never be served again.
        """
        # the hook must not hold the entry's tensors: hook -> tensors -> graph -> hook would be a
        # reference cycle through autograd nodes that Python's collector cannot see (a leak of
        # every step's graph); it holds a weak reference to the owner and an integer token
        token = next(_TOKENS)
        self._cache = (x, y, ladj, versions, token)
        ref = weakref.ref(self)

        def forget(_grad_outputs):
            owner = ref()
            if owner is not None and owner._cache is not None and owner._cache[4] == token:
                owner._cache = None

        for t in computed:
            if t.grad_fn is not None:
                t.grad_fn.register_prehook(forget)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        cache = self._lookup(x, 0)
        if cache is not None:
            return cache[1]
        check_tensor(x, "x", self.event_shape, like=self._reference_parameter())
        versions = self._versions()
        y, ladj = self.forward_and_ladj(x)
        self._store(x, y, ladj, (y, ladj), versions)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        cache = self._lookup(y, 1)
        if cache is not None:
            return cache[0]
        check_tensor(y, "y", self.forward_shape(self.event_shape), like=self._reference_parameter())
        versions = self._versions()
        x, ladj_inverse = self.inverse_and_ladj(y)
        ladj = -ladj_inverse
        self._store(x, y, ladj, (x, ladj), versions)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward log-determinant at ``x`` (nats), shape ``(*batch,)``; cached when possible."""
        cache = self._lookup(x, 0)
        if cache is None:
            self._call(x)
            cache = self._cache
        assert cache is not None
        return cache[2]

    def clear_cache(self) -> None:
        """Drop the cached ``(x, y, ladj)`` (and the list of parameters, e.g. after replacing a
        submodule of the conditioner)."""
        self._cache = None
        self._param_tuple = None

    def with_cache(self, cache_size: int = 1) -> Bijector:
        """The cache of a :class:`Bijector` is always on; returns ``self``."""
        return self

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"] = None
        state["_param_tuple"] = None
        return state


class ConditionalBijector(ConditionalTransformModule):
    """Base of conditional bijections: ``condition(context)`` returns a plain :class:`Bijector`.

    Follows Pyro's :class:`~pyro.distributions.conditional.ConditionalTransformModule`; the
    returned transform shares this module's parameters.
    """

    __repr__ = nn.Module.__repr__

    def condition(self, context: torch.Tensor) -> Bijector:  # pragma: no cover - abstract
        """Return the bijection for the given ``context`` of shape ``(*batch, context_dim)``."""
        raise NotImplementedError
