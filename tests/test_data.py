from pathlib import Path

import pytest
import torch

from genzoo.data import ImageDataModule, load_split, sources
from genzoo.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def fashion(data_root):
    dm = ImageDataModule("fashion_mnist", root=str(data_root), batch_size=256, n_test=1000)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_fashion_mnist_splits_shapes_and_range(fashion):
    assert (len(fashion.train_set), len(fashion.val_set), len(fashion.test_set)) == (54000, 6000, 1000)
    assert fashion.image_shape == (1, 28, 28) and fashion.num_classes == 10
    x, y = next(iter(fashion.train_dataloader()))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    # Exactly the 256 levels of 8-bit data: x * 127.5 + 127.5 is an integer.
    assert torch.equal((x * 127.5 + 127.5).round(), x * 127.5 + 127.5)
    assert set(y.tolist()) <= set(range(10))


def test_val_split_is_fixed_by_split_seed_and_disjoint(fashion, data_root):
    again = ImageDataModule("fashion_mnist", root=str(data_root), split_seed=0)
    again.setup()
    other = ImageDataModule("fashion_mnist", root=str(data_root), split_seed=1)
    other.setup()
    assert torch.equal(again.val_set.images, fashion.val_set.images)
    assert not torch.equal(other.val_set.images, fashion.val_set.images)
    train_images, _ = load_split("fashion_mnist", data_root, train=True, download=False)
    assert len(fashion.train_set) + len(fashion.val_set) == len(train_images)


def test_batches_match_single_item_access(fashion):
    batch = fashion.test_set.__getitems__([3, 1, 4])
    for row, i in enumerate([3, 1, 4]):
        x, y = fashion.test_set[i]
        assert torch.equal(batch[0][row], x) and batch[1][row] == y


def test_missing_dataset_names_paths_and_fixes(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.DATASETS, "fashion_mnist", sources.DATASETS["fashion_mnist"].__class__(
        "FashionMNIST", "FashionMNIST", (1, 28, 28), 10, system_dirs=(str(tmp_path / "no-such-package"),),
        system_package="dataset-fashion-mnist"))
    dm = ImageDataModule("fashion_mnist", root=str(tmp_path / "root"), download=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "root" / "FashionMNIST") in msg and str(tmp_path / "no-such-package") in msg
    assert "data.download=true" in msg and "data.root=" in msg and "apt-get install dataset-fashion-mnist" in msg


def test_system_package_files_are_copied_into_the_root_once(tmp_path):
    root = tmp_path / "root"
    images, labels = load_split("fashion_mnist", root, train=False, download=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (10000,)
    raw = sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir())
    assert raw == sorted(sources._IDX_FILES)  # no temporary files left behind


def test_unknown_dataset_name():
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'svhn'"):
        ImageDataModule("svhn")


def test_mnist_is_read_where_its_files_are_present(tmp_path):
    # MNIST and Fashion-MNIST share the IDX format; files placed where torchvision looks are used
    # without any download (data.download=false).
    assert sources._install_idx_from(Path(sources.DATASETS["fashion_mnist"].system_dirs[0]), tmp_path / "MNIST" / "raw")
    dm = ImageDataModule("mnist", root=str(tmp_path), download=False, n_test=10)
    dm.setup()
    assert len(dm.train_set) == 54000 and dm.test_set.images.shape == (10, 1, 28, 28)


def _module(data_root, loader, flip=False, resume=(0, 0)):
    dm = ImageDataModule("fashion_mnist", root=str(data_root), batch_size=500, n_test=1000, loader=loader, random_flip=flip)
    dm.order_seed = 3
    dm.resume_at(*resume)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("flip", [False, True])
def test_device_path_gives_the_dataloader_paths_batches_in_the_same_order(fashion, data_root, flip):
    device, loader = (_module(data_root, kind, flip, resume=(1, 7)).train_dataloader() for kind in ("device", "dataloader"))
    assert type(device).__name__ == "DeviceBatches" and len(device) == len(loader) == 54000 // 500
    for epoch in (1, 2):  # the resumed epoch (7 batches skipped), then a whole one
        device.sampler.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        a, b = list(device), list(loader)
        assert len(a) == len(b) == 108 - (7 if epoch == 1 else 0)
        assert all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
    val_a, val_b = _module(data_root, "device").val_dataloader(), _module(data_root, "dataloader").val_dataloader()
    assert all(torch.equal(x, u) for (x, _), (u, _) in zip(val_a, val_b)) and len(val_a) == len(val_b) == 12


def test_random_flip_mirrors_about_half_of_the_images_a_new_half_each_epoch(data_root):
    dm = _module(data_root, "device", flip=True)
    plain = _module(data_root, "device").train_dataloader()
    flipped = dm.train_dataloader()
    (x, _), (f, _) = next(iter(plain)), next(iter(flipped))
    mirrored = (f == x.flip(-1)).flatten(1).all(1) & ~(f == x).flatten(1).all(1)
    assert torch.equal(mirrored | (f == x).flatten(1).all(1), torch.ones(500, dtype=torch.bool))  # each is x or its mirror
    assert 0.4 < mirrored.float().mean() < 0.6
    assert not torch.equal(flipped.sampler.flips(), (flipped.sampler.set_epoch(1), flipped.sampler.flips())[1])


def test_device_path_shards_each_epoch_into_disjoint_equal_shares_under_ddp(fashion):
    from genzoo.data.device import DeviceBatches
    from genzoo.data.sampler import EpochSampler

    images, labels = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10)
    shares = [torch.cat([y for _, y in DeviceBatches(images, labels, 2, EpochSampler(10, 0), drop_last=True, rank=r, world_size=3)])
              for r in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2] and len(set(torch.cat(shares).tolist())) == 6
    with pytest.raises(ValueError, match="unknown loader 'gpu'"):
        ImageDataModule("fashion_mnist", loader="gpu")
