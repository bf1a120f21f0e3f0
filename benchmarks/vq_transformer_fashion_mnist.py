"""The token transformer measured: FID/KID, prompted-class accuracy per prompt, what partial prompts draw,
sampling images/s with the key/value cache and without it, and its first stage's reconstruction and codebook use.

    python benchmarks/vq_transformer_fashion_mnist.py <vq_transformer run dir> [--n 1000] [--per-prompt 100]
        [--n-sample 64] [--batch-size 250] [--seed 0] [--pictures DIR] [--out FILE.json]

Loads the run's final weights (checkpoints/last.ckpt; its first stage from the directory its
config names). Scores, all with genzoo's domain classifier (penultimate features; its logits
for accuracy):
- --n samples with balanced prompts (class i mod K's name), classifier FID and KID against
  the first --n test images, beside the real-data floor at that n (--n random training images);
- --per-prompt samples for each class name as the prompt ("Ankle boot"): the share the
  classifier assigns to that class; and, for prompts of one word of a longer class name
  ("ankle", "boot", "t", "top"), the classes the classifier finds;
- --n-sample images drawn in one batch from one seed with the cache and without it, timed,
  and compared token for token;
- the first stage's test reconstruction error and codebook usage, from its own record.
With --pictures: prompts.png, one row of 8 samples per class-name prompt, in class order.
Prints markdown and writes JSON with the protocol (device, threads, load, versions, commit).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

import torch  # noqa: E402

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import save_grid, write_json  # noqa: E402
from genzoo.data.prompts import words  # noqa: E402
from genzoo.evaluation.floor import random_training_images  # noqa: E402
from genzoo.metrics.harness import build_extractor, extract, fid_kid, generate  # noqa: E402
from genzoo.metrics.speed import timed_sampling  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--per-prompt", type=int, default=100)
    parser.add_argument("--n-sample", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    trained = load_run(args.run)
    if trained.family.name != "vq_transformer":
        parser.error(f"{args.run} is a {trained.family.name} run; this script measures vq_transformer runs")
    model, data, device = trained.model, trained.data, trained.model.device
    if not model.conditional:
        parser.error(f"{args.run} is unconditional: prompted accuracy needs a run trained with model.conditional=true")
    record = RunRecord.read(args.run / "metrics.json")
    stage = RunRecord.read(Path(trained.config.model.first_stage) / "metrics.json")
    hw = protocol.measurement(device)
    load = hw["load_1min_before"]
    result = {"protocol": {**hw, "run": str(args.run), "n": args.n, "per_prompt": args.per_prompt, "n_sample": args.n_sample, "seed": args.seed,
                           "real": f"first {args.n} test images", "extractor": "genzoo domain classifier (penultimate features, logits)",
                           "family": model.protocol()}}
    print(f"{args.run}: {hw['device']} ({hw['torch_threads']} threads), load {load:.2f}; genzoo {protocol.git_commit()}")
    result["first_stage"] = {k: stage.value("metrics", k) for k in ("test_recon_mse", "codebook_usage", "codebook_perplexity")}
    result["first_stage"]["train_seconds"] = stage.value("timing", "train_seconds")
    result["run"] = {"bits_per_token": record.value("metrics", "bits_per_token"), "train_seconds": record.value("timing", "train_seconds"),
                     "train_images_per_second": record.value("timing", "train_images_per_second"),
                     "params": record.value("resources", "params")}

    cache_dir = default_cache_dir()
    extractor = build_extractor("classifier", data, cache_dir, device)
    names = data.class_names

    def score(images):
        return fid_kid(extractor, images, data.test_images[: args.n], data.name, "test", cache_dir, trained.config.eval, args.seed)

    def classes(images):
        return extract(extractor, lambda a, b: images[a:b].to(device), len(images), args.batch_size)[1].argmax(1).cpu()

    result["floor"] = score(random_training_images(data, args.n, torch.Generator().manual_seed(args.seed)).to(device))
    labels = torch.arange(args.n) % len(names)
    result["balanced"] = score(generate(model.sample, args.n, args.batch_size, args.seed, labels=labels))
    print(f"\n| images | classifier FID | KID |\n|---|---|---|\n"
          f"| real-data floor ({args.n} training images) | {result['floor']['fid']:.2f} | {result['floor']['kid']:.4f} |\n"
          f"| {args.n} samples, prompts: the class names in turn | {result['balanced']['fid']:.2f} | {result['balanced']['kid']:.4f} |")

    result["prompts"] = {}
    # words of the multi-word names that are no class's name alone: what does "boot" draw?
    partial = sorted({w for name in names if len(words(name)) > 1 for w in words(name)} - {name.lower() for name in names})
    prompts = [*names, *partial]
    print("\n| prompt | the classifier's classes of its samples | accuracy |\n|---|---|---|")
    for k, prompt in enumerate(prompts):
        images = generate(lambda n, generator: model.sample(n, generator, prompts=[prompt] * n), args.per_prompt, args.batch_size, args.seed + k)
        found = torch.bincount(classes(images), minlength=len(names)) / len(images)
        row = {"classes": {names[c]: found[c].item() for c in found.argsort(descending=True)[:3].tolist() if found[c] > 0}}
        if k < len(names):
            row["accuracy"] = found[k].item()
        result["prompts"][prompt] = row
        shares = ", ".join(f"{c} {s:.0%}" for c, s in row["classes"].items())
        print(f"| {prompt} | {shares} | {row['accuracy']:.2f} |" if "accuracy" in row else f"| {prompt} | {shares} | - |", flush=True)
    accuracies = [result["prompts"][n]["accuracy"] for n in names]
    result["prompted_accuracy"] = sum(accuracies) / len(accuracies)
    print(f"\nprompted-class accuracy (mean over the {len(names)} class names, {args.per_prompt} samples each): {result['prompted_accuracy']:.3f}")

    sampling = {}
    for cache in (True, False):
        images, seconds = timed_sampling(lambda cache=cache: model.sample(args.n_sample, torch.Generator().manual_seed(args.seed), kv_cache=cache))
        sampling["cache" if cache else "no_cache"] = {"images_per_second": args.n_sample / seconds, "images": images}
    same = torch.equal(sampling["cache"].pop("images"), sampling["no_cache"].pop("images"))
    result["sampling"] = {**sampling, "same_images": same}
    print(f"sampling {args.n_sample} images in one batch: {sampling['cache']['images_per_second']:.1f} images/s with the cache, "
          f"{sampling['no_cache']['images_per_second']:.1f} without (same images: {same})")
    fs = result["first_stage"]
    print(f"first stage: test recon MSE {fs['test_recon_mse']:.4f}, codebook usage {fs['codebook_usage']:.2f}, "
          f"perplexity {fs['codebook_perplexity']:.1f}; the run's test bits/token {result['run']['bits_per_token']:.3f}")

    if args.pictures:
        args.pictures.mkdir(parents=True, exist_ok=True)
        rows = [model.sample(8, torch.Generator().manual_seed(args.seed), prompts=[name] * 8) for name in names]
        save_grid(torch.cat(rows), args.pictures / "prompts.png", nrow=8)
        print(f"prompts.png: one row per class name, in class order: {args.pictures / 'prompts.png'}")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
