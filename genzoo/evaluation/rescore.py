"""Re-score a trained model without training it.

    python -m genzoo.evaluation.rescore <run dir or .ckpt> [eval=inception] [budget.eval_samples=500] [seed=1]

Loads the run's config.yaml and its final weights (checkpoints/last.ckpt, or the given
checkpoint), then scores samples with the evaluation harness under the run's settings,
changed by the overrides (eval.*, budget.*, seed, hardware), drawing with the sampler the run
chose on validation images where its record has one (metrics.sampler_selection, e.g. the
DDPM's DDIM eta). The result, with the sampler it drew with, is written to
<run dir>/evaluations/<time>/evaluation.json with its protocol cards and
nearest_neighbours.png; the run's own metrics.json is left as it was.
"""

import sys
import time
from pathlib import Path

from genzoo import protocol
from genzoo.artifacts import write_json
from genzoo.config import load_config
from genzoo.errors import ConfigError, GenzooError, exit_with_error
from genzoo.evaluation.comparison import use_recorded_sampler
from genzoo.families import of_target
from genzoo.metrics.harness import evaluate
from genzoo.models.build import load_trained, locate, read_run_config

OVERRIDABLE = ("eval", "budget", "seed", "hardware")


def evaluate_run(target, overrides=()) -> dict:
    """Score the model of a finished run; returns the evaluation.json payload (see module doc)."""
    run_dir, ckpt = locate(Path(target))
    cfg = read_run_config(run_dir)
    overrides = list(overrides)
    keys = {o.lstrip("+~").split("=")[0].split(".")[0] for o in overrides}
    if keys - set(OVERRIDABLE):
        raise ConfigError(f"cannot override {', '.join(sorted(keys - set(OVERRIDABLE)))} when re-scoring: only {', '.join(OVERRIDABLE)}")
    family = of_target(cfg.model._target_).name
    fresh = load_config([f"model={family}", f"budget={cfg.budget.name}", *overrides])  # the budget as this family gets it
    for key in OVERRIDABLE:
        # a budget recorded before family budgets were applied at composition (no for_family) is composed afresh
        if key in keys or key not in cfg or (key == "budget" and "for_family" not in cfg.budget):
            cfg[key] = fresh[key]

    data, model, device = load_trained(cfg, ckpt)
    choice = use_recorded_sampler(model, run_dir)  # as the run scored its samples
    out_dir = run_dir / "evaluations" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = cfg.budget
    start = time.perf_counter()
    metrics, cards = evaluate(model.sample, data, cfg.eval, budget.eval_samples, cfg.seed, out_dir, device=device)
    payload = {
        "model": model.family,
        "data": data.name,
        "checkpoint": str(ckpt),
        "metrics": metrics,
        "timing": {"eval_seconds": time.perf_counter() - start},
        "protocol": {
            "seed": cfg.seed,
            "eval_samples": budget.eval_samples,
            "sampler": model.protocol().get("sampler", "the family's sample()")
            + (f" (the run's choice on validation images: {choice['settings']})" if choice else ""),
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
    """Entry point of `python -m genzoo.evaluation.rescore`."""
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
