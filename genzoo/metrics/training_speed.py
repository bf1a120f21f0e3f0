"""Training images/s of a family's config, measured over a few optimiser steps through Lightning.

Two uses: benchmarks/training_step.py compares the plain path with the speed preset, and
the equal-time sweep (benchmarks/equal_time.py) times the GAN's step before each run to
tell whether this machine trains at the speed of the machine its records came from. A
machine's convolution probe (machine_speed.py) does not see everything that slows
training: one virtual machine read 70-144 GFLOP/s on it, as fast as the table's machine,
yet trained the GAN at 650 images/s against 1,350 there. A real training step, with its
small ops, backward pass and optimiser, does.
"""

import time

import lightning as L
import torch
from hydra.utils import instantiate


class StepTimer(L.Callback):
    """Wall time (s) and images of the training batches after the first `warmup` (CUDA synchronised)."""

    def __init__(self, warmup: int):
        self.warmup, self.images, self.start, self.seconds = warmup, 0, None, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx >= self.warmup:
            _sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.start is not None:
            _sync()
            self.seconds += time.perf_counter() - self.start
            self.images += len(batch[0])
            self.start = None


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def training_images_per_second(overrides, steps: int = 20, warmup: int = 5, device: str | torch.device = "cpu",
                               speed_up: bool = False, precision: str = "32-true") -> float:
    """Training images/s over `steps` optimiser steps after `warmup` (untimed) ones, of the config `overrides` compose.

    overrides: Hydra overrides as on the command line, e.g. ["model=gan", "data=fashion_mnist",
    "hardware=cpu"]; the data module and model are built from them as a run builds them
    (weights seeded with 0), batches of the config's batch size. speed_up: apply the config's
    hardware speed options (torch.compile, channels_last, fused Adam) first. The timing
    covers whole Lightning training batches (data, forward, backward, optimiser), as a run's
    `train_images_per_second` does; compilation falls in the warm-up.
    Raises ValueError for steps < 1 or warmup < 0; ConfigError for bad overrides.
    """
    from genzoo.config import load_config
    from genzoo.models.build import build_model

    if steps < 1 or warmup < 0:
        raise ValueError(f"the training-speed measure needs steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    cfg = load_config(overrides)
    device = torch.device(device)
    data = instantiate(cfg.data)
    data.setup("fit")
    L.seed_everything(0, verbose=False)
    model = build_model(cfg.model, data.image_shape, data.num_classes)
    if speed_up:
        model.speed_up(cfg.hardware["compile"], cfg.hardware["channels_last"], cfg.hardware["fused_optimizer"])
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator=device.type, devices=1, precision=precision, max_epochs=1, limit_train_batches=warmup + steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, datamodule=data)
    return timer.images / timer.seconds
