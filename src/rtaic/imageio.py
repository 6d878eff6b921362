"""Any PIL image <-> the codec's RGB pixels, and back to the input's mode on decode.

The networks see RGB in [0, 1]. :func:`prepare` turns every PIL mode into an (H, W, 3) array
plus the scale that maps it to [0, 1] (kept in its integer dtype so that a 4000x3000 photo is
not copied to float32 whole); the codec converts tile by tile. :class:`Canvas` collects the
decoded tiles in the dtype and channel count of the mode to restore.

    RGB, RGBX, CMYK, YCbCr, HSV, P    colour, restored to the same mode (P: adaptive palette)
    L, 1                              grey, coded as R = G = B, restored as luma (1: >= 50 %)
    I;16*, I                          16-bit grey: coded from the 16-bit values, restored as
                                      16-bit (I;16) or I; values outside 0..65535 are clipped
    F                                 float grey, range 0..255 (Pillow's convention)
    RGBA, LA, PA, RGBa, La, P + tRNS  alpha: coded only if fully opaque (restored as opaque
                                      RGBA / LA); any transparency is refused with
                                      :class:`ImageModeError`, never silently dropped
    anything else Pillow can convert  coded as RGB, decoded as RGB

Training reads its image files through the same function (``prepare(image,
drop_alpha=True).rgb8()``, :func:`rtaic.data.folders.read_rgb8`), so a file means the
same pixels to both: 16-bit values are divided by 65535 whatever their range (a 16-bit
file is never guessed to hold 8-bit values: 255 in a 16-bit file is near black, as every
viewer shows it), float (F) images are on Pillow's 0..255 scale, and training stores the
networks' input rounded to 8 bits. Training drops alpha instead of refusing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from rtaic.coding.bitstream import MAX_PIXELS, MAX_SIDE
from rtaic.color import LUMA as _LUMA  # BT.601, as Pillow's convert("L")
from rtaic.nn.layers import blurred_edges, extend

_GREY_8 = {"L", "1"}
_GREY_16 = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA = {"RGBA": "RGBA", "LA": "LA", "PA": "RGBA", "RGBa": "RGBA", "La": "LA"}
_COLOUR = {"RGB", "RGBX", "CMYK", "YCbCr", "HSV", "P"}


class ImageModeError(ValueError):
    """An image the codec cannot represent faithfully (e.g. transparency, absurd size)."""


@dataclass
class Prepared:
    pixels: np.ndarray  # (H, W, 3), uint8 / uint16 / float32
    scale: float  # pixels / scale is in [0, 1]
    mode: str  # the mode decompress() restores (a bitstream.MODES entry)

    def rgb8(self) -> np.ndarray:
        """(H, W, 3) uint8: round(255 * pixels / scale), the 8-bit image nearest to what the
        networks see (the pixels themselves when they are 8-bit already)."""
        if self.pixels.dtype == np.uint8 and self.scale == 255.0:
            return self.pixels
        x = self.pixels.astype(np.float64) * (255.0 / self.scale)
        return np.rint(x).clip(0, 255).astype(np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.pixels.shape[0], self.pixels.shape[1]

    def tile(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        """Pixels [top, top + height) x [left, left + width) as (1, 3, h, w) float32 in [0, 1];
        beyond the image, the padding of :func:`rtaic.nn.layers.extend` from the whole
        image's blurred edges (so that every tile pads alike)."""
        h, w = self.size
        bottom, right = min(top + height, h), min(left + width, w)
        x = self._floats(self.pixels[top:bottom, left:right])
        ph, pw = top + height - bottom, left + width - right
        if not (ph or pw):
            return x
        row, col = self._edges
        return extend(x, ph, pw, row[..., left:right], col[..., top:bottom])

    def _floats(self, region: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32))
        return x.permute(2, 0, 1).unsqueeze(0).div_(self.scale)

    @cached_property
    def _edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's last row (1, 3, W) and column (1, 3, H), blurred along themselves."""
        row = self._floats(self.pixels[-1:, :])[..., 0, :]
        col = self._floats(self.pixels[:, -1:])[..., :, 0]
        return blurred_edges(row[..., None, :])[0], blurred_edges(col[..., :, None])[1]


def _check_opaque(image: Image.Image) -> None:
    alpha = image.getchannel("A")
    if alpha.getextrema() != (255, 255):
        raise ImageModeError(
            f"image has transparency (mode {image.mode}); rtaic codes colour only and will not "
            "drop alpha silently: flatten it onto a background first, e.g. "
            "Image.alpha_composite(background, image).convert('RGB')"
        )


def prepare(image: Image.Image, drop_alpha: bool = False) -> Prepared:
    """Normalise any PIL image to RGB pixels and the mode to restore. ``drop_alpha``: keep
    the colour of transparent pixels instead of refusing the image (training data)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    w, h = image.size
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE) or w * h > MAX_PIXELS:
        raise ImageModeError(
            f"image of {w}x{h} pixels is outside the supported range "
            f"(1..{MAX_SIDE} per side, at most {MAX_PIXELS} pixels)"
        )
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        if not drop_alpha:
            _check_opaque(image)
        return Prepared(np.asarray(image.convert("RGB")), 255.0, "P")
    if mode in _ALPHA:
        if mode in ("RGBa", "La"):  # premultiplied: check alpha on the straight version
            image = image.convert("RGBA")
        if not drop_alpha:
            _check_opaque(image)
        restore = _ALPHA[mode]
        rgb = image.convert("RGB") if restore == "RGBA" else image.convert("L").convert("RGB")
        return Prepared(np.asarray(rgb), 255.0, restore)
    if mode in _GREY_16:
        grey = np.asarray(image)
        if grey.dtype != np.uint16:
            grey = np.clip(grey, 0, 65535).astype(np.uint16)
        return Prepared(np.repeat(grey[:, :, None], 3, axis=2), 65535.0, "I" if mode == "I" else "I;16")
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 255.0)
        grey = np.nan_to_num(grey, nan=0.0)
        return Prepared(np.repeat(grey[:, :, None], 3, axis=2), 255.0, "F")
    if mode in _GREY_8:
        return Prepared(np.asarray(image.convert("L").convert("RGB")), 255.0, mode)
    if mode in _COLOUR:
        return Prepared(np.asarray(image.convert("RGB")), 255.0, mode)
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageModeError(f"cannot convert an image of mode {mode} to RGB: {e}") from e
    return Prepared(np.asarray(rgb), 255.0, "RGB")


class Canvas:
    """The decoded image, filled tile by tile, in the storage of the mode to restore."""

    def __init__(self, height: int, width: int, mode: str) -> None:
        self.mode = mode
        self.grey = mode in ("L", "1", "LA", "I;16", "I", "F")
        if mode in ("I;16", "I"):
            self.dtype, self.scale = np.uint16, 65535.0
        elif mode == "F":
            self.dtype, self.scale = np.float32, 255.0
        else:
            self.dtype, self.scale = np.uint8, 255.0
        shape = (height, width) if self.grey else (height, width, 3)
        self.pixels = np.zeros(shape, dtype=self.dtype)

    def put(self, top: int, left: int, rgb: torch.Tensor) -> None:
        """Write a (1, 3, h, w) RGB tile (any range; clamped to [0, 1]) at (top, left).

        One copy (the clamp), then in place, and numpy casts while storing: a Kodak tile
        took 1.1 ms instead of 3 (two fewer full-size temporaries), the same values.
        """
        x = rgb[0].clamp(0.0, 1.0)
        if self.grey:
            r, g, b = _LUMA
            x = r * x[0] + g * x[1] + b * x[2]
        else:
            x = x.permute(1, 2, 0)
        x.mul_(self.scale)
        if self.dtype != np.float32:
            x.round_()  # integers in range: the cast below is exact
        h, w = x.shape[0], x.shape[1]
        self.pixels[top : top + h, left : left + w] = x.numpy()

    def image(self) -> Image.Image:
        """The finished PIL image in the restored mode."""
        m, px = self.mode, self.pixels
        if m == "I;16":
            return Image.fromarray(px)  # uint16 -> I;16
        if m == "I":
            return Image.fromarray(px.astype(np.int32))
        if m == "F":
            return Image.fromarray(px)
        if m in ("L", "LA"):
            out = Image.fromarray(px)
            if m == "LA":
                out.putalpha(255)
            return out
        if m == "1":
            return Image.fromarray(px >= 128)
        out = Image.fromarray(px)
        if m == "RGB":
            return out
        if m == "RGBA":
            out.putalpha(255)
            return out
        if m == "P":
            return out.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        return out.convert(m)
