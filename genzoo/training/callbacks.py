"""Lightning callbacks the runner adds to every run: the training clock, the time budget, the quality
curve, training FLOPs, the machine's load and speed, the divergence monitor and the sample grid for image loggers."""

import contextlib
import math
import os
import time

import lightning as L
import torch
from torchvision.utils import make_grid

from genzoo.metrics.resources import FlopCount


def _sync(module: L.LightningModule):
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class TrainingClock(L.Callback):
    """Counts training images and the seconds spent training, validation and scoring excluded.

    After fit: `images` seen by training steps on all ranks (the per-rank batch times the
    world size), `train_seconds` from fit start to end minus time in validation loops
    (sanity check included) and in `paused()` blocks (the quality curve's scoring), so
    images / train_seconds is the training throughput with data loading, optimiser steps
    and logging in it. A two-stage run's clock starts at its first stage's training (seconds
    and images), so a time budget and the curve's moments count both stages.
    """

    def __init__(self, carried: dict | None = None):
        """carried: training done toward this run before its own fit ({"train_seconds", "train_images"}: a two-stage
        family's first stage, genzoo.models.first_stage.carried_cost); the clock starts from it (a resume restores it)."""
        carried = carried or {}
        self.images = int(carried.get("train_images") or 0)
        self._excluded = 0.0
        self._fit_start = None
        self._before = float(carried.get("train_seconds") or 0.0)  # training seconds before this fit: a resume's, or the first stage's

    def state_dict(self) -> dict:
        return {"images": self.images, "train_seconds": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.images, self._before = state["images"], state["train_seconds"]

    def on_fit_start(self, trainer, module):
        _sync(module)
        self._fit_start, self._excluded = time.perf_counter(), 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.images += len(batch[0]) * trainer.world_size

    def on_validation_start(self, trainer, module):
        _sync(module)
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, module):
        _sync(module)
        self._excluded += time.perf_counter() - self._val_start

    def on_fit_end(self, trainer, module):
        _sync(module)
        self._before = self.elapsed()
        self._fit_start = None  # the clock stops

    def elapsed(self) -> float:
        """Training seconds so far (0 before fit starts)."""
        if self._fit_start is None:
            return self._before
        return self._before + time.perf_counter() - self._fit_start - self._excluded

    @contextlib.contextmanager
    def paused(self):
        """A block whose wall time does not count as training."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._excluded += time.perf_counter() - start

    @property
    def train_seconds(self) -> float:
        """Training seconds: final after fit, so far during it (and at a divergence, which skips fit end)."""
        return self.elapsed()

    @property
    def images_per_second(self) -> float:
        seconds = self.elapsed()
        return self.images / seconds if seconds > 0 else float("nan")


class QualityCurve(L.Callback):
    """The quality metric at moments of training: the quality-against-time curve.

    Two ways to place the moments: `points` evenly spaced shares of the run's training
    batches (k/points, k = 1..points), or `at_seconds`, moments of the training clock
    (the first batch that ends at or after each; the equal-time tier's 1, 2, 5, 10, ...
    minutes), which need no known number of batches. At each, calls `score(module) ->
    float` (a FID from genzoo.metrics.harness.curve_scorer; set `score` before fit, None
    turns the curve off, as does points=0 with no at_seconds) with the module in eval mode
    and the training clock paused, on rank zero only (other ranks wait at a barrier). If
    training stops elsewhere, the point where it stopped is scored too. `points` then holds
    one dict per moment: batches, epoch, train_seconds, train_images, train_flops (None
    before `flops` has measured a batch), value (None on ranks other than zero). Batches
    are counted by Lightning's loop and the points are restored on resume, so a resumed
    (or extended) run scores only the moments it has not reached.
    """

    def __init__(self, clock: TrainingClock, points: int, score=None, at_seconds=None, flops=None):
        if points < 0:
            raise ValueError(f"points must be >= 0, got {points}")
        if at_seconds is not None and any(t <= 0 for t in at_seconds):
            raise ValueError(f"at_seconds must be positive training seconds, got {list(at_seconds)}")
        self.clock, self.n_points, self.score, self.flops = clock, points, score, flops
        self.at_seconds = sorted(at_seconds) if at_seconds is not None else None
        self.points: list[dict] = []
        self._targets: set[int] = set()

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = state["points"]

    @property
    def enabled(self) -> bool:
        return self.score is not None and (self.n_points > 0 or bool(self.at_seconds))

    def on_fit_start(self, trainer, module):
        if not self.enabled or self.at_seconds is not None:
            return
        total = trainer.estimated_stepping_batches
        if math.isinf(total) or total < 1:
            raise ValueError("the quality curve needs a finite number of training batches (set budget.max_epochs or budget.max_steps)")
        self._targets = {max(1, round(int(total) * k / self.n_points)) for k in range(1, self.n_points + 1)}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if not self.enabled:
            return
        if self.at_seconds is not None:
            reached = max((p["train_seconds"] for p in self.points), default=0.0)
            due = [t for t in self.at_seconds if reached < t <= self.clock.elapsed()]
            if due:
                self._record(trainer, module)
        elif batches_done(trainer) in self._targets:
            self._record(trainer, module)

    def on_train_end(self, trainer, module):
        batches = batches_done(trainer)
        done = self.points and self.points[-1]["batches"] == batches
        if self.enabled and batches and not done:
            self._record(trainer, module)

    def _record(self, trainer, module):
        with self.clock.paused():
            value = None
            if trainer.is_global_zero:
                was_training = module.training
                module.eval()
                with torch.no_grad():
                    value = float(self.score(module))
                module.train(was_training)
            trainer.strategy.barrier()
        batches = batches_done(trainer)
        self.points.append({
            "batches": batches, "epoch": trainer.current_epoch, "train_seconds": self.clock.elapsed(),
            "train_images": self.clock.images, "train_flops": self.flops.total(batches) if self.flops else None, "value": value,
        })


class TimeBudget(L.Callback):
    """Stops training once the training clock reaches `seconds` (the equal-time tier's budget.train_minutes).

    Checked after every training batch, so the run stops at the end of the first batch
    that ends at or past the budget (overshoot: less than one batch). The clock excludes
    validation and the quality curve's scoring (TrainingClock), unlike Lightning's
    `max_time`, which counts wall time. A resumed run's clock carries its earlier seconds,
    so resuming with a larger budget extends the run to the new total, and resuming with the
    same budget (a run interrupted after training) trains no further batch. When it stops
    training it saves `path` (last.ckpt) at that batch, the exact point an extension continues from.
    """

    def __init__(self, clock: TrainingClock, seconds: float, path=None):
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.clock, self.seconds, self.path = clock, float(seconds), path
        self.stopped_at: float | None = None

    def on_train_start(self, trainer, module):
        # a resumed run whose clock already holds the budget (interrupted while testing or scoring) trains no further batch
        if self.clock.elapsed() >= self.seconds:
            self.stopped_at = self.clock.elapsed()
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.stopped_at is None and self.clock.elapsed() >= self.seconds:
            self.stopped_at = self.clock.elapsed()
            trainer.should_stop = True
            if self.path is not None:
                trainer.save_checkpoint(self.path)


class TrainingFlops(L.Callback):
    """Floating-point operations per training batch, counted on real batches, and the run's training FLOPs.

    Counts the run's batches `first` .. `first + window - 1` (1-based over the whole run, so
    a resumed run counts exactly the batches the uninterrupted one would; a window of
    several batches covers a family that updates some nets only every few batches) with
    `FlopCount` (torch.utils.flop_counter's per-op formulas): forward, backward and
    optimiser step of every net, matrix multiplies and convolutions at 2 FLOPs per
    multiply-add (elementwise ops are not counted). `per_batch` is their mean, times the world size under DDP (each
    rank's batch counted once); `total(batches)` = per_batch * batches (+ `carried`, a first
    stage's training FLOPs). The counted batches
    run a little slower (the counter's dispatch), inside the training clock.
    """

    def __init__(self, first: int = 2, window: int = 4, carried: float | None = None):
        self.first, self.window = first, window
        self.carried = float(carried or 0.0)  # FLOPs trained before this run's fit (a two-stage family's first stage)
        self.per_batch: float | None = None
        self._counter, self._counted, self._flops = None, 0, 0

    def state_dict(self) -> dict:
        return {"per_batch": self.per_batch, "flops": self._flops, "counted": self._counted}

    def load_state_dict(self, state: dict) -> None:
        self.per_batch, self._flops, self._counted = state.get("per_batch"), state.get("flops", 0), state.get("counted", 0)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.per_batch is None and self.first <= batches_done(trainer) < self.first + self.window:
            self._counter = FlopCount()
            self._counter.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._counter is None:
            return
        self._counter.__exit__(None, None, None)
        self._flops += self._counter.flops
        self._counter, self._counted = None, self._counted + 1
        if batches_done(trainer) == self.first + self.window - 1:  # the window's last batch (earlier ones may be restored sums)
            self.per_batch = self._flops / self._counted * trainer.world_size

    def on_exception(self, trainer, module, exception):
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def total(self, batches: int) -> float | None:
        """Training FLOPs of `batches` batches (all ranks) plus those carried from a first stage, None before a batch was counted."""
        return None if self.per_batch is None else self.per_batch * batches + self.carried


class LoadMonitor(L.Callback):
    """The machine's 1-minute load average while training: equal training time means nothing on a shared CPU.

    Samples os.getloadavg()[0] after a training batch at most every `every` seconds of wall
    time (the first at the first batch); `summary()` gives {"load_1min_mean", "load_1min_max",
    "samples", "cpu_cores"}, kept across resumes. A run alone on the machine shows a load
    near the threads it uses (genzoo on 2 cores: about 2); more means another process
    competed for the cores. None where the platform has no load average.
    """

    def __init__(self, every: float = 30.0):
        self.every, self.samples, self._last = every, [], None

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.samples = list(state.get("samples", []))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every:
            self._last = now
            try:
                self.samples.append(round(os.getloadavg()[0], 2))
            except OSError:
                pass

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"load_1min_mean": round(sum(self.samples) / len(self.samples), 2), "load_1min_max": max(self.samples),
                "samples": len(self.samples), "every_seconds": self.every, "cpu_cores": os.cpu_count()}


class MachineSpeed(L.Callback):
    """The machine's measured speed at each start of fit (genzoo.metrics.machine_speed.conv_gflops), kept across resumes.

    Equal training minutes compare only on machines of one speed, and the CPU's name does
    not tell machines apart; the runner adds it to runs under a time budget. `summary()`
    gives {"conv_gflops": this start's figure, "per_start": [each start's, the checkpoint's
    first], "workload"}, or None before it has measured. Its measurement draws no random
    numbers and precedes the training clock's first batch, so the run trains as it would
    without it. The checkpoint's figures and this start's are kept apart, so the order in
    which Lightning restores callbacks and calls on_fit_start (it varies by strategy) does not matter.
    """

    def __init__(self, seconds: float = 1.0):
        self.seconds, self.restored, self.measured, self.workload = seconds, [], None, None

    def per_start(self) -> list[float]:
        return self.restored + ([] if self.measured is None else [self.measured])

    def state_dict(self) -> dict:
        return {"probes": self.per_start()}

    def load_state_dict(self, state: dict) -> None:
        self.restored = list(state.get("probes", []))

    def on_fit_start(self, trainer, module):
        from genzoo.metrics.machine_speed import conv_gflops

        probe = conv_gflops(module.device, self.seconds)
        self.measured, self.workload = probe["conv_gflops"], probe["workload"]

    def summary(self) -> dict | None:
        if self.measured is None:
            return None
        return {"conv_gflops": self.measured, "per_start": self.per_start(), "workload": self.workload}


def curve_seconds(budget: dict) -> list[float] | None:
    """The quality curve's moments in training seconds from budget.curve_minutes, or None (evenly spaced points instead).

    Only the moments within the run's budget (budget.train_minutes, when set) are kept;
    the point where training stops is scored in any case (QualityCurve.on_train_end).
    """
    minutes = budget.get("curve_minutes")
    if not minutes:
        return None
    limit = budget.get("train_minutes")
    return [60.0 * m for m in minutes if limit is None or m <= limit]


def batches_done(trainer) -> int:
    """Training batches started in the run so far, the current one included (Lightning's count, restored on resume)."""
    return trainer.fit_loop.total_batch_idx + 1


def time_to_quality(points: list[dict], tolerance: float = 0.10) -> float | None:
    """Training seconds until the curve first comes within `tolerance` of its final value.

    For a lower-is-better metric (FID): the first point with value <= final * (1 + tolerance).
    None when the curve is empty or its final value is not finite.
    """
    values = [p["value"] for p in points if p["value"] is not None]
    if not values or not math.isfinite(values[-1]):
        return None
    final = values[-1]
    return next(p["train_seconds"] for p in points if p["value"] is not None and p["value"] <= final * (1 + tolerance))


class TrainingDiverged(Exception):
    """Raised by DivergenceMonitor to stop fit; `details` is what metrics.json records."""

    def __init__(self, details: dict):
        super().__init__(f"training diverged: {details}")
        self.details = details


class DivergenceMonitor(L.Callback):
    """Stops training at the first non-finite loss or gradient, keeping the last good checkpoint.

    After each training batch it checks the step's returned loss (automatic optimisation)
    and every logged `train/*` value (manual optimisation logs its losses and gradient
    norms), and asks the module's `divergence()` (GenerativeModel: a family's own sign, such
    as the EBM's exploding energies); before each optimiser step, the gradients. A non-finite gradient skips that
    step (gradients dropped) while fewer than `max_skipped_steps` have been skipped;
    otherwise, and on any non-finite loss, it raises TrainingDiverged({"step": batches
    done, "epoch", "metric", "value", "skipped_steps"}): Lightning stops without saving
    (last.ckpt stays the last checkpoint written before), and the runner records status
    "diverged".
    """

    def __init__(self, max_skipped_steps: int = 0):
        if max_skipped_steps < 0:
            raise ValueError(f"max_skipped_steps must be >= 0, got {max_skipped_steps}")
        self.max_skipped_steps = max_skipped_steps
        self.skipped_steps = 0

    def state_dict(self) -> dict:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_steps = state["skipped_steps"]

    def on_before_optimizer_step(self, trainer, module, optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or all(torch.isfinite(g).all() for g in grads):
            return
        if self.skipped_steps < self.max_skipped_steps:
            self.skipped_steps += 1
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None  # the optimiser leaves parameters without a gradient untouched
            return
        self._diverge(trainer, "gradient", "nan" if any(torch.isnan(g).any() for g in grads) else "inf")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        candidates = {}
        if isinstance(outputs, dict) and torch.is_tensor(outputs.get("loss")):
            candidates["loss"] = outputs["loss"]
        elif torch.is_tensor(outputs):
            candidates["loss"] = outputs
        candidates.update({k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")})
        for name, value in candidates.items():
            value = float(value.detach()) if torch.is_tensor(value) else float(value)
            if not math.isfinite(value):
                self._diverge(trainer, name, str(value))
        family_sign = module.divergence() if hasattr(module, "divergence") else None
        if family_sign is not None:
            self._diverge(trainer, family_sign[0], f"{family_sign[1]:g}")

    def _diverge(self, trainer, metric: str, value: str):
        raise TrainingDiverged({"step": batches_done(trainer), "epoch": trainer.current_epoch, "metric": metric, "value": value, "skipped_steps": self.skipped_steps})


class SampleGridLogger(L.Callback):
    """After each validation epoch, logs an 8x8 sample grid to loggers that take images (wandb).

    The grid uses a fixed generator seed, so successive grids show the same latents.
    """

    def __init__(self, n: int = 64, seed: int = 0):
        self.n, self.seed = n, seed

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        loggers = [lg for lg in trainer.loggers if hasattr(lg, "log_image")]
        if not loggers:
            return
        grid = make_grid(module.sample(self.n, generator=torch.Generator().manual_seed(self.seed)), nrow=8, normalize=True, value_range=(-1, 1))
        for logger in loggers:
            logger.log_image(key="samples", images=[grid], step=trainer.global_step)
