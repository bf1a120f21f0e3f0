"""The protocol card: what hardware, software and code a number came from."""

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

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
