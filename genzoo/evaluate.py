"""Re-score a trained model without training it.

    python -m genzoo.evaluate <run dir or .ckpt> [eval=inception] [budget.eval_samples=500] [seed=1]

Loads the run's config.yaml and its final weights (checkpoints/last.ckpt, or the given
checkpoint), then scores samples with the evaluation harness under the run's settings,
changed by the overrides (eval.*, budget.*, seed, hardware). The result is written to
<run dir>/evaluations/<time>/evaluation.json with its protocol cards and
nearest_neighbours.png; the run's own metrics.json is left as it was.
"""

import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genzoo import protocol
from genzoo.artifacts import write_json
from genzoo.config import for_family, load_config
from genzoo.errors import ConfigError, GenzooError, exit_with_error
from genzoo.metrics.harness import evaluate
from genzoo.runner import build_model

OVERRIDABLE = ("eval", "budget", "seed", "hardware")


def locate(target: Path) -> tuple[Path, Path]:
    """(run dir, checkpoint) from a run directory or a checkpoint file inside one.

    Raises ConfigError when the checkpoint or the run's config.yaml is missing.
    """
    target = Path(target)
    ckpt = target / "checkpoints" / "last.ckpt" if target.is_dir() else target
    run_dir = target if target.is_dir() else target.parent.parent
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint at {ckpt}: pass a run directory (with checkpoints/last.ckpt) or a .ckpt file")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {run_dir}: the checkpoint must sit in <run dir>/checkpoints/")
    return run_dir, ckpt


def load_trained(cfg, ckpt: Path):
    """(data module set up, model with the checkpoint's weights in eval mode, device) for a run's config.

    The device is the first GPU when the run's hardware allows one and there is one, else the CPU.
    """
    data = instantiate(cfg.data)
    data.setup()
    model = build_model(cfg.model, data.image_shape, data.num_classes)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    use_gpu = cfg.hardware.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    return data, model.to(device).eval(), device


def evaluate_run(target, overrides=()) -> dict:
    """Score the model of a finished run; returns the evaluation.json payload (see module doc)."""
    run_dir, ckpt = locate(Path(target))
    cfg = OmegaConf.load(run_dir / "config.yaml")
    overrides = list(overrides)
    keys = {o.lstrip("+~").split("=")[0].split(".")[0] for o in overrides}
    if keys - set(OVERRIDABLE):
        raise ConfigError(f"cannot override {', '.join(sorted(keys - set(OVERRIDABLE)))} when re-scoring: only {', '.join(OVERRIDABLE)}")
    fresh = load_config([f"budget={cfg.budget.name}", *overrides])
    for key in OVERRIDABLE:
        if key in keys or key not in cfg or (key == "budget" and "eval_samples" not in cfg.budget):
            cfg[key] = fresh[key]

    data, model, device = load_trained(cfg, ckpt)
    out_dir = run_dir / "evaluations" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = for_family(cfg.budget, model.family)
    start = time.perf_counter()
    metrics, cards = evaluate(model.sample, data, cfg.eval, budget["eval_samples"], cfg.seed, out_dir, device=device)
    payload = {
        "model": model.family,
        "data": data.name,
        "checkpoint": str(ckpt),
        "metrics": metrics,
        "timing": {"eval_seconds": time.perf_counter() - start},
        "protocol": {
            "seed": cfg.seed,
            "eval_samples": budget["eval_samples"],
            "hardware": protocol.hardware(device, cfg.hardware.precision),
            "versions": protocol.versions(),
            "git_commit": protocol.git_commit(),
            "metric_cards": cards,
            "overrides": overrides,
        },
    }
    write_json(out_dir / "evaluation.json", payload)
    return payload


def main(argv=None) -> None:
    """Entry point of `python -m genzoo.evaluate`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if argv else 2)
    try:
        payload = evaluate_run(argv[0], argv[1:])
    except GenzooError as err:
        exit_with_error(err)
    print(f"genzoo: {payload['model']} on {payload['data']} re-scored: {payload['metrics']}")


if __name__ == "__main__":
    main()
