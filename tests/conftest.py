"""Shared fixtures: one dataset root per test session, real Fashion-MNIST in it.

Fashion-MNIST comes from the Debian package dataset-fashion-mnist (README's set-up
installs it); the first test to need it copies it into a session-wide temporary root,
which subprocesses see through $GENZOO_DATA.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("genzoo-data")


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory) -> Path:
    """One evaluation cache per session ($GENZOO_CACHE): reference features are computed once."""
    path = tmp_path_factory.mktemp("genzoo-cache")
    os.environ["GENZOO_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def domain_classifier(data_root, eval_cache):
    """The Fashion-MNIST domain classifier, loaded once per session in this process (genzoo ships its weights;
    it trains, ~90 s on 2 cores, only where its recipe has changed since they were made).

    Every CLI subprocess depends on it, so none of them pays for the training inside its
    own time limit (a loaded machine once pushed the first one past it); later runs load
    it from the session cache.
    """
    from genzoo.data import ImageDataModule
    from genzoo.metrics.classifier import load_or_train_classifier

    net, card = load_or_train_classifier(ImageDataModule("fashion_mnist", root=str(data_root)), eval_cache, progress=False)
    return net, card


@pytest.fixture()
def genzoo_env(data_root) -> dict:
    """Environment for a CLI subprocess: the session data root, source tree first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HYDRA_", "GENZOO_"))}
    env["GENZOO_DATA"] = str(data_root)
    env["GENZOO_CACHE"] = os.environ["GENZOO_CACHE"]
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# A CLI subprocess's limit: wide headroom over what any test's run takes on a quiet 2-core machine (under 5 minutes).
CLI_TIMEOUT = 1800


@pytest.fixture()
def cli(genzoo_env, tmp_path, domain_classifier):
    """Run `python -m genzoo ARGS` in tmp_path; returns the CompletedProcess (text output)."""

    def _run(*args, env=None, timeout=CLI_TIMEOUT):
        return subprocess.run(
            [sys.executable, "-m", "genzoo", *args],
            cwd=tmp_path,
            env=env or genzoo_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run


@pytest.fixture(scope="session")
def fixed_batch(data_root):
    """(images, labels): the first 64 Fashion-MNIST test images in [-1, 1], for loss-falls-on-a-fixed-batch tests."""
    from genzoo.data import ImageDataModule

    dm = ImageDataModule("fashion_mnist", root=str(data_root), n_test=64)
    dm.setup()
    return dm.test_set.__getitems__(list(range(64)))


@pytest.fixture()
def fit_fixed_batch(monkeypatch):
    """fit(model, batch, steps) -> losses: `steps` optimiser steps of model.training_step on one batch, by hand.

    The model's self.log / self.log_dict (which need a Trainer) are silenced for the test.
    """

    def fit(model, batch, steps):
        monkeypatch.setattr(model, "log", lambda *a, **k: None)
        monkeypatch.setattr(model, "log_dict", lambda *a, **k: None)
        opt = model.configure_optimizers()
        losses = []
        for i in range(steps):
            opt.zero_grad()
            loss = model.training_step(batch, i)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    return fit
