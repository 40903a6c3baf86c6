"""Finite-step checks and saved state shared by pyrogen's losses and training steps.

A training step is checked *before* anything is updated: the gradients are computed with
``torch.autograd.grad`` (not written into ``.grad``), the loss and every gradient are tested
for NaN/inf with one fused reduction (the sum of each gradient, stacked: a single device
synchronization), and only when all are finite are the gradients accumulated into ``.grad``
(as ``backward`` would) or handed to an optimizer. A failing step raises, naming the step and
the sites, terms or parameters that went non-finite, and leaves parameters, gradients,
optimizer state and the loss's own state (step counters, persistent chains) as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace

__all__ = [
    "CountedSteps",
    "accumulate_grads",
    "check_guide_covers",
    "check_state_keys",
    "checked_grads",
    "checked_loss_and_grads",
    "empty_plates_as_errors",
    "nonfinite_sites",
    "trace_params",
]


@contextmanager
def empty_plates_as_errors(where: str) -> Iterator[None]:
    """Turn Pyro's ``ZeroDivisionError`` for a plate of size 0 (a model run on empty data) into
    a ValueError that says so."""
    try:
        yield
    except ZeroDivisionError as e:
        if "size cannot be zero" not in str(e):
            raise
        raise ValueError(
            f"{where}: a plate of size 0 (the data are empty); give at least one data point"
        ) from e


def check_observed_support(where: str, name: str, fn, data: torch.Tensor) -> None:
    """Raise unless every observed value of site ``name`` lies in ``fn.support`` and is finite
    (the check of the energy-model losses, which read the data without ``log_prob``).

    Raises:
        ValueError: naming ``where``, the site and the support.
    """
    ok = fn.support.check(data).all()
    if data.is_floating_point():
        ok = ok & torch.isfinite(data).all()
    if not bool(ok):
        raise ValueError(
            f"{where}: the observed values of site {name!r} lie outside the support of "
            f"{type(fn).__name__} ({fn.support}) or are not finite; nothing was updated"
        )


class _RandomSubsamples(Messenger):
    """Records the plates that draw their subsample (no fixed ``subsample`` given)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, int, int]] = []

    def _pyro_sample(self, msg) -> None:
        fn = msg["fn"]
        if type(fn).__name__ != "_Subsample" or msg["value"] is not None:
            return
        size, subsample_size = getattr(fn, "size", None), getattr(fn, "subsample_size", None)
        if size is not None and subsample_size is not None and 0 <= subsample_size < size:
            self.found.append((msg["name"], subsample_size, size))


def check_fixed_subsample(model: Callable, args, kwargs, owner: str) -> None:
    """Raise if a plate of ``model`` draws a random subsample (``subsample_size`` smaller than
    its size and no fixed ``subsample``): per-data-point results combined over several runs of
    the model would then mix different data points. One dry run of the model, its random
    draws undone.

    Raises:
        ValueError: naming the plate, its size and subsample size; empty data.
    """
    state = pyro.util.get_rng_state()
    probe = _RandomSubsamples()
    try:
        with torch.no_grad(), poutine.block(), empty_plates_as_errors(owner), probe:
            model(*args, **kwargs)
    finally:
        pyro.util.set_rng_state(state)
    if probe.found:
        name, subsample_size, size = probe.found[0]
        raise ValueError(
            f"{owner}: the plate {name!r} draws a random subsample ({subsample_size} of "
            f"{size}) in every run of the model, so per-data-point values from different "
            "runs would belong to different data points; evaluate on the full data "
            "(subsample_size=None) or on fixed indices (pyro.plate(..., subsample=idx))"
        )


def check_guide_covers(model_trace: Trace, guide_trace: Trace) -> None:
    """Raise if the model has a latent sample site that the guide does not sample (the model
    would draw it from its prior, and an importance weight or bound would silently be wrong).

    Raises:
        ValueError: naming the missing sites and the guide's sites.
    """
    missing = [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and type(site["fn"]).__name__ != "_Subsample"
        and name not in guide_trace.nodes
    ]
    if missing:
        raise ValueError(
            f"the guide does not match the model: latent site(s) {missing} of the model are not "
            f"sampled by the guide (guide sites: {sorted(guide_trace.stochastic_nodes)})"
        )


def register_module(name: str, module: torch.nn.Module, owner: str) -> None:
    """``pyro.module(name, module, update_module_params=True)`` after checking that the param
    store holds no entry of ``name`` with another shape or dtype (a different network registered
    under the same name earlier in the process, which Pyro would silently put into ``module``).
    Entries of the same shape are taken, as Pyro does: after a param-store restore the module
    uses the restored values.

    Raises:
        ValueError: an entry ``name$$$<param>`` of another shape or dtype, naming ``owner``.
    """
    store = pyro.get_param_store()
    for param_name, p in module.named_parameters():
        full = f"{name}$$${param_name}"
        if full in store:
            held = store.get_param(full)
            if held.shape != p.shape or held.dtype != p.dtype:
                raise ValueError(
                    f"{owner}: the param store already holds {full!r} with shape "
                    f"{tuple(held.shape)} ({held.dtype}), from another network, and this one "
                    f"has {tuple(p.shape)} ({p.dtype}); call pyro.clear_param_store() first (or "
                    "load the param store of a matching run)"
                )
    pyro.module(name, module, update_module_params=True)


def trace_params(trace: Trace) -> list[torch.Tensor]:
    """The unconstrained leaf tensors of the ``param`` sites of a ``poutine.trace(param_only=
    True)`` trace, each once, in the order first seen (what ``SVI.step`` hands its optimizer)."""
    seen: dict[int, torch.Tensor] = {}
    for site in trace.nodes.values():
        if site["type"] == "param":
            p = site["value"].unconstrained()
            seen.setdefault(id(p), p)
    return [p for p in seen.values() if p.requires_grad]


def _nonfinite(t) -> bool:
    return (
        isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    )


def nonfinite_sites(traces: Iterable[tuple[str, Trace]]) -> tuple[list[str], bool]:
    """Describe the sample sites of ``(label, trace)`` pairs whose value or ``log_prob`` is not
    finite (a diagnosis for an error message; runs only once a step has failed).

    Returns:
        ``(descriptions, bad_data)``: one line per offending site, and whether an *observed*
        value is itself non-finite (bad input rather than a numerical failure).
    """
    out, bad_data = [], False
    for label, trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            kind = "observed" if site["is_observed"] else "latent"
            if _nonfinite(site["value"]):
                out.append(f"{label} {kind} site {name!r}: its value is not finite")
                bad_data = bad_data or site["is_observed"]
            elif _nonfinite(site.get("log_prob")):
                out.append(f"{label} {kind} site {name!r}: log_prob is not finite")
    # the observed values that are not finite (the likely cause) come first
    out.sort(key=lambda line: "observed" not in line or "value" not in line)
    return out, bad_data


def _param_name(p: torch.Tensor) -> str:
    try:
        name = pyro.get_param_store().param_name(p)
    except (KeyError, AttributeError):  # pragma: no cover - a tensor outside the store
        name = None
    return repr(name) if name is not None else f"<tensor of shape {tuple(p.shape)}>"


def checked_grads(
    loss: torch.Tensor | float,
    surrogate: torch.Tensor | float,
    params: Sequence[torch.Tensor],
    *,
    where: str,
    explain: Callable[[], tuple[list[str], bool]] | None = None,
    kept: str | None = None,
) -> list[torch.Tensor | None]:
    """Gradients of ``surrogate`` with respect to ``params``, after checking that ``loss`` and
    every gradient are finite. Writes nothing (no ``.grad``, no parameter).

    Cost: one ``torch.autograd.grad`` (the same work as ``backward``) plus one sum per gradient
    and a single synchronization. A sum that overflows although every entry is finite is
    confirmed elementwise before anything is raised.

    Shapes:
        loss, surrogate: ``()``; each gradient has its parameter's shape.
    Args:
        loss: the reported loss (nats).
        surrogate: the tensor whose gradient is the step's gradient.
        params: the leaf tensors to differentiate.
        where: the step, for the message (e.g. ``"AnnealedELBO step 12"``).
        explain: called only after a failure; returns ``(descriptions, bad_data)`` naming the
            sites or terms that went non-finite (see :func:`nonfinite_sites`).
        kept: for an update that follows others in the same step (a GAN's generator update
            after its critic updates), what those earlier updates changed, for the message
            (e.g. ``"the 2 discriminator updates of this step were kept"``).
    Returns:
        one gradient per parameter (``None`` where the surrogate does not depend on it).
    Raises:
        ValueError: the loss or a gradient is not finite because an observed value is not
            (``explain`` says so).
        FloatingPointError: the loss or a gradient is not finite otherwise.
    """
    loss = torch.as_tensor(loss).detach()
    grads: list[torch.Tensor | None] = [None] * len(params)
    if params and isinstance(surrogate, torch.Tensor) and surrogate.requires_grad:
        grads = list(torch.autograd.grad(surrogate, list(params), allow_unused=True))
    sums = [loss.reshape(())] + [g.sum().to(loss.dtype) for g in grads if g is not None]
    if bool(torch.isfinite(torch.stack(sums)).all()):
        return grads
    bad = [_param_name(p) for p, g in zip(params, grads, strict=True) if _nonfinite(g)]
    if not bad and bool(torch.isfinite(loss)):
        return grads  # an overflowing sum of finite gradients
    lines, bad_data = explain() if explain is not None else ([], False)
    if bad:
        lines.append("parameters with non-finite gradients: " + ", ".join(bad))
    detail = "; ".join(lines) if lines else "no site or parameter could be singled out"
    if bad_data:
        detail += " (the data are not finite)"
    error = ValueError if bad_data else FloatingPointError
    if kept:
        outcome = (
            "This update changed nothing (its parameters, gradients and optimizer state are as "
            f"before it); {kept}"
        )
    else:
        outcome = (
            "Nothing was updated: parameters, gradients and optimizer state are as before this step"
        )
    raise error(
        f"{where}: non-finite {'loss' if not bool(torch.isfinite(loss)) else 'gradient'} "
        f"(loss = {float(loss)}); {detail}. {outcome}"
    )


def accumulate_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]):
    """Add ``grads`` into ``params``' ``.grad`` as ``backward`` does (``None`` grads skipped)."""
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g if g.is_contiguous() else g.contiguous()
        else:
            p.grad.add_(g)


def check_state_keys(state, expected: dict[str, type | tuple[type, ...]], owner: str) -> None:
    """Check that a ``state_dict`` has ``expected`` keys of the expected types.

    Raises:
        TypeError: ``state`` is not a dict or a value has the wrong type.
        ValueError: missing or unexpected keys.
    """
    if not isinstance(state, dict):
        raise TypeError(f"{owner}.load_state_dict expects a dict, got {type(state).__name__}")
    missing, extra = set(expected) - set(state), set(state) - set(expected)
    if missing or extra:
        raise ValueError(
            f"{owner}.load_state_dict: missing keys {sorted(missing)}, unexpected keys "
            f"{sorted(extra)}"
        )
    for key, kind in expected.items():
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(
                f"{owner}.load_state_dict: {key!r} must be {kind}, got {type(value).__name__}"
            )


def checked_loss_and_grads(
    compute: Callable[[], tuple[torch.Tensor | float, torch.Tensor | float]],
    *,
    where: str,
    explain: Callable[[], tuple[list[str], bool]] | None = None,
    kept: str | None = None,
) -> float:
    """Run ``compute() -> (loss, surrogate)`` under a param capture, check the loss and the
    surrogate's gradients (:func:`checked_grads`), then accumulate them into ``.grad``: the
    checked body of an SVI loss's ``loss_and_grads``. Raising here stops ``SVI.step`` before
    its optimizer runs.

    Returns:
        the loss as a float (nats).
    Raises:
        ValueError, FloatingPointError: as :func:`checked_grads`.
    """
    with poutine.trace(param_only=True) as capture:
        loss, surrogate = compute()
    params = trace_params(capture.trace)
    grads = checked_grads(loss, surrogate, params, where=where, explain=explain, kept=kept)
    accumulate_grads(params, grads)
    return float(torch.as_tensor(loss).detach())


class CountedSteps:
    """A step counter with ``state_dict`` / ``load_state_dict`` (a mixin for stateful losses).

    :attr:`num_steps` counts the successful gradient steps (``loss_and_grads`` calls, one per
    ``SVI.step``); a step that raises does not count. The state holds only ints, floats,
    strings, tensors, lists and dicts, so ``torch.load(path, weights_only=True)`` restores it.
    """

    num_steps: int = 0

    def _state_types(self) -> dict[str, type | tuple[type, ...]]:
        return {"num_steps": int}

    def state_dict(self) -> dict:
        """The loss's state: ``{"num_steps": int}`` (subclasses add their own entries)."""
        return {"num_steps": int(self.num_steps)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (for example one read back with
        ``torch.load(path, weights_only=True)``).

        Raises:
            TypeError, ValueError: a state with missing, unexpected or mistyped entries.
        """
        check_state_keys(state, self._state_types(), type(self).__name__)
        if state["num_steps"] < 0:
            raise ValueError(f"num_steps must be >= 0, got {state['num_steps']}")
        self.num_steps = int(state["num_steps"])
