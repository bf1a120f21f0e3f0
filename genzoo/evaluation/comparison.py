"""Scores that let families be ranked side by side: the real-data floor at the run's n, the choice
between a family's equal-cost samplers on validation images, and a reference sampler on a subset.

The runner calls these in its score phase when the budget asks (budget=equal_time):
`floor` always with the classifier extractor, `choose_sampler` when
`budget.sampler_selection_samples` > 0 and the family offers `sampler_options()`,
`reference_rows` when `budget.reference_samples` > 0 and the family offers
`reference_samplers()`. All use genzoo's domain classifier features (the harness's
`classifier` extractor).
"""

import time
from pathlib import Path

import torch

from genzoo.evaluation.floor import random_training_images
from genzoo.metrics.harness import build_extractor, eval_cache_dir, fid_kid, generate
from genzoo.protocol import site_seed
from genzoo.training.record import RunRecord


def floor(data, eval_cfg, n: int, seed: int, device="cpu") -> dict:
    """The real-data floor at n: n random training images scored as samples against the first n test images.

    Returns {"n", "fid_classifier", "kid_classifier", "kid_classifier_std", "samples"}: what
    a perfect model would score under the same protocol (FID's bias at this n included).
    """
    n, cache = min(n, len(data.test_images)), eval_cache_dir(eval_cfg)
    extractor = build_extractor("classifier", data, cache, device)
    images, draw = floor_images(data, n, seed)
    scores = fid_kid(extractor, images, data.test_images[:n], data.name, "test", cache, eval_cfg, seed)
    return {"n": n, **_named(scores), "samples": f"{n} training images drawn with replacement (seed {draw}) against the first {n} test images"}


def floor_images(data, n: int, seed: int) -> tuple[torch.Tensor, int]:
    """The real-data floor's images: n training images (n, C, H, W) in [-1, 1] drawn with replacement, and the seed drawn from.

    The seed is site_seed("evaluation", seed), so a run's floor and any score built on the
    same draw (an LDM's reconstruction floor, benchmarks/ldm_fashion_mnist.py) see the same images.
    """
    draw = site_seed("evaluation", seed)
    return random_training_images(data, n, torch.Generator().manual_seed(draw)), draw


def choose_sampler(model, data, eval_cfg, n: int, seed: int, device="cpu") -> dict:
    """Pick the best of `model.sampler_options()` by classifier FID on n validation images, and apply it.

    Each option (a name and the sampling attributes it sets, all at the same number of
    network evaluations) draws n samples from the evaluation seed; they are
    scored against the first n images of the validation split, never the test split, so
    the choice does not look at the numbers it is judged by. The option with the lowest FID
    is applied with `model.use_sampler(settings)`. Returns {"chosen", "settings", "n", "split", "scores":
    {name: {"fid_classifier", "kid_classifier", "kid_classifier_std"}}}.
    """
    options = model.sampler_options()
    val_images = data.val_set.images
    n, cache = min(n, len(val_images)), eval_cache_dir(eval_cfg)
    extractor = build_extractor("classifier", data, cache, device)
    split = f"val(val_fraction={data.val_fraction},split_seed={data.split_seed})"
    scores = {}
    for name, settings in options.items():
        with model.sampling_with(settings):
            fake = generate(model.sample, n, eval_cfg.batch_size, site_seed("evaluation", seed))
        scores[name] = _named(fid_kid(extractor, fake, val_images[:n], data.name, split, cache, eval_cfg, seed))
    chosen = min(scores, key=lambda name: scores[name]["fid_classifier"])
    model.use_sampler(options[chosen])
    return {"chosen": chosen, "settings": options[chosen], "n": n, "split": f"{data.name} validation, first {n} images", "scores": scores}


def use_recorded_sampler(model, run_dir) -> dict | None:
    """Make the sampler a finished run chose on validation images (its metrics.json's `sampler_selection`) `model`'s default.

    Returns that choice ({"chosen", "settings", ...}), or None where the run's record has none
    (or there is no record): the model then keeps its config's sampler.
    """
    record = Path(run_dir) / "metrics.json"
    choice = RunRecord.read(record).metrics.get("sampler_selection") if record.is_file() else None
    if choice:
        model.use_sampler(choice["settings"])
    return choice


def reference_rows(model, data, eval_cfg, n: int, fake: torch.Tensor, seed: int, device="cpu") -> dict:
    """Each of `model.reference_samplers()` scored on n samples beside the main sampler's first n.

    `fake`: the main sampler's evaluation samples (the first n are compared at the same n,
    against the same first n test images). Returns {name: {"n", "fid_classifier",
    "kid_classifier", "kid_classifier_std", "seconds", "nfe_per_sample", "main_sampler_same_n": {...}}}.
    """
    refs = model.reference_samplers()
    if not refs:
        return {}
    n = min(n, len(data.test_images), len(fake))
    cache = eval_cache_dir(eval_cfg)
    extractor = build_extractor("classifier", data, cache, device)
    main = _named(fid_kid(extractor, fake[:n], data.test_images[:n], data.name, "test", cache, eval_cfg, seed))
    rows = {}
    for name, settings in refs.items():
        start = time.perf_counter()
        with model.sampling_with(settings):
            images = generate(model.sample, n, eval_cfg.batch_size, site_seed("evaluation", seed))
            nfe = model.nfe_per_sample  # an adaptive sampler's (the probability-flow ODE): its last batch's
        seconds = time.perf_counter() - start
        scores = _named(fid_kid(extractor, images, data.test_images[:n], data.name, "test", cache, eval_cfg, seed))
        rows[name] = {"n": n, **scores, "seconds": seconds, "nfe_per_sample": nfe, "main_sampler_same_n": main}
    return rows


def _named(scores: dict) -> dict:
    return {"fid_classifier": scores["fid"], "kid_classifier": scores["kid"], "kid_classifier_std": scores["kid_std"]}
