"""genzoo: a comparative zoo of image generative models under one protocol.

`genzoo.run(cfg)` trains, samples and scores one model from a composed Hydra config;
`genzoo.load_config(overrides)` composes one from Python. Heavy imports (torch,
Lightning) happen on first use, so `python -m genzoo --help` stays quick.
"""

__version__ = "0.1.0"


def run(cfg, callbacks=None):
    """Train, sample and score one model; see `genzoo.runner.run`."""
    from genzoo.runner import run as _run

    return _run(cfg, callbacks)


def load_config(overrides=()):
    """Compose the config from overrides; see `genzoo.config.load_config`."""
    from genzoo.config import load_config as _load

    return _load(overrides)
