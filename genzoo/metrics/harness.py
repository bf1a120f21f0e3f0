"""The one evaluation harness: every family's samples scored by the same code against the same real split.

`evaluate` sees a sampler callable and a set-up data module, never a family. For each
extractor in the config (`classifier`, `inception`) it computes FID, KID, precision and
recall of `n` generated images against the first `n` real test images (n is the
budget's `eval_samples`, capped at the test split). The classifier's logits add IS and
class coverage, and its features the memorisation test against the training images,
with `nearest_neighbours.png`. Each metric gets a protocol card.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from genzoo.artifacts import interleave_rows, save_grid
from genzoo.data.datamodule import to_unit_range
from genzoo.metrics.classes import class_coverage, inception_score
from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.kid import kernel_distance, kid_subset_size
from genzoo.metrics.novelty import memorisation_rate, nearest_neighbours
from genzoo.metrics.precision_recall import DENSITY_COVERAGE_K, density_coverage, precision_recall
from genzoo.metrics.reference import cached_features
from genzoo.paths import default_cache_dir
from genzoo.protocol import site_seed

EXTRACTORS = ("classifier", "inception")


class Extractor:
    """A named feature extractor: float images (B, C, H, W) in [-1, 1] -> (features (B, D), logits (B, K) or None)."""

    def __init__(self, name, net, card: dict, to_input=lambda x: x, has_logits=True, unavailable: str | None = None, resize_tag="none"):
        self.name, self.net, self.card, self.to_input, self.resize_tag = name, net, card, to_input, resize_tag
        self.has_logits, self.unavailable = has_logits, unavailable

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = next(self.net.parameters()).device
        out = self.net(self.to_input(images.to(device)))
        features, logits = (out[0], out[1]) if self.has_logits else (out[0], None)
        return features.float().cpu(), None if logits is None else logits.float().cpu()


def build_extractor(name: str, data, cache_dir: Path, device="cpu") -> Extractor:
    """The extractor `name` ("classifier" or "inception") for the data module's dataset.

    Raises ValueError for an unknown name; GenzooError when its weights cannot be had.
    """
    if name == "classifier":
        from genzoo.metrics.classifier import load_or_train_classifier

        net, card = load_or_train_classifier(data, cache_dir)
        return Extractor("classifier", net.to(device), card)
    if name == "inception":
        from genzoo.metrics.inception import NO_HEAD_REASON, build_inception, to_inception_input

        net, card, has_head = build_inception(cache_dir, device)
        return Extractor("inception", net, card, to_inception_input, has_logits=has_head, unavailable=None if has_head else NO_HEAD_REASON, resize_tag="tf-bilinear299")
    raise ValueError(f"unknown extractor '{name}': choose from {', '.join(EXTRACTORS)}")


def extract(extractor: Extractor, images: Callable[[int, int], torch.Tensor], n: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (n, D) and logits (n, K) or None of n images, fetched as images(start, stop) in batches."""
    features, logits = [], []
    for start in range(0, n, batch_size):
        f, lg = extractor(images(start, min(n, start + batch_size)))
        features.append(f)
        logits.append(lg)
    return torch.cat(features), (None if logits[0] is None else torch.cat(logits))


def generate(sample: Callable[..., torch.Tensor], n: int, batch_size: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images (n, C, H, W) in [-1, 1] on the CPU from `sample(k, generator=...)`, one seeded generator.

    With `labels` (n,), each batch is drawn as sample(k, generator=..., labels=<its labels>).
    Batches are drawn under torch.inference_mode (no autograd bookkeeping); the result,
    concatenated outside it, is an ordinary tensor.
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            k = min(batch_size, n - start)
            extra = {} if labels is None else {"labels": labels[start : start + k]}
            batches.append(sample(k, generator=generator, **extra).cpu())
    return torch.cat(batches)


def eval_cache_dir(eval_cfg) -> Path:
    """Where extractor weights and real features are cached: `eval.cache_dir`, else $GENZOO_CACHE or ~/.cache/genzoo/eval."""
    return Path(eval_cfg.cache_dir) if eval_cfg.get("cache_dir") else default_cache_dir()


def evaluate(
    sample: Callable[..., torch.Tensor], data, eval_cfg, n_samples: int, seed: int, run_dir: Path | None = None, device="cpu",
    fake: torch.Tensor | None = None,
) -> tuple[dict, dict]:
    """Score `sample` against the data module's test split; returns (metrics, cards).

    Args:
        sample: sample(n, generator=None) -> (n, C, H, W) in [-1, 1] (a family's `sample`).
        data: a set-up ImageDataModule (test_images: the whole test split, train_set, name).
        eval_cfg: the `eval` config (extractors, batch_size, kid_subsets, kid_subset_size, pr_k, dc_k,
            memorisation_percentile, cache_dir).
        n_samples: generated images; the real side uses as many test images (capped at the split).
        seed: seeds the sampling generator (site_seed("evaluation", seed)) and the KID subsets (seed).
        run_dir: where nearest_neighbours.png goes (None: not written).
        fake: the generated images, if already drawn (under DDP, gathered from every rank);
            None draws them here with generate(sample, n, eval_cfg.batch_size, site_seed("evaluation", seed)).
    Returns:
        metrics: {"fid_classifier": float, "kid_classifier": ..., "is_inception": None, ...};
        cards: {metric name: {extractor, weights_sha256, resize, n_real, n_fake, split, seed, ...}}.
    """
    extractors = list(eval_cfg.extractors or [])
    if not extractors:
        return {}, {}
    cache_dir = eval_cache_dir(eval_cfg)
    test_images = data.test_images
    n = min(n_samples, len(test_images))
    if fake is None:
        fake = generate(sample, n, eval_cfg.batch_size, site_seed("evaluation", seed))
    elif len(fake) != n:
        raise ValueError(f"fake holds {len(fake)} images but {n} are scored: draw min(n_samples, test split) images")
    metrics, cards = {}, {}
    for name in extractors:
        extractor = build_extractor(name, data, cache_dir, device)
        card = {
            **extractor.card, "n_real": n, "n_fake": n, "split": f"{data.name} test, first {n} images", "seed": seed,
            "kid_subsets": f"{eval_cfg.kid_subsets} subsets of {kid_subset_size(eval_cfg.kid_subset_size, n, n)}",
            "precision_recall_k": eval_cfg.pr_k, "density_coverage_k": _dc_k(eval_cfg),
        }
        real = real_features(extractor, test_images[:n], data.name, "test", cache_dir, eval_cfg.batch_size)
        fake_features, fake_logits = extract(extractor, lambda a, b: fake[a:b], n, eval_cfg.batch_size)
        scores = _distribution_metrics(real, fake_features, eval_cfg, seed)
        if fake_logits is not None:
            scores["is"], scores["is_std"] = inception_score(fake_logits, splits=min(10, n))
        elif extractor.unavailable:
            scores["is"] = None
            card = {**card, "is_unavailable": extractor.unavailable}
        for metric, value in scores.items():  # kid -> kid_classifier, kid_std -> kid_classifier_std
            base, std = metric.removesuffix("_std"), metric.endswith("_std")
            metrics[f"{base}_{name}" + ("_std" if std else "")] = value
        if name == "classifier":
            metrics["class_coverage"], metrics["class_kl_uniform"] = class_coverage(fake_logits)
            metrics["memorisation_rate"], card = _novelty(extractor, data, fake, fake_features, real, eval_cfg, cache_dir, run_dir, card)
        for metric in [m for m in metrics if m not in cards]:
            cards[metric] = card
    return metrics, cards


def curve_scorer(data, eval_cfg, n: int, seed: int, device="cpu") -> tuple[Callable, dict] | None:
    """A cheap FID for the quality curve during training: (score(model) -> float, card), or None.

    Uses the classifier extractor when `eval_cfg.extractors` lists it, else the first one
    listed; None when it lists none (eval=none). The extractor and the real statistics of
    the first n test images are built here, before training, so a classifier trained on a
    cache miss does not run inside fit. Each call draws n images with model.sample from a
    generator seeded with site_seed("quality_curve", seed) (the same latents at every point) and returns their FID.
    """
    extractors = list(eval_cfg.extractors or [])
    if not extractors:
        return None
    name = "classifier" if "classifier" in extractors else extractors[0]
    cache_dir = eval_cache_dir(eval_cfg)
    n = min(n, len(data.test_images))
    extractor = build_extractor(name, data, cache_dir, device)
    real_stats = feature_statistics(real_features(extractor, data.test_images[:n], data.name, "test", cache_dir, eval_cfg.batch_size))

    def score(model) -> float:
        fake = generate(model.sample, n, eval_cfg.batch_size, site_seed("quality_curve", seed))
        features, _ = extract(extractor, lambda a, b: fake[a:b], n, eval_cfg.batch_size)
        return frechet_distance(*real_stats, *feature_statistics(features))

    card = {**extractor.card, "metric": f"fid_{name}", "n_real": n, "n_fake": n, "split": f"{data.name} test, first {n} images", "seed": site_seed("quality_curve", seed)}
    return score, card


def real_features(extractor: Extractor, images: torch.Tensor, dataset: str, split: str, cache_dir: Path, batch_size: int) -> torch.Tensor:
    """Features of real uint8 images (N, C, H, W), through the reference cache keyed by what shaped them."""
    key = {
        "dataset": dataset, "split": split, "extractor": extractor.name, "weights_sha256": extractor.card["weights_sha256"],
        "resize": extractor.resize_tag, "n": len(images),
    }
    return cached_features(cache_dir, key, lambda: extract(extractor, lambda a, b: to_unit_range(images[a:b]), len(images), batch_size)[0])


def fid_kid(extractor: Extractor, fake: torch.Tensor, real_images: torch.Tensor, dataset: str, split: str, cache_dir: Path, eval_cfg,
            seed: int) -> dict:
    """FID and KID of `fake` (n, C, H, W) in [-1, 1] against uint8 `real_images` (m, C, H, W): {"fid", "kid", "kid_std"}.

    The same statistics `evaluate` computes, for comparisons beside the main score (the
    real-data floor, a sampler choice on validation images, a reference sampler on a
    subset). FID is biased upwards at small n (compare only at equal n); KID is unbiased.
    `split` names the real images in the feature cache's key.
    """
    real = real_features(extractor, real_images, dataset, split, cache_dir, eval_cfg.batch_size)
    features, _ = extract(extractor, lambda a, b: fake[a:b], len(fake), eval_cfg.batch_size)
    return _fid_kid(real, features, eval_cfg, seed)


def _fid_kid(real: torch.Tensor, fake: torch.Tensor, eval_cfg, seed: int) -> dict:
    """FID and KID of two feature sets (n, D): {"fid", "kid", "kid_std"}; KID's subsets drawn from `seed`."""
    fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    kid, kid_std = kernel_distance(real, fake, eval_cfg.kid_subsets, eval_cfg.kid_subset_size, torch.Generator().manual_seed(seed))
    return {"fid": fid, "kid": kid, "kid_std": kid_std}


def _distribution_metrics(real: torch.Tensor, fake: torch.Tensor, eval_cfg, seed: int) -> dict:
    precision, recall = precision_recall(real, fake, k=eval_cfg.pr_k)
    density, coverage = density_coverage(real, fake, k=_dc_k(eval_cfg))
    return {**_fid_kid(real, fake, eval_cfg, seed), "precision": precision, "recall": recall, "density": density, "coverage": coverage}


def _dc_k(eval_cfg) -> int:
    """eval.dc_k, or Naeem et al.'s 5 for a run recorded before genzoo measured density and coverage."""
    return eval_cfg.get("dc_k", DENSITY_COVERAGE_K)


def _novelty(extractor, data, fake, fake_features, test_features, eval_cfg, cache_dir, run_dir, card):
    """Memorisation rate against the training images (train split as the data module carved it)."""
    train_images = data.train_set.images
    split = f"train(val_fraction={data.val_fraction},split_seed={data.split_seed})"
    train = real_features(extractor, train_images, data.name, split, cache_dir, batch_size=1000)
    rate, threshold = memorisation_rate(fake_features, train, test_features, eval_cfg.memorisation_percentile)
    shown = min(32, len(fake)) // 8 * 8  # whole rows of 8 samples, each above its neighbours
    if run_dir is not None and shown:
        _, idx = nearest_neighbours(fake_features[:shown], train)
        save_grid(interleave_rows(fake[:shown], to_unit_range(train_images[idx])), Path(run_dir) / "nearest_neighbours.png")
    card = {
        **card,
        "memorisation": f"share of samples whose nearest training image (classifier features, {len(train)} training images) is "
        f"closer than the {eval_cfg.memorisation_percentile}th percentile of test-to-train nearest distances ({threshold:.4g})",
    }
    return rate, card
