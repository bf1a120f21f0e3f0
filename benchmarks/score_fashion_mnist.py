"""The score family measured: FID and KID with the PC sampler and the probability-flow ODE (with their NFE),
the ODE's bits/dim against the DDPM's variational bound on the same test images, and training images/s.

    python benchmarks/score_fashion_mnist.py <score run dir> [--ddpm <ddpm run dir>] [--n 1000] [--n-test 32]
        [--samplers pc ode] [--batch-size 250] [--seed 0] [--out FILE.json]

Loads the score run's EMA weights (checkpoints/last.ckpt) and draws --n images per sampler
with the same seed (eval seed of the run's protocol does not apply: this is a side-by-side of
samplers on one trained net). Scores each with genzoo's domain classifier (penultimate
features) against the first --n test images: classifier FID and KID, with the real-data
floor at that n (the FID of --n random training images, what a perfect model would score).
NFE is the network evaluations per image the sampler made (the ODE's is the solver's count).
Then the likelihoods of the first --n-test test images: the score model's ODE bits/dim and,
with --ddpm, the DDPM's variational bound (all T terms) and the ODE likelihood of its VP-SDE
view on the same images (uniform dequantization, one Hutchinson probe; the bound is a bound,
the ODE's an unbiased estimate of an upper bound on -log P). Training images/s is read from
each run's metrics.json (the run's own clock, validation excluded). Prints markdown and
writes JSON with the protocol (device, threads, load, versions, commit) to --out.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from genzoo import protocol
from genzoo.data.device import to_unit_range
from genzoo.distributions import bits_per_dim
from genzoo.evaluation.floor import random_training_images
from genzoo.metrics.harness import build_extractor, fid_kid, generate
from genzoo.models.build import load_trained, locate
from genzoo.paths import default_cache_dir
from genzoo.training.record import RunRecord


def _load(path: str, family: str):
    run_dir, ckpt = locate(path)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    data, model, device = load_trained(cfg, ckpt)
    if model.family != family:
        raise SystemExit(f"{run_dir} is a {model.family} run; this argument takes a {family} run")
    record = RunRecord.read(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else None
    return run_dir, cfg, data, model.eval(), device, record


def _likelihoods(model, x: torch.Tensor, batch_size: int) -> dict:
    """{"ode_bits_per_dim": ..., and for a DDPM "vlb_bits_per_dim"} on x (n, C, H, W) in [-1, 1], with the seconds each took."""
    out = {}
    start = time.perf_counter()
    nll = torch.cat([(model.ode_nll_nats if model.family == "ddpm" else model.nll_nats)(x[i:i + batch_size], generator=torch.Generator().manual_seed(i))
                     for i in range(0, len(x), batch_size)])
    out["ode_bits_per_dim"], out["ode_seconds"] = bits_per_dim(nll.mean().item(), model.num_dims), time.perf_counter() - start
    if model.family == "ddpm":
        start = time.perf_counter()
        vlb = torch.cat([model.vlb_terms(x[i:i + batch_size]).sum(1) for i in range(0, len(x), batch_size)])
        out["vlb_bits_per_dim"], out["vlb_seconds"] = bits_per_dim(vlb.mean().item(), model.num_dims), time.perf_counter() - start
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("score_run")
    parser.add_argument("--ddpm", help="a DDPM run dir: its bound and ODE likelihood on the same test images")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=32)
    parser.add_argument("--samplers", nargs="+", default=["pc", "ode"], choices=["pc", "ode", "langevin"])
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    run_dir, cfg, data, model, device, record = _load(args.score_run, "score")
    hw = protocol.hardware(device, "32-true")
    print(f"{run_dir}: score, sde={model.sde_name}, weighting={model.weighting}; {data.name}; n={args.n}, seed {args.seed}; "
          f"{hw['device']} ({hw['torch_threads']} threads); torch {torch.__version__}; genzoo {protocol.git_commit()}")
    cache_dir = default_cache_dir()
    extractor = build_extractor("classifier", data, cache_dir, device)
    real = data.test_images[: args.n]

    def score(images):
        return fid_kid(extractor, images, real, data.name, "test", cache_dir, cfg.eval, args.seed)

    result = {"protocol": {**protocol.measurement(device),
                           "n": args.n, "seed": args.seed, "extractor": "genzoo domain classifier (penultimate features)",
                           "real": f"first {args.n} test images", "score_run": str(run_dir)},
              "floor": score(random_training_images(data, args.n, torch.Generator().manual_seed(args.seed)).to(device)),
              "samplers": {}}
    print(f"| sampler | NFE / image | seconds | classifier FID | KID |\n|---|---|---|---|---|\n"
          f"| real-data floor ({args.n} training images) | - | - | {result['floor']['fid']:.2f} | {result['floor']['kid']:.4f} |")
    for name in args.samplers:
        nfe = []

        def sample(k, generator=None, sampler=name):
            images = model.sample(k, generator=generator, sampler=sampler)
            nfe.append(model._last_nfe)
            return images

        start = time.perf_counter()
        images = generate(sample, args.n, args.batch_size, args.seed)
        seconds = time.perf_counter() - start
        row = {**score(images), "nfe_per_sample": sum(nfe) / len(nfe), "seconds": seconds, "protocol": model.protocol()["sampler"] if name == model.sampler else name}
        result["samplers"][name] = row
        print(f"| {name} | {row['nfe_per_sample']:.0f} | {seconds:.0f} | {row['fid']:.2f} | {row['kid']:.4f} |", flush=True)

    x = to_unit_range(data.test_images[: args.n_test]).to(device)
    result["likelihood"] = {"score": _likelihoods(model, x, 16), "n_test": args.n_test}
    result["train_images_per_second"] = {"score": record.timing.get("train_images_per_second") if record else None}
    if args.ddpm:
        ddpm_dir, _, _, ddpm, _, ddpm_record = _load(args.ddpm, "ddpm")
        result["likelihood"]["ddpm"] = _likelihoods(ddpm, x, 16)
        result["train_images_per_second"]["ddpm"] = ddpm_record.timing.get("train_images_per_second") if ddpm_record else None
        result["protocol"]["ddpm_run"] = str(ddpm_dir)
    print(f"\nbits/dim on the first {args.n_test} test images (uniform dequantization for the ODE likelihoods):")
    for family, values in result["likelihood"].items():
        if family != "n_test":
            print(f"  {family}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    print("training images/s (each run's own clock): " + ", ".join(f"{k} {v:.0f}" for k, v in result["train_images_per_second"].items() if v))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=float))



if __name__ == "__main__":
    main()
