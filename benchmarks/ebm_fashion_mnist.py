"""The energy-based family measured: fresh-chain and replay-buffer FID/KID, the AIS log-likelihood estimate
with its spread, how many runs diverged, training images/s, and pictures of Langevin chains over time.

    python benchmarks/ebm_fashion_mnist.py <ebm run dir> [<run dir> ...] [--n 1000] [--n-test 1000]
        [--ais-chains 256] [--ais-steps 1000] [--ais-groups 4] [--pictures DIR] [--seed 0] [--out FILE.json]

Every run given (e.g. seeds 0, 1, 2 of one configuration) is read from its metrics.json:
status (completed or diverged, with the step and the value), training images/s. The first
completed one is then loaded (checkpoints/last.ckpt) and measured:
- fresh chains (the family's sampler: `model.sample_steps` Langevin steps from uniform noise) and
  replay-buffer images, --n of each with the same seed, scored with genzoo's domain classifier
  (penultimate features) against the first --n test images: classifier FID and KID, beside
  the real-data floor at that n (--n random training images scored the same way);
- log Z by annealed importance sampling with --ais-chains chains in --ais-groups groups over
  --ais-steps temperatures (more than the run's own test used), and the resulting estimate of
  the first --n-test test images' bits/dim: an estimate (log Z_hat is low on average, so it
  leans low), with the groups' spread;
- with --pictures: chains.png, 8 fresh chains (rows) every sample_steps / 8 steps (columns).
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
from genzoo.artifacts import save_grid, write_json  # noqa: E402
from genzoo.data.device import to_unit_range  # noqa: E402
from genzoo.distributions import bits_per_dim  # noqa: E402
from genzoo.energy.ais import ais_log_z  # noqa: E402
from genzoo.energy.langevin import langevin_chain  # noqa: E402
from genzoo.energy.replay_buffer import uniform_images  # noqa: E402
from genzoo.evaluation.floor import random_training_images  # noqa: E402
from genzoo.metrics.harness import build_extractor, fid_kid, generate  # noqa: E402
from genzoo.models.ebm import BOX_HALF_WIDTH  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--ais-chains", type=int, default=256)
    parser.add_argument("--ais-steps", type=int, default=1000)
    parser.add_argument("--ais-groups", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    runs = {}
    for path in args.runs:
        record = RunRecord.read(path / "metrics.json")
        if record.model != "ebm":
            parser.error(f"{path} is a {record.model} run; this script measures ebm runs")
        runs[str(path)] = {"status": record.status, "divergence": record.divergence, "seed": record.protocol.get("seed"),
                           "train_images_per_second": record.timing.get("train_images_per_second")}
    completed = [p for p, r in runs.items() if r["status"] == "completed"]
    print("| run | seed | status | train images/s |\n|---|---|---|---|")
    for path, r in runs.items():
        status = r["status"] + (f" at step {r['divergence']['step']} ({r['divergence']['metric']} {r['divergence']['value']})" if r["divergence"] else "")
        print(f"| {path} | {r['seed']} | {status} | {r['train_images_per_second'] or 0:.0f} |")
    diverged = sum(r["status"] == "diverged" for r in runs.values())
    print(f"\ndiverged: {diverged} of {len(runs)} runs")
    result = {"runs": runs, "diverged": diverged}
    if not completed:
        _write(args.out, result)
        return 0

    trained = load_run(completed[0])
    model, data, device = trained.model, trained.data, trained.model.device
    hw = protocol.measurement(device)
    load = hw["load_1min_before"]
    result["protocol"] = {**hw,
                          "measured_run": completed[0], "n": args.n, "seed": args.seed, "real": f"first {args.n} test images",
                          "extractor": "genzoo domain classifier (penultimate features)", "family": model.protocol()}
    print(f"\n{completed[0]}: {hw['device']} ({hw['torch_threads']} threads), load {load:.2f}; genzoo {protocol.git_commit()}")
    cache_dir = default_cache_dir()
    extractor = build_extractor("classifier", data, cache_dir, device)

    def score(images):
        return fid_kid(extractor, images, data.test_images[: args.n], data.name, "test", cache_dir, trained.config.eval, args.seed)

    result["floor"] = score(random_training_images(data, args.n, torch.Generator().manual_seed(args.seed)).to(device))
    print(f"\n| sampler | NFE / image | seconds | classifier FID | KID |\n|---|---|---|---|---|\n"
          f"| real-data floor ({args.n} training images) | - | - | {result['floor']['fid']:.2f} | {result['floor']['kid']:.4f} |")
    result["samplers"] = {}
    for name in ("fresh", "buffer") if model.buffer is not None else ("fresh",):
        start = time.perf_counter()
        with model.sampling_with({"sampler": name}):
            images = generate(model.sample, args.n, args.batch_size, args.seed)
            nfe = model.nfe_per_sample
        row = {**score(images), "nfe_per_sample": nfe, "seconds": time.perf_counter() - start}
        result["samplers"][name] = row
        print(f"| {name} | {nfe if nfe is not None else 'whole run'} | {row['seconds']:.0f} | {row['fid']:.2f} | {row['kid']:.4f} |", flush=True)

    start = time.perf_counter()
    ais = ais_log_z(model.energy, model.image_shape, args.ais_chains, args.ais_steps, model.ais["step_size"], half_width=BOX_HALF_WIDTH,
                    groups=args.ais_groups, generator=torch.Generator().manual_seed(args.seed), device=device)
    x = to_unit_range(data.test_images[: args.n_test]).to(device)
    with torch.no_grad():
        nll = model.nll_nats(x, ais["log_z"], torch.Generator().manual_seed(args.seed)).mean().item()
    result["likelihood"] = {"kind": "estimate (AIS log Z: low on average, so the nll leans low)", "n_test": len(x), "ais": ais,
                            "nll_nats": nll, "bits_per_dim": bits_per_dim(nll, model.num_dims),
                            "bits_per_dim_group_std": bits_per_dim(ais["log_z_group_std"], model.num_dims),
                            "seconds": time.perf_counter() - start}
    lik = result["likelihood"]
    print(f"\nAIS ({args.ais_chains} chains, {args.ais_groups} groups, {args.ais_steps} temperatures): log Z {ais['log_z']:.1f} "
          f"± {ais['log_z_group_std']:.1f} (groups' std), ESS {ais['ess']:.1f}, MALA acceptance {ais['acceptance']:.2f}; "
          f"test estimate {lik['bits_per_dim']:.3f} ± {lik['bits_per_dim_group_std']:.3f} bits/dim on {len(x)} images ({lik['seconds']:.0f} s)")

    if args.pictures:
        args.pictures.mkdir(parents=True, exist_ok=True)
        every = max(1, model.sample_steps // 8)
        start_x = uniform_images(8, model.image_shape, torch.Generator().manual_seed(args.seed)).to(device)
        _, _, kept = langevin_chain(model.energy, start_x, model.sample_steps, generator=torch.Generator().manual_seed(args.seed + 1),
                                    keep_every=every, **model.chain)
        save_grid(torch.stack(kept, 1).flatten(0, 1), args.pictures / "chains.png", nrow=len(kept))
        print(f"chains over time: {args.pictures / 'chains.png'} (columns every {every} steps)")
    _write(args.out, result)
    return 0


def _write(out: Path | None, result: dict) -> None:
    if out:
        write_json(out, result)


if __name__ == "__main__":
    sys.exit(main())
