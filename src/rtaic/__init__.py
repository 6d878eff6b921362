"""rtaic: Real-Time Adaptive Image Compression (Rippel & Bourdev, ICML 2017)."""

__version__ = "0.1.0"
