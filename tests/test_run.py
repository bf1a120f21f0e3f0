"""End-to-end runs on real Fashion-MNIST: through run(cfg) and through the CLI."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from genzoo import families, load_config, load_run, run
from genzoo.errors import ConfigError, DatasetNotFoundError
from genzoo.paths import is_first_stage_of_a_run

TINY = [
    "hardware=cpu", "budget=smoke", "budget.limit_train_batches=5", "budget.limit_val_batches=2", "budget.n_test=256",
    "progress_bar=false", "eval=none",
]


def _check_run_dir(out, family):
    payload = json.loads((out / "metrics.json").read_text())
    assert set(payload) == {"model", "data", "run_id", "status", "divergence", "skipped_steps", "metrics", "quality_curve", "timing", "resources",
                            "protocol"}
    assert len(payload["run_id"]) == 32 and payload["run_id"] == OmegaConf.load(out / "config.yaml").run_id
    assert payload["protocol"]["resumed"] == [] and not (out / ".hydra").exists()  # config.yaml is the one record of the config
    assert payload["divergence"] is None and payload["quality_curve"]["points"] == []  # eval=none: no curve
    res = payload["resources"]
    assert res["nfe_per_sample"] == 1 and res["flops_per_sample"] > 0 and res["peak_memory_mib"] > 100 and res["params"] > 0
    assert payload["model"] == family and payload["data"] == "fashion_mnist" and payload["status"] == "completed"
    assert {"train_seconds", "train_images_per_second", "params"} <= set(payload["timing"])
    assert payload["timing"]["train_images"] == 5 * 128 and payload["timing"]["params"] > 0
    proto = payload["protocol"]
    assert proto["split"] == "test" and proto["n_test"] == 256 and proto["seed"] == 0
    assert {"python", "torch", "lightning"} <= set(proto["versions"]) and "git_commit" in proto
    assert proto["hardware"]["accelerator"] == "cpu"
    assert math.isfinite(payload["metrics"]["test_recon_mse"])
    assert not any(k.startswith("edit_") for k in payload["metrics"])  # eval=none: no classifier to label or score edits
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "checkpoints/last.ckpt", "config.yaml"):
        assert (out / name).is_file(), name
    return payload


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_run_in_process(family, data_root, tmp_path):
    cfg = load_config([f"model={family}", "data=fashion_mnist", f"data.root={data_root}", "logger=csv", f"output_dir={tmp_path}", *TINY])
    payload = run(cfg)
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
    _check_run_dir(tmp_path, family)
    if family == "vae":
        m = payload["metrics"]
        assert m["elbo_nats"] < 0 and 0 < m["bits_per_dim"] < 8
        assert m["bits_per_dim"] == pytest.approx(-m["elbo_nats"] / (784 * math.log(2)), rel=1e-5)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 5
    trained = load_run(tmp_path)  # the public way back from a run directory
    assert trained.family.name == family and not trained.model.training and trained.run_dir == tmp_path
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in trained.model.state_dict().items())
    assert len(trained.data.test_set) == 256 and trained.data.test_images.shape == (10000, 1, 28, 28)  # tested on n_test; scored on all
    with pytest.raises(ConfigError, match="no checkpoint at"):
        load_run(tmp_path / "checkpoints")


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_cli_run(family, cli, tmp_path):
    proc = cli(f"model={family}", "data=fashion_mnist", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob(f"{family}-fashion_mnist/*")
    _check_run_dir(run_dir, family)
    assert (run_dir / "csv").is_dir()
    last = proc.stdout.strip().splitlines()
    assert last[0].split() == ["genzoo:", "family", family] and last[-1].endswith(str(run_dir))  # the summary, not a dict


def test_the_final_summary_is_aligned_and_gives_units_and_protocol():
    from genzoo.cli import summary

    payload = {"model": "vae", "data": "fashion_mnist", "status": "completed", "divergence": None,
               "metrics": {"fid_classifier": 12.3456, "bits_per_dim": 4.1234567, "test_recon_mse": 0.01},
               "timing": {"train_seconds": 61.26, "sample_images_per_second": 900.0},
               "protocol": {"n_test": 512, "metric_cards": {"fid_classifier": {"n_fake": 500, "n_real": 500}}}}
    lines = summary(payload, "/runs/x").splitlines()
    assert lines[0] == "genzoo: family              vae" and lines[-1] == "genzoo: run directory       /runs/x"
    assert "genzoo: FID (classifier)    12.35 (500 samples vs 500 test images)" in lines
    assert "genzoo: likelihood          4.1235 bits/dim (bound, 512 test images)" in lines
    assert "genzoo: training            61.3 s" in lines and "genzoo: sampling            900.0 images/s" in lines
    assert len({line.index(line.split()[-1]) for line in lines[:3]}) == 1  # values start in one column
    vq = summary({"model": "vq_transformer", "data": "fashion_mnist", "status": "completed", "metrics": {"bits_per_token": 3.21},
                  "protocol": {}}, "/runs/y")
    assert "genzoo: code likelihood  3.2100 bits/token (exact, of the first stage's codes)" in vq.splitlines()


def test_cli_help_lists_the_groups(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    assert f"model: {', '.join(families.names())}" in proc.stdout and "data: cifar10, fashion_mnist, mnist" in proc.stdout


@pytest.mark.parametrize("args,expected", [
    (["model=pixelcnnn"], f"genzoo: error: unknown model option 'pixelcnnn': choose one of {', '.join(families.names())}"),
    (["model.latent_dim=0"], "genzoo: error: model.latent_dim=0 is invalid"),
    (["data.batch_size=-1"], "genzoo: error: data.batch_size=-1 is invalid"),
    (["model.channels=[16,32,64]"], "divisible by 8, got 28x28"),
])
def test_cli_bad_input_is_one_line_without_traceback(cli, tmp_path, args, expected):
    proc = cli(*args, "hardware=cpu")
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("genzoo: error")]) == 1
    assert not list(tmp_path.rglob("metrics.json"))


def test_cli_missing_dataset_offline(cli, genzoo_env, tmp_path):
    env = dict(genzoo_env, GENZOO_DATA=str(tmp_path / "empty-root"))
    proc = cli("data=mnist", "data.download=false", "hardware=cpu", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("genzoo: error")]
    assert "dataset 'mnist' not found" in line and str(tmp_path / "empty-root" / "MNIST") in line
    assert "data.download=true" in line and "data.root=" in line


def test_image_shape_the_net_cannot_take_stops_before_training(tmp_path):
    cfg = load_config(["model.channels=[16,32,64]", f"output_dir={tmp_path}", *TINY])
    with pytest.raises(ConfigError, match="model .* rejected the config: .*divisible by 8"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_run_without_dataset_raises(tmp_path):
    cfg = load_config(["data=mnist", f"data.root={tmp_path / 'none'}", "data.download=false", f"output_dir={tmp_path}", *TINY])
    with pytest.raises(DatasetNotFoundError):
        run(cfg)


def test_wandb_logger_runs_offline_without_prompting(data_root, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: wandb is not configured
    cfg = load_config(["model=vae", f"data.root={data_root}", "logger=wandb", f"output_dir={tmp_path / 'run'}", *TINY])
    run(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    assert any(runs[0].rglob("samples_*.png"))  # the sample grid logged after validation


@pytest.mark.slow
def test_compare_sweep_runs_every_family_and_reports(cli, tmp_path):
    proc = cli(
        "-m", "experiment=compare", "budget=smoke", "budget.limit_train_batches=2", "budget.limit_val_batches=1",
        "budget.n_test=16", "budget.grid_samples=4", "eval=none", "progress_bar=false",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    ran = sorted(json.loads(p.read_text())["model"] for p in sweep.rglob("metrics.json") if not is_first_stage_of_a_run(p.parent))
    assert ran == families.names()
    from genzoo.report.__main__ import main

    main([str(sweep), "--out", str(tmp_path / "report")])
    assert "| ddpm | 1 / 0 / 1 |" in (tmp_path / "report" / "table.md").read_text()


def test_a_non_finite_loss_is_recorded_as_a_diverged_run(data_root, tmp_path, monkeypatch):
    from genzoo.models.autoencoder import Autoencoder

    finite_step = Autoencoder.training_step

    def step_turning_nan(self, batch, batch_idx):
        loss = finite_step(self, batch, batch_idx)
        return loss * float("nan") if batch_idx >= 2 else loss

    monkeypatch.setattr(Autoencoder, "training_step", step_turning_nan)
    cfg = load_config(["model=ae", f"data.root={data_root}", f"output_dir={tmp_path}", *TINY])
    payload = run(cfg)
    assert payload["status"] == "diverged" and payload["divergence"]["step"] == 3 and payload["divergence"]["value"] == "nan"
    assert payload["metrics"] == {} and payload["timing"]["train_images"] == 2 * 128  # the third batch never stepped; not scored
    assert payload == json.loads((tmp_path / "metrics.json").read_text())
