"""Fidelity against diversity over the prior's scale: where a trained model sits on its trade-off.

    python benchmarks/truncation_curve.py <run dir> [<run dir> ...] [--psi 0.7 0.85 1 1.15 1.3 1.5]
        [--n 10000] [--seed 0] [--out FILE.json] [--plot FILE.png]

For each finished run of a family with a prior latent code (GAN, VAE, AE, VQ-VAE, DDPM,
score: `prior_latents` / `decode_latents`), draws --n codes z once
(torch.Generator().manual_seed(seed)) and decodes psi * z for each psi (a conditional model:
image i of class i mod K). psi < 1 pulls every code towards the prior's mode, the truncation
trick in its linear form (StyleGAN's psi, Karras et al. 2019, here applied to z itself);
psi > 1 pushes codes out. Kynkaanniemi et al. 2019 (sec. 5) trace precision and recall over
truncation: it buys precision with recall, so two models compare fairly on diversity only
where their precision matches. Each point is scored against the first --n test images in
genzoo's domain-classifier feature space: classifier FID, precision and recall (k = 3),
density and coverage (k = 5, Naeem et al. 2020), and for a conditional model the
classifier's accuracy on the asked classes. Codes are the same at every psi (one draw), so
the curve moves with psi alone. These draws are not the run's own (its harness seeds with
site_seed("evaluation", seed)); psi = 1 is the model's own sampler.

Prints markdown; --out writes JSON with the protocol (device, threads, load, versions,
commit); --plot draws precision against recall, one line per run, psi marked.
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import write_json  # noqa: E402
from genzoo.metrics.frechet import feature_statistics, frechet_distance  # noqa: E402
from genzoo.metrics.harness import build_extractor, extract, real_features  # noqa: E402
from genzoo.metrics.precision_recall import density_coverage, precision_recall  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402


def decode(model, z: torch.Tensor, labels, batch_size: int) -> torch.Tensor:
    """model.decode_latents over z (n, ...) in batches: (n, C, H, W) in [-1, 1] on the CPU."""
    out = []
    with torch.inference_mode():
        for a in range(0, len(z), batch_size):
            out.append(model.decode_latents(z[a : a + batch_size], None if labels is None else labels[a : a + batch_size]).cpu())
    return torch.cat(out)


def curve(model, data, psis, n: int, seed: int, batch_size: int) -> list[dict]:
    """One dict per psi: psi, fid_classifier, precision, recall, density, coverage, control_accuracy (None if unconditional)."""
    cache = default_cache_dir()
    extractor = build_extractor("classifier", data, cache, model.device)
    n = min(n, len(data.test_images))
    real = real_features(extractor, data.test_images[:n], data.name, "test", cache, batch_size)
    real_stats = feature_statistics(real)
    z = model.prior_latents(n, torch.Generator().manual_seed(seed))
    labels = model.sample_labels(n)
    points = []
    for psi in psis:
        images = decode(model, psi * z, labels, batch_size)
        features, logits = extract(extractor, lambda a, b: images[a:b], n, batch_size)
        precision, recall = precision_recall(real, features)
        density, coverage = density_coverage(real, features)
        accuracy = None if labels is None else (logits.argmax(1) == labels.cpu()).float().mean().item()
        points.append({"psi": psi, "fid_classifier": frechet_distance(*real_stats, *feature_statistics(features)), "precision": precision,
                       "recall": recall, "density": density, "coverage": coverage, "control_accuracy": accuracy})
    return points


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, points in result["runs"].items():
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points], marker="o", label=Path(name).name)
        for p in points:
            ax.annotate(f"{p['psi']:g}", (p["recall"], p["precision"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("recall (k = 3)")
    ax.set_ylabel("precision (k = 3)")
    ax.set_title(f"over the prior's scale psi, n = {result['protocol']['n']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--psi", type=float, nargs="+", default=[0.7, 0.85, 1.0, 1.15, 1.3, 1.5])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if any(psi <= 0 for psi in args.psi):
        parser.error(f"--psi takes scales above 0, got {args.psi}")

    result = {"protocol": {**protocol.measurement(torch.device("cpu")), "n": args.n, "seed": args.seed, "codes": "z * psi, one draw",
                           "extractor": "genzoo domain classifier (penultimate features)", "precision_recall_k": 3,
                           "density_coverage_k": 5, "split": "test, first n images"},
              "runs": {}}
    hw = result["protocol"]
    print(f"{hw['device']} ({hw['torch_threads']} threads), load {hw['load_1min_before']:.2f}; genzoo {protocol.git_commit()}\n")
    print("| run | psi | classifier FID | precision | recall | density | coverage | class accuracy |\n|---|---|---|---|---|---|---|---|")
    for path in args.runs:
        trained = load_run(path)
        points = curve(trained.model.eval(), trained.data, args.psi, args.n, args.seed, args.batch_size)
        for p in points:
            accuracy = "-" if p["control_accuracy"] is None else f"{p['control_accuracy']:.3f}"
            print(f"| {path.name} | {p['psi']:g} | {p['fid_classifier']:.1f} | {p['precision']:.3f} | {p['recall']:.3f} | "
                  f"{p['density']:.3f} | {p['coverage']:.3f} | {accuracy} |", flush=True)
        result["runs"][str(path)] = points
    if args.out:
        write_json(args.out, result)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
