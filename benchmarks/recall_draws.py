"""Precision, recall, density and coverage of one trained model over draws and over the prior's scale.

    python benchmarks/recall_draws.py <run dir> [<run dir> ...] [--seeds 0 1 2] [--psi 1] [--n 10000]
        [--out FILE.json] [--plot FILE.png]

For each finished run (checkpoints/last.ckpt), each seed and each psi, draws --n samples (a
conditional model: image i of class i mod K) from torch.Generator().manual_seed(seed), takes
genzoo's domain-classifier features of them and of the first --n test images, and scores
classifier FID, precision and recall (k = 3, Kynkaanniemi et al. 2019), density and
coverage (k = 5, Naeem et al. 2020), recall per class (the share of each class's test
images inside the samples' balls), the median radius of the samples' balls (the distance
of each sample to its third nearest sample, in feature units: a model with more outlying
samples has larger balls and earns recall that coverage does not give it) and, for a
conditional model, the classifier's accuracy on the asked classes. Recall is also split
over the test images the classifier names correctly and those it does not (7.75% of
Fashion-MNIST's test split; the look-alike shirts, T-shirts, pullovers and coats): a model
whose samples are easier to classify than real images (a conditional GAN's class loss pulls
them that way) leaves the second share uncovered. These draws are not the
run's own (its harness seeds with site_seed("evaluation", seed)).

Over draws (--seeds, psi 1): how much each score moves between draws of one model; the
model's own sampler draws them.

Over the prior's scale (--psi, a family whose prior has a mode m: GAN, VAE, AE, and the
x_T of the DDPM, latent diffusion and the score model): each seed's codes z (`prior_latents`)
are the same for every psi, and m + psi * (z - m) is decoded (`truncate_latents`,
`decode_latents`), so the curve moves with psi alone. psi < 1 pulls every code towards the
prior's mode, the truncation trick in its linear form (StyleGAN's psi, Karras et al. 2019,
applied to the prior's code); psi > 1 pushes codes out. Kynkaanniemi et al. 2019 (sec. 5)
trace precision and recall over truncation: it buys precision with recall, so two models
compare fairly on diversity only where their precision matches. --plot draws precision
against recall, one line per run and seed, psi marked. A run whose prior has no mode (the
VQ-VAE's codebook vectors) is refused for psi other than 1.

Prints markdown and writes JSON with the protocol (device, threads, load, versions, commit).
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import write_json  # noqa: E402
from genzoo.data.datamodule import to_unit_range  # noqa: E402
from genzoo.metrics.frechet import feature_statistics, frechet_distance  # noqa: E402
from genzoo.metrics.harness import build_extractor, extract, generate  # noqa: E402
from genzoo.metrics.precision_recall import density_coverage, knn_radii, precision_recall, share_inside_balls  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402


def draws(model, n: int, seed: int, psis: list[float], batch_size: int, labels):
    """(psi, images (n, C, H, W) in [-1, 1] on the CPU) for each psi: model.sample for [1.0] alone, else the codes truncated by psi, decoded.

    Every psi reseeds the generator, so each decodes the same codes z, scaled.
    """
    if psis == [1.0]:
        yield 1.0, generate(model.sample, n, batch_size, seed, labels)
        return
    for psi in psis:
        def scaled(k, generator, psi=psi, **label):
            return model.decode_latents(model.truncate_latents(model.prior_latents(k, generator), psi), **label)

        yield psi, generate(scaled, n, batch_size, seed, labels)


def held_out_reference(data, n: int, batch_size: int):
    """The domain classifier of `data`'s dataset, and its first n test images' (n, D) features, their statistics, (n,) labels
    and (n,) bool verdicts (the classifier names the image's class), in one pass over the images."""
    extractor = build_extractor("classifier", data, default_cache_dir(), "cpu")
    real, real_logits = extract(extractor, lambda a, b: to_unit_range(data.test_images[a:b]), n, batch_size)
    real = real.float().cpu()  # as the reference cache holds them
    classes = torch.as_tensor(data.test_labels[:n])
    return extractor, real, feature_statistics(real), classes, real_logits.argmax(1).cpu() == classes


def scores(real, real_stats, classes, named, num_classes: int, images, labels, extractor, batch_size: int) -> dict:
    """The scores of one draw, from the classifier's features of `images` against the real features.

    real: (n, D) test features; classes: (n,) their labels; named: (n,) bool, the classifier names
    the test image's class; images: (m, C, H, W) in [-1, 1]; labels: (m,) asked classes or None.
    """
    fake, logits = extract(extractor, lambda a, b: images[a:b], len(images), batch_size)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    radii = knn_radii(fake, 3)
    return {"fid_classifier": frechet_distance(*real_stats, *feature_statistics(fake)), "precision": precision, "recall": recall,
            "density": density, "coverage": coverage, "median_ball": radii.median().item(),
            "recall_per_class": [share_inside_balls(real[classes == c], fake, radii) for c in range(num_classes)],
            **{key: share_inside_balls(real[subset], fake, radii) if subset.any() else None  # None: the classifier names all or none
               for key, subset in (("recall_named", named), ("recall_missed", ~named))},
            "control_accuracy": None if labels is None else (logits.argmax(1) == labels).float().mean().item()}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, rows in result["runs"].items():
        for seed in sorted({r["seed"] for r in rows}):
            points = [r for r in rows if r["seed"] == seed]
            ax.plot([p["recall"] for p in points], [p["precision"] for p in points], marker="o", label=f"{Path(name).name}, seed {seed}")
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--psi", type=float, nargs="+", default=[1.0], help="scales of the prior's codes (e.g. 0.8 1 1.2)")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if any(psi <= 0 for psi in args.psi):
        parser.error(f"--psi takes scales above 0, got {args.psi}")

    result = {"protocol": {**protocol.measurement(torch.device("cpu")), "n": args.n, "seeds": args.seeds, "psi": args.psi,
                           "codes": "the model's sampler" if args.psi == [1.0] else "m + psi * (z - m), m the prior's mode, z drawn once per seed",
                           "extractor": "genzoo domain classifier (penultimate features)", "precision_recall_k": 3, "density_coverage_k": 5},
              "runs": {}}
    hw = result["protocol"]
    print(f"{hw['device']} ({hw['torch_threads']} threads), load {hw['load_1min_before']:.2f}; genzoo {protocol.git_commit()}\n")
    print("| run | seed | psi | classifier FID | precision | recall | density | coverage | median sample ball | class accuracy | recall: named, missed | recall per class |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
    loaded = {path: load_run(path) for path in args.runs}  # every run checked before any is scored
    for path, trained in loaded.items():
        if args.psi != [1.0] and trained.model.prior_mode() is None:
            parser.error(f"{path}: a {trained.model.family} has no prior mode to scale codes towards; --psi needs a GAN, VAE, AE, DDPM, LDM or score run")
    references = {}  # per dataset: the classifier, and the test images' features, statistics, labels and verdicts
    for path, trained in loaded.items():
        model, data = trained.model.eval(), trained.data
        n = min(args.n, len(data.test_images))
        if data.name not in references:
            references[data.name] = held_out_reference(data, n, args.batch_size)
        extractor, real, real_stats, classes, named = references[data.name]
        labels = torch.arange(n) % data.num_classes if model.conditional else None
        rows = []
        for seed in args.seeds:
            for psi, images in draws(model, n, seed, args.psi, args.batch_size, labels):
                row = {"seed": seed, "psi": psi, **scores(real, real_stats, classes, named, data.num_classes, images, labels, extractor, args.batch_size)}
                rows.append(row)
                accuracy = "-" if row["control_accuracy"] is None else f"{row['control_accuracy']:.3f}"
                print(f"| {path.name} | {seed} | {psi:g} | {row['fid_classifier']:.1f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                      f"{row['density']:.3f} | {row['coverage']:.3f} | {row['median_ball']:.2f} | {accuracy} | "
                      + ", ".join("-" if row[key] is None else f"{row[key]:.3f}" for key in ("recall_named", "recall_missed")) + " | "
                      + " ".join(f"{v:.2f}" for v in row["recall_per_class"]) + " |", flush=True)
        result["runs"][str(path)] = rows
    if args.out:
        write_json(args.out, result)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
