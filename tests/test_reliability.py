"""Faults injected for real: SIGTERM mid-training then resume, damaged checkpoints, non-finite
losses and gradients, unwritable outputs, a file-size limit while saving, concurrent cache writers."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from genzoo import load_config, run
from genzoo.errors import ConfigError, Interrupted
from genzoo.training.resume import read_checkpoint

REPO = Path(__file__).resolve().parent.parent
RUN = ["hardware=cpu", "budget=smoke", "budget.max_epochs=2", "budget.limit_train_batches=6", "budget.limit_val_batches=1",
       "budget.n_test=32", "eval=none", "logger=none", "progress_bar=false"]


class SigtermAt(L.Callback):
    """Sends this process a real SIGTERM after training batch `step` (1-based, counted over the run)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.fit_loop.total_batch_idx + 1 == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"], json.loads((run_dir / "metrics.json").read_text())["metrics"]


def _assert_identical(a, b):
    (wa, ma), (wb, mb) = a, b
    assert wa.keys() == wb.keys() and [k for k in wa if not torch.equal(wa[k], wb[k])] == []
    assert ma == mb


@pytest.mark.parametrize("family,extra,step", [("vae", [], 4), ("gan", ["model.ema_decay=0.9"], 9), ("ae", [], 3)])
def test_sigterm_mid_epoch_then_resume_ends_bit_identical(family, extra, step, data_root, tmp_path):
    args = [f"model={family}", f"data.root={data_root}", *RUN, *extra]
    reference = tmp_path / "reference"
    run(load_config([*args, f"output_dir={reference}"]))
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupted, match=f"interrupted at training batch {step} .*resume with: .*resume=auto"):
        run(load_config([*args, f"output_dir={interrupted}"]), callbacks=[SigtermAt(step)])
    record = json.loads((interrupted / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["interruption"]["step"] == step
    entry = read_checkpoint(interrupted / "checkpoints" / "last.ckpt", family, "fashion_mnist")
    assert (entry["epoch"], entry["batches_in_epoch"]) == divmod(step, 6)
    run(load_config([*args, f"output_dir={interrupted}", "resume=auto"]))
    _assert_identical(_state(reference), _state(interrupted))


@pytest.mark.slow
def test_killed_training_subprocess_resumes_bit_identical(cli, genzoo_env, tmp_path):
    """SIGTERM from outside at a random moment of a real CLI run, then resume=auto in its directory."""
    args = ["model=vae", *RUN, "budget.limit_train_batches=30"]
    assert cli(*args, f"hydra.run.dir={tmp_path / 'reference'}").returncode == 0
    env_run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genzoo", *args, f"hydra.run.dir={env_run}"], cwd=tmp_path,
                            env=genzoo_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(random.Random(0).uniform(5.0, 9.0))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode in (143, 0), err[-2000:]  # on a loaded machine the moment may fall in start-up, fit or after it
    if proc.returncode == 143:
        last = err.strip().splitlines()[-1]
        assert last.startswith("genzoo: error:") and ("resume with:" in last or "run the same command again" in last), last
    resumed = cli(*args, f"hydra.run.dir={env_run}", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_identical(_state(tmp_path / "reference"), _state(env_run))


def test_damaged_or_foreign_checkpoints_fail_in_one_line(data_root, tmp_path):
    done = tmp_path / "done"
    run(load_config(["model=ae", f"data.root={data_root}", *RUN, "budget.max_epochs=1", f"output_dir={done}"]))
    last = done / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(ConfigError, match="unreadable \\(truncated or corrupt"):
        read_checkpoint(truncated, "ae", "fashion_mnist")
    with pytest.raises(ConfigError, match="is a ae checkpoint for fashion_mnist, but this run is gan on fashion_mnist"):
        run(load_config(["model=gan", f"data.root={data_root}", *RUN, f"ckpt_path={last}", f"output_dir={tmp_path / 'x'}"]))
    with pytest.raises(ConfigError, match="but this run is ae on mnist"):
        read_checkpoint(last, "ae", "mnist")
    with pytest.raises(ConfigError, match="does not exist"):
        read_checkpoint(tmp_path / "none.ckpt", "ae", "fashion_mnist")


def _nan_from(step_kind, start, stop=None):
    """A training_step wrapper making the loss (or only the gradient) non-finite on batches [start, stop)."""
    from genzoo.models.autoencoder import Autoencoder

    finite = Autoencoder.training_step

    def step(self, batch, batch_idx):
        loss = finite(self, batch, batch_idx)
        n = self.trainer.fit_loop.total_batch_idx + 1
        if start <= n and (stop is None or n < stop):
            if step_kind == "loss":
                return loss * float("nan")
            p = next(self.decoder.parameters())  # finite forward, NaN gradient (d sqrt(x)/dx at x < 0)
            return loss + torch.where(torch.tensor(False), torch.sqrt(-p.abs() - 1).sum(), torch.zeros(()))
        return loss

    return Autoencoder, step


def test_divergence_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    cls, step = _nan_from("loss", start=9)  # epoch 2's third batch
    monkeypatch.setattr(cls, "training_step", step)
    payload = run(load_config(["model=ae", f"data.root={data_root}", *RUN, f"output_dir={tmp_path}"]))
    assert payload["status"] == "diverged" and payload["divergence"]["step"] == 9
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_non_finite_gradients_are_skipped_up_to_the_limit(data_root, tmp_path, monkeypatch):
    cls, step = _nan_from("gradient", start=2, stop=4)  # batches 2 and 3
    monkeypatch.setattr(cls, "training_step", step)
    args = ["model=ae", f"data.root={data_root}", *RUN, "budget.max_epochs=1"]
    payload = run(load_config([*args, "max_skipped_steps=2", f"output_dir={tmp_path / 'a'}"]))
    assert payload["status"] == "completed" and payload["skipped_steps"] == 2
    payload = run(load_config([*args, "max_skipped_steps=1", f"output_dir={tmp_path / 'b'}"]))
    assert payload["status"] == "diverged" and payload["divergence"]["metric"] == "gradient" and payload["divergence"]["step"] == 3


def test_unwritable_output_directory_is_refused_before_training(data_root, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    for target in ("/sys/kernel", str(afile / "run")):  # /sys is read-only even for root
        with pytest.raises(ConfigError, match="is not writable"):
            run(load_config(["model=ae", f"data.root={data_root}", *RUN, f"output_dir={target}"]))
    assert afile.read_text() == "keep me"


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the write fail mid-file, as a full disk does."""
    target = tmp_path / "last.ckpt"
    torch.save({"good": torch.ones(10)}, target)
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from genzoo.training.resume import AtomicCheckpointIO, CheckpointWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            AtomicCheckpointIO().save_checkpoint({{"big": torch.zeros(1 << 20)}}, {str(target)!r})
        except CheckpointWriteError as err:
            print("ERROR", err)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.startswith("ERROR could not write checkpoint") and "is intact" in out.stdout, out.stderr[-2000:]
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_concurrent_cache_writers_compute_once_and_never_corrupt(tmp_path):
    script = textwrap.dedent(f"""
        import time, torch
        from genzoo.metrics.reference import cached_features
        key = {{"dataset": "d", "split": "test", "extractor": "e", "weights_sha256": "0" * 64, "resize": "none", "n": 4}}
        def compute():
            time.sleep(1.5)
            print("COMPUTED", flush=True)
            return torch.arange(8.0).reshape(4, 2)
        print(cached_features({str(tmp_path)!r}, key, compute).sum().item())
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert sum(o.count("COMPUTED") for o in outputs) == 1  # the second writer waited and read the first's file
    assert all(o.strip().endswith("28.0") for o in outputs)
    (cached,) = (tmp_path / "reference").glob("*.pt")
    assert torch.load(cached, weights_only=True)["features"].sum().item() == 28.0
