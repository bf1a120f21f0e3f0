"""The real-data floor: the harness's scores for real training images against the test split.

    python -m genzoo.evaluation.floor [data=fashion_mnist] [eval=inception] [budget.eval_samples=10000] [seed=0]

Draws `budget.eval_samples` images at random (seeded) from the training split, as the
data module carves it, and scores them exactly as generated samples are scored. FID,
KID, precision and recall here are how far a perfect model's samples would be from the
test split under the same protocol, the floor every family's numbers sit above. The
memorisation rate is near 1 by construction (these are training images): it shows what
a model that copies its training set would score. Prints the metrics and writes them
with their cards to floor-<data>-<extractors>-n<N>.json in the current directory.
"""

import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from genzoo import protocol
from genzoo.artifacts import write_json
from genzoo.config import load_config
from genzoo.data.datamodule import to_unit_range
from genzoo.errors import GenzooError, exit_with_error
from genzoo.metrics.harness import evaluate
from genzoo.protocol import site_seed


def real_data_floor(overrides=()) -> dict:
    """Score random training images as if they were samples; returns {metrics, protocol}."""
    cfg = load_config(list(overrides))
    data = instantiate(cfg.data)
    data.setup()

    def sample(n, generator=None):
        return random_training_images(data, n, generator)

    metrics, cards = evaluate(sample, data, cfg.eval, cfg.budget.eval_samples, cfg.seed)
    return {
        "data": data.name,
        "extractors": list(cfg.eval.extractors),
        "n": min(cfg.budget.eval_samples, len(data.test_images)),
        "samples": f"{cfg.budget.eval_samples} training images drawn with replacement (seed {site_seed('evaluation', cfg.seed)})",
        "metrics": metrics,
        "protocol": {"metric_cards": cards, "versions": protocol.versions(), "git_commit": protocol.git_commit(),
                     "hardware": protocol.hardware(torch.device("cpu"), "32-true")},
    }


def random_training_images(data, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n training images drawn uniformly with replacement: (n, C, H, W) float32 in [-1, 1], what the floor scores."""
    train = data.train_set.images
    return to_unit_range(train[torch.randint(len(train), (n,), generator=generator)])


def main(argv=None) -> None:
    """Entry point of `python -m genzoo.evaluation.floor`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    try:
        payload = real_data_floor(argv)
    except GenzooError as err:
        exit_with_error(err)
    path = Path(f"floor-{payload['data']}-{'+'.join(payload['extractors'])}-n{payload['n']}.json")
    write_json(path, payload)
    for name, value in payload["metrics"].items():
        print(f"{name}: {value}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
