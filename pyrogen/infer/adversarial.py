"""Generative adversarial training with a Pyro model as the generator."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.optim import PyroOptim
from torch import nn

from pyrogen.infer.checks import check_state_keys, checked_grads, register_module, trace_params
from pyrogen.util import check_count, check_data, check_nonnegative, check_optim

__all__ = ["GAN", "gradient_penalty"]

LOSSES = ("minimax", "nonsaturating", "wasserstein")


def gradient_penalty(
    discriminator: Callable, real: torch.Tensor, fake: torch.Tensor, *args
) -> torch.Tensor:
    r"""The WGAN-GP penalty :math:`\mathbb E_{\hat x}[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2]`
    on interpolates :math:`\hat x = \epsilon x_{real} + (1 - \epsilon) x_{fake}`,
    :math:`\epsilon \sim U[0, 1]` per sample (differentiable in the critic's parameters).

    Shapes:
        real, fake: ``(N, *event)``; the critic maps ``(N, *event)`` to ``(N,)`` or ``(N, 1)``.
    Raises:
        TypeError, ValueError: ``real`` or ``fake`` not floating tensors of one shape and dtype
            with at least one row, or a critic output that is not one value per sample.
    References:
        Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville (2017). Improved Training of Wasserstein
        GANs. https://arxiv.org/abs/1704.00028
    """
    for name, t in (("real", real), ("fake", fake)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {got}")
    if fake.shape != real.shape:
        raise ValueError(f"fake has shape {tuple(fake.shape)} but real has {tuple(real.shape)}")
    if fake.dtype != real.dtype:
        raise TypeError(f"fake is {fake.dtype} but real is {real.dtype}; give both one dtype")
    if real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(
            f"real and fake must be batches (N, *event) with N >= 1, got shape {tuple(real.shape)}"
        )
    eps = torch.rand(
        (real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype, device=real.device
    )
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = _logits(discriminator(mixed, *args), real.shape[0], "discriminator")
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.reshape(real.shape[0], -1).norm(dim=1) - 1) ** 2).mean()


def _logits(out, num: int, name: str) -> torch.Tensor:
    """The critic's output as ``(num,)``: it must return ``(num,)`` or ``(num, 1)``."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) not in ((num,), (num, 1)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the {name} must return one logit (or critic value) per sample, shape ({num},) or "
            f"({num}, 1), got {got}"
        )
    return out.reshape(num)


class GAN:
    r"""Adversarial training of a Pyro generator against a discriminator (critic).

    The generator is an ordinary Pyro model ``generator(num_samples, *args)`` that samples its
    latents (reparameterizable, e.g. ``Normal(0, I)`` in a plate) and **returns** the generated
    batch ``(num_samples, *event)``; its networks are registered with ``pyro.module``. The
    discriminator is an ``nn.Module`` mapping ``(x, *args)`` to one logit (or critic value) per
    sample. ``step(data, *args)`` runs ``critic_steps`` discriminator updates and one generator
    update with their own Pyro optimizers and returns both losses. ``*args`` (e.g. one-hot
    labels) go to both networks: a conditional GAN.

    Losses, with :math:`d = D(x)` a logit and :math:`\sigma` the sigmoid:

    - ``"minimax"`` (Goodfellow et al. 2014): critic :math:`-\log\sigma(d_{real}) -
      \log(1-\sigma(d_{fake}))`, generator :math:`\log(1 - \sigma(d_{fake}))`; the optimal
      critic is :math:`\sigma(D^*) = p_{data} / (p_{data} + p_g)`.
    - ``"nonsaturating"``: same critic, generator :math:`-\log\sigma(d_{fake})` (strong
      gradients early in training).
    - ``"wasserstein"`` with gradient penalty (Gulrajani et al. 2017): critic
      :math:`D(x_{fake}) - D(x_{real}) + \lambda\,\mathrm{GP}`, generator :math:`-D(x_{fake})`.

    Known behaviour of WGAN-GP on a 1-D toy (a shifted Gaussian), seen while testing: a critic
    whose initial slope points the wrong way can stay trapped in the reversed configuration
    (turning its slope through 0 costs :math:`\lambda` in the penalty), and an Adam-driven
    generator moves at a constant speed that the critic may not track; the training test
    therefore uses the (non-saturating and minimax) logistic losses, and WGAN-GP has no training
    guarantee here yet.

    Wrap the critic's layers in ``torch.nn.utils.parametrizations.spectral_norm`` for
    spectral normalization (Miyato et al. 2018). Draw samples from the trained generator with
    :meth:`sample` (or ``pyro.infer.Predictive`` with ``return_sites=["_RETURN"]``).

    Every update checks its loss and gradients before its optimizer runs, so the one that goes
    non-finite raises and changes neither parameters nor optimizer state. To resume training,
    save ``pyro.get_param_store().get_state()`` and :meth:`state_dict` (step count, critic
    weights, both optimizers' states), and after rebuilding load them back; the critic is
    registered with ``pyro.module(..., update_module_params=True)`` so that it takes the
    restored values (register the generator's networks the same way).

    Args:
        generator: the Pyro model described above.
        discriminator: the critic network.
        generator_optim, discriminator_optim: ``pyro.optim`` optimizers.
        loss: ``"nonsaturating"`` (default), ``"minimax"`` or ``"wasserstein"``.
        critic_steps: discriminator updates per generator update (>= 1; 5 is usual for WGAN).
        penalty_weight: :math:`\lambda` of the gradient penalty (``"wasserstein"`` only).
    Raises:
        ValueError: an unknown ``loss``, ``critic_steps < 1``, ``penalty_weight < 0``; in
            ``step``, a generated batch whose shape differs from the data's, or non-finite
            data.
        FloatingPointError: in ``step``, a non-finite loss or gradient, raised before that
            update's optimizer runs (naming the step and the update).
        TypeError: a discriminator that is not an ``nn.Module``.
    References:
        Goodfellow et al. (2014). Generative Adversarial Nets. https://arxiv.org/abs/1406.2661
        Arjovsky, Chintala, Bottou (2017). Wasserstein GAN. https://arxiv.org/abs/1701.07875
    """

    def __init__(
        self,
        generator: Callable,
        discriminator: nn.Module,
        generator_optim: PyroOptim,
        discriminator_optim: PyroOptim,
        *,
        loss: str = "nonsaturating",
        critic_steps: int = 1,
        penalty_weight: float = 10.0,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not isinstance(discriminator, nn.Module):
            raise TypeError(
                f"discriminator must be an nn.Module, got {type(discriminator).__name__}"
            )
        if not callable(generator):
            raise TypeError(f"generator must be callable, got {type(generator).__name__}")
        for name, optim in (("generator_optim", generator_optim),
                            ("discriminator_optim", discriminator_optim)):  # fmt: skip
            check_optim(optim, name)
        check_count(critic_steps, "critic_steps")
        check_nonnegative(penalty_weight, "penalty_weight")
        self.generator, self.discriminator = generator, discriminator
        self.generator_optim, self.discriminator_optim = generator_optim, discriminator_optim
        self.loss, self.critic_steps, self.penalty_weight = loss, critic_steps, penalty_weight
        self.num_steps = 0
        # in the param store from the start, so that a checkpoint of an untrained GAN has its
        # entries (update_module_params: a restored param store's values are taken)
        register_module("discriminator", discriminator, "GAN")

    def sample(self, num_samples: int, *args, **kwargs) -> torch.Tensor:
        """Draws from the generator, without gradients: what it returns for
        ``generator(num_samples, *args, **kwargs)`` (the same as
        ``Predictive(generator, num_samples=1, return_sites=["_RETURN"])(...)["_RETURN"][0]``).

        Shapes:
            returns ``(num_samples, *event_shape)``.
        Raises:
            ValueError: ``num_samples < 1``.
        """
        check_count(num_samples, "num_samples")
        with torch.no_grad():
            return self.generator(num_samples, *args, **kwargs)

    def _critic(self, x: torch.Tensor, *args) -> torch.Tensor:
        # update_module_params: after a param-store restore the critic uses the restored values
        pyro.module("discriminator", self.discriminator, update_module_params=True)
        return _logits(self.discriminator(x, *args), x.shape[0], "discriminator")

    def _generate(self, num: int, data: torch.Tensor, args) -> torch.Tensor:
        x = self.generator(num, *args)
        if not isinstance(x, torch.Tensor) or x.shape != data.shape:
            raise ValueError(
                f"the generator must return a tensor shaped like the data {tuple(data.shape)}, "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        if x.dtype != data.dtype:
            raise TypeError(
                f"the generator returned {x.dtype} samples but the data are {data.dtype}; give "
                f"the data the networks' dtype (e.g. data.to({x.dtype}))"
            )
        return x

    def _check_data(self, data: torch.Tensor) -> None:
        check_data(data, "data", floating=True)
        dtypes = {p.dtype for p in self.discriminator.parameters() if p.is_floating_point()}
        if dtypes and data.dtype not in dtypes:
            raise TypeError(
                f"data are {data.dtype} but the discriminator's parameters are "
                f"{sorted(map(str, dtypes))}; give the data the networks' dtype"
            )

    def _apply(
        self, fn: Callable, optim: PyroOptim, where: str, data: torch.Tensor, kept: str | None
    ) -> float:
        """Run ``fn() -> loss`` under a param capture, check the loss and its gradients, and
        only then hand them to ``optim``: a non-finite update raises with the parameters and
        the optimizer state unchanged."""
        with poutine.trace(param_only=True) as capture:
            value = fn()
        params = trace_params(capture.trace)

        def explain() -> tuple[list[str], bool]:
            if data.is_floating_point() and not bool(torch.isfinite(data).all()):
                return ["the data contain non-finite values"], True
            return [], False

        grads = checked_grads(value, value, params, where=where, explain=explain, kept=kept)
        used = [p for p, g in zip(params, grads, strict=True) if g is not None]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optim(used)
        for p in params:
            p.grad = None
        return float(value.detach())

    def discriminator_step(self, data: torch.Tensor, *args) -> float:
        """One critic update on ``data`` against fresh generated samples; returns its loss.

        Raises:
            TypeError, ValueError: ``data`` not a floating tensor with at least one row.
        """
        self._check_data(data)
        return self._discriminator_step(data, *args)

    def _discriminator_step(self, data: torch.Tensor, *args, kept: str | None = None) -> float:

        def loss() -> torch.Tensor:
            with torch.no_grad():
                # detached: a generator returning a parameter as is (learned particles) would
                # otherwise take a gradient, and a step of the critic's optimizer
                fake = self._generate(data.shape[0], data, args).detach()
            real_d, fake_d = self._critic(data, *args), self._critic(fake, *args)
            if self.loss == "wasserstein":
                value = fake_d.mean() - real_d.mean()
                if self.penalty_weight:
                    gp = gradient_penalty(lambda x, *a: self._critic(x, *a), data, fake, *args)
                    value = value + self.penalty_weight * gp
                return value
            return F.softplus(-real_d).mean() + F.softplus(fake_d).mean()

        where = f"GAN step {self.num_steps}: discriminator update"
        return self._apply(loss, self.discriminator_optim, where, data, kept)

    def generator_step(self, data: torch.Tensor, *args) -> float:
        """One generator update (the critic is held fixed); returns its loss.

        Raises:
            TypeError, ValueError: ``data`` not a floating tensor with at least one row.
        """
        self._check_data(data)
        return self._generator_step(data, *args)

    def _generator_step(self, data: torch.Tensor, *args, kept: str | None = None) -> float:

        def loss() -> torch.Tensor:
            fake = self._generate(data.shape[0], data, args)
            # the critic is called outside pyro.module: its parameters are not updated here
            fake_d = _logits(self.discriminator(fake, *args), fake.shape[0], "discriminator")
            if self.loss == "minimax":
                return -F.softplus(fake_d).mean()
            if self.loss == "nonsaturating":
                return F.softplus(-fake_d).mean()
            return -fake_d.mean()

        where = f"GAN step {self.num_steps}: generator update"
        return self._apply(loss, self.generator_optim, where, data, kept)

    def step(self, data: torch.Tensor, *args) -> tuple[float, float]:
        """``critic_steps`` discriminator updates, then one generator update.

        Each update's loss and gradients are checked before its optimizer runs, so the update
        that goes non-finite raises with its parameters and optimizer state unchanged (updates
        earlier in the same step are kept) and the step is not counted.

        Returns:
            ``(discriminator_loss, generator_loss)`` (the last critic loss), floats.
        Raises:
            ValueError: non-finite data, a generated batch not shaped like the data, or a
                critic output that is not one value per sample.
            TypeError: data in another dtype than the networks'.
            FloatingPointError: a non-finite loss or gradient, naming the step and the update
                (and saying which earlier updates of the step were kept).
        """
        try:
            self._check_data(data)
        except ValueError as e:
            raise ValueError(f"GAN step {self.num_steps}: {e}; nothing was updated") from e
        d_loss = math.nan
        for i in range(self.critic_steps):
            kept = f"the {i} earlier discriminator update(s) of this step were kept" if i else None
            d_loss = self._discriminator_step(data, *args, kept=kept)
        kept = f"the {self.critic_steps} discriminator update(s) of this step were kept"
        g_loss = self._generator_step(data, *args, kept=kept)
        self.num_steps += 1
        return d_loss, g_loss

    def state_dict(self) -> dict:
        """The training state: ``{"num_steps": int, "discriminator": the critic's state_dict,
        "discriminator_optim": ..., "generator_optim": ...}`` (the two ``pyro.optim`` states,
        from ``get_state()``); only tensors, numbers, strings, lists and dicts, so
        ``torch.load(path, weights_only=True)`` reads it back. The generator's parameters live
        in Pyro's param store: save ``pyro.get_param_store().get_state()`` alongside."""
        return {
            "num_steps": int(self.num_steps),
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optim": self.discriminator_optim.get_state(),
            "generator_optim": self.generator_optim.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a freshly built ``GAN`` (the optimizers' states
        are applied when they first meet each parameter, as ``pyro.optim.PyroOptim.set_state``
        does).

        Raises:
            TypeError, ValueError: missing, unexpected or mistyped entries.
        """
        check_state_keys(
            state,
            {"num_steps": int, "discriminator": dict, "discriminator_optim": dict,
             "generator_optim": dict},
            "GAN",
        )  # fmt: skip
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optim.set_state(state["discriminator_optim"])
        self.generator_optim.set_state(state["generator_optim"])
        self.num_steps = int(state["num_steps"])
