"""Sample grids."""

import pytest
import torch

from pyrogen.analysis import save_image_grid


def test_save_image_grid_writes_a_png(tmp_path):
    path = tmp_path / "grid.png"
    save_image_grid(path, {"a": torch.rand(5, 64), "b": torch.rand(3, 1, 8, 8)}, image_size=(8, 8))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_image_grid_errors(tmp_path):
    with pytest.raises(ValueError, match="rows must not be empty"):
        save_image_grid(tmp_path / "g.png", {}, image_size=(8, 8))
    with pytest.raises(ValueError, match="63 values, not 64"):
        save_image_grid(tmp_path / "g.png", {"a": torch.rand(2, 63)}, image_size=(8, 8))
