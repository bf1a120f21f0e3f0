"""A run directory holds one run: one writer at a time, no fresh run over another, resume keeps the run's identity."""

import json
import os
import shutil
import signal
import subprocess
import sys

import lightning as L
import pytest

from genzoo import load_config, run
from genzoo.errors import ConfigError, Interrupted
from genzoo.report.table import collect_runs
from genzoo.training import rundir

RUN = ["model=ae", "hardware=cpu", "budget=smoke", "budget.limit_train_batches=2", "budget.limit_val_batches=1",
       "budget.n_test=32", "eval=none", "logger=none", "progress_bar=false"]


def _files(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != rundir.LOCK_NAME}


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", f"from genzoo.training.rundir import claim; import time; h = claim({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is being written by another genzoo run"):
            rundir.claim(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    rundir.claim(tmp_path).close()  # free again once the holder is gone


def test_a_fresh_run_into_a_finished_runs_directory_is_refused_and_changes_nothing(data_root, tmp_path):
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]))
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match="already holds a run .*resume=auto"):
        run(load_config([*RUN, "model=vae", f"data.root={data_root}", f"output_dir={tmp_path}"]))
    assert _files(tmp_path) == before
    assert json.loads((tmp_path / "metrics.json").read_text())["model"] == "ae"


def test_resume_with_another_identity_names_the_keys_and_changes_nothing(data_root, tmp_path):
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]))
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match=r"what defines the run differs: model.latent_dim \(16 in the run, 4 now\); seed \(0 in the run, 1 now\)"):
        run(load_config([*RUN, "model.latent_dim=4", "seed=1", "resume=auto", f"data.root={data_root}", f"output_dir={tmp_path}"]))
    assert _files(tmp_path) == before  # config.yaml too: the checks come before anything is written


def test_identity_ignores_what_may_change_on_resume():
    a = load_config([*RUN])
    b = load_config([*RUN, "budget.max_epochs=5", "eval=classifier", "data.num_workers=2", "data.loader=dataloader"])
    assert rundir.identity(a) == rundir.identity(b)
    assert rundir.identity(a) != rundir.identity(load_config([*RUN, "data.split_seed=1"]))


class SignalAtTrainingBatch(L.Callback):
    """Sends this process SIGTERM at the given global step (a real signal, as a scheduler would)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_an_interrupted_extension_keeps_the_completed_record_until_it_completes(data_root, tmp_path):
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]
    completed = run(load_config(args))
    finished = (tmp_path / "metrics.json").read_bytes(), (tmp_path / "config.yaml").read_bytes()
    with pytest.raises(Interrupted):
        run(load_config([*args, "resume=auto", "budget.max_epochs=2"]), callbacks=[SignalAtTrainingBatch(3)])
    assert ((tmp_path / rundir.PREVIOUS_RECORD).read_bytes(), (tmp_path / rundir.PREVIOUS_CONFIG).read_bytes()) == finished
    stub = json.loads((tmp_path / "metrics.json").read_text())
    assert stub["status"] == "interrupted" and stub["previous_record"] == rundir.PREVIOUS_RECORD
    assert stub["run_id"] == completed["run_id"]
    [row] = collect_runs([tmp_path])  # the report still has the finished result
    assert row["status"] == "completed" and row["record"].timing["steps"] == completed["timing"]["steps"]

    extended = run(load_config([*args, "resume=auto", "budget.max_epochs=2"]))
    assert extended["status"] == "completed" and extended["timing"]["steps"] == 2 * completed["timing"]["steps"]
    assert extended["run_id"] == completed["run_id"]  # the same run, extended
    assert not (tmp_path / rundir.PREVIOUS_RECORD).exists() and not (tmp_path / rundir.PREVIOUS_CONFIG).exists()
    changed = [r["changed"] for r in extended["protocol"]["resumed"]]
    assert changed[0]["budget.max_epochs"] == [1, 2]  # both resumes recorded, with what they changed


def test_a_learning_rate_given_on_resume_is_applied_to_the_restored_optimiser_and_recorded(data_root, tmp_path):
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]
    run(load_config(args))
    seen = {}

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.setdefault("lr", [g["lr"] for o in trainer.optimizers for g in o.param_groups])

    record = run(load_config([*args, "resume=auto", "budget.max_epochs=2", "model.optimizer.lr=0.0005"]), callbacks=[Watch()])
    assert seen["lr"] == [0.0005]
    assert record["protocol"]["resumed"][-1]["changed"]["model.optimizer.lr"] == [0.001, 0.0005]
    assert "lr: 0.0005" in (tmp_path / "config.yaml").read_text()


def test_a_learning_rate_that_differs_without_being_given_is_refused(data_root, tmp_path):
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]
    run(load_config(args))
    cfg = load_config([*args, "resume=auto", "model.optimizer.lr=0.0005"])
    cfg.overrides = []  # as when the changed lr came from an edited yaml, not from this command line
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match=r"model.optimizer.lr \(0.001 in the run, 0.0005 now\).*command gives it: model.optimizer.lr="):
        run(cfg)
    assert _files(tmp_path) == before


def test_resume_auto_over_a_run_without_a_checkpoint_checks_its_identity(data_root, tmp_path):
    args = [*RUN, f"data.root={data_root}", f"output_dir={tmp_path}"]
    run(load_config(args))
    shutil.rmtree(tmp_path / "checkpoints")  # a record and a config, no checkpoint (as a run that failed before saving one)
    before = _files(tmp_path)
    with pytest.raises(ConfigError, match="what defines the run differs: model._target_ \\('ae' in the run, 'vae' now\\)"):
        run(load_config([*args, "model=vae", "resume=auto"]))
    assert _files(tmp_path) == before


def test_a_checkpoint_of_another_run_may_not_continue_into_a_directory_holding_a_run(data_root, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={first}"]))
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={second}", "seed=1"]))
    before = _files(second)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(load_config([*RUN, f"data.root={data_root}", f"output_dir={second}", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"]))
    assert _files(second) == before


def test_the_report_counts_a_copied_run_once(data_root, tmp_path, capsys):
    run(load_config([*RUN, f"data.root={data_root}", f"output_dir={tmp_path / 'a'}"]))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert [r["dir"] for r in collect_runs([tmp_path])] == [str(tmp_path / "a")]
    assert "already counted" in capsys.readouterr().err
