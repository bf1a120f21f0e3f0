"""Data modules and dataset sources; images are (B, C, H, W) floats in [-1, 1]."""

from genzoo.data.datamodule import ImageDataModule, to_unit_range
from genzoo.data.sources import DATASETS, dataset_spec, load_split

__all__ = ["DATASETS", "ImageDataModule", "dataset_spec", "load_split", "to_unit_range"]
