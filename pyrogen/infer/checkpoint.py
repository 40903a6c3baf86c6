"""Checkpoints of training runs, single-process or data-parallel: rank 0 writes the param store,
the optimizers, and every worker's loss state and random state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyro
import torch
import torch.distributed as dist
from pyro.optim import PyroOptim
from pyro.optim.optim import _load_state_dict

from pyrogen.infer.distributed import DistributedOptim, is_main_process

__all__ = ["load_checkpoint", "save_checkpoint"]


def _world(group) -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def _loss_state(loss) -> dict:
    if callable(getattr(loss, "state_dict", None)):
        return loss.state_dict()
    # reachable state of pyrogen's losses: step counters, persistent chains, replay buffers
    state = {k: getattr(loss, k) for k in ("step", "num_steps") if hasattr(loss, k)}
    for k in ("chains", "buffers"):
        if isinstance(getattr(loss, k, None), dict):
            state[k] = {n: t.detach().clone() for n, t in getattr(loss, k).items()}
    return state


def _load_loss_state(loss, state: dict) -> None:
    if callable(getattr(loss, "load_state_dict", None)):
        loss.load_state_dict(state)
        return
    for k, v in state.items():
        setattr(loss, k, dict(v) if isinstance(v, dict) else v)


def _restore_optim(optim: PyroOptim, saved: dict) -> None:
    """Give ``optim`` the per-parameter states of ``saved`` (``get_state()`` output), also for
    parameters it has already stepped (Pyro's ``set_state`` applies a state only to parameters
    not yet seen); a parameter without a saved state starts afresh, as it did in the saved run."""
    while isinstance(optim, DistributedOptim):  # its state is the wrapped optimizer's
        optim = optim.optim
    store = pyro.get_param_store()
    pending = dict(saved)
    for param in list(optim.optim_objs):
        name = store.param_name(param)
        if name in pending:
            _load_state_dict(optim.optim_objs[param], pending.pop(name))
        else:  # not yet stepped when the checkpoint was written
            del optim.optim_objs[param]
            optim.grad_clip.pop(param, None)
    optim.set_state(pending)


def _check_mapping(value, name: str, kind) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a mapping of names to {kind}s (e.g. {{'svi': optim}}), got "
            f"{type(value).__name__}"
        )
    for k in value:
        if not isinstance(k, str):
            raise TypeError(f"{name} must have string keys, got {k!r}")
    return dict(value)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(
    path: str | Path,
    *,
    optims: Mapping[str, PyroOptim] | None = None,
    losses: Mapping[str, object] | None = None,
    extra: Mapping | None = None,
    group=None,
) -> None:
    """Save a data-parallel run from rank 0: the param store, optimizer states, and every
    worker's loss state and torch random state. Collective (the per-worker states are gathered
    to every worker with ``all_gather_object``); only rank 0 writes ``path``.

    The file holds tensors, numbers and strings only (``torch.load(path, weights_only=True)``):
    ``"params"`` (param-store name -> unconstrained value), ``"optims"`` (name ->
    ``get_state()``), ``"workers"`` (one dict per rank: ``"losses"`` name -> state, ``"rng"``),
    ``"world_size"`` and ``"extra"``. Loss state is ``loss.state_dict()`` where the loss has one,
    else its step counter (``step``/``num_steps``), persistent chains and replay buffers.

    Args:
        path: the file to write.
        optims: the optimizers to save, by name.
        losses: the stateful losses to save, by name.
        extra: more picklable-free values (epoch, step, figures).
        group: the process group (default: the world).
    """
    optims = _check_mapping(optims, "optims", "pyro.optim optimizer")
    losses = _check_mapping(losses, "losses", "loss")
    for k, v in optims.items():
        if not isinstance(v, PyroOptim):
            raise TypeError(f"optims[{k!r}] must be a pyro.optim optimizer, got {type(v).__name__}")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a mapping or None, got {type(extra).__name__}")
    worker = {
        "losses": {k: _loss_state(v) for k, v in losses.items()},
        "rng": _rng_state(),
    }
    workers = [worker]
    if _world(group)[1] > 1:
        workers = [None] * _world(group)[1]
        dist.all_gather_object(workers, worker, group=group)
    if not is_main_process(group):
        return
    params = {n: p.detach().cpu().clone() for n, p in pyro.get_param_store().named_parameters()}
    state = {
        "params": params,
        "optims": {k: v.get_state() for k, v in optims.items()},
        "workers": workers,
        "world_size": len(workers),
        "extra": dict(extra or {}),
    }
    torch.save(state, path)


def load_checkpoint(
    path: str | Path,
    *,
    optims: Mapping[str, PyroOptim] | None = None,
    losses: Mapping[str, object] | None = None,
    group=None,
) -> dict:
    """Restore a run saved by :func:`save_checkpoint` on every worker (each reads ``path``).

    The parameters must already exist in the param store (run one ``evaluate_loss`` first);
    their unconstrained values are overwritten in place, each optimizer gets its saved state
    (at once for the parameters it has already stepped, so that a live run can be rolled back;
    when it next steps for the others), and each worker its own loss state and random state,
    so the resumed run continues as the uninterrupted one would.

    Returns:
        the checkpoint's ``extra`` dict.
    Everything is checked before anything is restored: on an error the param store, the
    optimizers, the losses and the random state are as they were.

    Raises:
        ValueError: a different number of workers than at saving; a saved parameter that is
            missing from the param store or has another shape or dtype; an optimizer or loss
            name that the checkpoint does not hold; a file that is not such a checkpoint.
        TypeError: ``optims`` or ``losses`` not a mapping of names, or a non-optimizer in
            ``optims``.
    """
    optims = _check_mapping(optims, "optims", "pyro.optim optimizer")
    losses = _check_mapping(losses, "losses", "loss")
    for k, v in optims.items():
        if not isinstance(v, PyroOptim):
            raise TypeError(f"optims[{k!r}] must be a pyro.optim optimizer, got {type(v).__name__}")
    state = torch.load(path, weights_only=True, map_location="cpu")
    expected = ("params", "optims", "workers", "world_size", "extra")
    if not isinstance(state, dict) or any(k not in state for k in expected):
        raise ValueError(
            f"{str(path)!r} is not a checkpoint written by save_checkpoint (expected the keys "
            f"{list(expected)})"
        )
    rank, world = _world(group)
    if state["world_size"] != world:
        raise ValueError(
            f"the checkpoint was saved by {state['world_size']} workers, resuming with {world}: "
            f"per-worker chains and random states need the same number of workers"
        )
    worker = state["workers"][rank]
    for kind, names, saved in (("optimizer", optims, state["optims"]),
                               ("loss", losses, worker["losses"])):  # fmt: skip
        missing = sorted(set(names) - set(saved))
        if missing:
            raise ValueError(
                f"the checkpoint holds no {kind} state named {missing} (it has {sorted(saved)})"
            )
    store = dict(pyro.get_param_store().named_parameters())
    for name, value in state["params"].items():
        if name not in store or store[name].shape != value.shape:
            where = "is not in the param store" if name not in store else (
                f"has shape {tuple(store[name].shape)} in the param store"
            )  # fmt: skip
            raise ValueError(
                f"checkpoint parameter {name!r} {tuple(value.shape)} {where}; build the model, "
                f"guide and loss as when saving and run one evaluate_loss (GAN: one sample) "
                f"before load_checkpoint"
            )
        if store[name].dtype != value.dtype:
            raise ValueError(
                f"checkpoint parameter {name!r} is {value.dtype} but {store[name].dtype} in the "
                f"param store; build the model in the checkpoint's dtype"
            )
    with torch.no_grad():
        for name, value in state["params"].items():
            store[name].copy_(value)
    for k, optim in optims.items():
        _restore_optim(optim, state["optims"][k])
    for k, loss in losses.items():
        _load_loss_state(loss, worker["losses"][k])
    torch.set_rng_state(worker["rng"]["torch"])
    if "cuda" in worker["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(worker["rng"]["cuda"])
    return state["extra"]
