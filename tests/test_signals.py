"""SIGTERM and SIGINT outside fit: during the test, the scoring and the one-time classifier training.

Each stops the run with Interrupted (exit 143 and a one-line resume command under the
CLI), records status "interrupted" with the phase, writes no checkpoint after training
ended, and resume=auto then ends with the record an uninterrupted run writes.
"""

import hashlib
import json
import os
import signal

import lightning as L
import pytest

from genzoo import load_config, run
from genzoo.errors import Interrupted

RUN = ["model=vae", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=3", "budget.limit_val_batches=1",
       "budget.n_test=64", "budget.eval_samples=64", "budget.curve_points=0", "logger=none", "progress_bar=false"]


class SignalDuringTest(L.Callback):
    """Sends this process a real `signum` at the second test batch (when the test's own loop is running)."""

    def __init__(self, signum):
        self.signum = signum

    def on_test_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 1:
            os.kill(os.getpid(), self.signum)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={out}", "data.batch_size=32"]))
    return _metrics(out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_test_stops_saves_nothing_and_resume_ends_as_uninterrupted(signum, reference, data_root, tmp_path):
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}", "data.batch_size=32"]
    checkpoints = {}

    class Watch(L.Callback):
        def on_test_start(self, trainer, module):
            checkpoints["at test start"] = _sha(tmp_path / "checkpoints" / "last.ckpt")

    with pytest.raises(Interrupted, match="interrupted during test, after training ended .*resume with: .*resume=auto"):
        run(load_config(args), callbacks=[Watch(), SignalDuringTest(signum)])
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["interruption"]["phase"] == "test"
    assert _sha(tmp_path / "checkpoints" / "last.ckpt") == checkpoints["at test start"]  # nothing written after fit ended
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run's handlers are gone
    run(load_config([*args, "resume=auto"]))
    assert _metrics(tmp_path) == reference


def test_a_signal_during_scoring_stops_with_the_phase_recorded(reference, data_root, tmp_path, monkeypatch):
    import genzoo.training.runner as runner

    def evaluate_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the scoring")

    monkeypatch.setattr(runner, "evaluate", evaluate_then_signal)
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}", "data.batch_size=32"]
    with pytest.raises(Interrupted, match="interrupted during score"):
        run(load_config(args))
    assert json.loads((tmp_path / "metrics.json").read_text())["interruption"]["phase"] == "score"
    monkeypatch.undo()
    run(load_config([*args, "resume=auto"]))
    assert _metrics(tmp_path) == reference


def test_a_signal_during_the_classifier_training_leaves_no_cache_file(data_root, tmp_path, monkeypatch):
    from genzoo.metrics import classifier

    class SignalAtFirstBatch(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            os.kill(os.getpid(), signal.SIGTERM)

    class LightningWithSignal:  # lightning as the classifier module sees it, its Trainer sending the signal
        def __getattr__(self, name):
            return getattr(L, name)

        @staticmethod
        def Trainer(*args, **kwargs):
            return L.Trainer(*args, **{**kwargs, "callbacks": [SignalAtFirstBatch()]})

    monkeypatch.setattr(classifier, "L", LightningWithSignal())
    monkeypatch.setattr(classifier, "SHIPPED_DIR", tmp_path / "no-shipped-weights")  # make it train
    cache = tmp_path / "cache"
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path / 'run'}", f"eval.cache_dir={cache}", "budget.curve_points=2"]
    with pytest.raises(Interrupted, match="interrupted before training started"):
        run(load_config(args))
    assert not list(cache.rglob("*.pt")) and not (tmp_path / "run" / "checkpoints").exists()


def test_a_signal_as_fit_ends_stops_after_training_and_resume_ends_as_uninterrupted(reference, data_root, tmp_path):
    """Lightning's handler sees it too late to stop a batch; the run stops at the first safe point, not the default kill."""

    class SignalAtTrainEnd(L.Callback):
        def on_train_end(self, trainer, module):
            os.kill(os.getpid(), signal.SIGTERM)

    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}", "data.batch_size=32"]
    with pytest.raises(Interrupted, match="interrupted during test, after training ended"):
        run(load_config(args), callbacks=[SignalAtTrainEnd()])
    assert json.loads((tmp_path / "metrics.json").read_text())["interruption"]["phase"] == "test"
    run(load_config([*args, "resume=auto"]))
    assert _metrics(tmp_path) == reference


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_python_starts_is_one_line_and_writes_nothing(signum, tmp_path):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "genzoo", "model=ae", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # genzoo.__main__ has set its handlers (in ~0.1 s) and is importing torch (seconds): no run built yet
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert err.strip().splitlines() == [f"genzoo: error: {signal.Signals(signum).name} while starting (before the run was built): "
                                        "nothing was saved; run the same command again"]
    assert not [p.name for p in (tmp_path / "run").glob("*") if p.suffix != ".log"]  # Hydra's log at most: no config, record or checkpoint
