"""A run directory holds one run: a lock while it is written, no fresh run over another, identity on resume.

- `claim(run_dir)`: rank zero takes a non-blocking lock on `<run dir>/.genzoo.lock` for the
  whole run; a second writer is refused with one line (ConfigError) instead of interleaving
  its checkpoints and records with the first's.
- `check_fresh(run_dir)`: a run that does not continue the directory's own run may not
  start in a directory that already holds one (a metrics.json or checkpoints/last.ckpt).
- `check_identity(cfg, previous_config)`: resuming must not change what defines the run
  (the family and its constructor arguments, the data and its split, the seed): the run
  stops with one line naming each differing key. The learning rate (`model.optimizer.lr`)
  may change only when given on the command line of the resuming run. Returns what
  changed (budget, eval, hardware, the learning rate, ...), which the run applies and records.
- `run_id`, `write_config`, `keep_previous_record`, `drop_previous_record`: config.yaml is
  replaced atomically and only by the run it describes; a completed record that an
  extension (resume with a larger budget) would replace is kept as metrics.previous.json
  (and config.previous.yaml) until the extension completes.
"""

import fcntl
import json
import os
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genzoo.artifacts import atomic_write_bytes
from genzoo.errors import ConfigError
from genzoo.families import of_target

LOCK_NAME = ".genzoo.lock"
PREVIOUS_RECORD, PREVIOUS_CONFIG = "metrics.previous.json", "config.previous.yaml"
# Keys of data that change how it is loaded, not what it is.
DATA_LOADING_KEYS = ("root", "download", "num_workers", "loader")  # batch_size defines the resume position: identity
# Keys of identity that a resumed run may change when its command line gives them.
CHANGEABLE_IF_GIVEN = ("model.optimizer.lr",)
# Keys that say how this start was launched, not what the run is or does.
LAUNCH_KEYS = ("resume", "ckpt_path", "output_dir", "overrides", "run_id", "progress_bar")


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


def check_fresh(run_dir: Path) -> None:
    """Raise ConfigError when `run_dir` already holds a run (a new run, or one resumed from another directory's checkpoint)."""
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


def given_on_command_line(cfg: DictConfig) -> set[str]:
    """The keys this start's command line set (`cfg.overrides`, filled by genzoo.config.prepare)."""
    return {o.lstrip("+~").partition("=")[0] for o in (cfg.get("overrides") or [])}


def check_identity(cfg: DictConfig, previous_config: Path) -> dict:
    """Compare cfg with the run's config.yaml at `previous_config`; returns {key: [before, now]} of what changes.

    Raises ConfigError naming every key of `identity` that differs, except a key of
    CHANGEABLE_IF_GIVEN that this start's command line gives (it is returned as a change).
    Returns {} when there is no previous config. The launch keys (resume, ckpt_path, ...) are not compared.
    """
    if not Path(previous_config).is_file():
        return {}
    from genzoo.models.build import read_run_config  # noqa: PLC0415  (torch-heavy; only when resuming)

    previous = read_run_config(Path(previous_config).parent)
    before, now = identity(previous), identity(cfg)
    given = given_on_command_line(cfg)
    differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    refused = [f"{k} ({before.get(k)!r} in the run, {now.get(k)!r} now)" for k in differ if not (k in CHANGEABLE_IF_GIVEN and k in given)]
    if refused:
        hint = " (the learning rate may change when the resuming command gives it: model.optimizer.lr=...)" if "model.optimizer.lr" in differ else ""
        raise ConfigError(f"cannot resume {Path(previous_config).parent}: what defines the run differs: {'; '.join(refused)}. "
                          f"Resume with the run's own settings, or start a new run in a new directory{hint}")
    old, new = _settings(previous), _settings(cfg)
    return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def run_id(cfg: DictConfig, previous_config: Path | None) -> str:
    """The run's id: the previous config.yaml's when resuming the directory's own run (the same run), else a new one (32 hex digits)."""
    if previous_config is not None and Path(previous_config).is_file():
        kept = OmegaConf.load(previous_config).get("run_id")
        if kept:
            return str(kept)
    return uuid.uuid4().hex


def write_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write `<run dir>/config.yaml` (resolved) atomically: a reader sees the old file or the new one, never a mix."""
    atomic_write_bytes(Path(run_dir) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())


def keep_previous_record(run_dir: Path) -> bool:
    """Before a resumed run replaces a finished record: copy metrics.json and config.yaml to their .previous names.

    Only a completed or diverged record is kept (an interrupted or failed one holds no
    result); an earlier kept record is never replaced by a lesser one. Returns whether a
    previous record is kept beside the run now.
    """
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status in ("completed", "diverged"):
        for name, kept in (("metrics.json", PREVIOUS_RECORD), ("config.yaml", PREVIOUS_CONFIG)):
            if (run_dir / name).is_file():
                atomic_write_bytes(run_dir / kept, (run_dir / name).read_bytes())
    return (run_dir / PREVIOUS_RECORD).is_file()


def drop_previous_record(run_dir: Path) -> None:
    """After the run's new record is written (completed or diverged): the kept previous one has been superseded."""
    for name in (PREVIOUS_RECORD, PREVIOUS_CONFIG):
        (Path(run_dir) / name).unlink(missing_ok=True)


def _settings(cfg: DictConfig) -> dict:
    """Every resolved key of a run config but the launch keys and Hydra's, flattened ({"budget.max_epochs": 30, ...})."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in _flatten("", {k: v for k, v in container.items() if k not in LAUNCH_KEYS and k != "hydra"}).items()}


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: value}
