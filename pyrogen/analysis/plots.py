"""Sample grids as PNG files (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["save_image_grid"]


def save_image_grid(
    path: str | Path,
    rows: dict[str, torch.Tensor],
    *,
    image_size: tuple[int, int],
    per_row: int = 16,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> None:
    """Save one labelled strip of grey-scale images per entry of ``rows`` (e.g. real data,
    then samples of each model) to a PNG file.

    Shapes:
        rows: values ``(N, H * W)`` or ``(N, 1, H, W)``; the first ``per_row`` are drawn.
    Args:
        path: the PNG file to write (its folder must exist).
        rows: label to images.
        image_size: ``(H, W)``.
        per_row: images per strip.
        vmin, vmax: the grey scale's range (pixel units).
    Raises:
        ValueError: an empty ``rows`` or images whose size is not ``H * W``.
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows must not be empty")
    h, w = image_size
    strips = {}
    for label, images in rows.items():
        images = images[:per_row].detach().to("cpu", torch.float64)
        if images[0].numel() != h * w:
            raise ValueError(f"row {label!r}: images have {images[0].numel()} values, not {h * w}")
        strips[label] = images.reshape(-1, h, w).permute(1, 0, 2).reshape(h, -1).numpy()
    fig, axes = plt.subplots(
        len(strips), 1, figsize=(0.6 * per_row, 1.0 * len(strips)), squeeze=False
    )
    for ax, (label, strip) in zip(axes[:, 0], strips.items(), strict=True):
        ax.imshow(strip, cmap="gray_r", vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
