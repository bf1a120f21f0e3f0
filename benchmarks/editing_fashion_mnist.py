"""Editing measured per family, and the GAN's conditional forms side by side.

    python benchmarks/editing_fashion_mnist.py <run dir> [<run dir> ...] [--edit 7 9] [--samples 2000]
        [--seed 0] [--pictures DIR] [--out FILE.json]

Each unconditional run with a latent code (AE, VAE, VQ-VAE, GAN, DDPM, score, LDM) is loaded
(checkpoints/last.ckpt) and edited as genzoo/evaluation/editing.py describes: --samples
codes labelled (test images, or prior draws labelled by genzoo's domain classifier), both
directions fitted between classes --edit SOURCE TARGET, the edits scored at alpha = 1:
flip rate, preservation, relative feature distance, edited-set classifier FID (beside the
floor at that n) and KID; the class-mean baseline beside the boundary; the table's
manipulation label by the rule written in genzoo/report/course_notes.py. With --pictures,
each run's edit_grid.png and edit_curve.png go to DIR/<run name>/.

Every GAN run given (conditional or not) also makes a row of a second table: its
discriminator, generator conditioning and loss (as the loaded model's protocol names them),
its batch size, classifier FID, precision and recall over all its samples and the class accuracy of a
conditional one, from its metrics.json, beside density and coverage (Naeem et al. 2020) of
the same samples, re-scored by genzoo.evaluation.rescore (the run's seed draws the run's
samples again: its precision and recall must repeat; <run dir>/evaluations/ keeps the
payload): what each change to the conditional GAN bought. Prints markdown and writes JSON
with the protocol (device, threads, load, versions, commit).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genzoo, not an installed one

from genzoo import load_run, protocol  # noqa: E402
from genzoo.artifacts import write_json  # noqa: E402
from genzoo.evaluation.editing import measure_editing, write_editing  # noqa: E402
from genzoo.evaluation.rescore import evaluate_run  # noqa: E402
from genzoo.metrics.harness import build_extractor  # noqa: E402
from genzoo.paths import default_cache_dir  # noqa: E402
from genzoo.report.course_notes import FamilyFacts, manipulation  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--edit", type=int, nargs=2, default=(7, 9), metavar=("SOURCE", "TARGET"))
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    source, target = args.edit

    result = {"editing": {}, "gan": {}}
    first = True
    for path in args.runs:
        record = RunRecord.read(path / "metrics.json")
        trained = load_run(path)
        model, data, cfg = trained.model, trained.data, trained.config
        if first:
            hw = protocol.measurement(model.device)
            result["protocol"] = {**hw, "samples": args.samples, "edit": [source, target], "seed": args.seed,
                                  "extractor": "genzoo domain classifier (penultimate features)"}
            print(f"{hw['device']} ({hw['torch_threads']} threads), load {hw['load_1min_before']:.2f}; genzoo {protocol.git_commit()}\n")
            print(f"| run | family | flip rate | preservation | distance | edited FID (floor) | KID | boundary accuracy | "
                  f"class-mean flip / preservation | manipulation | seconds |\n|{'---|' * 11}")
            first = False
        if record.model == "gan":
            result["gan"][str(path)] = _gan_row(record, model, cfg, evaluate_run(path)["metrics"])
        if model.latent_space is None or model.conditional:
            continue
        cache_dir = default_cache_dir()
        extractor = build_extractor("classifier", data, cache_dir, model.device)
        start = time.perf_counter()
        edited = measure_editing(model.eval(), data, extractor, source, target, args.samples, args.seed, args.batch_size, cache_dir,
                                 cfg.eval.kid_subsets)
        seconds = time.perf_counter() - start
        m = edited.metrics
        label, _ = manipulation(FamilyFacts(record.model, "", has_latent=True, edit_flip_rate=m["edit_flip_rate"],
                                            edit_preservation=m["edit_preservation"]))
        result["editing"][str(path)] = {"family": record.model, "metrics": m, "cards": edited.cards, "skipped": edited.skipped,
                                        "manipulation": label, "seconds": seconds}
        if args.pictures:
            write_editing(edited, args.pictures / path.name, f"{record.model}: class {source} -> {target}")
        if edited.skipped:
            print(f"| {path.name} | {record.model} | not measured: {edited.skipped} |||||||| {seconds:.0f} |", flush=True)
            continue
        print(f"| {path.name} | {record.model} | {m['edit_flip_rate']:.3f} | {m['edit_preservation']:.3f} | {m['edit_distance']:.2f} | "
              f"{m['edit_fid_classifier']:.1f} ({m['edit_fid_floor']:.1f}) | {m['edit_kid_classifier']:.3f} | "
              f"{m['edit_boundary_accuracy']:.3f} | {m['edit_flip_rate_class_mean']:.3f} / {m['edit_preservation_class_mean']:.3f} | "
              f"{label} | {seconds:.0f} |", flush=True)

    if result["gan"]:
        print("\n| GAN run | discriminator | generator | training | classifier FID | precision | recall | density | coverage | class accuracy |\n"
              f"|{'---|' * 10}")
        for path, row in result["gan"].items():
            scores = " | ".join("-" if row[k] is None else format(row[k], ".3f") for k in ("precision", "recall", "density", "coverage", "control_accuracy"))
            print(f"| {Path(path).name} | {row['discriminator']} | {row['generator']} | {row['training']} | {row['fid_classifier']:.2f} | {scores} |")
    if args.out:
        write_json(args.out, result)
    return 0


def _gan_row(record: RunRecord, model, cfg, rescored: dict) -> dict:
    """A GAN run's nets and training recipe (as its loaded model resolved them, and its config), its scores and the re-scored density and coverage."""
    model_cfg = cfg.model
    conditional = model.conditional
    lr = model_cfg.optimizer.lr
    d_lr = lr if model.d_lr is None else model.d_lr
    training = (f"{model.loss_name}, batch {cfg.data.batch_size}, n_critic {model.n_critic}, lr G {lr:g} / D {d_lr:g}, betas ({model.betas[0]:g}, {model.betas[1]:g})"
                + ("" if model_cfg.ema_decay is None else f", EMA {model_cfg.ema_decay:g}"))
    card = model.protocol()
    if rescored.get("recall_classifier") != record.metrics.get("recall_classifier"):
        print(f"note: {record.run_id}: re-scored recall {rescored.get('recall_classifier')} differs from the record's "
              f"{record.metrics.get('recall_classifier')} (another machine's float rounding, or other samples)", file=sys.stderr)
    return {"conditional": conditional, "discriminator": card["discriminator"],
            "generator": (("conditional BatchNorm" if model.conditional_bn else "embedding beside z") if conditional else "-")
            + f"; loss {card['generator_loss']}",
            "training": training,
            "fid_classifier": record.metrics.get("fid_classifier"), "precision": record.metrics.get("precision_classifier"),
            "recall": record.metrics.get("recall_classifier"), "density": rescored.get("density_classifier"),
            "coverage": rescored.get("coverage_classifier"), "rescored_recall": rescored.get("recall_classifier"),
            "control_accuracy": record.metrics.get("control_accuracy"), "epochs": record.timing.get("epochs"),
            "train_seconds": record.timing.get("train_seconds")}


if __name__ == "__main__":
    sys.exit(main())
