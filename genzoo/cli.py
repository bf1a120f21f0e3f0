"""Command line: `python -m genzoo key=value ...` (and the `genzoo` console script).

Hydra parses the overrides and makes the run directory; `run(cfg)` does the work. Input
errors print one line and exit with status 2; HYDRA_FULL_ERROR=1 shows the traceback.
"""

import sys

import hydra
from omegaconf import DictConfig

from genzoo.config import check_group_choices
from genzoo.errors import GenzooError, exit_with_error
from genzoo.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _task(cfg: DictConfig) -> None:
    from genzoo.training.runner import run

    try:
        payload = run(cfg)
    except GenzooError as err:
        exit_with_error(err)
    if payload is None:  # a DDP rank other than zero: rank zero reports
        return
    print(summary(payload, cfg.output_dir or _hydra_run_dir()))


# The headline numbers of the final summary: (metrics.json section, key, label, unit, format).
HEADLINE = [
    ("metrics", "fid_classifier", "FID (classifier)", "", ".2f"),
    ("metrics", "fid_inception", "FID (Inception)", "", ".2f"),
    ("metrics", "precision_classifier", "precision", "", ".3f"),
    ("metrics", "recall_classifier", "recall", "", ".3f"),
    ("metrics", "bits_per_dim", "likelihood", "bits/dim", ".4f"),
    ("metrics", "bits_per_token", "code likelihood", "bits/token (exact, of the first stage's codes)", ".4f"),
    ("metrics", "test_recon_mse", "reconstruction MSE", "", ".5f"),
    ("metrics", "codebook_usage", "codebook usage", "of the entries", ".2f"),
    ("metrics", "codebook_perplexity", "codebook perplexity", "", ".1f"),
    ("metrics", "control_accuracy", "class accuracy", "", ".3f"),
    ("metrics", "edit_flip_rate", "edit flip rate", "(edits classified as the target class, alpha 1)", ".3f"),
    ("metrics", "edit_preservation", "edit preservation", "(edits whose nearest unedited image is their own)", ".3f"),
    ("timing", "train_seconds", "training", "s", ".1f"),
    ("timing", "sample_images_per_second", "sampling", "images/s", ".1f"),
]


def summary(payload: dict, run_dir) -> str:
    """The lines a user reads last: family, data, status, headline metrics with units, the run directory.

    `payload` is metrics.json's (genzoo.training.record.RunRecord.to_dict). A likelihood
    says whether it is exact or a bound (the family's trait).
    """
    from genzoo.families import get

    rows = [("family", payload["model"]), ("data", payload["data"]), ("status", payload["status"])]
    if payload.get("divergence"):
        rows.append(("diverged at", str(payload["divergence"])))
    cards = (payload.get("protocol") or {}).get("metric_cards") or {}
    for section, key, label, unit, fmt in HEADLINE:
        value = (payload.get(section) or {}).get(key)
        if not isinstance(value, (int, float)):
            continue
        if key == "bits_per_dim":  # a likelihood says whether it is exact or a bound
            unit = f"{unit} ({get(payload['model']).likelihood}, {payload['protocol'].get('n_test', '?')} test images)"
        elif key in cards and "n_fake" in cards[key]:
            unit = f"({cards[key]['n_fake']} samples vs {cards[key]['n_real']} test images)"
        rows.append((label, f"{value:{fmt}} {unit}".rstrip()))
    rows.append(("run directory", str(run_dir)))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"genzoo: {label:<{width}}  {value}" for label, value in rows)


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "?"


def main() -> None:
    """Entry point of `genzoo` and `python -m genzoo`."""
    try:
        check_group_choices(a for a in sys.argv[1:] if not a.startswith("-"))
    except GenzooError as err:
        exit_with_error(err)
    _task()
