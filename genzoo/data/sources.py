"""Where each dataset's files come from: torchvision's classes, a system package, download.

Every source ends in the same form: uint8 images (N, C, H, W) and int64 labels (N,).
"""

import gzip
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from genzoo.errors import DatasetNotFoundError


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset (known without touching its files)."""

    torchvision_class: str
    folder: str  # the sub-folder of the root that torchvision's class reads
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    system_dirs: tuple[str, ...] = ()  # folders of a system package with the original IDX .gz files
    system_package: str = ""  # the Debian package that installs them
    class_names: tuple[str, ...] = ()  # label k's name (torchvision's order)


DATASETS = {
    "mnist": DatasetSpec("MNIST", "MNIST", (1, 28, 28), 10, class_names=tuple(str(d) for d in range(10))),
    "fashion_mnist": DatasetSpec(
        "FashionMNIST",
        "FashionMNIST",
        (1, 28, 28),
        10,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        system_package="dataset-fashion-mnist",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetSpec(
        "CIFAR10",
        "cifar-10-batches-py",
        (3, 32, 32),
        10,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def dataset_spec(name: str) -> DatasetSpec:
    """Return the spec of `name`; raises DatasetNotFoundError for an unknown name."""
    if name not in DATASETS:
        raise DatasetNotFoundError(
            f"unknown dataset '{name}': choose one of {', '.join(sorted(DATASETS))} (data=<name>)"
        )
    return DATASETS[name]


def load_split(name: str, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of a dataset as tensors.

    Tries, in order: torchvision's files under `root`; the system package's files (copied
    once, decompressed, into `root`); torchvision's download when `download` is true.

    Args:
        name: a key of DATASETS.
        root: the dataset root (torchvision layout: `root/<folder>/...`).
        train: the train split (True) or the test split (False).
        download: whether to try torchvision's download when the files are missing.

    Returns:
        images: uint8 (N, C, H, W) in [0, 255]; labels: int64 (N,).

    Raises:
        DatasetNotFoundError: nothing found and nothing downloadable; the one-line message
        lists the paths tried and the ways to fix it.
    """
    spec = dataset_spec(name)
    cls = getattr(torchvision.datasets, spec.torchvision_class)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(f"data root {root} is a file, not a directory: set GENZOO_DATA or data.root=<a directory>")
    tried = [str(root / spec.folder)]
    damaged = None
    try:
        return _to_tensors(cls(str(root), train=train, download=False))
    except RuntimeError:
        pass  # not there (torchvision's "Dataset not found")
    except (ValueError, OSError, EOFError, IndexError, AssertionError) as err:  # there, but unreadable (torchvision asserts the magic)
        damaged = f"the files under {root / spec.folder} are damaged ({type(err).__name__}: {str(err)[:80]})"
    for system_dir in spec.system_dirs:
        tried.append(system_dir)
        try:
            if _install_idx_from(Path(system_dir), root / spec.folder / "raw"):  # also replaces damaged copies
                return _to_tensors(cls(str(root), train=train, download=False))
        except OSError as err:
            raise DatasetNotFoundError(f"cannot copy {name} into the data root {root} ({err.strerror}): "
                                       "set GENZOO_DATA or data.root=<a writable directory>") from err
    if damaged:
        raise DatasetNotFoundError(f"dataset '{name}': {damaged}. Fix: delete them to download or copy them again, "
                                   f"or install the system package that ships it{': apt-get install ' + spec.system_package if spec.system_package else ''}")
    reason = "download disabled (data.download=false)"
    if download:
        try:
            return _to_tensors(cls(str(root), train=train, download=True))
        except Exception as err:  # noqa: BLE001 - any network or file error means "not downloadable"
            detail = " ".join(f"{err} {err.__cause__ or ''}".split())[:300]
            reason = f"download failed: {type(err).__name__}: {detail}"
    fixes = [
        f"run once where there is internet with data.download=true (files go to {root})",
        f"put the files under {root / spec.folder} (choose the root with data.root=<dir> or $GENZOO_DATA)",
    ]
    if spec.system_package:
        fixes.append(f"install the system package that ships it: apt-get install {spec.system_package}")
    raise DatasetNotFoundError(
        f"dataset '{name}' not found (looked in: {', '.join(tried)}; {reason}). Fix: {'; or '.join(fixes)}."
    )


def _install_idx_from(src: Path, raw_dir: Path) -> bool:
    """Decompress the four original IDX .gz files from `src` into `raw_dir`.

    Each file is written to a temporary name and renamed, so an interrupted copy never
    leaves a truncated file that torchvision would take for complete. Returns False when
    `src` lacks any of the files.
    """
    sources = [src / f"{stem}.gz" for stem in _IDX_FILES]
    if not all(p.is_file() for p in sources):
        return False
    raw_dir.mkdir(parents=True, exist_ok=True)
    for gz, stem in zip(sources, _IDX_FILES):
        target = raw_dir / stem
        if target.is_file() and idx_intact(target):
            continue
        fd, tmp = tempfile.mkstemp(dir=raw_dir, prefix=f".{stem}.")
        with os.fdopen(fd, "wb") as out, gzip.open(gz, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, target)
    return True


def idx_intact(path: Path) -> bool:
    """Whether an IDX file (MNIST's format) is whole: its magic number is an IDX one and its size is what its header says."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:  # unsigned-byte IDX files
                return False
            dims = f.read(4 * head[3])
        if len(dims) < 4 * head[3]:
            return False
        expected = 4 + 4 * head[3] + math.prod(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))
        return path.stat().st_size == expected
    except OSError:
        return False


def _to_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels from a torchvision MNIST- or CIFAR-style dataset."""
    data = torch.as_tensor(dataset.data)
    images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # MNIST: NHW; CIFAR: NHWC
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images.contiguous(), labels
