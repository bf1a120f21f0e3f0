"""What a run leaves on disk: pictures and metrics.json, each written atomically."""

import contextlib
import fcntl
import io
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from torchvision.utils import save_image


def _publish(tmp: str, path: Path) -> None:
    """Give `tmp` the permissions of a normally created file, then rename it to `path`."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename: `path` is never partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them `path`
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path: Path) -> bytes:
    """torch.save `obj` to `path` atomically (serialised in memory, then atomic_write_bytes); returns the bytes written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(Path(path), data)
    return data


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive lock on `<path>.lock` (fcntl.flock) for the block: one writer of `path` at a time.

    For caches that several runs may fill at once: the second waits, then finds the first's
    file. The lock is released when the block ends or the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json(path: Path, payload: dict) -> None:
    """Atomically write `payload` as indented JSON (its folder made if missing); non-finite floats become null,
    numbers of torch or numpy (0-d tensors, scalars) plain numbers."""
    atomic_write_bytes(path, (json.dumps(_finite(payload), indent=2, default=lambda v: v.item() if hasattr(v, "item") else float(v)) + "\n").encode())


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save (N, C, H, W) images in [-1, 1] as one PNG grid of `nrow` columns, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1))
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib Figure `fig` as a PNG (110 dpi) to `path` atomically."""
    import io

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def interleave_rows(originals: torch.Tensor, reconstructions: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """Stack rows of `nrow` originals each above the row of their reconstructions.

    Both (N, C, H, W) with N divisible by nrow; returns (2N, C, H, W).
    """
    n = len(originals)
    rows = torch.stack([originals.view(n // nrow, nrow, *originals.shape[1:]), reconstructions.view(n // nrow, nrow, *originals.shape[1:])], 1)
    return rows.reshape(2 * n, *originals.shape[1:])


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
