"""Padding to the networks' multiple: smooth along the border, the same for every tile."""

import numpy as np
import torch
from PIL import Image

from rtaic.imageio import prepare
from rtaic.nn.layers import BORDER_SMOOTHING, pad_to_multiple


def _box(v: np.ndarray, width: int) -> np.ndarray:
    """Box filter of a 1-D signal with its end values repeated (the reference)."""
    r = width // 2
    padded = np.concatenate([np.full(r, v[0]), v, np.full(r, v[-1])])
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def test_padding_repeats_the_blurred_last_row_and_column():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, 37, 45), dtype=np.float32))
    padded, size = pad_to_multiple(x, 32)
    assert size == (37, 45) and padded.shape == (1, 3, 64, 64)
    assert torch.equal(padded[..., :37, :45], x)
    row = _box(x[0, 1, -1].numpy().astype(np.float64), BORDER_SMOOTHING)
    col = _box(x[0, 2, :, -1].numpy().astype(np.float64), BORDER_SMOOTHING)
    for r in (37, 50, 63):
        np.testing.assert_allclose(padded[0, 1, r, :45].numpy(), row, atol=1e-6)
    for c in (45, 63):
        np.testing.assert_allclose(padded[0, 2, :37, c].numpy(), col, atol=1e-6)
    corner = (padded[0, 0, 37, 44] + padded[0, 0, 36, 45]) / 2
    assert torch.allclose(padded[0, 0, 37:, 45:], corner.expand(27, 19))
    # smoother than the row it extends: the padding does not repeat the border's texture
    assert np.abs(np.diff(row)).mean() < 0.2 * np.abs(np.diff(x[0, 1, -1].numpy())).mean()
    assert pad_to_multiple(x[..., :32, :32], 32)[0].shape == (1, 3, 32, 32)  # no padding needed


def test_every_tile_of_a_prepared_image_pads_as_the_whole_image():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    prep = prepare(Image.fromarray(pixels))
    whole, _ = pad_to_multiple(torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None], 32)
    assert torch.equal(prep.tile(0, 0, 64, 64), whole)
    for top, left, h, w in [(16, 8, 48, 56), (0, 40, 20, 24), (30, 0, 34, 10), (8, 8, 16, 16)]:
        assert torch.equal(prep.tile(top, left, h, w), whole[..., top : top + h, left : left + w])
