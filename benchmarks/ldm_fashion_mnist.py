"""Latent diffusion beside pixel diffusion, and the DiT beside the U-Net, from finished runs.

    python benchmarks/ldm_fashion_mnist.py --ldm <run dir> --ddpm <run dir> [--dit <run dir>]
        [--n 1000] [--seed 0] [--out FILE.json] [--pictures DIR]

Give runs trained the same way (e.g. the equal-time sweep's `ldm` and `ddpm` runs of one seed,
and `model=ddpm model.net=dit` under the same budget). From each run's metrics.json: the
training clock (seconds), training images/s and FLOPs, parameters, classifier FID/KID/recall at
the record's n beside its real-data floor, network evaluations and images/s of its sampler.
Measured here from the final weights (checkpoints/last.ckpt):
- FLOPs per sample, counted again (genzoo.metrics.resources.flops_per_sample over 2 samples);
  records written before the counter saw ops under torch.inference_mode give 0 for the
  diffusion samplers;
- for the LDM, its first stage's cost (the first stage's own record: training seconds and
  FLOPs, counted apart from the LDM's) and the reconstruction floor: the first stage's
  reconstructions of the real-data floor's --n training images (the same draw), scored with
  the same classifier against the first --n test images. An LDM cannot draw better than its
  decoder reconstructs: its FID sits above this floor, as every family's sits above the
  real-data floor.
With --pictures, DIR gets the LDM's 64 samples (seed --seed, the sampler its run chose) with
x0 clipped to its bound (ldm_samples.png) and unclipped (ldm_samples_unclipped.png), and its
first stage's reconstructions of 32 test images beside them (ldm_first_stage.png).
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
from genzoo.data.device import to_unit_range  # noqa: E402
from genzoo.evaluation.comparison import floor_images, use_recorded_sampler  # noqa: E402
from genzoo.metrics.harness import build_extractor, eval_cache_dir, fid_kid  # noqa: E402
from genzoo.metrics.resources import flops_per_sample  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402

ROLES = {"ldm": "ldm", "ddpm": "ddpm", "dit": "ddpm"}  # --<role>: the family its run must be


def row(trained) -> dict:
    """A run's figures from its record, with FLOPs per sample counted again on its final weights."""
    record = RunRecord.read(trained.run_dir / "metrics.json")
    metrics, timing, resources = record.metrics, record.timing, record.resources
    floor = metrics.get("floor") or {}
    return {
        "run": str(trained.run_dir), "status": record.status, "net": trained.config.model.get("net", "unet"),
        "params": timing.get("params"),
        "train_seconds": timing.get("train_seconds"), "train_images_per_second": timing.get("train_images_per_second"),
        "train_flops": timing.get("train_flops"),
        "fid_classifier": metrics.get("fid_classifier"), "kid_classifier": metrics.get("kid_classifier"),
        "recall_classifier": metrics.get("recall_classifier"), "n": floor.get("n"), "floor_fid_classifier": floor.get("fid_classifier"),
        "nfe_per_sample": resources.get("nfe_per_sample"), "flops_per_sample": flops_per_sample(trained.model.sample),
        "flops_per_sample_recorded": resources.get("flops_per_sample"),
        "sample_images_per_second": timing.get("sample_images_per_second"), "sampler": timing.get("sampler"),
    }


def first_stage(trained, n: int, seed: int) -> dict:
    """The LDM's first stage: its own record's cost and error, and the reconstruction floor at n (see the module doc)."""
    model, data, eval_cfg = trained.model, trained.data, trained.config.eval
    stage_dir = Path(trained.config.model.first_stage)
    record = RunRecord.read(stage_dir / "metrics.json")
    n = min(n, len(data.test_images))
    images, draw = floor_images(data, n, seed)  # the real-data floor's draw
    with torch.no_grad():
        recon = torch.cat([model.first_stage(model.first_stage.encode(images[i:i + 250].to(model.device))).cpu()
                           for i in range(0, n, 250)])
    cache = eval_cache_dir(eval_cfg)
    extractor = build_extractor("classifier", data, cache, model.device)
    scores = fid_kid(extractor, recon, data.test_images[:n], data.name, "test", cache, eval_cfg, seed)
    return {
        "run": str(stage_dir), "family": record.model, "train_seconds": record.timing.get("train_seconds"),
        "train_flops": record.timing.get("train_flops"), "test_recon_mse": record.metrics.get("test_recon_mse"),
        "recon_floor": {"n": n, "fid_classifier": scores["fid"], "kid_classifier": scores["kid"], "kid_classifier_std": scores["kid_std"],
                        "images": f"reconstructions of {n} training images drawn with replacement (seed {draw}) against the first {n} test images"},
    }


def pictures(trained, out: Path, seed: int) -> None:
    """The LDM's samples clipped and unclipped (the sampler its run chose), and its first stage's reconstructions, into out/."""
    model, data = trained.model, trained.data
    use_recorded_sampler(model, trained.run_dir)
    save_grid(model.sample(64, generator=torch.Generator().manual_seed(seed)), out / "ldm_samples.png")
    with model.sampling_with({"clip_x0": None}):
        save_grid(model.sample(64, generator=torch.Generator().manual_seed(seed)), out / "ldm_samples_unclipped.png")
    x = to_unit_range(data.test_images[:32])
    with torch.no_grad():
        recon = model.first_stage(model.first_stage.encode(x.to(model.device))).cpu()
    save_grid(torch.stack([x, recon], 1).flatten(0, 1), out / "ldm_first_stage.png")  # pairs: image, reconstruction


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ldm", type=Path, required=True)
    parser.add_argument("--ddpm", type=Path, help="a pixel DDPM run trained as the LDM was (same budget, hardware, seed)")
    parser.add_argument("--dit", type=Path, help="a model=ddpm model.net=dit run trained as --ddpm was")
    parser.add_argument("--n", type=int, default=1000, help="images for the reconstruction floor (the records' n)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--pictures", type=Path, help="a folder for the LDM's sample grids (clipped, unclipped) and reconstructions")
    args = parser.parse_args()

    runs = {role: load_run(path) for role in ROLES if (path := getattr(args, role)) is not None}
    for role, trained in runs.items():
        if trained.family.name != ROLES[role]:
            parser.error(f"--{role} {trained.run_dir} is a {trained.family.name} run, not a {ROLES[role]} run")
        if not (trained.run_dir / "metrics.json").is_file():
            parser.error(f"--{role} {trained.run_dir} has no metrics.json: give a finished run")
    if "dit" in runs and runs["dit"].config.model.get("net") != "dit":
        parser.error(f"--dit {runs['dit'].run_dir} trained the {runs['dit'].config.model.get('net')} net: give a model.net=dit run")
    device = runs["ldm"].model.device
    result = {"protocol": {**protocol.measurement(device), "n": args.n, "seed": args.seed},
              "runs": {role: row(trained) for role, trained in runs.items()},
              "first_stage": first_stage(runs["ldm"], args.n, args.seed)}

    # a two-stage run's train s, img/s and FLOPs include its first stage (timing.first_stage, printed below)
    print("| run | net | params | train s | train img/s | train FLOPs | FID (n) | floor | KID | recall | NFE | FLOPs/sample | sample img/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for role, r in result["runs"].items():
        print(f"| {role} | {r['net']} | {_fmt(r['params'], ',')} | {_fmt(r['train_seconds'], '.0f')} | {_fmt(r['train_images_per_second'], '.0f')} | "
              f"{_fmt(r['train_flops'], '.3g')} | {_fmt(r['fid_classifier'], '.1f')} ({r['n']}) | {_fmt(r['floor_fid_classifier'], '.1f')} | "
              f"{_fmt(r['kid_classifier'], '.2f')} | {_fmt(r['recall_classifier'], '.3f')} | {r['nfe_per_sample']} | "
              f"{r['flops_per_sample']:.3g} | {_fmt(r['sample_images_per_second'], '.1f')} |")
    stage = result["first_stage"]
    floor = stage["recon_floor"]
    print(f"\nfirst stage ({stage['family']}, {stage['run']}; part of the ldm row's training): trained {_fmt(stage['train_seconds'], '.0f')} s, "
          f"{_fmt(stage['train_flops'], '.3g')} FLOPs, test reconstruction MSE {_fmt(stage['test_recon_mse'], '.4f')}; "
          f"reconstruction floor at n = {floor['n']}: FID {floor['fid_classifier']:.1f}, KID {floor['kid_classifier']:.2f}")
    if args.out:
        write_json(args.out, result)
    if args.pictures:
        pictures(runs["ldm"], args.pictures, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
