"""rtaic: Real-Time Adaptive Image Compression (Rippel & Bourdev, ICML 2017).

    import rtaic
    codec = rtaic.load_codec("model.ckpt")
    data = codec.compress(image)        # PIL image -> bytes
    image = codec.decompress(data)      # bytes -> PIL image, same size and mode
    data = rtaic.compress_to_size(image, "20KB")   # the zoo model and cut that fit best

``Codec``, ``load_codec`` and ``compress_to_size`` are imported lazily, so ``import rtaic``
stays cheap (no torch).
"""

__version__ = "0.1.0"
__all__ = ["Codec", "load_codec", "compress_to_size", "__version__"]


def __getattr__(name: str):
    if name in ("Codec", "load_codec"):
        from rtaic import codec

        return getattr(codec, name)
    if name == "compress_to_size":
        from rtaic import sizing

        return sizing.compress_to_size
    raise AttributeError(f"module 'rtaic' has no attribute {name!r}")
