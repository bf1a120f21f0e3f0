"""Training and sampling speed of every family on Fashion-MNIST, and DDPM's test bits/dim.

    python benchmarks/families_fashion_mnist.py [--budget fast] [--families ae,vae,gan,ddpm]
        [--hardware cpu] [--sample-batch 64] [--out DIR] [--no-train]

For each family: trains `model=<family> data=fashion_mnist` with the budget through
genzoo.run (the same path as the CLI; each family at its default batch size) and reads
training images/s (validation excluded) and the test metrics from its metrics.json. Then
it times sampling on a freshly built model of the same config (speed does not depend on
the weights): one warm-up batch, then the median of `--repeats` batches of
`--sample-batch` images. DDPM is timed with DDIM-50 (eta 0) and ancestral over all
T = 1000 steps. Prints a markdown table and writes benchmark.json into --out.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from genzoo import load_config, protocol, run
from genzoo.data import ImageDataModule
from genzoo.families import names
from genzoo.metrics.speed import timed_sampling
from genzoo.models.build import build_model

SAMPLERS = {"ddpm": [("ddim-50", {"sampler": "ddim", "steps": 50}), ("ancestral-1000", {"sampler": "ancestral"})]}


def sampling_speed(model, batch: int, repeats: int, **kwargs) -> float:
    """Median images/s over `repeats` timed batches, after one untimed warm-up batch."""
    model.eval()
    model.sample(batch, generator=torch.Generator().manual_seed(0), **kwargs)
    seconds = [timed_sampling(lambda: model.sample(batch, generator=torch.Generator().manual_seed(i), **kwargs))[1] for i in range(repeats)]
    return batch / statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="fast")
    parser.add_argument("--families", default=",".join(names()), help="comma-separated (default: every family)")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed sampling batches (1 for DDPM ancestral)")
    parser.add_argument("--no-train", action="store_true", help="time sampling only")
    parser.add_argument("--out", default=None, help="directory for the runs and benchmark.json (default: temporary)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="genzoo-bench-families-"))
    rows = []
    for family in args.families.split(","):
        overrides = [
            f"model={family}", "data=fashion_mnist", f"hardware={args.hardware}", f"budget={args.budget}",
            f"seed={args.seed}", "logger=csv", "progress_bar=false", f"output_dir={out / family}",
        ]
        cfg = load_config(overrides)
        row = {"family": family, "batch_size": cfg.data.batch_size}
        if not args.no_train:
            result = run(cfg)
            row.update(train_images_per_second=result["timing"]["train_images_per_second"], metrics=result["metrics"],
                       epochs=result["timing"]["epochs"], n_test=result["protocol"]["n_test"], hardware=result["protocol"]["hardware"])
        torch.manual_seed(args.seed)
        model = build_model(cfg.model, ImageDataModule("fashion_mnist").image_shape)
        for name, kwargs in SAMPLERS.get(family, [("default", {})]):
            repeats = 1 if name.startswith("ancestral") else args.repeats
            row[f"sample_images_per_second[{name}]"] = sampling_speed(model, args.sample_batch, repeats, **kwargs)
        rows.append(row)
        print(json.dumps(row), flush=True)

    hw = protocol.hardware(torch.device("cuda" if args.hardware == "gpu" else "cpu"), "32-true")
    print(f"\nFashion-MNIST, budget={args.budget}, seed={args.seed}, {hw['device']} ({hw['torch_threads']} threads), "
          f"sampling batch {args.sample_batch}, genzoo {protocol.git_commit()}\n")
    print("| family | batch | train img/s | sampler | sample img/s | test metrics |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in row.get("metrics", {}).items())
        for key in [k for k in row if k.startswith("sample_images_per_second")]:
            train = f"{row['train_images_per_second']:.0f}" if "train_images_per_second" in row else "-"
            print(f"| {row['family']} | {row['batch_size']} | {train} | {key[25:-1]} | {row[key]:.1f} | {metrics} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps({"rows": rows, "hardware": hw, "versions": protocol.versions()}, indent=2))
    print(f"\nruns and benchmark.json in {out}")


if __name__ == "__main__":
    main()
