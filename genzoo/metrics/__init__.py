"""Measurement: the evaluation harness (harness), its extractors (classifier, inception) and the metric math (FID, KID, IS, precision/recall, novelty, control, speed, resources)."""
