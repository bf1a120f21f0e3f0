"""How fast this machine is, measured: equal training time compares families only on machines of one speed.

The CPU's model name does not tell machines apart (two virtual machines both called
"AMD EPYC" trained the same AE at 1,378 and 4,202 images/s), so a run under a time budget
measures a fixed workload before it trains and keeps the figure in its record; the report
warns when records that one table compares were made on machines whose figures differ.
"""

import math
import time

import torch

# the workload: one 3x3 convolution, C -> C channels, on a batch of 28x28 maps (float32), as the families' nets run
PROBE_SHAPE = (64, 32, 28, 28)  # (batch, C, H, W)
KERNEL_SHAPE = (PROBE_SHAPE[1], PROBE_SHAPE[1], 3, 3)
PROBE_FLOPS = 2 * math.prod(PROBE_SHAPE) * math.prod(KERNEL_SHAPE[1:])  # a multiply and an add per output element and tap: 0.92 GFLOP
PROBE_TEXT = (f"3x3 conv {PROBE_SHAPE[1]}->{PROBE_SHAPE[1]} channels on a {PROBE_SHAPE} float32 batch, forward, no grad, "
              "after 2 warm-up calls, repeated for {seconds:g} s; torch threads {threads}")


def conv_gflops(device="cpu", seconds: float = 1.0) -> dict:
    """Measured GFLOP/s of the fixed convolution workload on `device` over about `seconds` wall seconds.

    Deterministic inputs (no random generator is drawn, so training that follows is unchanged).
    Returns {"conv_gflops": float, "calls": int, "seconds": float, "workload": str}.
    Raises ValueError for seconds <= 0.
    """
    if seconds <= 0:
        raise ValueError(f"the speed probe needs seconds > 0, got {seconds}")
    device = torch.device(device)
    x = torch.linspace(-1, 1, math.prod(PROBE_SHAPE), device=device).reshape(PROBE_SHAPE)
    w = torch.linspace(-0.1, 0.1, math.prod(KERNEL_SHAPE), device=device).reshape(KERNEL_SHAPE)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(2):
            torch.nn.functional.conv2d(x, w, padding=1)
        sync()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.nn.functional.conv2d(x, w, padding=1)
            calls += 1
            sync()
        elapsed = time.perf_counter() - start
    return {"conv_gflops": round(calls * PROBE_FLOPS / elapsed / 1e9, 2), "calls": calls, "seconds": round(elapsed, 3),
            "workload": PROBE_TEXT.format(seconds=seconds, threads=torch.get_num_threads())}
