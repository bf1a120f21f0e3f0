"""Lightning callbacks the runner adds to every run."""

import time

import lightning as L
import torch
from torchvision.utils import make_grid


def _sync(module: L.LightningModule):
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class TrainingClock(L.Callback):
    """Counts training images and the seconds spent training, validation excluded.

    After fit: `images` seen by training steps, `train_seconds` from fit start to end minus
    time in validation loops (sanity check included), so images / train_seconds is the
    training throughput with data loading, optimiser steps and logging in it.
    """

    def __init__(self):
        self.images = 0
        self.train_seconds = 0.0
        self._val_seconds = 0.0

    def on_fit_start(self, trainer, module):
        _sync(module)
        self._fit_start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.images += len(batch[0])

    def on_validation_start(self, trainer, module):
        _sync(module)
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, module):
        _sync(module)
        self._val_seconds += time.perf_counter() - self._val_start

    def on_fit_end(self, trainer, module):
        _sync(module)
        self.train_seconds = time.perf_counter() - self._fit_start - self._val_seconds

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds if self.train_seconds > 0 else float("nan")


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
