"""The construction layer: a model from a config, and a trained run back from its directory.

Everything that makes a family's model goes through here: the runner (to train), the
evaluation entry points and benchmarks (to load a trained run), and one family that needs
another trained one (latent diffusion loads its first stage with `load_run`).

From Python (a notebook in a course):

    import genzoo
    run = genzoo.load_run("outputs/vae-fashion_mnist/2026-12-01_10-00-00")
    images = run.model.sample(16)            # (16, 1, 28, 28) in [-1, 1]
    run.data.test_images                     # uint8 (N, 1, 28, 28)
"""

import inspect
from pathlib import Path
from typing import NamedTuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from genzoo import families
from genzoo.errors import ConfigError
from genzoo.models.base import GenerativeModel

# Keys of a model config that describe the family and are not constructor arguments.
TRAITS_KEY = "family"


def build_model(model_cfg: DictConfig, image_shape, num_classes: int | None = None) -> GenerativeModel:
    """Instantiate the family of `model_cfg` (its `_target_`) for images of `image_shape` (C, H, W).

    The `family:` block (traits, genzoo/families.py) is not passed to the constructor. A
    conditional model (`model.conditional=true`) also gets the data's `num_classes`.

    Raises ConfigError (one line, naming the model key) when the constructor rejects a
    value, e.g. an image shape the net cannot take.
    """
    args = model_cfg.copy()
    with open_dict(args):
        args.pop(TRAITS_KEY, None)
    try:
        extra = {"num_classes": num_classes} if model_cfg.get("conditional") else {}
        return instantiate(args, image_shape=tuple(image_shape), _convert_="all", **extra)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"model ({model_cfg._target_}) rejected the config: {cause}") from err
        raise


def model_recipe(model_cfg) -> dict:
    """What a model config trains, as {constructor argument: value}, to tell two runs' recipes apart.

    model_cfg: a `model` config (DictConfig or dict, interpolations resolved here). The
    family's constructor defaults, then the config's values, then its nulls spelled out
    (`GenerativeModel.resolved_args`). So a run's config.yaml from before an option existed
    compares by that option's default, which is how `load_run` builds it, and a null that
    means a value equals that value. Left out: the `family:` traits, arguments the data
    supplies (image_shape, num_classes), and the paths to other runs (schema type
    run_dir_or_null: a first stage is where the run found it, not how it trained). The
    optimiser is kept as its config ({_target_, lr, ...}).

    Raises ConfigError when `_target_` names no importable class.
    """
    values = model_cfg if isinstance(model_cfg, dict) else OmegaConf.to_container(model_cfg, resolve=True)
    try:
        cls = get_class(values["_target_"])
    except Exception as err:  # noqa: BLE001 - hydra wraps import errors in several classes
        raise ConfigError(f"model._target_ {values.get('_target_')!r} names no class genzoo can import: {err}") from err
    paths = {k for k, kind in (values.get(TRAITS_KEY) or {}).get("schema", {}).items() if kind == "run_dir_or_null"}
    skip = {"self", "image_shape", "num_classes", "_target_", TRAITS_KEY, *paths}
    args = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in skip}
    args.update({k: v for k, v in values.items() if k not in skip})
    return cls.resolved_args(args)


def locate(target: Path) -> tuple[Path, Path]:
    """(run dir, checkpoint) from a run directory or a checkpoint file inside one.

    Raises ConfigError when the checkpoint or the run's config.yaml is missing.
    """
    target = Path(target)
    ckpt = target / "checkpoints" / "last.ckpt" if target.is_dir() else target
    run_dir = target if target.is_dir() else target.parent.parent
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint at {ckpt}: pass a run directory (with checkpoints/last.ckpt) or a .ckpt file")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {run_dir}: the checkpoint must sit in <run dir>/checkpoints/")
    return run_dir, ckpt


def read_run_config(run_dir: Path) -> DictConfig:
    """A run's config.yaml; raises ConfigError (one line) when it is not a readable genzoo config."""
    path = Path(run_dir) / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - YAML errors come in many classes; each means "not a run config"
        raise ConfigError(f"{path} is not a readable config ({type(err).__name__}: {' '.join(str(err).split())[:120]}): "
                          "pass the directory of a genzoo run") from err
    if not isinstance(cfg, DictConfig) or "model" not in cfg or "_target_" not in cfg.model:
        raise ConfigError(f"{path} is not a genzoo run config (no model._target_): pass the directory of a genzoo run")
    return cfg


def load_trained(cfg: DictConfig, ckpt: Path, device: str | torch.device | None = None):
    """(data module set up, model with the checkpoint's weights in eval mode, device) for a run's config.

    device: None takes run_device(cfg.hardware): the first GPU when the run's hardware allows
    one and there is one, else the CPU.
    """
    data = instantiate(cfg.data)
    data.n_test = OmegaConf.select(cfg, "budget.n_test")  # the test images the run was tested on (None: the whole split)
    data.setup()
    model = build_model(cfg.model, data.image_shape, data.num_classes)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    device = run_device(cfg.hardware) if device is None else torch.device(device)
    return data, model.to(device).eval(), device


def run_device(hardware: DictConfig) -> torch.device:
    """The device work outside the Trainer (scoring, sampling, timing) uses for a run on `hardware`.

    hardware: the run's `hardware` config group. The first GPU ("cuda") when its accelerator
    allows one (gpu, cuda or auto) and PyTorch sees one, else the CPU: `hardware=ddp_cpu` stays
    on the CPU on a machine with GPUs, as its training does.
    """
    use_gpu = hardware.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


class TrainedRun(NamedTuple):
    """A finished run loaded back: `model` (eval mode, final weights), `data` (set up), `config`, `run_dir`, `checkpoint`, `family`."""

    model: GenerativeModel
    data: object
    config: DictConfig
    run_dir: Path
    checkpoint: Path
    family: families.Family


def load_run(path, device: str | torch.device | None = None) -> TrainedRun:
    """Load a run directory (or a .ckpt inside its checkpoints/) for use from Python.

    Returns a TrainedRun whose model is in eval mode with the checkpoint's weights
    (checkpoints/last.ckpt by default) on `device` (default: a GPU if the run's hardware
    allows one and there is one, else the CPU), and whose data module is set up (the same
    splits the run trained and was tested on; datasets must be where the run found them).
    Raises ConfigError when the directory holds no run or its family is unknown.
    """
    run_dir, ckpt = locate(Path(path))
    cfg = read_run_config(run_dir)
    fam = families.of_target(cfg.model._target_)
    data, model, _ = load_trained(cfg, ckpt, device)
    return TrainedRun(model, data, cfg, run_dir, ckpt, fam)
