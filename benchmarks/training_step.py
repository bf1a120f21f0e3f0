"""Training throughput per family: plain (eager, float32, NCHW, unfused Adam) against the fast preset.

    python benchmarks/training_step.py [--families ae,vae,gan,ddpm,pixelcnn] [--steps 30] [--warmup 5] [--device cuda]
        [--extra model.self_modulation=false ...]

For each family, its default config on Fashion-MNIST batches (the on-device data path,
batch 128 unless --extra sets data.batch_size; the family's own default batch, such as the
GAN's 64, is not used, so families compare per image at one batch) with the --extra
overrides trains --warmup + --steps optimiser steps through Lightning twice: plain, and
with the speed options of hardware=gpu_fast (torch.compile where the family allows it,
channels_last, fused Adam, and its precision: bf16-mixed for AE and GAN, float32 for
the likelihood families). Prints training images/s over the --steps timed steps (the
warm-up, which includes compilation, is excluded) and the ratio. On a CPU the preset's
bf16 autocast is left off (CPU bf16 is emulated on most CPUs); the precision column says
what ran.
"""

import argparse

import torch

from genzoo import protocol
from genzoo.config import load_config
from genzoo.families import names
from genzoo.metrics.training_speed import training_images_per_second


def images_per_second(family: str, fast: bool, device: torch.device, warmup: int, steps: int, extra=()) -> tuple[float, str, int]:
    """(training images/s, the precision that ran, the batch size of the composed config) of one family."""
    overrides = [f"model={family}", "data=fashion_mnist", "hardware=gpu_fast", "data.batch_size=128", *extra]
    cfg = load_config(overrides)  # as the family gets it (load_config applies the likelihood precision rule)
    precision = cfg.hardware["precision"] if fast and device.type == "cuda" else "32-true"
    return training_images_per_second(overrides, steps, warmup, device, speed_up=fast, precision=precision), precision, cfg.data.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(names()), help="comma-separated (default: every family)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every family (e.g. model.self_modulation=false)")
    args = parser.parse_args()
    device = torch.device(args.device)
    hw = protocol.hardware(device, "32-true")
    print(f"fashion_mnist, {' '.join(args.extra)}{', ' if args.extra else ''}{args.steps} timed steps after {args.warmup} warm-up; {hw['device']} "
          f"({hw['torch_threads']} threads); torch {torch.__version__}; genzoo {protocol.git_commit()}")
    for family in args.families.split(","):
        plain, _, batch = images_per_second(family, False, device, args.warmup, args.steps, args.extra)
        fast, precision, _ = images_per_second(family, True, device, args.warmup, args.steps, args.extra)
        print(f"   {family:<9} batch {batch:4d}   plain {plain:9.0f} img/s   preset ({precision}, compile/channels_last/fused) {fast:9.0f} img/s   "
              f"ratio {fast / plain:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
