"""rtaic: Real-Time Adaptive Image Compression (Rippel & Bourdev, ICML 2017).

    import rtaic
    codec = rtaic.load_codec("model.ckpt")
    data = codec.compress(image)        # PIL image -> bytes
    image = codec.decompress(data)      # bytes -> PIL image, same size and mode

``Codec`` and ``load_codec`` are imported lazily, so ``import rtaic`` stays cheap (no torch).
"""

__version__ = "0.1.0"
__all__ = ["Codec", "load_codec", "__version__"]


def __getattr__(name: str):
    if name in ("Codec", "load_codec"):
        from rtaic import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'rtaic' has no attribute {name!r}")
