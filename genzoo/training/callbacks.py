"""Lightning callbacks the runner adds to every run: the training clock, the quality curve,
the divergence monitor and the sample grid for image loggers."""

import contextlib
import math
import time

import lightning as L
import torch
from torchvision.utils import make_grid


def _sync(module: L.LightningModule):
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class TrainingClock(L.Callback):
    """Counts training images and the seconds spent training, validation and scoring excluded.

    After fit: `images` seen by training steps on all ranks (the per-rank batch times the
    world size), `train_seconds` from fit start to end minus time in validation loops
    (sanity check included) and in `paused()` blocks (the quality curve's scoring), so
    images / train_seconds is the training throughput with data loading, optimiser steps
    and logging in it.
    """

    def __init__(self):
        self.images = 0
        self._excluded = 0.0
        self._fit_start = None
        self._before = 0.0  # training seconds of the run before it was resumed

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
    """The quality metric at `points` evenly spaced moments of training: the time-to-quality curve.

    After each k/points share of the run's training batches (k = 1..points), calls
    `score(module) -> float` (a FID from genzoo.metrics.harness.curve_scorer; set
    `score` before fit, None turns the curve off, as does points=0) with the module in
    eval mode and the training clock paused, on rank zero only (other ranks wait at a
    barrier). If training stops early, the point where it stopped is scored too. `points`
    then holds one dict per moment: batches, epoch, train_seconds, train_images, value
    (None on ranks other than zero). Batches are counted by Lightning's loop, which a
    resumed run restores.
    """

    def __init__(self, clock: TrainingClock, points: int, score=None):
        if points < 0:
            raise ValueError(f"points must be >= 0, got {points}")
        self.clock, self.n_points, self.score = clock, points, score
        self.points: list[dict] = []
        self._targets: set[int] = set()

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = state["points"]

    def on_fit_start(self, trainer, module):
        if self.score is None or self.n_points == 0:
            return
        total = trainer.estimated_stepping_batches
        if math.isinf(total) or total < 1:
            raise ValueError("the quality curve needs a finite number of training batches (set budget.max_epochs or budget.max_steps)")
        self._targets = {max(1, round(int(total) * k / self.n_points)) for k in range(1, self.n_points + 1)}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batches_done(trainer) in self._targets:
            self._record(trainer, module)

    def on_train_end(self, trainer, module):
        batches = batches_done(trainer)
        done = self.points and self.points[-1]["batches"] == batches
        if self._targets and batches and not done:
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
        self.points.append({
            "batches": batches_done(trainer), "epoch": trainer.current_epoch, "train_seconds": self.clock.elapsed(),
            "train_images": self.clock.images, "value": value,
        })


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
    norms); before each optimiser step, the gradients. A non-finite gradient skips that
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
