"""The protocol card: what hardware, software and code a number came from."""

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

# Which seed each sampling site draws from: a CPU torch.Generator seeded with cfg.seed + offset,
# so the sites never share noise and each is repeatable on its own. metrics.json's
# protocol.seed_offsets repeats this table. The FLOP count draws with the fixed seed 0
# (its count does not depend on the noise).
SEED_OFFSETS = {
    "grid": 0,            # samples.png, the grid logged after each epoch, the latent pictures
    "evaluation": 1,      # the harness's samples (and the floor's training images); KID subsets use offset 0
    "quality_curve": 2,   # the same latents at every point of the quality curve
    "control": 3,         # conditional models: class accuracy and per-class FID
    "guidance_sweep": 4,  # conditional DDPM: the samples at each guidance scale
    "editing": 5,         # the prior draws labelled for editing, and the edits' KID subsets
}
FLOP_COUNT_SEED = 0


def site_seed(site: str, seed: int) -> int:
    """The seed sampling site `site` (a key of SEED_OFFSETS) uses for the run seed `seed`; KeyError for an unknown site."""
    return seed + SEED_OFFSETS[site]


_PACKAGES = ("genzoo", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "numpy")


def versions() -> dict:
    """Python and the key package versions (None for a package that is not installed)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware(device: torch.device, precision: str, world_size: int = 1, strategy: str = "single device") -> dict:
    """The device that trained (GPU name or CPU model), CPU threads, precision, processes and strategy."""
    return {
        "accelerator": device.type,
        "world_size": world_size,
        "strategy": strategy,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "precision": str(precision),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def measurement(device: torch.device, precision: str = "32-true") -> dict:
    """What a benchmark's figures were measured on: `hardware`, the 1-minute load average when it started, versions, the commit."""
    return {**hardware(device, precision), "load_1min_before": os.getloadavg()[0], "versions": versions(), "git_commit": git_commit()}


def git_commit() -> str | None:
    """The commit of the genzoo source tree, with '-dirty' if it has local changes; None outside git."""
    src = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform
