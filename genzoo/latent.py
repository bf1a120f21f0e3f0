"""`python -m genzoo.latent <run dir>`: a finished run's latent pictures and editing metrics, drawn again.

    python -m genzoo.latent <run dir> [--seed 1] [--edit 5 7] [--samples 2000] [--out DIR]

Writes into <run dir>/latent/ (or --out) interpolation.png, latent_map.png (2-d codes),
edit_grid.png, edit_curve.png and editing.json (the edit_* metrics and their protocol
cards), and prints one summary line of the editing scores. The pictures are drawn by
genzoo/evaluation/latent.py and editing is measured by genzoo/evaluation/editing.py; see
their docstrings. Bad input (no run there, a family without a latent code, classes out of
range, too few samples) stops with one line saying what to change.
"""

import argparse
import sys
from pathlib import Path

import torch

from genzoo.evaluation.latent import write_latent_pictures


def main(argv=None) -> None:
    """Entry point of `python -m genzoo.latent` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m genzoo.latent", description="Draw the latent pictures and measure editing of a finished run.")
    parser.add_argument("run_dir", type=Path, help="a genzoo run directory (config.yaml, checkpoints/last.ckpt)")
    parser.add_argument("--seed", type=int, help="seed of the prior draws (default: the run's seed)")
    parser.add_argument("--edit", type=int, nargs=2, metavar=("SOURCE", "TARGET"), help="classes to edit from and to (default: the run's edit_classes)")
    parser.add_argument("--samples", type=int, help="codes labelled for editing (default: the run's budget.edit_samples)")
    parser.add_argument("--out", type=Path, help="output folder (default <run dir>/latent)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from genzoo.artifacts import write_json
    from genzoo.config import check_edit_classes
    from genzoo.errors import ConfigError, GenzooError, exit_with_error
    from genzoo.evaluation.editing import DEFAULT_EDIT_SAMPLES, edit_run
    from genzoo.families import registry
    from genzoo.models.build import load_trained, locate, read_run_config
    from genzoo.protocol import site_seed

    try:
        run_dir, ckpt = locate(args.run_dir)
        cfg = read_run_config(run_dir)
        data, model, _ = load_trained(cfg, ckpt)
        edit = args.edit if args.edit is not None else cfg.get("edit_classes")
        check_edit_classes(edit, data.num_classes)
        samples = args.samples if args.samples is not None else cfg.budget.get("edit_samples", DEFAULT_EDIT_SAMPLES)
        if samples < 4:
            raise ConfigError(f"--samples {samples} is too few: editing needs at least 4 labelled codes (e.g. --samples 2000)")
        if model.latent_space is None:
            with_latent = ", ".join(f.name for f in registry().values() if f.latent)
            raise ConfigError(f"{model.family} has no latent code: the latent pictures are for the families with one ({with_latent})")
        seed = cfg.seed if args.seed is None else args.seed
        out = args.out or run_dir / "latent"
        out.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            written = write_latent_pictures(model, data, out, seed)
        metrics, cards = edit_run(model, data, cfg.eval, edit, samples, site_seed("editing", seed), out)
    except GenzooError as err:
        exit_with_error(err)
    if metrics:
        write_json(out / "editing.json", {"run": str(run_dir), "metrics": metrics, "cards": cards})
        written += [out / name for name in ("edit_grid.png", "edit_curve.png", "editing.json") if (out / name).exists()]
        print(editing_summary(metrics))
    print("genzoo: wrote " + ", ".join(str(p) for p in written))


def editing_summary(metrics: dict) -> str:
    """One line of the editing scores at the reported alpha (or why they are missing)."""
    if metrics.get("edit_flip_rate") is None:
        return "genzoo: editing        not measured (too few codes of the two classes: see the card)"
    return (f"genzoo: editing        flip rate {metrics['edit_flip_rate']:.3f}, preservation {metrics['edit_preservation']:.3f}, "
            f"edited FID {metrics['edit_fid_classifier']:.1f} (floor {metrics['edit_fid_floor']:.1f}) at alpha {metrics['edit_alpha']:g}; "
            f"class-mean baseline: flip {metrics['edit_flip_rate_class_mean']:.3f}, preservation {metrics['edit_preservation_class_mean']:.3f}")


if __name__ == "__main__":
    main()
