"""One LightningDataModule for every image dataset genzoo trains on."""

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from genzoo.data.device import DeviceBatches, flip_where, to_unit_range
from genzoo.data.sampler import EpochSampler
from genzoo.data.sources import dataset_spec, load_split
from genzoo.paths import default_data_root


class UInt8Images(Dataset):
    """Images held as one uint8 tensor, served as float batches in [-1, 1] (the DataLoader path).

    `__getitems__` lets the DataLoader fetch a whole batch with one indexing op instead of
    one Python call per image (the per-image path costs more than a small model's step).
    Items are indices, or (index, flip) pairs from an EpochSampler with `flip=True`, whose
    flipped images are mirrored (the decision travels with the index, so workers need no state).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item):
        x, y = self.__getitems__([item])
        return x[0], y[0]

    def __getitems__(self, items):
        if items and isinstance(items[0], (tuple, list)):
            idx, flips = (torch.as_tensor(v) for v in zip(*items))
            return flip_where(to_unit_range(self.images.index_select(0, idx)), flips), self.labels.index_select(0, idx)
        idx = torch.as_tensor(items)
        return to_unit_range(self.images.index_select(0, idx)), self.labels.index_select(0, idx)


def _collated(batch):
    """Collate function for UInt8Images.__getitems__, whose output is already a batch."""
    return batch


LOADERS = ("device", "dataloader")


class ImageDataModule(L.LightningDataModule):
    """Train / val / test splits of one image dataset as (B, C, H, W) floats in [-1, 1].

    The validation split is carved from the official train split by a permutation seeded
    with `split_seed`, so it is the same in every run, family and process; the test split
    is the official one (its first `n_test` images when `n_test` is set).

    Args:
        name: mnist, fashion_mnist or cifar10.
        root: dataset root; None means `$GENZOO_DATA`, else `~/.cache/genzoo/data`.
        download: let torchvision download missing files (needs internet).
        batch_size: images per batch, > 0.
        val_fraction: share of the train split held out for validation, in (0, 1).
        split_seed: seed of the train/val permutation.
        num_workers: DataLoader worker processes (0 is fastest for in-memory tensors).
        n_test: evaluate on the first n test images; None for the whole test split.
        loader: "device" (default): each split is copied once, as uint8, to the training
            device and batches are cut there (genzoo/data/device.py); "dataloader": a torch
            DataLoader over CPU tensors, for datasets that do not fit on the device. Both give
            the same batches in the same order.
        random_flip: mirror training images left-right with probability 1/2 (CIFAR-10).

    Batches are `(images, labels)`: float32 (B, C, H, W) in [-1, 1] and int64 (B,).
    Raises DatasetNotFoundError (from setup) when the files are missing and not downloadable.
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_workers: int = 0,
        n_test: int | None = None,
        loader: str = "device",
        random_flip: bool = False,
    ):
        super().__init__()
        if loader not in LOADERS:
            raise ValueError(f"unknown loader '{loader}': choose one of {', '.join(LOADERS)}")
        self.spec = dataset_spec(name)
        self.loader, self.random_flip = loader, random_flip
        self._on_device = {}  # (split, device) -> (images, labels) copied there
        self.device = None  # device path without a Trainer (benchmarks, notebooks): where the splits go (None: CPU)
        self.name = name
        self.root = Path(root).expanduser() if root else default_data_root()
        self.download = download
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.num_workers = num_workers
        self.n_test = n_test
        self.train_set = self.val_set = self.test_set = self.test_images = self.test_labels = None
        self._prepared = False
        self.order_seed = 0  # seeds the training order (the runner sets the run's seed)
        self._start = (0, 0)  # (epoch, batches already trained in it) where the training order starts

    def resume_at(self, epoch: int, batches: int) -> None:
        """Start the training order at `epoch` with its first `batches` batches already trained (resume)."""
        self._start = (epoch, batches)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return self.spec.image_shape

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Label k's name, for pictures and reports."""
        return self.spec.class_names

    def prepare_data(self):
        # Runs on one process: finds, copies or downloads the files before setup reads them.
        if self._prepared or self.train_set is not None:
            return
        for train in (True, False):
            load_split(self.name, self.root, train=train, download=self.download)
        self._prepared = True

    def setup(self, stage: str | None = None):
        if self.train_set is not None:
            return
        images, labels = load_split(self.name, self.root, train=True, download=self.download)
        n_val = int(round(len(labels) * self.val_fraction))
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        self.train_set = UInt8Images(images[train_idx], labels[train_idx])
        self.val_set = UInt8Images(images[val_idx], labels[val_idx])
        images, labels = load_split(self.name, self.root, train=False, download=self.download)
        n = len(labels) if self.n_test is None else min(self.n_test, len(labels))
        self.test_set = UInt8Images(images[:n], labels[:n])
        self.test_images, self.test_labels = images, labels  # the whole test split (uint8, int64), for the evaluation harness

    def _loader(self, dataset, shuffle: bool):
        sampler = None
        if shuffle:  # a seeded order per epoch that a resumed run re-enters (see genzoo/data/sampler.py)
            epoch, batches = self._start
            # the DataLoader path takes flips as (index, flip) pairs; the device path flips by the sampler's mask itself
            pairs = self.random_flip and self.loader == "dataloader"
            sampler = EpochSampler(len(dataset), self.order_seed, epoch, skip=batches * self.batch_size, flip=pairs)
        if self.loader == "device":
            return self._device_batches(dataset, sampler, shuffle)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # its own generator: making an iterator draws a worker base seed, which from the global RNG
            # would shift every later draw of a resumed run (which makes its iterators at other moments)
            generator=torch.Generator().manual_seed(self.order_seed),
            drop_last=shuffle,  # equal-sized training batches; every val/test image is scored
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_collated,
        )

    def _device_batches(self, dataset, sampler, shuffle: bool) -> DeviceBatches:
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device(self.device or "cpu")
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        key = (id(dataset), str(device))
        if key not in self._on_device:
            self._on_device[key] = (dataset.images.to(device), dataset.labels.to(device))
        return DeviceBatches(*self._on_device[key], self.batch_size, sampler, flip=self.random_flip and shuffle,
                             drop_last=shuffle, rank=rank, world_size=world)

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self):
        return self._loader(self.test_set, shuffle=False)
