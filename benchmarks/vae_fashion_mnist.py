"""Seconds per epoch and test ELBO of the default VAE on Fashion-MNIST (issue 2's figures).

    python benchmarks/vae_fashion_mnist.py [--budget fast] [--hardware cpu] [--out DIR]

Trains `model=vae data=fashion_mnist` with the chosen budget through genzoo.run (the same
path as the CLI) and prints: seconds per training epoch over the full train split
(54,000 images; validation excluded), training images/s, and the test ELBO in nats per
image and bits/dim on the full 10,000-image test split, with the protocol it came from.
"""

import argparse
import json
import tempfile

from genzoo import load_config, run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="fast")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="genzoo-bench-vae-")
    cfg = load_config(
        [
            "model=vae",
            "data=fashion_mnist",
            f"hardware={args.hardware}",
            f"budget={args.budget}",
            f"seed={args.seed}",
            "logger=none",
            "progress_bar=false",
            f"output_dir={out}",
        ]
    )
    result = run(cfg)
    timing, metrics, proto = result["timing"], result["metrics"], result["protocol"]
    print(f"run directory: {out}")
    print(f"device: {proto['hardware']['device']} ({proto['hardware']['torch_threads']} threads, {proto['hardware']['precision']})")
    print(f"budget: {proto['budget']}, epochs: {timing['epochs']}, batch size: {proto['batch_size']}, seed: {proto['seed']}")
    print(f"seconds per epoch (train split, validation excluded): {timing['train_seconds'] / timing['epochs']:.1f}")
    print(f"training images/s: {timing['train_images_per_second']:.0f}")
    print(f"test ELBO ({proto['n_test']} test images): {metrics['elbo_nats']:.1f} nats/image, {metrics['bits_per_dim']:.4f} bits/dim")
    print(json.dumps({"timing": timing, "metrics": metrics}, indent=2))


if __name__ == "__main__":
    main()
