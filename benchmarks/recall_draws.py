"""How much precision, recall, density and coverage move between draws of one trained model.

    python benchmarks/recall_draws.py <run dir> [<run dir> ...] [--seeds 0 1 2] [--n 10000] [--out FILE.json]

For each finished run (checkpoints/last.ckpt) and each seed, draws --n samples (a
conditional model: image i of class i mod K) from torch.Generator().manual_seed(seed),
takes genzoo's domain-classifier features of them and of the first --n test images, and
scores precision and recall (k = 3, Kynkaanniemi et al. 2019), density and coverage (k = 5,
Naeem et al. 2020), recall per class (the share of each class's test images inside the
samples' balls) and the median radius of the samples' balls (the distance of each sample
to its third nearest sample, in feature units): a model with more outlying samples has
larger balls and earns recall that coverage does not give it. These draws are not the
run's own (its harness seeds with site_seed("evaluation", seed)). Prints markdown and
writes JSON with the protocol (device, threads, load, versions, commit).
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import write_json  # noqa: E402
from genzoo.metrics.harness import build_extractor, extract, generate, real_features  # noqa: E402
from genzoo.metrics.precision_recall import density_coverage, knn_radii, precision_recall, share_inside_balls  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    result = {"protocol": {**protocol.measurement(torch.device("cpu")), "n": args.n, "seeds": args.seeds,
                           "extractor": "genzoo domain classifier (penultimate features)", "precision_recall_k": 3, "density_coverage_k": 5},
              "runs": {}}
    hw = result["protocol"]
    print(f"{hw['device']} ({hw['torch_threads']} threads), load {hw['load_1min_before']:.2f}; genzoo {protocol.git_commit()}\n")
    print("| run | seed | precision | recall | density | coverage | median sample ball | recall per class |\n|---|---|---|---|---|---|---|---|")
    for path in args.runs:
        trained = load_run(path)
        model, data = trained.model.eval(), trained.data
        extractor = build_extractor("classifier", data, default_cache_dir(), model.device)
        n = min(args.n, len(data.test_images))
        real = real_features(extractor, data.test_images[:n], data.name, "test", default_cache_dir(), args.batch_size)
        classes = torch.as_tensor(data.test_labels[:n])
        labels = torch.arange(n) % data.num_classes if model.conditional else None
        rows = []
        for seed in args.seeds:
            fake_images = generate(model.sample, n, args.batch_size, seed, labels)
            fake, _ = extract(extractor, lambda a, b: fake_images[a:b], n, args.batch_size)
            precision, recall = precision_recall(real, fake)
            density, coverage = density_coverage(real, fake)
            radii = knn_radii(fake, 3)
            per_class = [share_inside_balls(real[classes == c], fake, radii) for c in range(data.num_classes)]
            rows.append({"seed": seed, "precision": precision, "recall": recall, "density": density, "coverage": coverage,
                         "median_ball": radii.median().item(), "recall_per_class": per_class})
            print(f"| {path.name} | {seed} | {precision:.3f} | {recall:.3f} | {density:.3f} | {coverage:.3f} | {radii.median().item():.2f} | "
                  + " ".join(f"{v:.2f}" for v in per_class) + " |", flush=True)
        result["runs"][str(path)] = rows
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
