"""A run directory holds one run: a lock while it is written, no fresh run over another, identity on resume.

- `claim(run_dir)`: rank zero takes a non-blocking lock on `<run dir>/.genzoo.lock` for the
  whole run; a second writer is refused with one line (ConfigError) instead of interleaving
  its checkpoints and records with the first's.
- `check_fresh(cfg, run_dir)`: a run that does not resume may not start in a directory that
  already holds a run (a config.yaml with checkpoints or a metrics.json).
- `check_identity(cfg, previous)`: resuming must not change what defines the run (the
  family and its constructor arguments, the data and its split, the seed): the run stops
  with one line naming each differing key. What may change on resume (budget, eval,
  hardware, logger, edit_classes, ...) is not compared.
"""

import fcntl
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genzoo.errors import ConfigError
from genzoo.families import of_target

LOCK_NAME = ".genzoo.lock"
# Keys of data that change how it is loaded, not what it is.
DATA_LOADING_KEYS = ("root", "download", "num_workers", "loader")  # batch_size defines the resume position: identity


def is_rank_zero() -> bool:
    """Whether this process is the global rank zero (before Lightning has set ranks up: from the launcher's variables)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return os.environ[var] == "0"
    return True


def claim(run_dir: Path):
    """Lock the run directory for this run; returns the open lock file (closing it releases the lock), or None off rank zero.

    Raises ConfigError when another process holds it.
    """
    if not is_rank_zero():
        return None
    handle = open(Path(run_dir) / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"{run_dir} is being written by another genzoo run (it holds {LOCK_NAME}): wait for it to end, "
                          "or give this run its own directory (hydra.run.dir=... or output_dir=...)") from None
    return handle


def check_fresh(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ConfigError when a run that does not resume would start over another run's files."""
    if cfg.get("resume") == "auto" or cfg.get("ckpt_path"):
        return
    held = [name for name in ("metrics.json", "checkpoints/last.ckpt") if (Path(run_dir) / name).exists()]
    if held:
        raise ConfigError(f"{run_dir} already holds a run ({', '.join(held)}): continue it with resume=auto, "
                          "or start this one in a new directory (hydra.run.dir=... or output_dir=...)")


def identity(cfg: DictConfig) -> dict:
    """{key: value} of what defines a run: model.* (not its family block), data.* (not how it is loaded), seed."""
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "family"}
    model["_target_"] = of_target(model["_target_"]).name  # the family, however the class path was written then
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DATA_LOADING_KEYS}
    return {**_flatten("model", model), **_flatten("data", data), "seed": cfg.seed}


def check_identity(cfg: DictConfig, previous_config: Path) -> None:
    """Raise ConfigError naming every key of `identity` that differs from the run's config.yaml at `previous_config`."""
    if not Path(previous_config).is_file():
        return
    before, now = identity(OmegaConf.load(previous_config)), identity(cfg)
    differ = [f"{k} ({before.get(k)!r} in the run, {now.get(k)!r} now)" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if differ:
        raise ConfigError(f"cannot resume {Path(previous_config).parent}: what defines the run differs: {'; '.join(differ)}. "
                          "Resume with the run's own settings, or start a new run in a new directory")


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(f"{prefix}.{key}", sub).items()}
    return {prefix: value}
