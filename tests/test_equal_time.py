"""Equal training time: the time budget, curve moments, training FLOPs, load, the equal-time config and the report's comparison."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from genzoo import families, load_config
from genzoo.artifacts import save_grid
from genzoo.config import validate
from genzoo.errors import ConfigError
from genzoo.metrics.machine_speed import PROBE_FLOPS, conv_gflops
from genzoo.report.__main__ import main as report_main
from genzoo.report.comparison_plots import mean_curve
from genzoo.report.course_notes import NOTES, FamilyFacts, cells, cv_interval, manipulation, quality, stability
from genzoo.report.table import collect_runs
from genzoo.training.callbacks import (
    LoadMonitor,
    MachineSpeed,
    QualityCurve,
    TimeBudget,
    TrainingClock,
    TrainingFlops,
    curve_seconds,
)

REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    """A training clock whose elapsed seconds the test sets."""

    def __init__(self):
        self.now, self.images = 0.0, 0

    def elapsed(self):
        return self.now

    def paused(self):
        import contextlib

        return contextlib.nullcontext()


def _trainer(batches=0):
    loop = SimpleNamespace(total_batch_idx=batches - 1)
    return SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(barrier=lambda: None), current_epoch=0, fit_loop=loop,
                           should_stop=False, world_size=1, saved=[], save_checkpoint=None)


def test_curve_seconds_keeps_the_moments_within_the_budget():
    assert curve_seconds({"curve_minutes": [1, 2, 5, 10, 20, 30], "train_minutes": 10}) == [60.0, 120.0, 300.0, 600.0]
    assert curve_seconds({"curve_minutes": [1, 30], "train_minutes": None}) == [60.0, 1800.0]
    assert curve_seconds({"curve_minutes": None, "train_minutes": 10}) is None


def test_quality_curve_scores_at_each_training_moment_once_and_resumes_past_them():
    clock, scored = FakeClock(), []
    curve = QualityCurve(clock, 0, score=lambda m: scored.append(clock.now) or 100.0 - clock.now, at_seconds=[60, 120, 300])
    module = torch.nn.Linear(1, 1)
    for batch, now in enumerate([30, 59, 61, 90, 130, 299, 301, 400], start=1):
        clock.now = now
        curve.on_train_batch_end(_trainer(batch), module, None, None, batch - 1)
    assert scored == [61, 130, 301]  # the first batch that ends at or past each moment, once
    assert [p["batches"] for p in curve.points] == [3, 5, 7]
    resumed = QualityCurve(clock, 0, score=lambda m: scored.append(clock.now) or 0.0, at_seconds=[60, 120, 300, 600])
    resumed.load_state_dict(curve.state_dict())
    clock.now = 450
    resumed.on_train_batch_end(_trainer(9), module, None, None, 0)
    clock.now = 601
    resumed.on_train_batch_end(_trainer(10), module, None, None, 0)
    assert scored == [61, 130, 301, 601]  # an extended run scores only the moments it had not reached


def test_time_budget_stops_at_the_first_batch_past_the_budget_and_saves():
    clock, saved = FakeClock(), []
    stop = TimeBudget(clock, 600, path="last.ckpt")
    trainer = _trainer()
    trainer.save_checkpoint = saved.append
    for now in (100, 599.9):
        clock.now = now
        stop.on_train_batch_end(trainer, None, None, None, 0)
        assert not trainer.should_stop
    clock.now = 600.2
    stop.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop and stop.stopped_at == 600.2 and saved == ["last.ckpt"]
    resumed, trainer = TimeBudget(clock, 600), _trainer()  # resumed after training ended (interrupted while scoring)
    resumed.on_train_start(trainer, None)
    assert trainer.should_stop  # no further batch
    fresh, trainer = TimeBudget(FakeClock(), 600), _trainer()
    fresh.on_train_start(trainer, None)
    assert not trainer.should_stop
    with pytest.raises(ValueError, match="seconds must be > 0"):
        TimeBudget(clock, 0)


def test_training_flops_count_forward_and_backward_of_a_linear_layer():
    # Linear(10 -> 5) on a batch of 4: forward x @ W^T is 2*4*10*5 = 400 FLOPs; backward to W is another 400
    # (the input needs no gradient); the optimiser's update is elementwise, which flop_counter does not count.
    layer, flops = torch.nn.Linear(10, 5), TrainingFlops(first=2, window=2)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
    trainer, counted = _trainer(), []
    for batch in range(1, 5):
        trainer.fit_loop.total_batch_idx = batch - 1  # Lightning's count over the run, the current batch included
        flops.on_train_batch_start(trainer, layer, None, 0)
        counted.append(flops._counter is not None)
        layer(torch.randn(4, 10)).sum().backward()
        optimiser.step()
        flops.on_train_batch_end(trainer, layer, None, None, 0)
    assert counted == [False, True, True, False]  # the run's batches 2 and 3
    assert flops.per_batch == 800 and flops.total(10) == 8000
    # a run interrupted after batch 2 and resumed counts batch 3 only, and ends with the same figure
    interrupted, resumed = TrainingFlops(first=2, window=2), TrainingFlops(first=2, window=2)
    for batch, callback in ((2, interrupted), (3, resumed)):
        if callback is resumed:
            resumed.load_state_dict(interrupted.state_dict())
        trainer.fit_loop.total_batch_idx = batch - 1
        callback.on_train_batch_start(trainer, layer, None, 0)
        layer(torch.randn(4, 10)).sum().backward()
        callback.on_train_batch_end(trainer, layer, None, None, 0)
    assert interrupted.per_batch is None and resumed.per_batch == 800
    trainer.world_size, trainer.fit_loop.total_batch_idx = 2, 0  # DDP: each rank's batch counted once
    again = TrainingFlops(first=1, window=1)
    again.on_train_batch_start(trainer, layer, None, 0)
    layer(torch.randn(4, 10)).sum().backward()
    again.on_train_batch_end(trainer, layer, None, None, 0)
    assert again.per_batch == 1600


def test_load_monitor_summarises_the_sampled_load(monkeypatch):
    loads = iter([1.5, 2.5, 2.0])
    monkeypatch.setattr("os.getloadavg", lambda: (next(loads), 0.0, 0.0))
    monitor = LoadMonitor(every=0.0)
    for _ in range(3):
        monitor.on_train_batch_end(None, None, None, None, 0)
    summary = monitor.summary()
    assert summary["load_1min_mean"] == 2.0 and summary["load_1min_max"] == 2.5 and summary["samples"] == 3
    restored = LoadMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored.summary()["samples"] == 3
    assert LoadMonitor().summary() is None


def test_a_carried_first_stage_starts_the_clock_and_the_flop_count_and_a_resume_keeps_them():
    clock = TrainingClock({"run": "stage", "train_seconds": 120.0, "train_images": 500, "train_flops": 3e12})
    assert clock.elapsed() == 120.0 and clock.images == 500
    resumed = TrainingClock({"train_seconds": 120.0, "train_images": 500})
    resumed.load_state_dict({"images": 900, "train_seconds": 300.0})  # the checkpoint's totals already hold the first stage's
    assert resumed.elapsed() == 300.0 and resumed.images == 900
    budget = TimeBudget(clock, 100.0)
    trainer = _trainer()
    budget.on_train_start(trainer, None)
    assert trainer.should_stop  # a clock that starts past the budget trains nothing
    flops = TrainingFlops(carried=3e12)
    assert flops.total(10) is None  # nothing counted yet
    flops.per_batch = 2e9
    assert flops.total(10) == 2e10 + 3e12
    plain = TrainingFlops()  # a one-stage run carries nothing
    plain.per_batch = 2e9
    assert plain.total(10) == 2e10


def test_the_first_stage_trained_in_a_timed_run_gets_its_share_of_the_minutes(tmp_path):
    from genzoo.models.first_stage import FIRST_STAGE_SHARE, _minutes, carried_cost

    assert _minutes({"train_minutes": 10}) == [f"budget.train_minutes={10 * FIRST_STAGE_SHARE:g}"]
    assert _minutes({"train_minutes": 10, "first_stage_share": 0.5}) == ["budget.train_minutes=5"]
    assert _minutes({"train_minutes": None, "max_epochs": 3}) == []  # no time budget: the first stage takes the run's budget
    stage = _record(tmp_path, "vqvae", 0, 3, fid=50.0)
    assert carried_cost(stage) == {"run": str(stage), "train_seconds": 181.0, "train_images": 38400, "train_flops": 3e12}


def test_the_speed_probe_measures_its_workload_and_draws_no_random_numbers():
    assert PROBE_FLOPS == 2 * (64 * 28 * 28) * 32 * (32 * 9)  # output elements x channels in x 3x3, a multiply and an add each
    state = torch.random.get_rng_state()
    probe = conv_gflops("cpu", seconds=0.2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the training that follows draws what it would without the probe
    assert probe["calls"] >= 5 and 0.2 <= probe["seconds"] < 5 and len(probe["rounds_gflops"]) == 5
    overall = probe["calls"] * PROBE_FLOPS / probe["seconds"] / 1e9
    assert probe["conv_gflops"] == max(probe["rounds_gflops"]) >= overall * 0.99  # the best round: others were slowed, never sped up
    assert min(probe["rounds_gflops"]) <= overall * 1.01
    assert "best of 5 rounds of 0.04 s" in probe["workload"] and "torch threads" in probe["workload"]
    with pytest.raises(ValueError, match="seconds > 0"):
        conv_gflops("cpu", seconds=0)
    with pytest.raises(ValueError, match="rounds >= 1"):
        conv_gflops("cpu", rounds=0)


def test_machine_speed_keeps_each_start_across_a_resume():
    module = SimpleNamespace(device=torch.device("cpu"))
    first = MachineSpeed(seconds=0.05)
    first.on_fit_start(None, module)
    for restore_first in (True, False):  # Lightning restores callbacks before on_fit_start, or after for some strategies
        resumed = MachineSpeed(seconds=0.05)
        if restore_first:
            resumed.load_state_dict(first.state_dict())
        resumed.on_fit_start(None, module)
        if not restore_first:
            resumed.load_state_dict(first.state_dict())
        summary = resumed.summary()
        assert len(summary["per_start"]) == 2 and summary["per_start"][0] == first.summary()["conv_gflops"]
        assert summary["conv_gflops"] == summary["per_start"][-1] > 0
        assert resumed.state_dict()["probes"] == summary["per_start"]
    assert MachineSpeed().summary() is None


def test_the_report_warns_when_the_runs_machines_differ_in_speed(tmp_path):
    root = tmp_path / "runs"
    for family, gflops in (("vae", 20.0), ("gan", 21.0), ("ddpm", 50.0)):
        record = _record(root, family, 0, 10, fid=50.0) / "metrics.json"
        payload = json.loads(record.read_text())
        payload["protocol"]["hardware"]["speed_probe"] = {"conv_gflops": gflops, "per_start": [gflops], "workload": "conv"}
        record.write_text(json.dumps(payload))
    _record(root, "ae", 0, 10, fid=60.0)  # a record from before the probe
    report_main([str(root), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "comparison.md").read_text()
    assert "20.0 to 50.0 GFLOP/s over 3 records" in text
    assert "**The runs were made on machines of different speed (vae seed 0 (20.0), gan seed 0 (21.0), ddpm seed 0 (50.0)" in text
    assert "Not recorded (made before the probe existed): ae seed 0." in text
    assert "different domain-classifier weights" not in text
    record = root / "gan-seed0-10min" / "metrics.json"
    payload = json.loads(record.read_text())
    payload["protocol"]["metric_cards"]["fid_classifier"]["weights_sha256"] = "07501fae2dfacbe0"  # another machine's classifier
    record.write_text(json.dumps(payload))
    report_main([str(root), "--out", str(tmp_path / "out1")])
    assert ("**The records' FIDs and KIDs come from 2 different domain-classifier weights (07501fae2dfa: gan seed 0; "
            "not recorded: ae seed 0, ddpm seed 0, vae seed 0)**") in (tmp_path / "out1" / "comparison.md").read_text()
    (root / "ddpm-seed0-10min").rename(tmp_path / "ddpm-elsewhere")
    report_main([str(root), "--out", str(tmp_path / "out2")])
    assert "machines of different speed" not in (tmp_path / "out2" / "comparison.md").read_text()  # 21 / 20 is within 1.25x


def test_the_equal_time_tier_gives_every_family_the_same_minutes_and_sample_counts():
    budgets = {f: load_config([f"model={f}", "budget=equal_time", "hardware=cpu"]).budget for f in families.names()}
    for key in ("train_minutes", "eval_samples", "curve_samples", "curve_minutes"):
        assert len({json.dumps(list(b[key]) if key == "curve_minutes" else b[key]) for b in budgets.values()}) == 1, key
    assert budgets["vae"].train_minutes == 10 and budgets["vae"].max_epochs == -1
    assert budgets["ddpm"].n_test == 32  # the bound costs T net passes per test image


@pytest.mark.parametrize("hardware", ["gpu", "gpu_fast", "cpu"])
def test_the_equal_time_tier_composes_for_every_family_on_every_single_device_preset(hardware):
    for family in families.names():
        cfg = load_config([f"model={family}", "budget=equal_time", f"hardware={hardware}", "budget.train_minutes=1"])
        validate(cfg)
        assert cfg.budget.train_minutes == 1


@pytest.mark.parametrize("override, message", [
    ("budget.train_minutes=0", "budget.train_minutes=0 is invalid"),
    ("budget.curve_minutes=[]", "budget.curve_minutes=[] is invalid"),
    ("budget.curve_minutes=[1,-2]", "budget.curve_minutes=[1, -2] is invalid"),
    ("budget.train_minutes=null", "never stops training"),
])
def test_bad_time_budgets_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        validate(load_config(["model=vae", "budget=equal_time", override]))
    assert "\n" not in str(err.value)


def test_gpu_runbook_refuses_to_start_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the runbook would start")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_table.sh"), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no CUDA GPU is visible" in done.stderr
    assert not (tmp_path / "out").exists()


def test_sweep_driver_plans_every_family_seed_by_seed_then_the_extension(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "equal_time.py"), "--out", str(tmp_path), "--runs", str(tmp_path / "r"),
                           "--families", "vae", "gan", "--seeds", "0", "1", "--dry-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = [line.split(":")[0][3:] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert names == ["vae-seed0-10min", "gan-seed0-10min", "vae-seed1-10min", "gan-seed1-10min", "vae-seed0-30min", "gan-seed0-30min"]
    assert "budget.train_minutes=30" in done.stdout and "hardware=cpu" in done.stdout


def _sweep_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("equal_time_sweep", REPO / "benchmarks" / "equal_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_speed(record_dir: Path, images_per_second: float, gflops: float | None) -> Path:
    payload = json.loads((record_dir / "metrics.json").read_text())
    payload["timing"]["train_images_per_second"] = images_per_second
    if gflops is not None:
        payload["protocol"]["hardware"]["speed_probe"] = {"conv_gflops": gflops}
    (record_dir / "metrics.json").write_text(json.dumps(payload))
    return record_dir / "metrics.json"


def test_the_sweep_withdraws_a_record_that_trained_slower_than_its_seeds(tmp_path):
    from genzoo.training.record import RunRecord

    sweep, runs = _sweep_module(), tmp_path / "runs"
    _with_speed(_record(runs, "gan", 0, 10, fid=58.0), 1369, 40.0)  # the probe of one early record read low: img/s decide
    _with_speed(_record(runs, "gan", 1, 10, fid=61.0), 1339, 137.2)
    _with_speed(_record(runs, "ae", 0, 10, fid=171.0), 4202, 128.1)
    slow = RunRecord.read(_with_speed(_record(tmp_path / "new", "gan", 2, 10, fid=107.2), 652, 73.6))
    assert sweep._fell_short(slow, runs, 1.25) == "trained 652 images/s, against the median 1354 of its family's 2 record(s)"
    fine = RunRecord.read(_with_speed(_record(tmp_path / "new2", "gan", 3, 10, fid=60.0), 1200, 73.6))
    assert sweep._fell_short(fine, runs, 1.25) is None  # 1200 x 1.25 > 1354
    first = RunRecord.read(_with_speed(_record(tmp_path / "new3", "vae", 0, 10, fid=160.0), 3600, 80.0))
    assert sweep._fell_short(first, runs, 1.25) is None  # the GAN's step, timed before the run, was the check
    no_gan = tmp_path / "runs-without-gan"
    _with_speed(_record(no_gan, "ae", 0, 10, fid=171.0), 4202, 128.1)
    assert sweep._fell_short(first, no_gan, 1.25) == "its speed probe read 80.0 GFLOP/s, against the records' median 128.1"
    assert sweep._fell_short(first, no_gan, 2.0) is None


def test_the_sweep_waits_for_a_slow_machine_and_stops_if_it_stays_slow(tmp_path, monkeypatch):
    import genzoo.metrics.machine_speed as machine_speed

    sweep, runs = _sweep_module(), tmp_path / "runs"
    assert sweep._wait_for_speed(runs, 1.25, 0, []) is None  # nothing to compare with
    _with_speed(_record(runs, "ae", 0, 10, fid=171.0), 4202, 128.0)
    readings, naps = iter([60.0, 90.0, 110.0]), []
    monkeypatch.setattr(machine_speed, "conv_gflops", lambda device, seconds: {"conv_gflops": next(readings)})
    monkeypatch.setattr(sweep.time, "sleep", naps.append)
    assert sweep._wait_for_speed(runs, 1.25, 30, []) is None  # 110 >= 128 / 1.25 = 102.4 at the third reading
    assert naps == [60, 60]
    monkeypatch.setattr(machine_speed, "conv_gflops", lambda device, seconds: {"conv_gflops": 70.0})
    assert sweep._wait_for_speed(runs, 1.25, 0, []) == "the machine measures 70.0 GFLOP/s, below 102.4 (the records' median 128.0 / 1.25)"


def test_once_the_gan_has_records_its_training_step_decides_not_the_probe(tmp_path, monkeypatch):
    """The half-speed host: its probe read as fast as the table's machine (or, a moment later, slower), its GAN trained at half speed."""
    import genzoo.metrics.machine_speed as machine_speed
    import genzoo.metrics.training_speed as training_speed

    sweep, runs = _sweep_module(), tmp_path / "runs"
    _with_speed(_record(runs, "gan", 0, 10, fid=58.0), 1369, 128.0)
    _with_speed(_record(runs, "gan", 1, 10, fid=61.0), 1339, 137.2)
    monkeypatch.setattr(machine_speed, "conv_gflops", lambda device, seconds: {"conv_gflops": 60.0})  # noisy: not consulted
    asked = []
    monkeypatch.setattr(training_speed, "training_images_per_second", lambda overrides, device: asked.append((overrides, device)) or 660.0)
    assert sweep._slow_now(runs, 1.25, ["data=fashion_mnist", "hardware=cpu"], "cpu") == (
        "the machine trains the gan at 660 images/s, below 1083 (its records' median 1354 / 1.25)")
    assert asked == [(["model=gan", "data=fashion_mnist", "hardware=cpu"], "cpu")]
    monkeypatch.setattr(training_speed, "training_images_per_second", lambda overrides, device: 1200.0)
    assert sweep._slow_now(runs, 1.25, [], "cpu") is None


def test_the_sweep_keeps_a_familys_seeds_at_one_model_recipe_read_with_its_defaults_resolved(tmp_path):
    """A record made before an option existed, or with a null that means today's value, is the same recipe; a changed default is not."""
    sweep, runs = _sweep_module(), tmp_path / "runs"
    record = _record(runs, "gan", 0, 10, fid=60.0)
    old = OmegaConf.load(record / "config.yaml")
    del old.model["self_modulation"], old.model["minibatch_std_group"]  # options added after the record was made
    old.model.spectral_norm = None  # the old yaml's spelling of "on when conditional": off here
    OmegaConf.save(old, record / "config.yaml")
    where = ["data=fashion_mnist", "hardware=cpu", "data.batch_size=128"]  # _record's protocol says batch 128
    payload = json.loads((record / "metrics.json").read_text())
    payload["protocol"]["batch_size"] = 128
    (record / "metrics.json").write_text(json.dumps(payload))
    assert sweep._recipe_mismatch(runs, ["gan"], where) == (  # self-modulation became the default after the record
        "gan's records here (gan-seed0-10min) trained with model.self_modulation=false but its runs now would with "
        "model.self_modulation=true: pass --extra model.self_modulation=false to continue this table (or --families without gan), "
        "or start a new --out")
    where = [*where, "model.self_modulation=false"]
    assert sweep._recipe_mismatch(runs, ["gan"], where) is None  # minibatch_std_group absent = off; spectral_norm null = false
    assert sweep._recipe_mismatch(runs, ["gan"], [*where, "model.optimizer.lr=1e-4", "model.latent_dim=32"]) == (
        "gan's records here (gan-seed0-10min) trained with model.latent_dim=64 model.optimizer.lr=0.0002 but its runs now "
        "would with model.latent_dim=32 model.optimizer.lr=0.0001: pass --extra model.latent_dim=64 model.optimizer.lr=0.0002 "
        "to continue this table (or --families without gan), or start a new --out")
    assert sweep._recipe_mismatch(runs, ["gan"], [*where, "model.n_critic=1"]) is None  # the ns loss's null is 1
    assert sweep._recipe_mismatch(runs, ["gan"], [*where, "model.n_critic=2"]).startswith(
        "gan's records here (gan-seed0-10min) trained with model.n_critic=1 but its runs now would with model.n_critic=2")


def test_the_speed_step_trains_the_gan_to_its_records_recipe_where_todays_defaults_differ(tmp_path, monkeypatch):
    import genzoo.metrics.training_speed as training_speed

    sweep, runs = _sweep_module(), tmp_path / "runs"
    record = _record(runs, "gan", 0, 10, fid=58.0)
    _with_speed(record, 1369, 128.0)
    made = OmegaConf.load(record / "config.yaml")
    made.model.self_modulation, made.model.latent_dim = False, 32  # a recipe other than today's default
    OmegaConf.save(made, record / "config.yaml")
    asked = []
    monkeypatch.setattr(training_speed, "training_images_per_second", lambda overrides, device: asked.append(overrides) or 1300.0)
    assert sweep._slow_now(runs, 1.25, ["data=fashion_mnist", "hardware=cpu"], "cpu") is None
    assert asked == [["model=gan", "data=fashion_mnist", "hardware=cpu", "model.latent_dim=32", "model.self_modulation=false"]]


def test_the_sweep_keeps_a_familys_seeds_at_one_batch_size_and_times_the_gan_at_its_records_batch(tmp_path, monkeypatch):
    """A table whose GAN records trained at batch 128 is not continued at the GAN's own default (64) without a word."""
    import genzoo.metrics.training_speed as training_speed

    sweep, runs = _sweep_module(), tmp_path / "runs"
    for family, seed in (("gan", 0), ("gan", 1), ("vae", 0)):
        record = _record(runs, family, seed, 10, fid=60.0)
        payload = json.loads((record / "metrics.json").read_text())
        payload["protocol"]["batch_size"], payload["timing"]["train_images_per_second"] = 128, 1300.0
        (record / "metrics.json").write_text(json.dumps(payload))
    where = ["data=fashion_mnist", "hardware=cpu"]
    assert sweep._recipe_mismatch(runs, ["vae", "gan"], where) == (
        "gan's records here trained at batch 128 but its runs now would at 64: pass --extra data.batch_size=128 to continue "
        "this table (or --families without gan), or start a new --out")
    assert sweep._recipe_mismatch(runs, ["vae", "gan"], [*where, "data.batch_size=128"]) is None
    assert sweep._recipe_mismatch(runs, ["vae", "ddpm"], where) is None  # ddpm has no records here
    mixed = tmp_path / "mixed"
    for seed, batch in ((0, 128), (1, 64)):
        record = _record(mixed, "gan", seed, 10, fid=60.0)
        payload = json.loads((record / "metrics.json").read_text())
        payload["protocol"]["batch_size"] = batch
        (record / "metrics.json").write_text(json.dumps(payload))
    assert sweep._recipe_mismatch(mixed, ["gan"], where).startswith(  # a table already mixed is named, whatever the batch now
        "gan's records here trained at batch 64, 128 but its runs now would at 64: pass --extra data.batch_size=64")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "equal_time.py"), "--out", str(tmp_path), "--runs", str(tmp_path / "r"),
                           "--families", "gan", "--seeds", "2", "--extend", "0", "--dry-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "gan's records here trained at batch 128 but its runs now would at 64" in done.stderr
    asked = []
    monkeypatch.setattr(training_speed, "training_images_per_second", lambda overrides, device: asked.append(overrides) or 1000.0)
    sweep._slow_now(runs, 1.25, where, "cpu")
    assert asked == [["model=gan", *where, "data.batch_size=128"]]


def test_the_training_speed_measure_times_real_steps_and_rejects_bad_counts():
    from genzoo.metrics.training_speed import training_images_per_second

    speed = training_images_per_second(["model=gan", "data=fashion_mnist", "hardware=cpu", "model.base_channels=8"], steps=2, warmup=1)
    assert 10 < speed < 1e6  # two real batches of 128 on this CPU
    with pytest.raises(ValueError, match="steps >= 1"):
        training_images_per_second(["model=gan"], steps=0)


@pytest.mark.parametrize("gpu_visible", [False, True])
def test_the_sweep_times_on_the_device_its_runs_train_on(gpu_visible, monkeypatch):
    """One rule (genzoo.models.build.run_device) for the sweep's speed check and for loading a run: ddp_cpu stays on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_visible)
    sweep = _sweep_module()
    gpu = "cuda" if gpu_visible else "cpu"
    assert {preset: sweep._device(preset) for preset in ("cpu", "ddp_cpu", "gpu", "auto")} == {
        "cpu": "cpu", "ddp_cpu": "cpu", "gpu": gpu, "auto": gpu}


# --- course notes -------------------------------------------------------------------------------------------


def test_cv_interval_is_the_chi_square_interval():
    low, high = cv_interval(0.1, 3)  # chi2(2): 2.5% = 0.0506, 97.5% = 7.378
    assert low == pytest.approx(0.1 * math.sqrt(2 / 7.3778), rel=1e-3)
    assert high == pytest.approx(0.1 * math.sqrt(2 / 0.050636), rel=1e-3)


def test_quality_is_fid_over_the_floor_at_the_same_n():
    assert quality(FamilyFacts("x", "VAE", fid=20.0, floor=10.0))[0] == "Exceptional"
    assert quality(FamilyFacts("x", "VAE", fid=50.0, floor=10.0))[0] == "High"
    assert quality(FamilyFacts("x", "VAE", fid=200.0, floor=10.0))[0] == "Moderate"
    assert quality(FamilyFacts("x", "VAE", fid=201.0, floor=10.0))[0] == "Low"


def test_stability_reads_divergence_curve_rises_and_the_spread_across_seeds():
    assert stability(FamilyFacts("g", "GAN", diverged=1, fid_per_seed=[10, 11]))[0] == "Unstable"
    assert stability(FamilyFacts("g", "GAN", fid_per_seed=[10, 10.5, 11], curves=[[100, 30, 50]]))[0] == "Unstable"  # 50 > 1.5 x 30
    word, evidence, caveat = stability(FamilyFacts("g", "GAN", fid_per_seed=[100, 101, 99], curves=[[300, 100]]))
    assert word == "Stable" and caveat == ""  # CV 0.01: even its upper 95% limit (0.063) is below 0.20
    word, _, caveat = stability(FamilyFacts("g", "GAN", fid_per_seed=[100, 120, 85]))
    assert word == "Stable" and "3 seeds cannot separate" in caveat  # CV 0.17: its interval contains 0.20
    assert stability(FamilyFacts("g", "GAN", fid_per_seed=[100]))[0].startswith("not measured yet")


def test_every_cell_has_the_notes_word_and_a_verdict():
    facts = [FamilyFacts("vae", "VAE", fid=300.0, floor=10.0, fid_per_seed=[300, 310, 290], nfe=1, flops_per_sample=5e6, recall=0.1, memorisation=0.0),
             FamilyFacts("ae", None, fid=200.0, floor=10.0)]
    table = cells(facts)
    vae = {row: table[row]["VAE"][0][1] for row in NOTES}
    assert vae["Quality"].measured == "Low" and vae["Quality"].verdict == "agrees"
    assert vae["Speed"].measured == "Fast" and vae["Speed"].verdict == "agrees"
    assert vae["Resource intensity"].measured == "Low" and vae["Resource intensity"].verdict == "disagrees"
    assert vae["Facial manipulation"].verdict == "—" and vae["Control over generation"].verdict == "—"
    assert table["Quality"]["GAN"] == []  # no family answers for it here; the AE answers for no column


def test_manipulation_needs_half_the_edits_flipped_and_half_keeping_their_identity():
    assert manipulation(FamilyFacts("gan", "GAN", has_latent=True, edit_flip_rate=0.5, edit_preservation=0.5))[0] == "Yes"
    assert manipulation(FamilyFacts("gan", "GAN", has_latent=True, edit_flip_rate=0.9, edit_preservation=0.49))[0] == "No"
    assert manipulation(FamilyFacts("gan", "GAN", has_latent=True, edit_flip_rate=0.49, edit_preservation=0.9))[0] == "No"
    assert manipulation(FamilyFacts("pixelcnn", "Autoregressive", has_latent=False)) == ("No", "no latent code to move")
    assert manipulation(FamilyFacts("vae", "VAE", has_latent=True))[0] == "not measured yet"


# --- the report from equal-time records ---------------------------------------------------------------------


def _record(root: Path, family: str, seed: int, minutes: float, fid: float, kid: float = 1.0, n: int = 1000, status="completed",
            run_id=None, batches=None):
    d = root / f"{family}-seed{seed}-{minutes:g}min"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(OmegaConf.to_yaml(load_config([f"model={family}"]), resolve=True))  # as the runner writes it
    save_grid(torch.rand(8, 1, 28, 28) * 2 - 1, d / "samples.png")
    moments = [m for m in (1, 2, 5, 10, 20, 30) if m <= minutes]
    points = [{"batches": 100 * m, "epoch": 0, "train_seconds": 60.0 * m + 0.5, "train_images": 12800 * m, "train_flops": 1e12 * m,
               "value": fid * minutes / m} for m in moments]
    payload = {
        "model": family, "data": "fashion_mnist", "status": status, "run_id": run_id or f"{family}{seed}{minutes:g}",
        "metrics": {"fid_classifier": fid, "kid_classifier": kid, "recall_classifier": 0.6, "memorisation_rate": 0.0,
                    "floor": {"n": n, "fid_classifier": 10.0, "kid_classifier": 0.1}},
        "quality_curve": {"card": {"n_fake": 256}, "points": points, "floor": {"n": 256, "fid_classifier": 30.0}},
        "timing": {"train_minutes_budget": minutes, "train_seconds": 60.0 * minutes + 1, "train_flops": 1e12 * minutes, "epochs": 3,
                   "train_images": 12800 * minutes, "batches": batches or 100 * minutes, "sample_images_per_second": 100.0},
        "resources": {"nfe_per_sample": 50 if family == "ddpm" else 1, "flops_per_sample": 2e10 if family == "ddpm" else 5e6},
        "protocol": {"budget": "equal_time", "seed": seed, "hardware": {"device": "CPU", "precision": "32-true",
                     "load_while_training": {"load_1min_mean": 2.0, "load_1min_max": 2.1, "samples": 20, "every_seconds": 30.0, "cpu_cores": 2}},
                     "metric_cards": {"fid_classifier": {"n_fake": n}}, "versions": {"torch": "2"}, "git_commit": "abc"},
    }
    (d / "metrics.json").write_text(json.dumps(payload))
    return d


@pytest.fixture()
def equal_time_records(tmp_path):
    root = tmp_path / "runs"
    for seed, (vae, gan, ddpm) in enumerate([(300, 60, 40), (310, 90, 42), (290, 40, 41)]):
        _record(root, "vae", seed, 10, vae)
        _record(root, "gan", seed, 10, gan)
        _record(root, "ddpm", seed, 10, ddpm)
    _record(root, "ddpm", 0, 30, 20.0, run_id="ddpm010", batches=3000)  # the seed-0 run extended: same run id, later point
    return root


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_comparison_ranks_checks_the_notes_and_rebuilds_byte_for_byte(equal_time_records, tmp_path, capsys):
    out = tmp_path / "report"
    report_main([str(equal_time_records), "--out", str(out)])
    text = (out / "comparison.md").read_text()
    ranking_10 = text.split("## Ranking after 10 training minutes")[1].split("##")[0]
    rows = [line.split(" | ")[1] for line in ranking_10.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ") or line.startswith("| 3 ")]
    assert rows == ["ddpm", "gan", "vae"]  # FID 41, 63.3, 300 at the same n
    assert "Ranked by FID: every family was scored at the same n" in ranking_10
    assert "## Ranking after 30 training minutes" in text  # the extension is its own record, not a copy
    notes = text.split("The course notes' table, checked (after 10 training minutes)")[1]
    assert "Exceptional → ✗ High [ddpm] (FID 41.0 = 4.1 x floor 10.0)" in notes
    assert "Unstable → ✗ Stable [gan]" in notes or "Unstable → ✓ Unstable [gan]" in notes
    for name in ("quality_vs_minutes.png", "quality_vs_flops.png", "montage_equal_time.png", "course_notes.png"):
        assert (out / name).stat().st_size > 1000
    first = _digests(out)
    again = tmp_path / "again"
    report_main([str(equal_time_records), "--out", str(again)])
    assert _digests(again) == first


def test_the_mean_curve_stops_where_the_first_seed_stops(equal_time_records):
    ddpm = [r for r in collect_runs([equal_time_records]) if r["family"] == "ddpm"]
    longest = [r for r in ddpm if r["record"].protocol["seed"] != 0] + [r for r in ddpm if Path(r["dir"]).name == "ddpm-seed0-30min"]
    xs, ys = mean_curve(longest)
    assert xs == [1.0, 2.0, 5.0, 10.0]  # seed 0 alone reaches 20 and 30: its own thin line, not the mean's
    # each point's value is fid * minutes / moment (see _record): seed 0 at 30 min with fid 20, seeds 1 and 2 at 10 min with 42 and 41
    assert ys[-1] == pytest.approx((20.0 * 30 / 10 + 42.0 + 41.0) / 3)
    assert ys[0] == pytest.approx((20.0 * 30 + 420.0 + 410.0) / 3)


def test_the_report_names_a_record_that_trained_at_another_rate_than_its_family(equal_time_records, tmp_path):
    report_main([str(equal_time_records), "--out", str(tmp_path / "even")])
    text = (tmp_path / "even" / "comparison.md").read_text()
    assert "Training images/s per record (train images over training-clock seconds): ddpm 213-213 (median 213)" in text
    assert "from their family's median" not in text
    record = equal_time_records / "gan-seed2-10min" / "metrics.json"
    payload = json.loads(record.read_text())
    payload["timing"]["train_images"] *= 1.5  # a faster host: 1.5x the images in the same minutes
    record.write_text(json.dumps(payload))
    report_main([str(equal_time_records), "--out", str(tmp_path / "uneven")])
    text = (tmp_path / "uneven" / "comparison.md").read_text()
    assert "**Records more than 1.25x from their family's median: gan seed 2 (10 min): 1.50x**" in text


def test_unequal_sample_counts_rank_on_kid(tmp_path):
    root = tmp_path / "runs"
    _record(root, "vae", 0, 10, fid=50.0, kid=9.0, n=1000)
    _record(root, "pixelcnn", 0, 10, fid=80.0, kid=2.0, n=256)
    report_main([str(root), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "comparison.md").read_text()
    assert "Ranked by KID" in text
    assert text.index("| 1 | pixelcnn") < text.index("| 2 | vae")


def test_an_extended_run_counts_once_per_point_and_a_copy_once(equal_time_records, tmp_path):
    runs = collect_runs([equal_time_records])
    assert sum(r["family"] == "ddpm" for r in runs) == 4  # 3 seeds at 10 min + the extension at 30
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(equal_time_records / "ddpm-seed0-30min", copy / "ddpm-seed0-30min")
    assert len(collect_runs([equal_time_records, copy])) == len(runs)


# --- a real run under a time budget, then extended -----------------------------------------------------------


@pytest.mark.slow
def test_a_timed_run_stops_on_the_training_clock_and_an_extension_carries_on(tmp_path, data_root, domain_classifier, monkeypatch):
    from genzoo import run

    monkeypatch.setenv("GENZOO_DATA", str(data_root))
    out = tmp_path / "ae"
    base = ["model=ae", *families.get("ae").tiny_overrides(), "budget=equal_time", "hardware=cpu", "progress_bar=false", "logger=none",
            "budget.curve_minutes=[0.02,0.05,0.1]", "budget.eval_samples=64", "budget.curve_samples=32", "budget.n_test=64",
            "budget.limit_val_batches=1", "edit_classes=null", f"output_dir={out}"]
    first = run(load_config([*base, "budget.train_minutes=0.05"]))
    timing, points = first["timing"], first["quality_curve"]["points"]
    assert first["status"] == "completed" and 3.0 <= timing["train_seconds"] < 4.5  # 0.05 min: stops at the first batch past 3 s
    assert [round(p["train_seconds"]) for p in points] == [1, 3] and points[0]["train_seconds"] >= 1.2
    assert timing["train_flops"] == timing["train_flops_per_batch"] * timing["batches"] > 0
    assert points[-1]["train_flops"] == timing["train_flops"] and first["quality_curve"]["floor"]["n"] == 32
    assert first["metrics"]["floor"]["n"] == 64 and first["protocol"]["hardware"]["load_while_training"]["samples"] >= 1
    assert first["protocol"]["hardware"]["speed_probe"]["conv_gflops"] > 0  # measured before the clock: not in train_seconds
    second = run(load_config([*base, "budget.train_minutes=0.1", "resume=auto"]))
    assert second["run_id"] == first["run_id"] and 6.0 <= second["timing"]["train_seconds"] < 7.5
    assert second["quality_curve"]["points"][:2] == points  # the curve carries on from where the run stopped
    assert len(second["quality_curve"]["points"]) == 3 and second["timing"]["batches"] > timing["batches"]
    assert second["protocol"]["resumed"][0]["changed"]["budget.train_minutes"] == [0.05, 0.1]
    assert len(second["protocol"]["hardware"]["speed_probe"]["per_start"]) == 2


def test_records_from_a_gpu_join_by_being_added_and_stay_apart_from_the_cpu(tmp_path):
    root = tmp_path / "runs"
    _record(root, "vae", 0, 10, fid=50.0)
    gpu = _record(root, "gan", 0, 1, fid=30.0)  # as benchmarks/gpu_table.sh writes it: 1 minute on the GPU
    payload = json.loads((gpu / "metrics.json").read_text())
    payload["protocol"]["hardware"] = {"device": "NVIDIA H200", "precision": "bf16-mixed", "accelerator": "gpu"}
    (gpu / "metrics.json").write_text(json.dumps(payload))
    report_main([str(root), "--out", str(tmp_path / "out")])
    comparisons = sorted(p.parent.name for p in (tmp_path / "out").rglob("comparison.md"))
    assert comparisons == ["fashion_mnist-CPU", "fashion_mnist-NVIDIA_H200"]
    assert "| 1 | gan |" in (tmp_path / "out" / "fashion_mnist-NVIDIA_H200" / "comparison.md").read_text()
    assert "gan" not in (tmp_path / "out" / "fashion_mnist-CPU" / "comparison.md").read_text().split("## Ranking")[1]
