"""Reliability figures: kill-at-a-random-step-then-resume trials, and the bad-input catalogue.

    python benchmarks/reliability.py [--trials 10] [--families vae,gan] [--skip-catalogue]

Resume trials: for each family, one uninterrupted reference run (seed 0, 2 epochs of 40
batches, CPU, float32, eval=none), then `--trials` runs each sent SIGTERM after a random
delay (uniform over the reference's wall time, seeded) and resumed with resume=auto in the
same run directory. A trial counts as bit-identical when every tensor of the resumed
run's final last.ckpt state_dict (weights, EMA, buffers) and every test metric equal the
reference's exactly. Prints the step each trial was interrupted at.

Bad-input catalogue: each entry of CATALOGUE runs the CLI beside an earlier finished run
and counts as clean when it exits non-zero with one stderr line starting "genzoo: error:",
no traceback, and every file of the earlier run unchanged (sha256).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RUN = ["hardware=cpu", "budget=smoke", "budget.max_epochs=2", "budget.limit_train_batches=40", "budget.limit_val_batches=2",
       "budget.n_test=64", "eval=none", "logger=csv", "progress_bar=false"]
EXTRA_ARGS = {"gan": ["model.ema_decay=0.99"]}  # so the GAN trial also restores an EMA copy


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(args, cwd, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genzoo", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _final_state(run_dir: Path) -> tuple[dict, dict]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return ckpt["state_dict"], metrics


def _identical(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    (wa, ma), (wb, mb) = a, b
    same_weights = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return same_weights and ma["status"] == mb["status"] == "completed" and ma["metrics"] == mb["metrics"]


def resume_trials(family: str, trials: int, work: Path, rng: random.Random) -> list[dict]:
    args = [f"model={family}", *EXTRA_ARGS.get(family, [])] + RUN
    ref_dir = work / f"{family}-reference"
    start = time.perf_counter()
    proc = _cli([*args, f"hydra.run.dir={ref_dir}"], work)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed: {err[-2000:]}")
    reference = _final_state(ref_dir)
    results = []
    for i in range(trials):
        run_dir = work / f"{family}-trial{i}"
        delay = rng.uniform(0.2, 0.95) * wall
        proc = _cli([*args, f"hydra.run.dir={run_dir}"], work)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate()
        interrupted = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
        step = interrupted.get("interruption", {}).get("step") if interrupted.get("status") == "interrupted" else None
        resumed = _cli([*args, f"hydra.run.dir={run_dir}", "resume=auto"], work)
        _, rerr = resumed.communicate()
        ok = resumed.returncode == 0 and _identical(reference, _final_state(run_dir))
        results.append({"trial": i, "delay_s": round(delay, 2), "kill_exit": proc.returncode, "interrupted_at_batch": step,
                        "last_line": (err.strip().splitlines() or [""])[-1][:160], "identical": ok, "resume_error": None if resumed.returncode == 0 else rerr[-500:]})
        print(json.dumps(results[-1]), flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--families", default="vae,gan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-catalogue", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        summary = {}
        for family in args.families.split(","):
            results = resume_trials(family, args.trials, work, rng)
            summary[family] = f"{sum(r['identical'] for r in results)}/{len(results)} bit-identical"
            print(f"{family}: {summary[family]}", flush=True)
        if not args.skip_catalogue:
            from bad_input import run_catalogue  # noqa: PLC0415  (benchmarks/bad_input.py)

            clean, total = run_catalogue(work)
            summary["bad_input"] = f"{clean}/{total} clean"
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
