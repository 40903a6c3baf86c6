"""Sample grids as PNG files (matplotlib, imported only here)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pyrogen.util import check_count, check_real

__all__ = ["save_image_grid"]

_PAD_COLOUR = "#c8d2e0"


def _as_images(images: torch.Tensor, image_size: tuple[int, int] | None, label: str):
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"row {label!r}: expected a tensor, got {type(images).__name__}")
    images = images.detach().to("cpu", torch.float64)
    if image_size is None:
        if images.dim() == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.dim() != 3:
            raise ValueError(
                f"row {label!r}: images of shape {tuple(images.shape)} need image_size=(H, W); "
                "without it they must be (N, H, W) or (N, 1, H, W)"
            )
        return images
    h, w = image_size
    if images.dim() < 2 or images[0].numel() != h * w:
        size = images[0].numel() if images.dim() else 0
        raise ValueError(f"row {label!r}: images have {size} values, not {h * w}")
    return images.reshape(-1, h, w)


def _canvas(images: torch.Tensor, columns: int, padding: int) -> torch.Tensor:
    """Tile ``(N, H, W)`` images ``columns`` per line with ``padding`` NaN pixels between."""
    n, h, w = images.shape
    lines = max(1, math.ceil(n / columns))
    canvas = torch.full(
        (lines * (h + padding) + padding, columns * (w + padding) + padding), math.nan
    )
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        canvas[top : top + h, left : left + w] = images[i]
    return canvas


def save_image_grid(
    images: torch.Tensor | dict[str, torch.Tensor],
    path: str | Path,
    *,
    image_size: tuple[int, int] | None = None,
    per_row: int = 16,
    vmin: float = 0.0,
    vmax: float = 1.0,
    padding: int = 1,
    title: str | None = None,
) -> None:
    """Save grey-scale images to a PNG file, tensor first as in
    ``torchvision.utils.save_image(tensor, path)``.

    ``images`` is either one tensor (drawn as a grid, ``per_row`` images per line) or a dict
    from row label to tensor (one labelled strip per entry: e.g. real data, then samples of
    each model, with the numbers that score them in the label). Images are separated by
    ``padding`` pixels of a light blue-grey that is neither ink nor background. The older
    order ``save_image_grid(path, rows, ...)`` is still accepted.

    Shapes:
        images (or each value): ``(N, H * W)`` with ``image_size``, or ``(N, H, W)`` /
        ``(N, 1, H, W)``; of a dict, the first ``per_row`` of each row are drawn.
    Args:
        images: a tensor or label to tensor.
        path: the PNG file to write (its folder must exist).
        image_size: ``(H, W)``, needed for flattened images.
        per_row: images per line.
        vmin, vmax: the grey scale's range (pixel units; ``vmin`` is drawn white).
        padding: pixels between images (>= 0).
        title: the figure's title.
    Raises:
        ValueError: an empty dict, images of the wrong size, or a negative ``padding``.
        TypeError: an entry that is not a tensor.
        ImportError: matplotlib is not installed.
    """
    if isinstance(images, (str, Path)):  # the older order: (path, rows)
        images, path = path, images
    check_count(padding, "padding", minimum=0)
    check_count(per_row, "per_row")
    check_real(vmin, "vmin")
    if check_real(vmax, "vmax") <= vmin:
        raise ValueError(f"vmax must be > vmin, got vmin={vmin!r}, vmax={vmax!r}")
    if isinstance(images, dict):
        if not images:
            raise ValueError("rows must not be empty")
        canvases = {
            label: _canvas(_as_images(x, image_size, label)[:per_row], per_row, padding)
            for label, x in images.items()
        }
    else:
        grid = _as_images(images, image_size, "images")
        canvases = {None: _canvas(grid, min(per_row, max(1, len(grid))), padding)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("gray_r").with_extremes(bad=_PAD_COLOUR)
    width = max(c.shape[1] for c in canvases.values())
    height = sum(c.shape[0] for c in canvases.values())
    scale = 10.0 / width if width > 0 else 1.0
    extra = 0.3 * sum(label is not None for label in canvases) + (0.4 if title else 0.0)
    fig, axes = plt.subplots(
        len(canvases),
        1,
        figsize=(max(4.0, width * scale), height * scale + extra + 0.2),
        squeeze=False,
        height_ratios=[c.shape[0] for c in canvases.values()],
    )
    for ax, (label, canvas) in zip(axes[:, 0], canvases.items(), strict=True):
        ax.imshow(canvas.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if label is not None:
            ax.set_title(label, fontsize=9, loc="left")
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
