"""Plain torch networks of the codec (no Lightning, Hydra or W&B here)."""

from rtaic.nn.autoencoder import Architecture, Autoencoder, AutoencoderOutput
from rtaic.nn.decoder import Decoder
from rtaic.nn.encoder import Encoder

__all__ = ["Architecture", "Autoencoder", "AutoencoderOutput", "Decoder", "Encoder"]
