"""Sample grids."""

import pytest
import torch

from pyrogen.analysis import save_image_grid

PNG = b"\x89PNG\r\n\x1a\n"


def test_save_image_grid_takes_the_tensor_first_like_torchvision(tmp_path):
    path = tmp_path / "grid.png"
    save_image_grid(torch.rand(20, 1, 8, 8), path, title="twenty images")
    assert path.read_bytes()[:8] == PNG
    labelled = tmp_path / "rows.png"
    rows = {"a": torch.rand(5, 64), "b": torch.rand(3, 1, 8, 8)}
    save_image_grid(rows, labelled, image_size=(8, 8), title="two rows")
    assert labelled.read_bytes()[:8] == PNG


def test_save_image_grid_keeps_the_older_path_first_order(tmp_path):
    new, old = tmp_path / "new.png", tmp_path / "old.png"
    rows = {"a": torch.rand(4, 64, generator=torch.Generator().manual_seed(0))}
    save_image_grid(rows, new, image_size=(8, 8))
    save_image_grid(old, rows, image_size=(8, 8))
    assert old.read_bytes() == new.read_bytes()


def _padding_pixels(path) -> int:
    image = pytest.importorskip("matplotlib.image").imread(path)[..., :3]
    pad = torch.tensor([0xC8, 0xD2, 0xE0]) / 255
    return int(((torch.as_tensor(image) - pad).abs().max(-1).values < 0.03).sum())


def test_images_are_separated_by_padding(tmp_path):
    images = torch.zeros(16, 8, 8)  # white images: only padding can have the padding colour
    save_image_grid({"row": images}, tmp_path / "pad.png", padding=1)
    save_image_grid({"row": images}, tmp_path / "nopad.png", padding=0)
    assert _padding_pixels(tmp_path / "pad.png") > 100
    assert _padding_pixels(tmp_path / "nopad.png") == 0


def test_save_image_grid_errors(tmp_path):
    with pytest.raises(ValueError, match="rows must not be empty"):
        save_image_grid({}, tmp_path / "g.png", image_size=(8, 8))
    with pytest.raises(ValueError, match="63 values, not 64"):
        save_image_grid({"a": torch.rand(2, 63)}, tmp_path / "g.png", image_size=(8, 8))
    with pytest.raises(ValueError, match="need image_size"):
        save_image_grid(torch.rand(2, 64), tmp_path / "g.png")
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        save_image_grid(torch.rand(2, 8, 8), tmp_path / "g.png", padding=-1)
    with pytest.raises(TypeError, match="expected a tensor"):
        save_image_grid({"a": [1, 2]}, tmp_path / "g.png")
