"""The bad-input catalogue: every wrong setting gives one clean line and loses nothing.

    python benchmarks/bad_input.py          (also run by benchmarks/reliability.py)

First one good run is made (its directory is the "earlier output"); then each entry of
the catalogue runs the CLI in the same working directory. An entry is clean when the CLI
exits non-zero, stderr has exactly one line starting "genzoo: error:" and no traceback,
and every file of the earlier run is byte-identical afterwards (sha256).
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


def catalogue(earlier: Path, work: Path) -> list[tuple[str, list[str], dict]]:
    """(name, CLI args, extra environment) of each bad input; files it needs are made under `work`."""
    last = earlier / "checkpoints" / "last.ckpt"
    truncated = work / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    not_a_dir = work / "a-file"
    not_a_dir.write_text("x")
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
        ("net does not fit the image shape", ["model.channels=[16,32,64]"], {}),
        ("missing dataset offline", ["data=mnist", "data.download=false"], {"GENZOO_DATA": str(work / "empty-root")}),
        ("truncated checkpoint", [f"ckpt_path={truncated}"], {}),
        ("checkpoint of another family", ["model=gan", f"ckpt_path={last}"], {}),
        ("checkpoint of another dataset", ["data=mnist", f"ckpt_path={last}"], {}),
        ("missing checkpoint", [f"ckpt_path={work / 'nope.ckpt'}"], {}),
        ("output directory not writable", ["output_dir=/sys/kernel"], {}),
        ("output directory under a file", [f"output_dir={not_a_dir}/run"], {}),
        ("full disk while writing a checkpoint", [f"hydra.run.dir={earlier}-copy", "resume=auto", "budget.max_epochs=2"], {"GENZOO_FSIZE_LIMIT": "1"}),
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


def _cli(args, cwd, extra=None) -> subprocess.CompletedProcess:
    extra = dict(extra or {})
    limit = extra.pop("GENZOO_FSIZE_LIMIT", None)
    return subprocess.run([sys.executable, "-m", "genzoo", *args], cwd=cwd, env=_env(extra), capture_output=True, text=True,
                          timeout=600, preexec_fn=_limit_file_size if limit else None)


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run_catalogue(work: Path) -> tuple[int, int]:
    """Run every entry; print one line each; return (clean, total)."""
    work = Path(work) / "catalogue"
    work.mkdir(parents=True, exist_ok=True)
    earlier = work / "earlier-run"
    done = _cli([*TINY, f"hydra.run.dir={earlier}"], work)
    if done.returncode != 0:
        raise RuntimeError(f"the earlier run failed: {done.stderr[-2000:]}")
    shutil.copytree(earlier, f"{earlier}-copy")  # the full-disk entry resumes this copy
    copy = Path(f"{earlier}-copy")
    before, before_copy_ckpt = _hashes(earlier), _hashes(copy / "checkpoints")
    clean = 0
    entries = catalogue(earlier, work)
    for name, args, extra in entries:
        proc = _cli([*TINY, *args], work, extra)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("genzoo: error:")]
        intact = _hashes(earlier) == before
        if name.startswith("full disk"):  # last.ckpt of the resumed run must still be the complete earlier one
            intact = intact and _hashes(copy / "checkpoints") == before_copy_ckpt
        ok = proc.returncode != 0 and len(errors) == 1 and "Traceback" not in proc.stderr and intact
        clean += ok
        print(f"{'clean' if ok else 'NOT CLEAN'}  {name}: exit {proc.returncode}; {errors[0] if errors else proc.stderr.strip()[-300:]}", flush=True)
    return clean, len(entries)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        clean, total = run_catalogue(Path(tmp))
    print(f"bad input: {clean}/{total} clean")
