"""Everything between the latent and the bytes (plain torch/numpy; no training stack)."""
