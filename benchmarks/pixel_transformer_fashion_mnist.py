"""The pixel transformer beside the PixelCNN: exact bits/dim on the same test images, and sampling images/s
with the key/value cache and without it (and the PixelCNN's), each run's training images/s.

    python benchmarks/pixel_transformer_fashion_mnist.py <pixel_transformer run dir> [--pixelcnn <run dir>]
        [--n-test 10000] [--n-sample 16] [--batch-size 250] [--seed 0] [--out FILE.json]

Loads each run's final weights (checkpoints/last.ckpt). Bits/dim: the exact negative
log-likelihood of the first --n-test test images (the same images for both models). Sampling:
--n-sample images drawn in one batch from the same seed, timed once per sampler (cache on, cache
off; the PixelCNN's raster sampler); the cached and uncached draws are compared pixel for pixel.
Prints markdown and writes JSON with the protocol (device, threads, load, versions, commit).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

import torch  # noqa: E402

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import write_json  # noqa: E402
from genzoo.data.device import to_unit_range  # noqa: E402
from genzoo.distributions import bits_per_dim  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402


def _bits_per_dim(model, x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    with torch.no_grad():
        nll = torch.cat([-model.log_prob(x[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return bits_per_dim(nll.mean().item(), model.num_dims)


def _timed(sample, n: int, seed: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    images = sample(n, generator=torch.Generator().manual_seed(seed))
    return images, n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("transformer_run", type=Path)
    parser.add_argument("--pixelcnn", type=Path)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--n-sample", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    runs = {"pixel_transformer": load_run(args.transformer_run)}
    if args.pixelcnn:
        runs["pixelcnn"] = load_run(args.pixelcnn)
    for name, trained in runs.items():
        if trained.family.name != name:
            parser.error(f"{trained.run_dir} is a {trained.family.name} run, not a {name} run")
    transformer = runs["pixel_transformer"]
    device = transformer.model.device
    result = {"protocol": {**protocol.measurement(device), "n_test": args.n_test, "n_sample": args.n_sample, "seed": args.seed,
                           "runs": {k: str(v.run_dir) for k, v in runs.items()}},
              "models": {}}
    data = transformer.data
    x = to_unit_range(data.test_images[: args.n_test]).to(device)
    labels = data.test_labels[: args.n_test].to(device)
    for name, trained in runs.items():
        model = trained.model
        record = RunRecord.read(trained.run_dir / "metrics.json") if (trained.run_dir / "metrics.json").is_file() else None
        row = {"bits_per_dim": _bits_per_dim(model, x, labels, args.batch_size), "params": sum(p.numel() for p in model.parameters()),
               "train_images_per_second": record.timing.get("train_images_per_second") if record else None}
        if name == "pixel_transformer":
            cached, row["sample_images_per_second_cache"] = _timed(lambda n, generator: model.sample(n, generator, kv_cache=True), args.n_sample, args.seed)
            full, row["sample_images_per_second_no_cache"] = _timed(lambda n, generator: model.sample(n, generator, kv_cache=False), args.n_sample, args.seed)
            row["cache_and_no_cache_draw_the_same_pixels"] = bool(torch.equal(cached, full))
        else:
            _, row["sample_images_per_second"] = _timed(model.sample, args.n_sample, args.seed)
        result["models"][name] = row
    print(f"| model | params | exact bits/dim ({len(x)} test images) | train img/s | sample img/s |\n|---|---|---|---|---|")
    for name, row in result["models"].items():
        sampling = (f"{row['sample_images_per_second_cache']:.2f} with the cache, {row['sample_images_per_second_no_cache']:.2f} without"
                    if name == "pixel_transformer" else f"{row['sample_images_per_second']:.2f}")
        print(f"| {name} | {row['params']:,} | {row['bits_per_dim']:.4f} | {row['train_images_per_second'] or 0:.0f} | {sampling} |")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
