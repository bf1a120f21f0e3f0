"""What a run costs beyond time: peak memory and floating-point operations per generated sample."""

import resource
import sys
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from genzoo.protocol import FLOP_COUNT_SEED


def flops_per_sample(sample: Callable[..., torch.Tensor], n: int = 2) -> float:
    """Floating-point operations to draw one image: FLOPs of `sample(n, generator=...)` / n.

    Counted by torch.utils.flop_counter (matrix multiplies and convolutions, 2 per
    multiply-add; elementwise ops are not counted), so the figure is the network cost of
    the sampler: every net evaluation (NFE) of a DDPM sampler is in it.
    """
    with FlopCounterMode(display=False) as counter:
        sample(n, generator=torch.Generator().manual_seed(FLOP_COUNT_SEED))
    return counter.get_total_flops() / n


def reset_peak_memory() -> None:
    """Start a new peak: CUDA's peak statistics and, on Linux, the process's peak RSS (VmHWM).

    Several runs of one multirun share a process; without the reset each would report the
    largest peak of the runs before it.
    """
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: resets VmHWM to the current RSS
    except OSError:
        pass


def peak_memory(device: torch.device) -> dict:
    """Peak memory since the last reset_peak_memory: CUDA max allocated on a GPU, peak RSS on a CPU, in MiB."""
    if device.type == "cuda":
        return {"peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20, "peak_memory_kind": "CUDA max allocated"}
    try:
        with open("/proc/self/status") as f:
            hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return {"peak_memory_mib": hwm_kib / 2**10, "peak_memory_kind": "peak RSS of the process since the run started (CPU)"}
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
        return {"peak_memory_mib": mib, "peak_memory_kind": "peak RSS of the process since it started (CPU)"}
