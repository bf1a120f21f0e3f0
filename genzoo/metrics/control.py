"""Control over generation, measured: does a conditional model draw the class it is asked for?

For a class-conditional model (`model.conditional=true`) the runner adds:
- `control_accuracy`: the domain classifier's accuracy on n samples drawn with balanced
  requested labels (i mod K), with the model's configured guidance; per-class accuracies;
- `fid_per_class`: the mean over classes of the classifier FID between the samples asked
  for class c and the test images of class c (n / K of each);
- for models with classifier-free guidance, the guidance sweep: FID and accuracy of m
  samples at each guidance scale w (the runner draws them as guidance_tradeoff.png).
"""

from functools import partial
from pathlib import Path

import torch

from genzoo.metrics.frechet import feature_statistics, frechet_distance
from genzoo.metrics.harness import extract, generate, real_features
from genzoo.protocol import site_seed


def conditional_samples(model, labels: torch.Tensor, batch_size: int, seed: int, guidance_scale=None) -> torch.Tensor:
    """Images (n, C, H, W) in [-1, 1] on the CPU, image i drawn for class labels[i], one seeded generator."""
    sample = model.sample if guidance_scale is None else partial(model.sample, guidance_scale=guidance_scale)
    return generate(sample, len(labels), batch_size, seed, labels=labels)


def control_metrics(model, data, extractor, cache_dir: Path, n: int, seed: int, batch_size: int, guidance_scales=(),
                    guidance_samples: int = 0) -> tuple[dict, dict]:
    """(metrics, card) of control for a conditional model; see the module docstring.

    extractor: the classifier Extractor (features and logits); cache_dir: its real-feature cache. n: samples for accuracy and
    per-class FID (balanced labels, seed offset SEED_OFFSETS["control"]). guidance_scales / guidance_samples: the sweep
    (skipped when empty or 0). Returns metrics {"control_accuracy", "control_accuracy_per_class",
    "fid_per_class", "guidance_sweep": [{"guidance_scale", "fid_classifier", "control_accuracy"}]}.
    """
    classes = model.num_classes
    labels = torch.arange(n) % classes
    fake = conditional_samples(model, labels, batch_size, site_seed("control", seed))
    features, logits = extract(extractor, lambda a, b: fake[a:b], n, batch_size)
    hits = (logits.argmax(1) == labels).float()
    test_features = real_features(extractor, data.test_images, data.name, "test", cache_dir, batch_size)
    per_class_fid = []
    for c in range(classes):
        real_c = test_features[data.test_labels == c][: int((labels == c).sum())]
        per_class_fid.append(frechet_distance(*feature_statistics(real_c), *feature_statistics(features[labels == c])))
    metrics = {
        "control_accuracy": hits.mean().item(),
        "control_accuracy_per_class": [hits[labels == c].mean().item() for c in range(classes)],
        "fid_per_class": sum(per_class_fid) / classes,
    }
    card = {
        "control_accuracy": f"{extractor.card['extractor']} (test accuracy {extractor.card.get('test_accuracy')}) on {n} samples "
        f"with requested labels i mod {classes}, seed {site_seed('control', seed)}, the model's guidance",
        "fid_per_class": f"mean over classes of the classifier FID between the {n // classes} samples asked for a class and "
        f"the first {n // classes} test images of that class",
    }
    if guidance_scales and guidance_samples:
        m = guidance_samples
        sweep_labels = torch.arange(m) % classes
        real_stats = feature_statistics(test_features[:m])
        sweep = []
        for w in guidance_scales:
            images = conditional_samples(model, sweep_labels, batch_size, site_seed("guidance_sweep", seed), guidance_scale=float(w))
            f, lg = extract(extractor, lambda a, b: images[a:b], m, batch_size)
            sweep.append({"guidance_scale": float(w), "fid_classifier": frechet_distance(*real_stats, *feature_statistics(f)),
                          "control_accuracy": (lg.argmax(1) == sweep_labels).float().mean().item()})
        metrics["guidance_sweep"] = sweep
        card["guidance_sweep"] = f"{m} samples per scale (labels i mod {classes}, seed {site_seed('guidance_sweep', seed)}) against the first {m} test images"
    return metrics, card
