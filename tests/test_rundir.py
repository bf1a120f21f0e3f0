"""A run directory holds one run: one writer at a time, no fresh run over another, resume keeps the run's identity."""

import json
import subprocess
import sys

import pytest

from genzoo import load_config, run
from genzoo.errors import ConfigError
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
