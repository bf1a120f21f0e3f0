"""The comparison table from small fixture run directories: its numbers equal the inputs."""

import csv
import json
import statistics

import pytest
import torch

from genzoo import families
from genzoo.artifacts import save_grid
from genzoo.report import collect_runs, summarise
from genzoo.report.__main__ import main
from genzoo.report.labels import novelty_label, stability_label
from genzoo.report.plots import FILES, _first_row


def _run(root, name, family, status="completed", fid=None, bpd=None, ips=100.0, seed=0, curve=(), extra=None, samples=False):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"model:\n  _target_: {families.get(family).target}\n")
    if status is None:  # started, never finished: no metrics.json
        return
    metrics = {} if fid is None else {"fid_classifier": fid}
    if bpd is not None:
        metrics["bits_per_dim"] = bpd
    metrics.update(extra or {})
    points = [{"batches": i + 1, "epoch": 0, "train_seconds": 2.0 * (i + 1), "train_images": 128 * (i + 1), "value": v} for i, v in enumerate(curve)]
    if samples:
        save_grid(torch.rand(64, 1, 28, 28) * 2 - 1, d / "samples.png")
    payload = {
        "model": family, "data": "fashion_mnist", "status": status, "metrics": metrics, "quality_curve": {"card": None, "points": points},
        "timing": {"train_images_per_second": ips, "train_seconds": 10.0, "sample_images_per_second": 50.0, "params": 1000},
        "resources": {"nfe_per_sample": 50 if family == "ddpm" else 1, "flops_per_sample": 2e10 if family == "ddpm" else 5e6},
        "protocol": {"budget": "smoke", "seed": seed, "hardware": {"device": "CPU", "precision": "32-true"},
                     "versions": {"torch": "2"}, "git_commit": "abc"},
    }
    (d / "metrics.json").write_text(json.dumps(payload))


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "multirun"
    vae_novelty = {"memorisation_rate": 0.0, "recall_classifier": 0.3}
    _run(root, "0_vae", "vae", fid=10.0, bpd=4.0, ips=100.0, seed=0, curve=[300.0, 40.0, 10.0], extra=vae_novelty, samples=True)
    _run(root, "1_vae", "vae", fid=14.0, bpd=5.0, ips=300.0, seed=1, curve=[200.0, 30.0, 14.0], extra=vae_novelty)
    _run(root, "2_gan", "gan", fid=5.0, seed=0, curve=[100.0, 5.0], samples=True)
    _run(root, "3_gan", "gan", status="diverged", fid=900.0, seed=1)
    _run(root, "4_gan", "gan", status=None, seed=2)
    _run(root, "5_ae", "ae", fid=None, seed=0)  # a missing metric
    _run(root, "6_ddpm", "ddpm", fid=300.0, seed=0, extra={"memorisation_rate": 0.2, "recall_classifier": 0.9, "control_accuracy": 0.93})
    _run(root, "7_ddpm", "ddpm", fid=500.0, seed=1, extra={"memorisation_rate": 0.2, "recall_classifier": 0.9, "control_accuracy": 0.89})
    return root


def test_summary_numbers_equal_the_inputs(sweep):
    rows = {r["family"]: r for r in summarise(collect_runs([sweep]))}
    vae, gan, ae = rows["vae"], rows["gan"], rows["ae"]
    assert vae["fid_classifier"] == (12.0, statistics.stdev([10.0, 14.0]), 2)
    assert vae["bits_per_dim"][:2] == (4.5, statistics.stdev([4.0, 5.0])) and vae["train_images_per_second"][0] == 200.0
    assert (gan["runs_started"], gan["runs_completed"], gan["runs_diverged"]) == (3, 1, 1)
    assert gan["fid_classifier"] == (5.0, None, 1)  # the diverged run's 900 stays out of the mean
    assert gan["bits_per_dim"] == (None, None, 0) and ae["fid_classifier"] == (None, None, 0)
    assert sorted(gan["runs_not_completed"]) == ["3_gan: diverged", "4_gan: not finished"]


def test_report_writes_markdown_and_csv(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    md = (out / "table.md").read_text()
    assert "| vae | 2 / 0 / 2 | 12.0 ± 2.8 |" in md and "| gan | 1 / 1 / 3 | 5.0 |" in md and "3_gan: diverged" in md
    assert "seeds: 0, 1" in md
    with open(out / "table.csv") as f:
        rows = {r["family"]: r for r in csv.DictReader(f)}
    assert float(rows["vae"]["fid_classifier_mean"]) == 12.0 and rows["ae"]["fid_classifier_mean"] == ""
    assert rows["gan"]["runs_started"] == "3" and rows["gan"]["runs_diverged"] == "1"
    assert rows["vae"]["label_quality"] == "High" and rows["ddpm"]["label_quality"] == "Low"
    # the four figures, real PNGs; the montage has a row per family with samples
    from PIL import Image

    for name in FILES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert "Labels" in md and "How the labels are derived" in md and "fid_classifier ≤ 50" in md


def test_labels_follow_the_documented_thresholds(sweep):
    rows = {r["family"]: r for r in summarise(collect_runs([sweep]))}
    vae, gan, ddpm, ae = (rows[f]["labels"] for f in ("vae", "gan", "ddpm", "ae"))
    assert (vae["quality"], gan["quality"], ddpm["quality"]) == ("High", "High", "Low")  # 12, 5, 400 against 50 / 250
    assert (vae["sampling speed"], ddpm["sampling speed"]) == ("High", "Moderate")  # 1 and 50 NFE
    assert (vae["resource intensity"], ddpm["resource intensity"]) == ("Low", "High")  # 5e6 and 2e10 FLOPs
    # stability: the GAN diverged once; VAE's FID CV = 2.83 / 12 = 0.24; DDPM's 141 / 400 = 0.35
    assert (gan["training stability"], vae["training stability"], ddpm["training stability"]) == ("Low", "Moderate", "Low")
    assert ae["training stability"] == "—" and ae["quality"] == "—"
    # novelty: VAE recall 0.3, nothing memorised -> Moderate; DDPM memorises 20% -> Low despite recall 0.9
    assert (vae["novelty"], ddpm["novelty"]) == ("Moderate", "Low") and vae["control"] == "—"
    assert ddpm["control"] == "High" and rows["ddpm"]["control_accuracy"][0] == pytest.approx(0.91)  # mean of 0.93 and 0.89
    assert stability_label(100.0, 9.0, 0) == "High" and stability_label(100.0, 30.0, 0) == "Low"
    assert novelty_label(0.0, 0.6) == "High" and novelty_label(0.0, 0.1) == "Low"


def test_montage_takes_the_first_row_of_each_samples_grid(sweep, tmp_path):
    strip = _first_row(sweep / "0_vae" / "samples.png")
    assert strip.shape == (32, 242)  # one row of 8 28-pixel images with 2-pixel padding, greyscale


def test_an_unfinished_run_joins_its_familys_row(tmp_path):
    # the report named a run without metrics.json by its class ("autoencoder"), splitting the family in two
    root = tmp_path / "multirun"
    _run(root, "0_ae", "ae", fid=20.0)
    _run(root, "1_ae", "ae", status=None)
    rows = summarise(collect_runs([root]))
    assert [(r["family"], r["runs_started"], r["runs_completed"]) for r in rows] == [("ae", 2, 1)]


def test_an_unreadable_record_is_skipped_with_a_warning_that_names_it(tmp_path, capsys):
    root = tmp_path / "multirun"
    _run(root, "0_vae", "vae", fid=10.0)
    _run(root, "1_vae", "vae", fid=20.0)
    (root / "1_vae" / "metrics.json").write_text('{"model": "vae", "data": ')  # truncated
    runs = collect_runs([root])
    assert [r["dir"] for r in runs] == [str(root / "0_vae")]
    assert f"skipped {root / '1_vae'}" in capsys.readouterr().err


def test_a_directory_given_twice_counts_once(sweep):
    assert len(collect_runs([sweep, sweep / "0_vae"])) == len(collect_runs([sweep]))


def test_datasets_are_never_averaged_together(tmp_path):
    root = tmp_path / "multirun"
    _run(root, "0_vae", "vae", fid=10.0)
    _run(root, "1_vae", "vae", fid=30.0)
    payload = json.loads((root / "1_vae" / "metrics.json").read_text())
    (root / "1_vae" / "metrics.json").write_text(json.dumps({**payload, "data": "mnist"}))
    main([str(root), "--out", str(tmp_path / "out")])
    tables = sorted((tmp_path / "out").glob("*/table.md"))
    assert [t.parent.name for t in tables] == ["fashion_mnist-CPU", "mnist-CPU"]
    assert "| vae | 1 / 0 / 1 | 10.0 |" in tables[0].read_text() and "| vae | 1 / 0 / 1 | 30.0 |" in tables[1].read_text()


def test_report_rejects_a_path_without_runs(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
