"""Scoring speed: genzoo's evaluation harness against torchmetrics fed batch by batch from a DataLoader.

    python benchmarks/evaluation.py [--data fashion_mnist] [--n 5000] [--device cpu] [--batch-size 64]

Both compute the same classifier FID (genzoo's domain classifier, its 128-d penultimate
features) between --n "generated" images (held-out validation images already in memory,
so sampling is excluded) and the whole test split:
- usual: torchmetrics' FrechetInceptionDistance with that classifier as its feature
  network, fed the test split from a torchvision Dataset (ToTensor + Normalize) behind a
  DataLoader and the generated images, both in batches of --batch-size, as most training
  scripts do; the real side is recomputed every time;
- genzoo: the harness's path: features in batches of 500 on the device, the test split's
  features from the cache (computed once per dataset and extractor), Frechet distance in
  float64 (genzoo/metrics/frechet.py).
Prints both FIDs (they must agree), both times and the ratio, with the protocol; the
genzoo time is the warm one (cache filled), which is what every run after the first pays.
"""

import argparse
import time

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision import transforms

from genzoo import protocol
from genzoo.data import ImageDataModule
from genzoo.data.datamodule import to_unit_range
from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.harness import build_extractor, extract, real_features
from genzoo.paths import default_cache_dir


class Features(nn.Module):
    """The classifier's penultimate features only, as torchmetrics' custom feature network."""

    def __init__(self, net, num_features: int):
        super().__init__()
        self.net, self.num_features = net, num_features

    def forward(self, x):
        return self.net(x)[0].double()


def genzoo_fid(extractor, data, fake: torch.Tensor, cache_dir) -> float:
    real = real_features(extractor, data.test_images, data.name, "test", cache_dir, 500)
    features, _ = extract(extractor, lambda a, b: fake[a:b], len(fake), 500)
    return frechet_distance(*feature_statistics(real), *feature_statistics(features))


def torchmetrics_fid(extractor, data, fake: torch.Tensor, batch_size: int, device) -> float:
    c = data.image_shape[0]
    dataset = getattr(torchvision.datasets, data.spec.torchvision_class)(
        str(data.root), train=False, download=False,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * c, (0.5,) * c)]))
    metric = FrechetInceptionDistance(feature=Features(extractor.net, extractor.net.head.in_features), normalize=True).to(device)
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=batch_size):
            metric.update(x.to(device), real=True)
        for start in range(0, len(fake), batch_size):
            metric.update(fake[start : start + batch_size].to(device), real=False)
        return metric.compute().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    hw = protocol.hardware(device, "32-true")
    data = ImageDataModule(args.data)
    data.setup()
    fake = to_unit_range(data.val_set.images[: args.n])
    cache_dir = default_cache_dir()
    extractor = build_extractor("classifier", data, cache_dir, device)
    extractor.net.eval()
    print(f"{args.data}: {len(fake)} held-out images against the {len(data.test_images)}-image test split, classifier features; "
          f"{hw['device']} ({hw['torch_threads']} threads); torch {torch.__version__}; genzoo {protocol.git_commit()}")
    genzoo_fid(extractor, data, fake, cache_dir)  # fills the cache (once per dataset and extractor)
    start = time.perf_counter()
    ours = genzoo_fid(extractor, data, fake, cache_dir)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    usual = torchmetrics_fid(extractor, data, fake, args.batch_size, device)
    t_usual = time.perf_counter() - start
    print(f"   usual (torchmetrics, DataLoader, batch {args.batch_size})  FID {usual:10.4f}  {t_usual:7.2f} s")
    print(f"   genzoo harness (batch 500, cached real statistics)  FID {ours:10.4f}  {t_ours:7.2f} s")
    print(f"   speed-up = {t_usual / t_ours:.1f}x;  FID relative difference = {abs(ours - usual) / usual:.2e}")


if __name__ == "__main__":
    main()
