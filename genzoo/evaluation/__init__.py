"""Entry points that score or draw from trained runs: re-scoring (rescore), the real-data floor (floor), latent pictures (latent)."""
