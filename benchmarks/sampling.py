"""DDIM against ancestral sampling from one trained DDPM: time and classifier FID, as ratios.

    python benchmarks/sampling.py <ddpm run dir> [--n 256] [--ddim-steps 50] [--eta 0 [0.5 1]] [--guidance-scale 0] [--batch-size 128] [--no-ancestral]

Loads the run's EMA weights (checkpoints/last.ckpt) and draws --n images with the same
seed by DDIM (--ddim-steps net evaluations, once per --eta; eta 0 is deterministic DDIM,
Song et al. 2021) and by ancestral sampling over all T steps (Ho et al. 2020). Prints for
each the sampling seconds and images/s (the whole draw, inference mode, in batches of
--batch-size), and the classifier FID (genzoo's domain classifier, penultimate features)
against the first --n test images; then, per eta, the time ratio (ancestral / DDIM) and
the FID gap (DDIM / ancestral - 1). A conditional DDPM draws balanced labels (i mod K)
with guidance scale --guidance-scale (0: the plain conditional model, one net pass per step).
First it prints the floor: the FID of --n random training images (seed --seed) against the
same test images, what a perfect model would score at this n (FID's small-sample bias:
about 40 at n = 256 and 10 at n = 1,000 on Fashion-MNIST); gaps between FIDs near the
floor say little, so pick --n large enough that the samplers sit well above it.
--no-ancestral prints the DDIM rows only (the ancestral draw costs T / --ddim-steps times
as much), e.g. to follow DDIM's FID over a run's checkpoints; the run dir may be a .ckpt
file inside <run dir>/checkpoints/.
"""

import argparse
import time

import torch
from omegaconf import OmegaConf

from genzoo import protocol
from genzoo.evaluation.floor import random_training_images
from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.harness import build_extractor, extract, generate, real_features
from genzoo.models.build import load_trained, locate
from genzoo.paths import default_cache_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--eta", type=float, nargs="+", default=[0.0], help="DDIM noise scale(s), each >= 0")
    parser.add_argument("--guidance-scale", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ancestral", action="store_true", help="skip the ancestral draw: DDIM rows only")
    args = parser.parse_args()
    run_dir, ckpt = locate(args.run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    data, model, device = load_trained(cfg, ckpt)
    if model.family != "ddpm":
        raise SystemExit(f"benchmarks/sampling.py compares DDPM samplers; {run_dir} is a {model.family} run")
    hw = protocol.hardware(device, "32-true")
    print(f"{run_dir} ({data.name}, T={model.schedule.num_steps}, conditional={model.conditional}); n={args.n}, seed {args.seed}; "
          f"{hw['device']} ({hw['torch_threads']} threads); torch {torch.__version__}; genzoo {protocol.git_commit()}")

    cache_dir = default_cache_dir()
    extractor = build_extractor("classifier", data, cache_dir, device)
    real = real_features(extractor, data.test_images, data.name, "test", cache_dir, 500)[: args.n]
    real_stats = feature_statistics(real)

    def fid(images):
        return frechet_distance(*real_stats, *feature_statistics(extract(extractor, lambda a, b: images[a:b], args.n, 500)[0]))

    floor = fid(random_training_images(data, args.n, torch.Generator().manual_seed(args.seed)))
    print(f"   {'floor':<14} {args.n} random training images (seed {args.seed}) against the same test images: classifier FID {floor:8.2f}")
    labels = torch.arange(args.n) % model.num_classes if model.conditional else None
    guidance = {"guidance_scale": args.guidance_scale} if model.conditional else {}
    runs = {f"ddim eta={eta:g}": {"sampler": "ddim", "steps": args.ddim_steps, "eta": eta} for eta in args.eta}
    results = {}
    ancestral = () if args.no_ancestral else (("ancestral", {"sampler": "ancestral"}),)
    for name, kwargs in (*runs.items(), *ancestral):
        def sample(k, generator=None, **extra):
            return model.sample(k, generator=generator, **kwargs, **guidance, **extra)

        start = time.perf_counter()
        images = generate(sample, args.n, args.batch_size, args.seed, labels=labels)
        seconds = time.perf_counter() - start
        score = fid(images)
        nfe = (args.ddim_steps if name in runs else model.schedule.num_steps) * (2 if model.conditional and args.guidance_scale > 0 else 1)
        results[name] = (seconds, score)
        print(f"   {name:<14} {nfe:5d} NFE/image  {seconds:8.1f} s  {args.n / seconds:8.2f} img/s  classifier FID {score:8.2f}", flush=True)
    if args.no_ancestral:
        return
    t_anc, fid_anc = results["ancestral"]
    for name in runs:
        t_ddim, fid_ddim = results[name]
        print(f"   {name}: ancestral / DDIM time = {t_anc / t_ddim:.1f}x;  DDIM FID / ancestral FID - 1 = {fid_ddim / fid_anc - 1:+.1%}")


if __name__ == "__main__":
    main()
