"""The comparison table from small fixture run directories: its numbers equal the inputs."""

import csv
import json
import statistics

import pytest

from genzoo.report import collect_runs, summarise, write_table
from genzoo.report.__main__ import main


def _run(root, name, family, status="completed", fid=None, bpd=None, ips=100.0, seed=0):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"model:\n  _target_: genzoo.models.{family.upper()}\n")
    if status is None:  # started, never finished: no metrics.json
        return
    metrics = {} if fid is None else {"fid_classifier": fid}
    if bpd is not None:
        metrics["bits_per_dim"] = bpd
    payload = {
        "model": family, "data": "fashion_mnist", "status": status, "metrics": metrics,
        "timing": {"train_images_per_second": ips, "train_seconds": 10.0, "sample_images_per_second": 50.0, "params": 1000},
        "protocol": {"budget": "smoke", "seed": seed, "hardware": {"device": "CPU", "precision": "32-true"},
                     "versions": {"torch": "2"}, "git_commit": "abc"},
    }
    (d / "metrics.json").write_text(json.dumps(payload))


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "multirun"
    _run(root, "0_vae", "vae", fid=10.0, bpd=4.0, ips=100.0, seed=0)
    _run(root, "1_vae", "vae", fid=14.0, bpd=5.0, ips=300.0, seed=1)
    _run(root, "2_gan", "gan", fid=5.0, seed=0)
    _run(root, "3_gan", "gan", status="diverged", fid=900.0, seed=1)
    _run(root, "4_gan", "gan", status=None, seed=2)
    _run(root, "5_ae", "ae", fid=None, seed=0)  # a missing metric
    return root


def test_summary_numbers_equal_the_inputs(sweep):
    rows = {r["family"]: r for r in summarise(collect_runs([sweep]))}
    vae, gan, ae = rows["vae"], rows["gan"], rows["ae"]
    assert vae["fid_classifier"] == (12.0, statistics.stdev([10.0, 14.0]), 2)
    assert vae["bits_per_dim"][:2] == (4.5, statistics.stdev([4.0, 5.0])) and vae["train_images_per_second"][0] == 200.0
    assert (gan["runs_started"], gan["runs_completed"]) == (3, 1)
    assert gan["fid_classifier"] == (5.0, None, 1)  # the diverged run's 900 stays out of the mean
    assert gan["bits_per_dim"] == (None, None, 0) and ae["fid_classifier"] == (None, None, 0)
    assert sorted(gan["runs_not_completed"]) == ["3_gan: diverged", "4_gan: not finished"]


def test_report_writes_markdown_and_csv(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    md = (out / "table.md").read_text()
    assert "| vae | 2 / 2 | 12.0 ± 2.8 |" in md and "| gan | 1 / 3 | 5.0 |" in md and "3_gan: diverged" in md
    assert "seeds: 0, 1" in md
    with open(out / "table.csv") as f:
        rows = {r["family"]: r for r in csv.DictReader(f)}
    assert float(rows["vae"]["fid_classifier_mean"]) == 12.0 and rows["ae"]["fid_classifier_mean"] == ""
    assert rows["gan"]["runs_started"] == "3"


def test_report_rejects_a_path_without_runs(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
