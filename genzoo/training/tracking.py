"""Experiment tracking: a wandb logger that never prompts and never blocks on the network."""

import netrc
import os
from pathlib import Path


def wandb_configured() -> bool:
    """Whether the user has set wandb up: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(save_dir: str, project: str = "genzoo", name: str | None = None, **kwargs):
    """A Lightning WandbLogger writing under `save_dir`.

    Offline (files only, sync later with `wandb sync <dir>`) unless WANDB_MODE is set or
    wandb is configured, so a run never waits on a login prompt or the network.
    """
    from lightning.pytorch.loggers import WandbLogger

    offline = "WANDB_MODE" not in os.environ and not wandb_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, **kwargs)
