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
