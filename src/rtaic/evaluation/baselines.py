"""The traditional codecs we compare against, one class each, all through Pillow and its plugins.

Every baseline turns an 8-bit RGB image and one quality setting into a real file (bytes) and
back, and says how many of those bytes are header. Settings follow the paper's choices, plus:
JPEG 2000 with the irreversible 9/7 wavelet and the colour transform (Pillow's defaults, the
reversible 5/3 wavelet without it, are made for lossless coding and far weaker at these
rates), WebP at method 6, HEVC intra through pillow-heif standing in for BPG. Plugins are imported on first use, inside the worker that needs them, because importing
pillow-avif-plugin replaces Pillow's own AVIF support for the whole process.
"""

from __future__ import annotations

import io
from importlib import metadata

from PIL import Image, features

from rtaic.evaluation import headers


class Baseline:
    """One traditional codec at one configuration, swept over ``qualities``."""

    name: str = ""  # short key used in configs, caches and tables
    label: str = ""  # legend text
    format: str = ""  # Pillow format name
    qualities: tuple[float, ...] = ()

    def version(self) -> str:
        """Library versions that produced the bytes: part of the cache key."""
        raise NotImplementedError

    def settings(self) -> str:
        """Fixed encoder options, also part of the cache key."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.options(0).items()) if k != "quality")

    def options(self, quality: float) -> dict:
        return {"quality": int(quality)}

    def setup(self) -> None:
        """Import whatever plugin the format needs (idempotent)."""

    def encode(self, image: Image.Image, quality: float) -> bytes:
        self.setup()
        buf = io.BytesIO()
        image.save(buf, format=self.format, **self.options(quality))
        return buf.getvalue()

    def decode(self, data: bytes) -> Image.Image:
        self.setup()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")

    def header_bytes(self, data: bytes) -> int:
        raise NotImplementedError


class Jpeg(Baseline):
    """libjpeg-turbo through Pillow, optimised Huffman tables, baseline (not progressive)."""

    format = "JPEG"
    qualities = (5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95, 97, 99)

    def __init__(self, subsampling: str):
        self.subsampling = subsampling
        self.name = "jpeg" + subsampling.replace(":", "")
        self.label = f"JPEG {subsampling}"

    def version(self) -> str:
        return f"pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}"

    def options(self, quality: float) -> dict:
        return {"quality": int(quality), "subsampling": self.subsampling, "optimize": True}

    def header_bytes(self, data: bytes) -> int:
        return headers.jpeg_header_bytes(data)


class Jpeg2000(Baseline):
    """OpenJPEG, irreversible 9/7 wavelet with the colour transform; quality = target bpp."""

    name, label, format = "jpeg2000", "JPEG 2000", "JPEG2000"
    qualities = (0.05, 0.07, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)

    def version(self) -> str:
        return f"pillow {Image.__version__}, openjpeg {features.version('jpg_2000')}"

    def options(self, quality: float) -> dict:
        # OpenJPEG's "rates" are compression ratios against 24 bpp raw RGB.
        return {"quality_mode": "rates", "quality_layers": [24.0 / float(quality or 1)],
                "irreversible": True, "mct": 1, "no_jp2": True}

    def settings(self) -> str:
        return "irreversible=True,mct=1,no_jp2=True,quality_mode=rates(24/bpp)"

    def header_bytes(self, data: bytes) -> int:
        return headers.j2k_header_bytes(data)


class WebP(Baseline):
    """libwebp lossy at method 6 (slowest, best)."""

    name, label, format = "webp", "WebP", "WEBP"
    qualities = (0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100)

    def version(self) -> str:
        return f"pillow {Image.__version__}, libwebp {features.version('webp')}"

    def options(self, quality: float) -> dict:
        return {"quality": int(quality), "method": 6}

    def header_bytes(self, data: bytes) -> int:
        return headers.webp_header_bytes(data)


class Avif(Baseline):
    """libavif (AV1 intra) through pillow-avif-plugin, 4:4:4, one thread."""

    name, label, format = "avif", "AVIF", "AVIF"
    qualities = (5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80, 85, 90, 95)

    def setup(self) -> None:
        import pillow_avif  # noqa: F401  (replaces Pillow's own AVIF plugin)

    def version(self) -> str:
        import pillow_avif
        from pillow_avif import _avif

        return f"pillow-avif-plugin {pillow_avif.__version__}, {_avif.codec_versions()}"

    def options(self, quality: float) -> dict:
        return {"quality": int(quality), "speed": 6, "subsampling": "4:4:4",
                "codec": "aom", "max_threads": 1}

    def header_bytes(self, data: bytes) -> int:
        return headers.isobmff_header_bytes(data)


class JpegXL(Baseline):
    """libjxl through pillow-jxl-plugin, effort 7, bare codestream, one thread."""

    name, label, format = "jxl", "JPEG XL", "JXL"
    qualities = (5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 96, 98)

    def setup(self) -> None:
        import pillow_jxl  # noqa: F401

    def version(self) -> str:
        return f"pillow-jxl-plugin {metadata.version('pillow-jxl-plugin')}"

    def options(self, quality: float) -> dict:
        return {"quality": int(quality), "effort": 7, "use_container": False, "num_threads": 1}

    def header_bytes(self, data: bytes) -> int:
        return headers.jxl_header_bytes(data)


class Hevc(Baseline):
    """HEVC intra (x265) in HEIF through pillow-heif: the stand-in for BPG."""

    format = "HEIF"
    qualities = (5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80)

    def __init__(self, chroma: int):
        self.chroma = chroma
        self.name = f"hevc{chroma}"
        self.label = f"HEVC (HEIF) {chroma // 100}:{chroma // 10 % 10}:{chroma % 10}"

    def setup(self) -> None:
        import pillow_heif

        if "HEIF" not in Image.SAVE:
            pillow_heif.register_heif_opener()

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info['libheif']}, {info['HEIF']}"

    def options(self, quality: float) -> dict:
        return {"quality": int(quality), "chroma": self.chroma}

    def header_bytes(self, data: bytes) -> int:
        return headers.isobmff_header_bytes(data)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (Jpeg("4:2:0"), Jpeg("4:4:4"), Jpeg2000(), WebP(), Avif(), JpegXL(), Hevc(420), Hevc(444))
}


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {sorted(BASELINES)}") from None
