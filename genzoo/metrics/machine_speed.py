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
              "after 2 warm-up calls, the best of {rounds} rounds of {round_seconds:g} s; torch threads {threads}")


def conv_gflops(device="cpu", seconds: float = 1.0, rounds: int = 5) -> dict:
    """Measured GFLOP/s of the fixed convolution workload on `device`: the best of `rounds` rounds over `seconds` in all.

    The best round, as `timeit` advises: a round is slowed by whatever else the machine does
    at that moment (a single 1 s figure once read 40 GFLOP/s on a machine whose other probes
    read 112-132), never sped up, so the fastest round is the machine's speed and the load
    while training is recorded apart. Deterministic inputs (no random generator is drawn, so
    training that follows is unchanged).
    Returns {"conv_gflops": float (best round), "rounds_gflops": [float, ...], "calls": int,
    "seconds": float, "workload": str}.
    Raises ValueError for seconds <= 0 or rounds < 1.
    """
    if seconds <= 0 or rounds < 1:
        raise ValueError(f"the speed probe needs seconds > 0 and rounds >= 1, got seconds={seconds}, rounds={rounds}")
    device = torch.device(device)
    x = torch.linspace(-1, 1, math.prod(PROBE_SHAPE), device=device).reshape(PROBE_SHAPE)
    w = torch.linspace(-0.1, 0.1, math.prod(KERNEL_SHAPE), device=device).reshape(KERNEL_SHAPE)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    per_round, total_calls, total_seconds = [], 0, 0.0
    with torch.no_grad():
        for _ in range(2):
            torch.nn.functional.conv2d(x, w, padding=1)
        sync()
        for _ in range(rounds):
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                torch.nn.functional.conv2d(x, w, padding=1)
                calls += 1
                sync()
            elapsed = time.perf_counter() - start
            per_round.append(round(calls * PROBE_FLOPS / elapsed / 1e9, 2))
            total_calls, total_seconds = total_calls + calls, total_seconds + elapsed
    return {"conv_gflops": max(per_round), "rounds_gflops": per_round, "calls": total_calls, "seconds": round(total_seconds, 3),
            "workload": PROBE_TEXT.format(rounds=rounds, round_seconds=seconds / rounds, threads=torch.get_num_threads())}
