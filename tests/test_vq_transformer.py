"""The token transformer: prompts as word tokens (and their errors), causality over the code sequence, the
cache against full recomputation, the frozen first stage, a loss that falls, the first stage reused when
given and trained when not, and a run end to end."""

import json
from functools import partial

import pytest
import torch

from genzoo.data.prompts import PAD, PromptVocabulary, words
from genzoo.data.sources import dataset_spec
from genzoo.errors import ConfigError
from genzoo.models.vq_transformer import VQTransformer

FASHION = dataset_spec("fashion_mnist").class_names
TINY_VQVAE = {"num_codes": 8, "code_dim": 4, "channels": [8, 8], "res_blocks": 1}


def _model(conditional=True, **kw):
    return VQTransformer((1, 28, 28), partial(torch.optim.AdamW, lr=3e-3), first_stage_overrides=TINY_VQVAE, d_model=16, n_layers=2,
                         n_heads=2, conditional=conditional, num_classes=10 if conditional else 0,
                         prompt_vocabulary="fashion_mnist" if conditional else None, **kw)


def test_the_vocabulary_is_the_class_names_words_and_prompts_are_left_padded():
    vocab = PromptVocabulary(FASHION)
    assert words("T-shirt/top") == ["t", "shirt", "top"] and words("Ankle boot") == ["ankle", "boot"]
    assert vocab.words == ["ankle", "bag", "boot", "coat", "dress", "pullover", "sandal", "shirt", "sneaker", "t", "top", "trouser"]
    assert vocab.max_words == 3
    ids = vocab.encode(["ankle boot", "BAG", "T-shirt/top"])
    assert ids.tolist() == [[PAD, 0, 2], [PAD, PAD, 1], [9, 7, 10]]
    assert vocab.class_prompts([9, 0]) == ["Ankle boot", "T-shirt/top"]


@pytest.mark.parametrize("prompt, match", [("red boot", r"outside the vocabulary \(red\)"), ("", "has 0 words"),
                                            ("ankle boot bag sandal", "has 4 words")])
def test_a_prompt_with_unknown_words_or_the_wrong_length_is_refused(prompt, match):
    with pytest.raises(ValueError, match=match):
        PromptVocabulary(FASHION).encode([prompt])
    with pytest.raises(ValueError, match=match):
        _model().sample(1, prompts=[prompt])


def test_prompts_need_a_conditional_model_and_one_per_image():
    with pytest.raises(ValueError, match="conditional model"):
        _model(conditional=False).sample(1, prompts=["bag"])
    with pytest.raises(ValueError, match="2 prompts for 3 images"):
        _model().sample(3, prompts=["bag", "coat"])
    with pytest.raises(ValueError, match="model.prompt_vocabulary"):
        VQTransformer((1, 28, 28), torch.optim.AdamW, first_stage_overrides=TINY_VQVAE, conditional=True, num_classes=10)


def test_each_code_is_predicted_from_the_prompt_and_the_codes_before_it():
    torch.manual_seed(0)
    model = _model().eval()
    codes = torch.randint(0, 8, (1, 49))
    base = model.logits(codes, ["bag"])  # (1, 49, 8)
    for j in (0, 10, 48):
        changed = codes.clone()
        changed[0, j] = (changed[0, j] + 1) % 8
        diff = (model.logits(changed, ["bag"]) - base).abs().amax(2).flatten()
        assert (diff[: j + 1] == 0).all() and (diff[j + 1 :] > 0).all()  # code j's own prediction ignores code j
    assert (model.logits(codes, ["coat"]) - base).abs().amax(2).min() > 0  # the prompt reaches every position


def test_the_cached_sampler_draws_what_recomputing_the_whole_prefix_draws_and_labels_prompt_with_class_names():
    torch.manual_seed(0)
    model = _model().eval()
    seed = partial(lambda: torch.Generator().manual_seed(5))
    cached = model.sample_codes(4, seed(), prompts=["ankle boot", "bag", "t-shirt/top", "trouser"], kv_cache=True)
    full = model.sample_codes(4, seed(), prompts=["ankle boot", "bag", "t-shirt/top", "trouser"], kv_cache=False)
    assert cached.shape == (4, 7, 7) and cached.dtype == torch.long and torch.equal(cached, full)
    assert torch.equal(cached, model.sample_codes(4, seed(), labels=[9, 8, 0, 1]))
    images = model.sample(4, seed(), labels=[9, 8, 0, 1])
    assert images.shape == (4, 1, 28, 28) and images.min() >= -1 and images.max() <= 1


def test_training_moves_the_transformer_only_and_the_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _model().train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("net.")}
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    labels = torch.arange(16) % 10
    opt = model.configure_optimizers()
    losses = []
    for _ in range(30):
        loss = model.token_nll(x, labels).mean() / model.seq_len
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # encoder, codebook (no EMA update), decoder
    assert not model.quantizer.training and model.net.training
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.net.parameters()}


def test_nfe_counts_the_transformer_calls_and_the_decoder_pass():
    model = _model(conditional=False).eval()
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in (model.net, model.decoder)]
    model.sample(2)
    for h in hooks:
        h.remove()
    assert len(calls) == model.nfe_per_sample == 7 * 7 + 1


def _tiny_run_overrides(tmp_path, data_root, name):
    return [f"data.root={data_root}", f"output_dir={tmp_path / name}", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=3",
            "budget.limit_val_batches=1", "budget.n_test=32", "budget.eval_samples=32", "budget.curve_points=0",
            "budget.grid_samples=8", "eval.pr_k=3", "eval.kid_subset_size=16", "logger=none", "progress_bar=false"]


@pytest.mark.slow  # two runs end to end (a first stage and the second), over a minute on 2 cores
@pytest.mark.usefixtures("domain_classifier")
def test_a_run_trains_its_own_first_stage_or_reuses_the_one_given(data_root, tmp_path):
    from genzoo import load_config, run
    from genzoo.models.build import load_run

    tiny = [*_tiny_run_overrides(tmp_path, data_root, "two-stage"), "model=vq_transformer", "model.d_model=16", "model.n_layers=1",
            "model.n_heads=2", *(f"+model.first_stage_overrides.{k}=" + (str(v).replace(" ", "") if isinstance(v, list) else str(v))
                                 for k, v in TINY_VQVAE.items())]
    payload = run(load_config(tiny))
    stage = tmp_path / "two-stage" / "first_stage"
    assert payload["status"] == "completed" and (stage / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((stage / "metrics.json").read_text())["model"] == "vqvae"
    assert json.loads((stage / "metrics.json").read_text())["protocol"]["budget"] == "smoke"  # the run's own budget
    assert f"first_stage: {stage}" in (tmp_path / "two-stage" / "config.yaml").read_text()
    assert {"token_nll_nats", "bits_per_token", "fid_classifier"} <= set(payload["metrics"])
    assert str(stage) in payload["protocol"]["family"]["first_stage"]
    # the first stage's training is part of the run's: its clock, images and FLOPs start from it
    stage_timing = json.loads((stage / "metrics.json").read_text())["timing"]
    timing = payload["timing"]
    assert timing["first_stage"] == {"run": str(stage), "train_seconds": stage_timing["train_seconds"],
                                     "train_images": stage_timing["train_images"], "train_flops": stage_timing["train_flops"]}
    assert timing["train_seconds"] > stage_timing["train_seconds"] > 0
    assert timing["train_images"] == stage_timing["train_images"] + 3 * 128  # 3 batches of the second stage
    stage_ckpt = (stage / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    given = [o.replace("two-stage", "reuses") for o in tiny] + [f"model.first_stage={stage}"]
    payload = run(load_config(given))
    assert payload["status"] == "completed" and not (tmp_path / "reuses" / "first_stage").exists()
    assert (stage / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stage_ckpt  # reused, not trained again
    first = load_run(stage).model
    second = load_run(tmp_path / "reuses").model
    assert torch.equal(first.quantizer.embedding, second.quantizer.embedding)
    from genzoo.report.table import collect_runs

    runs = collect_runs([tmp_path])  # the first stage inside a run is part of it, not a vqvae run of the sweep
    assert sorted(r["family"] for r in runs) == ["vq_transformer", "vq_transformer"]
    with pytest.raises(ConfigError, match="is a vq_transformer run"):
        run(load_config([o.replace("two-stage", "wrong") for o in tiny] + [f"model.first_stage={tmp_path / 'reuses'}"]))


def test_a_first_stage_that_is_not_a_finished_vqvae_run_is_refused(tmp_path, monkeypatch):
    from genzoo import load_config
    from genzoo.models.first_stage import resolve

    cfg = load_config(["model=vq_transformer", f"model.first_stage={tmp_path}"])
    with pytest.raises(ConfigError, match="holds no finished run"):
        resolve(cfg, tmp_path / "run", "vqvae")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(ConfigError, match="model.first_stage=<its run dir>"):
        resolve(load_config(["model=vq_transformer", "hardware=slurm"]), tmp_path / "run", "vqvae")
    with pytest.raises(ConfigError, match="a run directory or null"):
        load_config(["model=vq_transformer", "model.first_stage=' '"])


@pytest.mark.slow  # a first stage and a second stage, each for seconds of training
@pytest.mark.usefixtures("domain_classifier")
def test_under_a_time_budget_the_two_stages_share_the_minutes(data_root, tmp_path):
    from genzoo import load_config, run

    tiny = [o for o in _tiny_run_overrides(tmp_path, data_root, "timed") if o != "budget=smoke"] + ["model=vq_transformer", "model.d_model=16", "model.n_layers=1",
            "model.n_heads=2", *(f"+model.first_stage_overrides.{k}=" + (str(v).replace(" ", "") if isinstance(v, list) else str(v))
                                 for k, v in TINY_VQVAE.items()),
            "budget=equal_time", "budget.train_minutes=0.1", "budget.first_stage_share=0.5", "budget.curve_minutes=[0.02,0.1]",
            "budget.curve_samples=16", "edit_classes=null"]
    payload = run(load_config(tiny))
    stage = json.loads((tmp_path / "timed" / "first_stage" / "metrics.json").read_text())
    assert stage["timing"]["train_minutes_budget"] == 0.05  # half of the run's 0.1 minutes
    assert 3.0 <= stage["timing"]["train_seconds"] < 4.5
    timing, points = payload["timing"], payload["quality_curve"]["points"]
    assert timing["first_stage"]["train_seconds"] == stage["timing"]["train_seconds"]
    assert 6.0 <= timing["train_seconds"] < 7.5  # both stages together: the run's 6 seconds, not 6 more
    assert timing["train_flops"] == pytest.approx(timing["train_flops_per_batch"] * timing["batches"] + stage["timing"]["train_flops"])
    assert timing["train_images"] == stage["timing"]["train_images"] + timing["batches"] * 128
    assert [round(p["train_seconds"]) for p in points] == [6]  # the 1.2 s moment passed while the first stage trained


def test_a_given_first_stage_that_trained_the_whole_budget_is_refused_in_one_line(tmp_path):
    from genzoo.training.runner import _check_carried

    _check_carried({"run": "a", "train_seconds": 599.0}, 10)  # leaves a second to the second stage
    _check_carried({"run": "a", "train_seconds": 6000.0}, None)  # no time budget: nothing to share
    with pytest.raises(ConfigError, match=r"the first stage \(a\) trained 10.0 min, the whole budget.train_minutes=10"):
        _check_carried({"run": "a", "train_seconds": 600.0}, 10)
