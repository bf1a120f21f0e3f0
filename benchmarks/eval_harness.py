"""Speed of the evaluation harness, and the real-data floor with both extractors.

    python benchmarks/eval_harness.py [--data fashion_mnist] [--n 10000] [--inception-n 1000] [--device cpu]

Prints, with the protocol:
1. seconds to score `--n` images with the classifier extractor (FID, KID, IS,
   precision/recall, coverage, memorisation), sampling excluded: the "samples" are
   held-out validation images already in memory. Timed twice: cold (the classifier and
   reference features loaded or computed into the cache) and warm (all cached), which is
   what every run after the first pays;
2. Inception-v3 feature throughput in images/s (batches of 50, after a warm-up batch);
3. the real-data floor (`python -m genzoo.evaluation.floor`): training images scored against the
   test split with the classifier (`--n`) and with Inception (`--inception-n`, small on a CPU).
"""

import argparse
import json
import time

import torch

from genzoo import protocol
from genzoo.config import load_config
from genzoo.data import ImageDataModule
from genzoo.data.datamodule import to_unit_range
from genzoo.evaluation.floor import real_data_floor
from genzoo.metrics.harness import build_extractor, evaluate
from genzoo.paths import default_cache_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--inception-n", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    hw = protocol.hardware(torch.device(args.device), "32-true")
    print(f"{args.data}; {hw['device']} ({hw['torch_threads']} threads); genzoo {protocol.git_commit()}; cache {default_cache_dir()}")

    data = ImageDataModule(args.data)
    data.setup()
    held_out = to_unit_range(data.val_set.images)

    def sample(n, generator=None):
        return held_out[torch.randint(len(held_out), (n,), generator=generator)]

    eval_cfg = load_config([f"data={args.data}", "eval=classifier"]).eval
    for label in ("cold", "warm"):
        start = time.perf_counter()
        metrics, _ = evaluate(sample, data, eval_cfg, args.n, seed=0, device=args.device)
        print(f"classifier scoring of {args.n} images ({label}): {time.perf_counter() - start:.1f} s")

    inception = build_extractor("inception", data, default_cache_dir(), args.device)
    batch = held_out[:50]
    inception(batch)
    start, rounds = time.perf_counter(), 3
    for _ in range(rounds):
        inception(batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    print(f"Inception features: {rounds * len(batch) / (time.perf_counter() - start):.1f} images/s "
          f"({inception.card['weights_source']})")

    for extractor, n in (("classifier", args.n), ("inception", args.inception_n)):
        floor = real_data_floor([f"data={args.data}", f"eval={extractor}", f"eval.extractors=[{extractor}]", f"budget.eval_samples={n}"])
        print(f"real-data floor, {extractor}, n={n}: " + json.dumps({k: round(v, 4) if v is not None else None for k, v in floor["metrics"].items()}))


if __name__ == "__main__":
    main()
