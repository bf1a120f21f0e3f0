"""Sampling throughput: images per second of a sampler callable, timed honestly on its device."""

import time
from collections.abc import Callable

import torch


def timed_sampling(sample: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Call `sample()` once and return (its images, wall seconds).

    CUDA work is synchronised before the clock starts and before it stops, so the time
    covers the whole computation, not its launch. No warm-up call is made: the figure
    includes first-call costs, as a user drawing one batch sees them.
    """
    _sync()
    start = time.perf_counter()
    images = sample()
    _sync()
    return images, time.perf_counter() - start


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
