"""The on-device data path against the usual DataLoader pipeline, as ratios from one process.

    python benchmarks/data_path.py [--data fashion_mnist] [--batch-size 256] [--device cpu] [--e2e-batch-size 128]

Prints, with the protocol (device, threads, torch version, commit):
1. Loader only (the model step excluded): images/s over full training epochs at one batch
   size, each batch moved to the device as a training loop would. Paths:
   - usual, 0 workers: torchvision's dataset class with ToTensor + Normalize(0.5, 0.5)
     per image, behind a shuffling DataLoader (the pipeline of most tutorials);
   - usual, 2 workers: the same with num_workers=2 (worker start-up counted, as in an epoch);
   - genzoo dataloader: data.loader=dataloader (uint8 tensors, one index per batch, DataLoader);
   - genzoo device: data.loader=device (the default; genzoo/data/device.py).
   The ratio is device images/s over each path's. Each path runs 1 warm-up epoch, then
   the median of 3 timed epochs (usual paths: 1 timed epoch, they take seconds).
2. End to end: one training epoch of the default VAE (genzoo/conf/model/vae.yaml) through
   Lightning, validation off, with the usual 0-worker path and with the device path, at
   --e2e-batch-size (the data config's default, 128); the ratio of epoch wall times.
The usual paths read torchvision's full train split (60,000 images), genzoo's paths its
54,000-image train split; images/s compares them fairly, epoch seconds do not.
"""

import argparse
import statistics
import time

import lightning as L
import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from genzoo import protocol
from genzoo.config import load_config
from genzoo.data import ImageDataModule
from genzoo.models.build import build_model


def usual_loader(data: ImageDataModule, batch_size: int, workers: int) -> DataLoader:
    """torchvision dataset + ToTensor/Normalize per image + a shuffling DataLoader."""
    dataset_class = getattr(torchvision.datasets, data.spec.torchvision_class)
    c = data.image_shape[0]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * c, (0.5,) * c)])
    dataset = dataset_class(str(data.root), train=True, transform=transform, download=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)


def genzoo_loader(name: str, batch_size: int, loader: str, device: torch.device):
    """genzoo's training batches over `name`'s train split, by data.loader=`loader`, held on `device` (device path)."""
    data = ImageDataModule(name, batch_size=batch_size, loader=loader)
    data.device = device
    data.setup("fit")
    return data.train_dataloader()


def epoch_rate(loader, device: torch.device, epoch: int) -> float:
    """Images/s of one pass over `loader`, every batch moved to `device` (and synchronised)."""
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)
    n = 0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def rate(loader, device, timed: int) -> float:
    epoch_rate(loader, device, 0)  # warm-up: file cache, worker start-up code paths, allocator
    return statistics.median(epoch_rate(loader, device, e) for e in range(1, timed + 1))


def vae_epoch_seconds(name: str, loader, image_shape, num_classes, device: torch.device) -> float:
    """Wall seconds of one Lightning training epoch of the default VAE over `loader`."""
    cfg = load_config(["model=vae", f"data={name}"])
    L.seed_everything(0, verbose=False)
    model = build_model(cfg.model, image_shape, num_classes)
    trainer = L.Trainer(max_epochs=1, accelerator=device.type, devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--e2e-batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    hw = protocol.hardware(device, "32-true")
    print(f"{args.data} train split, batch {args.batch_size}; {hw['device']} ({hw['torch_threads']} threads); "
          f"torch {torch.__version__}; genzoo {protocol.git_commit()}")
    data = ImageDataModule(args.data)
    data.setup("fit")

    print("\n1. loader only, images/s per epoch (model step excluded)")
    rates = {
        "usual, 0 workers": rate(usual_loader(data, args.batch_size, 0), device, 1),
        "usual, 2 workers": rate(usual_loader(data, args.batch_size, 2), device, 1),
        "genzoo dataloader": rate(genzoo_loader(args.data, args.batch_size, "dataloader", device), device, 3),
        "genzoo device": rate(genzoo_loader(args.data, args.batch_size, "device", device), device, 3),
    }
    fastest = rates["genzoo device"]
    for path, r in rates.items():
        print(f"   {path:<18} {r:>12,.0f} img/s   device path / this = {fastest / r:8.1f}x")

    print(f"\n2. end to end: one epoch of the default VAE, batch {args.e2e_batch_size}, validation off")
    usual = vae_epoch_seconds(args.data, usual_loader(data, args.e2e_batch_size, 0), data.image_shape, data.num_classes, device)
    ours = vae_epoch_seconds(args.data, genzoo_loader(args.data, args.e2e_batch_size, "device", device), data.image_shape,
                             data.num_classes, device)
    n_usual, n_ours = 60000 // args.e2e_batch_size * args.e2e_batch_size, len(data.train_set) // args.e2e_batch_size * args.e2e_batch_size
    print(f"   usual, 0 workers   {usual:6.1f} s  ({n_usual / usual:,.0f} img/s)")
    print(f"   genzoo device      {ours:6.1f} s  ({n_ours / ours:,.0f} img/s)")
    print(f"   end-to-end ratio (img/s, device / usual) = {(n_ours / ours) / (n_usual / usual):.2f}x")


if __name__ == "__main__":
    main()
