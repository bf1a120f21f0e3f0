"""Evaluation: likelihood units now; the FID/KID/IS/PR harness joins here."""

from genzoo.metrics.likelihood import bits_per_dim

__all__ = ["bits_per_dim"]
