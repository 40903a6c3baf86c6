"""Data-parallel training with ``torch.distributed``: gradient averaging at Pyro's optimizer
step, failures that stop every worker, parameter broadcast from rank 0."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pyro
import pyro.poutine as poutine
import torch
import torch.distributed as dist
from pyro.infer import SVI
from pyro.infer.util import zero_grads
from pyro.optim import PyroOptim

from pyrogen.util import check_positive

__all__ = [
    "DistributedOptim",
    "DistributedSVI",
    "all_reduce_gradients",
    "broadcast_parameters",
    "is_main_process",
    "synchronize_errors",
]

_OK, _NONFINITE, _ERROR = 0, 1, 2


def _active(group) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def is_main_process(group=None) -> bool:
    """Whether this process is rank 0 of ``group`` (or no process group is initialized): the one
    process that writes checkpoints, logs and figures.

    Example:
        >>> is_main_process()
        True
    """
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank(group) == 0


def _device(group) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _code(error: BaseException) -> int:
    return _NONFINITE if isinstance(error, FloatingPointError) else _ERROR


def _mark(error: BaseException) -> BaseException:
    error._pyrogen_synchronized = True  # every worker raises at this same point
    return error


def _exchange(code: int, signature: str, group, *, where: str, error=None) -> None:
    """All-reduce (max) each worker's status code and a checksum of what it is about to reduce;
    raise on every worker if any worker failed or the workers are out of step."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    crc = float(zlib.crc32(signature.encode()))
    header = torch.zeros(2 + world, dtype=torch.float64, device=_device(group))
    header[0], header[1], header[2 + rank] = crc, -crc, code
    dist.all_reduce(header, op=dist.ReduceOp.MAX, group=group)
    codes = header[2:].tolist()
    failed = [r for r, c in enumerate(codes) if c != _OK]
    if failed:
        if code != _OK and error is not None:
            raise _mark(error)
        nonfinite = any(codes[r] == _NONFINITE for r in failed)
        kind = FloatingPointError if nonfinite else RuntimeError
        what = "hit a non-finite loss or gradient" if nonfinite else "raised an exception"
        raise _mark(
            kind(f"worker(s) {failed} {what} in {where}; all {world} workers stop at this step")
        )
    if header[0] != crc or header[1] != -crc:
        raise _mark(
            ValueError(
                f"workers are out of step in {where}: they disagree on the parameters (names and "
                f"shapes) being reduced or on the collective being run; every worker must run the "
                f"same model, guide and loss with the same parameters"
            )
        )


def all_reduce_gradients(
    params: Iterable[torch.Tensor],
    *,
    loss: float | None = None,
    error=None,
    weight: float | None = None,
    group=None,
) -> float | None:
    r"""Average the gradients of ``params`` over the workers of ``group``, in place, after
    checking on every worker that every loss and gradient is finite.

    What it computes: :math:`g \leftarrow \sum_r w_r g_r / \sum_r w_r` for each parameter (a
    gradient that is ``None`` on some workers counts as zero there; ``None`` on all stays
    ``None``), and the same weighted mean of the workers' ``loss``; without ``weight`` every
    worker has weight 1 (the plain mean :math:`\frac1W \sum_r g_r`). With the data plate of
    every worker's model at the full size ``N`` and a shard of :math:`b_r` indices, each
    worker's loss is an unbiased estimate of the full-data objective. With equal shards
    (:math:`b_r = B / W`) the mean gradient equals the single-process gradient at the total
    batch ``B``; with unequal shards pass ``weight=b_r`` (the shard's size) on each worker, which
    gives :math:`\frac NB \sum_r S_r` (:math:`S_r` the sum over worker ``r``'s shard), again the
    single-process value at the union batch. The plain mean of unequal shards is still unbiased
    but weights each datum by :math:`1 / (W b_r)` instead of :math:`1 / B`.

    Parameters are matched across workers by their param-store names (Pyro collects them in a
    ``set``, whose order differs between processes). The collectives, in order: one all-reduce
    (max) of a status header (each worker's failure code and a checksum of the names and shapes
    it reduces), one of the presence flags and loss, one per dtype of the gradients. A failure on
    any worker, a non-finite ``loss`` or gradient, or ``error`` (an exception this worker caught)
    makes every worker raise before anything is averaged, so no optimizer takes the step and no
    worker waits forever. Without an initialized process group (or with one worker) it only
    checks finiteness.

    Shapes:
        params: tensors of any shape (the param store's unconstrained values).
    Args:
        params: the parameters about to be updated (each must be in the param store).
        loss: this worker's loss (nats), or ``None``.
        error: an exception this worker caught while computing the loss, re-raised here after
            the other workers have been told.
        weight: this worker's weight in the average, a finite number > 0 (e.g. its shard size);
            ``None``: 1.
        group: the process group (default: the world).
    Returns:
        the (weighted) mean of the workers' ``loss`` (``None`` if ``loss`` is ``None``).
    Raises:
        FloatingPointError: a non-finite loss or gradient on any worker (on every worker).
        RuntimeError: an exception on another worker; this worker's own ``error`` is re-raised.
        ValueError: a parameter outside the param store, workers reducing different
            parameters (out of step), or a ``weight`` that is not a finite number > 0.
        TypeError: a ``weight`` that is not a real number.
    """
    if weight is not None:
        try:
            weight = check_positive(weight, "weight")
        except (TypeError, ValueError) as e:  # raised on every worker, below
            error, weight = error or e, None
    store = pyro.get_param_store()
    named = []
    for p in params:
        name = store.param_name(p)
        if name is None:
            raise ValueError("all_reduce_gradients: a parameter is not in Pyro's param store")
        named.append((name, p))
    named.sort(key=lambda item: item[0])
    code = _OK if error is None else _code(error)
    if error is None:
        bad = [n for n, p in named if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if loss is not None and not torch.isfinite(torch.as_tensor(float(loss))):
            bad.insert(0, f"loss ({float(loss)})")
        if bad:
            code = _NONFINITE
            error = FloatingPointError(f"non-finite {', '.join(bad)}: no step was taken")
    if not _active(group):
        if error is not None:
            raise error
        return None if loss is None else float(loss)
    signature = "grad:" + ";".join(f"{n}{tuple(p.shape)}{p.dtype}" for n, p in named)
    where = "the gradient all-reduce"
    _exchange(code, signature, group, where=where, error=error)
    device = _device(group)
    w = 1.0 if weight is None else weight
    flags = torch.tensor(
        [float(p.grad is not None) for _, p in named]
        + [0.0 if loss is None else w * float(loss), w],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(flags, group=group)
    total = float(flags[-1])
    present = [(n, p) for (n, p), f in zip(named, flags[:-2].tolist(), strict=True) if f > 0]
    for dtype in sorted({p.dtype for _, p in present}, key=str):
        bucket = [p for _, p in present if p.dtype == dtype]
        flat = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in bucket]
        ).to(device)
        if weight is not None:
            flat *= w
        dist.all_reduce(flat, group=group)
        flat /= total
        offset = 0
        for p in bucket:
            piece = flat[offset : offset + p.numel()].view_as(p).to(p.device)
            offset += p.numel()
            p.grad = piece.clone() if p.grad is None else p.grad.copy_(piece)
    return None if loss is None else float(flags[-2]) / total


@contextmanager
def synchronize_errors(group=None) -> Iterator[None]:
    """Run a training step so that an exception on any worker stops every worker.

    On leaving the block every worker takes part in one small all-reduce of status codes: if a
    worker raised inside the block (and the error was not already shared by a collective inside
    it), its exception is re-raised there and every other worker raises ``RuntimeError`` (or
    ``FloatingPointError`` if the failure was one), instead of waiting forever in the next
    collective. Use it around steps that do not go through :class:`DistributedSVI`, e.g.
    ``pyrogen.infer.GAN.step`` with :class:`DistributedOptim` optimizers.

    Raises:
        FloatingPointError, RuntimeError: a failure on any worker (on every worker).
        ValueError: workers out of step (running different collectives).
    """
    if not _active(group):
        yield
        return
    try:
        yield
    except Exception as e:
        if getattr(e, "_pyrogen_synchronized", False):
            raise
        _exchange(_code(e), "synchronize_errors", group, where="a synchronized step", error=e)
        raise
    _exchange(_OK, "synchronize_errors", group, where="a synchronized step")


class DistributedOptim(PyroOptim):
    """A ``pyro.optim`` optimizer whose step first averages the gradients over the workers.

    ``optim(params)`` calls :func:`all_reduce_gradients` on ``params`` and then the wrapped
    optimizer, so every worker applies the same averaged gradient and the parameters stay
    identical (given identical initial values, see :func:`broadcast_parameters`). Use it where a
    pyrogen objective calls its own optimizer: both optimizers of ``pyrogen.infer.GAN`` and the
    ``discriminator_optim`` of ``pyrogen.infer.AVB``. State (``get_state``/``set_state``) and
    every other attribute (``optim_objs``; ``step()`` of a wrapped ``pyro.optim`` learning-rate
    scheduler) are the wrapped optimizer's.

    Why an all-reduce before Pyro's optimizer rather than ``DistributedDataParallel``: Pyro
    computes the loss from traces of the model and guide (with several passes for IWAE's DReG
    estimator, adversarial critics or contrastive chains), collects the parameters the traces
    touched, and only then steps the optimizer on them. DDP synchronizes through forward and
    backward hooks of one wrapped module and expects one forward pass per backward; it would
    have to wrap every network the model and guide use and would miss ``pyro.param`` tensors.
    Reducing at the optimizer step covers every parameter of every objective with one code path.

    Args:
        optim: the ``pyro.optim`` optimizer to wrap (e.g. ``pyro.optim.Adam({"lr": 1e-3})``).
        group: the process group (default: the world).
    Raises:
        TypeError: ``optim`` is not a ``pyro.optim.PyroOptim`` (or is already distributed).
    Example:
        >>> optim = DistributedOptim(pyro.optim.Adam({"lr": 1e-3}))
    """

    def __init__(self, optim: PyroOptim, *, group=None) -> None:
        if not isinstance(optim, PyroOptim) or isinstance(optim, DistributedOptim):
            raise TypeError(
                "optim must be a pyro.optim optimizer (not already distributed), got "
                f"{type(optim).__name__}"
            )
        self.optim, self.group = optim, group

    def __call__(self, params, *args, **kwargs) -> None:
        params = list(params)
        all_reduce_gradients(params, group=self.group)
        self.optim(params, *args, **kwargs)

    def __getattr__(self, name: str):
        # everything else (``optim_objs``, a scheduler's ``step``) is the wrapped optimizer's
        if name in ("optim", "group") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.optim, name)

    def get_state(self) -> dict:
        return self.optim.get_state()

    def set_state(self, state_dict: dict) -> None:
        self.optim.set_state(state_dict)


def _optims_of(loss) -> dict[str, PyroOptim]:
    return {k: v for k, v in vars(loss).items() if isinstance(v, PyroOptim)}


class DistributedSVI(SVI):
    """``pyro.infer.SVI`` for data-parallel training: ``step`` averages the gradients over the
    workers (:func:`all_reduce_gradients`) between ``loss_and_grads`` and the optimizer step.

    Every worker calls ``step`` with its own shard of the data (its model's data plate has the
    full size ``N`` and this worker's indices as ``subsample``), so each worker's loss estimates
    the full-data objective and the average gradient is the one of the total batch (for shards
    of one size; give ``shard_size`` for unequal ones). ``step`` and
    ``evaluate_loss`` return the mean of the workers' losses (nats) and are collective: every
    worker must call them, in the same order. A non-finite loss or gradient, or an exception
    raised by the loss on any worker, raises on every worker before any parameter or optimizer
    state changes.

    Loss state: the step counter of ``AnnealedELBO`` advances once per ``step`` on every worker,
    so the schedule stays identical; ``ContrastiveDivergence`` keeps persistent chains per worker
    (seed the workers differently): each worker's chains estimate the model expectation
    :math:`\\mathbb E_p[\\nabla F]` and averaging the gradients averages these estimates, as
    one run with ``W * num_chains`` chains would. ``FreeBitsELBO`` floors each worker's batch
    average of the KL, a per-worker batch statistic. An objective that steps an optimizer of its
    own (``AVB.discriminator_optim``) must be given a :class:`DistributedOptim`.

    Args:
        model, guide, loss: as in ``pyro.infer.SVI``.
        optim: a ``pyro.optim`` optimizer (a :class:`DistributedOptim` is unwrapped: the
            gradients are reduced once).
        shard_size: for shards of unequal sizes, a function of ``step``'s (and
            ``evaluate_loss``'s) arguments returning this worker's shard size; the losses and
            gradients are then averaged with these weights, which gives the single-process
            value at the union of the shards (see :func:`all_reduce_gradients`). ``None``
            (default): the plain mean, exact for equal shards.
        group: the process group (default: the world).
    Raises:
        TypeError: an optimizer held by ``loss`` that is not a :class:`DistributedOptim`.
    Example:
        >>> def model(x):
        ...     loc = pyro.param("loc", torch.zeros(()))
        ...     with pyro.plate("data", 100, subsample=torch.arange(len(x))):
        ...         pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=x)
        >>> svi = DistributedSVI(model, lambda x: None, pyro.optim.Adam({"lr": 0.1}),
        ...                      pyro.infer.Trace_ELBO())
        >>> loss = svi.step(torch.ones(4))
    """

    def __init__(
        self, model, guide, optim: PyroOptim, loss, *, shard_size=None, group=None, **kwargs
    ) -> None:
        if shard_size is not None and not callable(shard_size):
            raise TypeError(
                "shard_size must be a function of the step's arguments returning this worker's "
                f"shard size, or None; got {type(shard_size).__name__}"
            )
        for name, inner in _optims_of(loss).items():
            if not isinstance(inner, DistributedOptim):
                raise TypeError(
                    f"loss.{name} is a {type(inner).__name__}; wrap it in DistributedOptim so "
                    f"that its gradients are averaged over the workers too"
                )
        if isinstance(optim, DistributedOptim):
            optim = optim.optim
        super().__init__(model, guide, optim, loss, **kwargs)
        self.group, self.shard_size = group, shard_size

    def _weight(self, args, kwargs):
        return None if self.shard_size is None else self.shard_size(*args, **kwargs)

    def step(self, *args, **kwargs) -> float:
        """One data-parallel step on this worker's shard; returns the workers' mean loss
        (weighted by ``shard_size`` where given)."""
        loss, error, params, weight = None, None, [], None
        try:
            weight = self._weight(args, kwargs)
            with poutine.trace(param_only=True) as capture:
                loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
            params = list({s["value"].unconstrained() for s in capture.trace.nodes.values()})
            loss = float(loss)
        except Exception as e:
            if getattr(e, "_pyrogen_synchronized", False):
                raise
            error = e
        try:
            mean = all_reduce_gradients(
                params, loss=loss, error=error, weight=weight, group=self.group
            )
        except Exception:
            zero_grads(params)  # a caller that catches the error starts the next step clean
            raise
        self.optim(params)
        zero_grads(params)
        return mean

    def evaluate_loss(self, *args, **kwargs) -> float:
        """The workers' mean loss (nats) on their shards, without gradients or a step."""
        loss, error, weight = None, None, None
        try:
            weight = self._weight(args, kwargs)
            with torch.no_grad():
                loss = float(self.loss(self.model, self.guide, *args, **kwargs))
        except Exception as e:
            error = e
        return all_reduce_gradients([], loss=loss, error=error, weight=weight, group=self.group)


def broadcast_parameters(modules: Iterable[torch.nn.Module] = (), *, src: int = 0, group=None):
    """Copy every parameter of Pyro's param store (and each module's parameters and buffers)
    from worker ``src`` to all workers, in place.

    Call it once the lazily created parameters exist (after a first ``evaluate_loss`` or
    ``loss`` evaluation, which also runs data-dependent initializations such as ActNorm's on
    each worker's first batch; afterwards all workers hold ``src``'s values). Collective.

    Args:
        modules: extra ``nn.Module`` s whose buffers (or parameters outside the param store)
            must agree, e.g. networks holding running statistics.
        src: the rank whose values are kept.
        group: the process group (default: the world).
    Raises:
        ValueError: workers with different parameter names or shapes.
    """
    tensors = sorted(pyro.get_param_store().named_parameters(), key=lambda item: item[0])
    for i, module in enumerate(modules):
        tensors += [(f"module{i}.{n}", t) for n, t in module.state_dict(keep_vars=True).items()]
    if not _active(group):
        return
    signature = "broadcast:" + ";".join(f"{n}{tuple(t.shape)}{t.dtype}" for n, t in tensors)
    _exchange(_OK, signature, group, where="broadcast_parameters")
    device = _device(group)
    with torch.no_grad():
        for _, t in tensors:
            buffer = t.detach().to(device).contiguous()
            dist.broadcast(buffer, src=src, group=group)
            t.copy_(buffer.to(t.device))
