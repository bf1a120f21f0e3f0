"""genzoo: a comparative zoo of image generative models under one protocol.

`genzoo.run(cfg)` trains, samples and scores one model from a composed Hydra config;
`genzoo.load_config(overrides)` composes one from Python; `genzoo.load_run(run_dir)`
loads a finished run (model in eval mode, data module) for use in a notebook. Heavy
imports (torch, Lightning) happen on first use, so `python -m genzoo --help` stays quick.
"""

__version__ = "0.1.0"


def run(cfg, callbacks=None):
    """Train, sample and score one model; see `genzoo.training.runner.run`."""
    from genzoo.training.runner import run as _run

    return _run(cfg, callbacks)


def load_config(overrides=()):
    """Compose the config from overrides; see `genzoo.config.load_config`."""
    from genzoo.config import load_config as _load

    return _load(overrides)


def load_run(path, device=None):
    """A finished run's model (eval mode, final weights) and data module; see `genzoo.models.build.load_run`."""
    from genzoo.models.build import load_run as _load_run

    return _load_run(path, device)
