"""The runner's callbacks on a tiny LightningModule: the quality curve, the clock, divergence."""

import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from genzoo.training.callbacks import DivergenceMonitor, QualityCurve, TrainingClock, TrainingDiverged, time_to_quality


class Tiny(L.LightningModule):
    """Linear regression whose loss turns non-finite from batch `nan_at` (1-based) on."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.nan_at, self.seen = nan_at, 0

    def training_step(self, batch, batch_idx):
        self.seen += 1
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.nan_at and self.seen >= self.nan_at:
            loss = loss * float("nan")
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, callbacks, batches=20, epochs=1):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(batches * 4, 2), torch.randn(batches * 4, 1)), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, data)
    return trainer


def test_quality_curve_scores_evenly_spaced_moments_in_eval_mode_with_the_clock_paused(monkeypatch):
    clock = TrainingClock()
    modes, offset, perf_counter = [], [0.0], time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: perf_counter() + offset[0])

    def score(module):
        modes.append(module.training)
        offset[0] += 100.0  # each scoring takes 100 s by the clock, whatever the machine's load
        return 100.0 - len(modes)

    curve = QualityCurve(clock, points=4, score=score)
    _fit(Tiny(), [clock, curve], batches=10, epochs=2)  # 20 batches in all
    assert [p["batches"] for p in curve.points] == [5, 10, 15, 20]
    assert [p["value"] for p in curve.points] == [99.0, 98.0, 97.0, 96.0]
    assert [p["train_images"] for p in curve.points] == [20, 40, 60, 80]
    assert modes == [False] * 4  # scored in eval mode ...
    assert clock.train_seconds < 100.0  # ... and the 4 x 100 s of scoring is not training time


def test_quality_curve_off_without_a_scorer_and_rejects_negative_points():
    curve = QualityCurve(TrainingClock(), points=4, score=None)
    _fit(Tiny(), [curve], batches=5)
    assert curve.points == []
    with pytest.raises(ValueError, match="points must be >= 0"):
        QualityCurve(TrainingClock(), points=-1)


def test_time_to_quality_is_the_first_point_within_ten_percent_of_the_final_value():
    points = [{"train_seconds": t, "value": v} for t, v in [(1.0, 300.0), (2.0, 120.0), (3.0, 108.0), (4.0, 100.0)]]
    assert time_to_quality(points) == 3.0  # 120 > 1.1 * 100; 108 is within
    points[1]["value"] = 109.0
    assert time_to_quality(points) == 2.0
    assert time_to_quality(points, tolerance=0.0) == 4.0
    assert time_to_quality([]) is None
    assert time_to_quality([{"train_seconds": 1.0, "value": float("nan")}]) is None


def test_divergence_monitor_stops_at_the_first_non_finite_loss():
    module = Tiny(nan_at=3)
    with pytest.raises(TrainingDiverged) as stop:
        _fit(module, [DivergenceMonitor()], batches=20)
    details = stop.value.details
    assert details["step"] == 3 and details["metric"] in ("loss", "train/loss", "gradient") and details["value"] == "nan"
    assert module.seen == 3


def test_divergence_monitor_quiet_on_a_finite_run_and_rejects_a_negative_limit():
    monitor = DivergenceMonitor()
    _fit(Tiny(), [monitor], batches=6)
    assert monitor.skipped_steps == 0 and monitor.state_dict() == {"skipped_steps": 0}
    with pytest.raises(ValueError, match="max_skipped_steps must be >= 0"):
        DivergenceMonitor(-1)


def test_training_clock_and_curve_state_survive_a_checkpoint():
    clock = TrainingClock()
    _fit(Tiny(), [clock], batches=5)
    restored = TrainingClock()
    restored.load_state_dict(clock.state_dict())
    assert restored.images == 20 and restored.elapsed() == pytest.approx(clock.train_seconds)
    curve = QualityCurve(TrainingClock(), points=2)
    curve.load_state_dict({"points": [{"batches": 3, "value": 1.0}]})
    assert curve.points[0]["batches"] == 3 and curve.state_dict() == {"points": [{"batches": 3, "value": 1.0}]}


class Slow(Tiny):
    """Tiny whose every training step takes `step_seconds` by the clock: it moves `offset[0]`, which a test adds to time.perf_counter."""

    def __init__(self, offset: list[float], step_seconds: float):
        super().__init__()
        self.offset, self.step_seconds = offset, step_seconds

    def training_step(self, batch, batch_idx):
        self.offset[0] += self.step_seconds
        return super().training_step(batch, batch_idx)


def test_time_budget_stops_an_endless_fit_on_the_training_clock_with_the_curve_at_its_moments(monkeypatch):
    from genzoo.training.callbacks import TimeBudget, TrainingFlops

    offset, perf_counter = [0.0], time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: perf_counter() + offset[0])
    clock, flops = TrainingClock(), TrainingFlops(first=2, window=2)
    curve = QualityCurve(clock, 0, score=lambda module: 1.0, at_seconds=[10.0, 30.0], flops=flops)
    stop = TimeBudget(clock, 30.0)
    trainer = _fit(Slow(offset, 10.0), [clock, flops, curve, stop], batches=10, epochs=-1)  # no epoch limit: only the clock stops it
    # 10 s per step by the clock: it stops after the third step, at 30 s plus the real seconds the steps took (under 10 s)
    assert 30.0 <= stop.stopped_at < 40.0 and trainer.should_stop
    assert 30.0 <= clock.train_seconds < 40.0
    assert [p["train_seconds"] >= t for p, t in zip(curve.points, [10.0, 30.0])] == [True, True] and len(curve.points) == 2
    assert flops.per_batch == 2 * (2 * 4 * 2 * 1)  # Linear(2 -> 1) on 4 rows: forward 16 FLOPs, weight gradient 16
    assert curve.points[-1]["train_flops"] == flops.per_batch * curve.points[-1]["batches"]
