"""Two-stage families: the trained first stage (e.g. a VQ-VAE) a second-stage model is built on.

A second stage (the token transformer, latent diffusion) names its first stage in its
config: `model.first_stage=<run dir>` reuses a finished run of the first stage's family;
null makes the run train one into `<run dir>/first_stage/` before its own training, with
the same data, budget, hardware, evaluation settings and seed as the run itself, so the
family joins a sweep (`experiment=compare`) by config alone. The runner calls the second
stage's `prepare_run` (genzoo.models.base.GenerativeModel) before building it; that calls
`resolve`, which writes the first stage's directory into the config (config.yaml records it).

The first stage's training is part of the run's: `carried_cost` reads it from the first
stage's record, and the runner starts the run's training clock, image count and FLOPs from
it (the record's `timing.first_stage` says how much of each it was). Under a time budget
(budget.train_minutes) the two stages therefore share the minutes: a first stage trained in
the run gets `budget.first_stage_share` of them (FIRST_STAGE_SHARE when the budget does not
say), and a given one is charged what it trained, so a two-stage family at equal time trains
no longer than any other family.
"""

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from genzoo import families
from genzoo.errors import ConfigError
from genzoo.paths import FIRST_STAGE_FOLDER, config_dir
from genzoo.training.record import RunRecord


class FrozenFirstStage(torch.nn.Module):
    """A trained first stage as a frozen part of a second stage: `encode(x)` its latent code, `forward(z)` the images it decodes.

    Wraps any family with an encoder (latent trait "encoder": encode_latents, decode_latents):
    its parameters take no gradient and it stays in eval mode whatever mode its owner is put
    in (no batch-norm or codebook updates). Decoding is this module's forward, so one
    decoder pass per image counts as one network evaluation (the contract test's hooks).
    With `as_map`, for a family whose latent is a vector (the AE's and VAE's (B, D) codes),
    codes are seen as (B, D, 1, 1) maps, so a second stage built for maps (a U-Net) can take them.

    Args:
        model: the first stage's GenerativeModel (genzoo.models.first_stage.load or untrained).
        as_map: the model's codes are (B, D) vectors: encode gives (B, D, 1, 1) maps, forward takes them.
    Raises:
        ValueError: a model without an encoder.
    """

    def __init__(self, model, as_map: bool = False):
        super().__init__()
        self.as_map = as_map
        if getattr(model, "latent_space", None) != "encoder":
            raise ValueError(f"a first stage needs an encoder (latent trait 'encoder'): {model.family} has {model.latent_space!r}")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code (B, *latent shape) of images x (B, C, H, W) in [-1, 1]; (B, D, 1, 1) for a vector code with as_map."""
        z = self.model.encode_latents(x)
        return z[:, :, None, None] if self.as_map else z

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] decoded from latents z (B, *latent shape), as `encode` gives them."""
        if self.as_map:
            z = z.flatten(1)
        return self.model.decode_latents(z).clamp(-1, 1)


def untrained(family: str, image_shape, overrides: dict | None = None):
    """A first stage of `family` with its config's defaults (and `overrides` of its model keys), untrained.

    For tests and for building a second stage's architecture; the runner never trains a
    second stage on it (prepare_run trains or loads one first).
    """
    from genzoo.models.build import build_model

    cfg = OmegaConf.load(config_dir() / "model" / f"{families.get(family).name}.yaml")
    cfg = OmegaConf.merge(cfg, overrides or {})
    return build_model(cfg, image_shape)


def load(path, family: str, image_shape) -> tuple[torch.nn.Module, dict]:
    """(the first stage's model with its final weights, in eval mode on the CPU; its metrics.json or {}) from a run directory.

    Raises ConfigError (one line) when `path` holds no finished run, a run of another
    family, or one trained on images of another shape.
    """
    from genzoo.models.build import build_model, locate, read_run_config
    run_dir, ckpt = locate(Path(path))
    cfg = read_run_config(run_dir)
    found = families.of_target(cfg.model._target_).name
    if found != family:
        raise ConfigError(f"model.first_stage={path} is a {found} run: this family's first stage is a {family} run "
                          f"(train one with model={family}, or leave model.first_stage=null to train one into the run)")
    model = build_model(cfg.model, image_shape)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"model.first_stage={path} does not fit images of shape {tuple(image_shape)}: "
                          f"{str(err).splitlines()[0]}") from err
    record = _record(run_dir)
    return model.eval(), record.to_dict() if record else {}


def obtain(path, family: str, image_shape, overrides: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """(first stage, its record): `load(path, ...)` of a run directory, or `untrained(family, ...)` when path is None (tests only)."""
    if path is None:
        return untrained(family, image_shape, overrides), {}
    return load(path, family, image_shape)


def describe(path, family: str, record: dict) -> str:
    """The protocol card's line for a first stage: its run, test reconstruction error, codebook usage, training seconds and epochs (those recorded)."""
    if not path:
        return f"untrained {family} (tests only)"
    found = {k: (record.get(section) or {}).get(k) for section, k in (("metrics", "test_recon_mse"), ("metrics", "codebook_usage"),
                                                                    ("timing", "train_seconds"), ("timing", "epochs"))}
    return f"{family} run {path}: " + ", ".join(f"{k} {v:.4g}" for k, v in found.items() if v is not None)


FIRST_STAGE_SHARE = 0.3  # under a time budget: the share of the minutes a first stage trained in the run gets


def prepare(cfg: DictConfig, run_dir: Path, family: str, overrides: dict | None = None) -> dict:
    """A second stage's prepare_run: `resolve` the first stage, then return its `carried_cost` (the runner counts it)."""
    return carried_cost(resolve(cfg, run_dir, family, overrides))


def carried_cost(target: Path) -> dict:
    """{"run", "train_seconds", "train_images", "train_flops"}: the finished first stage's training, from its metrics.json.

    Values the record lacks are 0 (a record from before they were counted); train_flops None
    when its FLOPs were never counted.
    """
    record = _record(target)
    timing = record.timing if record else {}
    return {"run": str(target), "train_seconds": float(timing.get("train_seconds") or 0.0),
            "train_images": int(timing.get("train_images") or 0), "train_flops": timing.get("train_flops")}


def resolve(cfg: DictConfig, run_dir: Path, family: str, overrides: dict | None = None) -> Path:
    """The first stage's run directory for this run, written into cfg.model.first_stage (and returned).

    Given (`model.first_stage=<dir>`): that directory, checked to hold a finished run.
    Null: `<run dir>/first_stage/`, where a finished first stage is reused, an interrupted
    one continued (resume=auto) and otherwise one trained now by genzoo's runner, composed
    from this run's command line (`cfg.overrides`) with `model=<family>` and the family's
    `overrides` as model keys. Raises ConfigError for a given directory that holds no
    finished run, and under SLURM's DDP when none is given (train the first stage on its own
    first); under Lightning's DDP the first stage trains on one device before the ranks start.
    """
    given = cfg.model.get("first_stage")
    if given is None:
        ddp = cfg.hardware.get("strategy") == "ddp"
        if ddp and "SLURM_NTASKS" in os.environ:  # every task starts at once: none may train it alone
            raise ConfigError(f"a {family} first stage is not trained inside a SLURM DDP run: train it first "
                              f"(python -m genzoo model={family} ...) and pass model.first_stage=<its run dir>")
        target = Path(run_dir) / FIRST_STAGE_FOLDER
        # Lightning's DDP launches the other ranks when the second stage's trainer starts, after this: the first
        # stage trains here on one device, and the ranks launched later find it finished
        train(cfg, target, family, overrides, one_device=ddp)
    else:
        target = Path(given).expanduser().resolve()
    _check_finished(target)
    with open_dict(cfg):
        cfg.model.first_stage = str(target)
    return target


def train(cfg: DictConfig, target: Path, family: str, overrides: dict | None = None, one_device: bool = False) -> dict:
    """Train (or continue, or reuse) a first stage of `family` into `target` under cfg's settings; its metrics.json payload.

    one_device: on one device of cfg's accelerator instead of its DDP strategy.
    """
    from genzoo.config import load_config
    from genzoo.training.runner import run

    record = _record(target)
    if record and record.status == "completed":
        print(f"genzoo: first stage: reusing the finished {family} run in {target}")
        return record.to_dict()
    keep = [o for o in cfg.get("overrides") or [] if not _key(o).split(".")[0] in _NOT_INHERITED and _key(o) not in _SET_HERE]
    stage = [f"model={family}", *keep, *(families.override(f"model.{k}", v) for k, v in (overrides or {}).items()),
             *_minutes(cfg.budget), f"output_dir={target}", "resume=auto",
             *(["hardware.strategy=auto", "hardware.devices=1", "hardware.num_nodes=1"] if one_device else [])]
    print(f"genzoo: first stage: training a {family} into {target}")
    return run(load_config(stage))


# Command-line keys of the second stage that its first stage does not take: its own model, where it writes, what it resumes.
_NOT_INHERITED = ("model", "output_dir", "ckpt_path", "resume", "hydra", "experiment")
_SET_HERE = ("budget.train_minutes", "budget.first_stage_share")  # the first stage's minutes are its share (_minutes)


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def _minutes(budget) -> list[str]:
    """The first stage's time budget as an override: its share of the run's budget.train_minutes ([] without a time budget)."""
    minutes = budget.get("train_minutes")
    if not minutes:
        return []
    share = budget.get("first_stage_share", FIRST_STAGE_SHARE)
    return [f"budget.train_minutes={share * minutes:g}"]


def _record(run_dir: Path) -> RunRecord | None:
    """The run's metrics.json, or None when there is none (ValueError naming the file when it is not a record)."""
    path = Path(run_dir) / "metrics.json"
    return RunRecord.read(path) if path.is_file() else None


def _check_finished(target: Path) -> None:
    """Raise ConfigError unless target holds a completed run with its last checkpoint."""
    record = _record(target)
    if not record or record.status != "completed" or not (target / "checkpoints" / "last.ckpt").is_file():
        status = record.status if record else "no metrics.json"
        raise ConfigError(f"model.first_stage={target} holds no finished run ({status}): pass the directory of a completed run, "
                          "or null to train one into this run's first_stage/")
