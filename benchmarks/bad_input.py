"""The bad-input catalogue: every wrong setting gives one clean line and loses nothing.

    python benchmarks/bad_input.py          (also run by benchmarks/reliability.py)

First one good run is made (its directory is the "earlier output"), and the fixtures some
entries need (a truncated checkpoint, a file where a directory belongs, a run directory
whose config.yaml is not YAML); then each entry of the catalogue runs a genzoo command
(`python -m genzoo` unless the entry names another module) in the same working
directory. An entry is clean when the command exits non-zero, stderr has exactly one line
starting "genzoo: error:" and no traceback, and every file that existed before it (the
earlier run and every fixture; sha256 of each) is byte-identical afterwards.

The kinds: unknown options and invalid values; settings checked before training (sample
counts, batch size and limits against the split, seed range, GPU presets, cache and data
directories); checkpoints (truncated, another family or dataset, missing); the run
directory (a fresh run over a finished one, resume with another identity, a second
writer while the run's lock is held); output places (unwritable, under a file, full disk);
the other commands (re-scoring a run whose config.yaml is not YAML, the report's --out a file).
"""

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = ["hardware=cpu", "budget=smoke", "budget.limit_train_batches=3", "budget.limit_val_batches=1", "budget.n_test=32",
        "eval=none", "progress_bar=false", "logger=none"]
MODULE, HOLD_LOCK, FSIZE_LIMIT = "GENZOO_BENCH_MODULE", "GENZOO_BENCH_HOLD_LOCK", "GENZOO_FSIZE_LIMIT"  # entry settings, not passed on


def catalogue(earlier: Path, work: Path) -> list[tuple[str, list[str], dict]]:
    """(name, command-line args, settings) of each bad input; files it needs are made under `work`.

    settings: environment variables for the command, and the entry settings MODULE (run
    `python -m <module> <args>` without the TINY run arguments), HOLD_LOCK (a directory
    whose run lock another process holds meanwhile) and FSIZE_LIMIT (a file-size limit, as a full disk).
    """
    last = earlier / "checkpoints" / "last.ckpt"
    truncated = work / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    not_a_dir = work / "a-file"
    not_a_dir.write_text("x")
    bad_config = work / "run-with-bad-config"
    shutil.copytree(earlier, bad_config)
    (bad_config / "config.yaml").write_text("model: [unclosed\n")
    into_earlier = f"hydra.run.dir={earlier}"
    classifier = ["eval=classifier", "budget.curve_points=0"]
    return [
        ("unknown model", ["model=pixelcnnn"], {}),
        ("unknown data", ["data=imagenet"], {}),
        ("unknown hardware", ["hardware=tpu"], {}),
        ("unknown budget", ["budget=huge"], {}),
        ("zero lr", ["model.optimizer.lr=0"], {}),
        ("negative lr", ["model.optimizer.lr=-0.001"], {}),
        ("zero latent_dim", ["model.latent_dim=0"], {}),
        ("zero batch_size", ["data.batch_size=0"], {}),
        ("zero steps", ["budget.max_steps=0"], {}),
        ("negative beta", ["model.beta=-1"], {}),
        ("DDIM steps > T", ["model=ddpm", "model.num_steps=100", "model.sample_steps=200"], {}),
        ("an option of another family", ["model=vae", "model.likelihood=softmax"], {}),
        ("net does not fit the image shape", ["model.channels=[16,32,64]"], {}),
        ("seed below 0", ["seed=-1"], {}),
        ("seed above 2^32-1", ["seed=4294967296"], {}),
        ("limit_train_batches=0", ["budget.limit_train_batches=0"], {}),
        ("limit_train_batches=-1", ["budget.limit_train_batches=-1"], {}),
        ("a share of the epoch below one batch", ["budget.limit_train_batches=0.0001"], {}),
        ("batch size above the training split", ["data.batch_size=100000"], {}),
        ("eval_samples not above pr_k", [*classifier, "budget.eval_samples=3"], {}),
        ("evaluation cache is a file", [*classifier, f"eval.cache_dir={not_a_dir}"], {}),
        ("evaluation cache cannot be made", [*classifier, "eval.cache_dir=/sys/kernel/genzoo-cache"], {}),
        ("GPU preset on a machine without a GPU", ["hardware=gpu"], {}),
        ("missing dataset offline", ["data=mnist", "data.download=false"], {"GENZOO_DATA": str(work / "empty-root")}),
        ("data root is a file", [f"data.root={not_a_dir}"], {}),
        ("GENZOO_DATA is a file", [], {"GENZOO_DATA": str(not_a_dir)}),
        ("GENZOO_DATA cannot be made", [], {"GENZOO_DATA": "/sys/kernel/genzoo-data"}),
        ("truncated checkpoint", [f"ckpt_path={truncated}"], {}),
        ("checkpoint of another family", ["model=gan", f"ckpt_path={last}"], {}),
        ("checkpoint of another dataset", ["data=mnist", f"ckpt_path={last}"], {}),
        ("missing checkpoint", [f"ckpt_path={work / 'nope.ckpt'}"], {}),
        ("a fresh run into a finished run's directory", [into_earlier], {}),
        ("another family into a finished run's directory", [into_earlier, "model=ae"], {}),
        ("resume with another latent_dim", [into_earlier, "resume=auto", "model.latent_dim=4"], {}),
        ("resume with another seed", [into_earlier, "resume=auto", "seed=1"], {}),
        ("resume with another family", [into_earlier, "resume=auto", "model=ae"], {}),
        ("resume with another batch size", [into_earlier, "resume=auto", "data.batch_size=64"], {}),
        ("another run's checkpoint into a finished run's directory", [into_earlier, f"ckpt_path={bad_config / 'checkpoints' / 'last.ckpt'}"], {}),
        ("a second writer while the run is written", [into_earlier, "resume=auto", "budget.max_epochs=2"], {HOLD_LOCK: str(earlier)}),
        ("output directory not writable", ["output_dir=/sys/kernel"], {}),
        ("output directory under a file", [f"output_dir={not_a_dir}/run"], {}),
        ("full disk while writing a checkpoint", [f"hydra.run.dir={earlier}-copy", "resume=auto", "budget.max_epochs=2"], {FSIZE_LIMIT: "1"}),
        ("re-scoring a run whose config.yaml is not YAML", [str(bad_config)], {MODULE: "genzoo.evaluation.rescore"}),
        ("the report's --out is a file", [str(earlier), "--out", str(not_a_dir)], {MODULE: "genzoo.report"}),
    ]


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _limit_file_size():
    """A file-size limit below a checkpoint's size: writes past it fail (EFBIG), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def _cli(args, cwd, settings=None) -> subprocess.CompletedProcess:
    """Run one entry (TINY run arguments first, unless it names another module); the lock holder, if any, meanwhile."""
    extra = dict(settings or {})
    limit, module, hold = extra.pop(FSIZE_LIMIT, None), extra.pop(MODULE, None), extra.pop(HOLD_LOCK, None)
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, "-m", "genzoo", *TINY, *args]
    holder = None
    if hold:  # another process holds the run's lock, as a run writing that directory would
        holder = subprocess.Popen([sys.executable, "-c", f"from genzoo.training.rundir import claim; import time; h = claim({hold!r}); "
                                   "print('held', flush=True); time.sleep(600)"], env=_env({}), stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
    try:
        return subprocess.run(command, cwd=cwd, env=_env(extra), capture_output=True, text=True, timeout=600,
                              preexec_fn=_limit_file_size if limit else None)
    finally:
        if holder:
            holder.kill()
            holder.wait()


def _hashes(root: Path) -> dict:
    """{relative path: sha256} of every file under root (the run lock, an empty file only opened, included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run_catalogue(work: Path) -> tuple[int, int]:
    """Run every entry; print one line each; return (clean, total)."""
    work = Path(work) / "catalogue"
    work.mkdir(parents=True, exist_ok=True)
    earlier = work / "earlier-run"
    done = _cli([f"hydra.run.dir={earlier}"], work)
    if done.returncode != 0:
        raise RuntimeError(f"the earlier run failed: {done.stderr[-2000:]}")
    shutil.copytree(earlier, f"{earlier}-copy")  # the full-disk entry resumes this copy
    copy = Path(f"{earlier}-copy")
    entries = catalogue(earlier, work)
    clean = 0
    for name, args, settings in entries:
        before = _hashes(work)
        proc = _cli(args, work, settings)
        after = _hashes(work)
        changed = sorted(k for k, h in before.items() if after.get(k) != h and not (name.startswith("full disk") and k.startswith(copy.name)
                                                                                   and not k.startswith(f"{copy.name}/checkpoints")))
        errors = [line for line in proc.stderr.splitlines() if line.startswith("genzoo: error:")]
        ok = proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr and not changed
        clean += ok
        detail = errors[0] if errors else proc.stderr.strip()[-300:]
        print(f"{'clean' if ok else 'NOT CLEAN'}  {name}: exit {proc.returncode}; {detail}" + (f"; changed: {', '.join(changed)}" if changed else ""),
              flush=True)
    return clean, len(entries)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        clean, total = run_catalogue(Path(tmp))
    print(f"bad input: {clean}/{total} clean")
