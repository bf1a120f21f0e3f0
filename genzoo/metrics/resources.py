"""What a run costs beyond time: peak memory and floating-point operations per generated sample."""

import resource
import sys
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from genzoo.protocol import FLOP_COUNT_SEED


class FlopCount(TorchDispatchMode):
    """Counts FLOPs of every op dispatched while active, by torch.utils.flop_counter's registry of per-op formulas.

    The same numbers as torch.utils.flop_counter.FlopCounterMode, without its module
    tracker, whose backward hooks refuse `torch.autograd.grad` inside the counted code (the
    WGAN-GP gradient penalty in a training step; every Langevin step of an energy-based
    model's sampler). An op without a formula is decomposed, as FlopCounterMode does, and its
    parts counted: under torch.inference_mode (the diffusion samplers) a convolution arrives
    as aten.conv2d, which has no formula, and only its decomposition into aten.convolution
    is counted. `flops`: the total so far.
    """

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket not in flop_registry and func is not torch.ops.prim.device.default:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def flops_per_sample(sample: Callable[..., torch.Tensor], n: int = 2) -> float:
    """Floating-point operations to draw one image: FLOPs of `sample(n, generator=...)` / n.

    Counted by torch.utils.flop_counter (matrix multiplies and convolutions, 2 per
    multiply-add; elementwise ops are not counted), so the figure is the network cost of
    the sampler: every net evaluation (NFE) of a DDPM sampler is in it, and the backward
    passes of an energy-based model's Langevin steps.
    """
    with FlopCount() as counter:
        sample(n, generator=torch.Generator().manual_seed(FLOP_COUNT_SEED))
    return counter.flops / n


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
