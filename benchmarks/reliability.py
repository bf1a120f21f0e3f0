"""Reliability figures: kill-at-a-random-moment-then-resume trials for every family, and the bad-input catalogue.

    python benchmarks/reliability.py [--trials 10] [--families ae,vae] [--seed 0] [--skip-catalogue]

Resume trials: for each family (default: every family of the registry), one
uninterrupted reference run (seed 0, the family's tiny nets, 2 epochs of 20 batches, CPU,
float32, the classifier harness over 64 samples and a 2-point quality curve), then
`--trials` runs, each sent a signal (SIGTERM, and SIGINT on odd trials) after a delay
drawn uniformly within one window of the reference's wall time, the windows taken in
turn (start-up and build; fit; test, scoring and record: measured on the reference), then
resumed with resume=auto in the same run directory. A trial passes when

- the killed run stopped cleanly: a non-zero exit with a one-line `genzoo: error:` resume
  message and no traceback (or exit 0 if it had already finished), and
- the resumed run ends with the record the uninterrupted run wrote: status completed,
  every test and sample-quality metric and every quality-curve value equal, and every
  tensor of the final last.ckpt state_dict (weights, EMA, buffers) bit-identical.

Each trial prints the phase it was stopped in (from the interrupted record). The domain
classifier is trained into the evaluation cache before the first reference, so its
one-time training is not a phase drawn here (tests/test_signals.py interrupts it).

Bad-input catalogue: benchmarks/bad_input.py (each wrong setting: one line, non-zero
exit, every earlier file byte-identical).
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
sys.path.insert(0, str(REPO))
from genzoo import families  # noqa: E402

RUN = ["hardware=cpu", "budget=smoke", "budget.max_epochs=2", "budget.limit_train_batches=20", "budget.limit_val_batches=2",
       "budget.n_test=64", "budget.eval_samples=64", "budget.curve_points=2", "budget.curve_samples=64", "budget.grid_samples=16",
       "budget.guidance_samples=16", "eval=classifier", "logger=csv", "progress_bar=false"]
EXTRA_ARGS = {
    "gan": ["model.ema_decay=0.99"],  # so the GAN trials also restore an EMA copy
    # each PixelCNN sample costs 784 sequential net passes: fewer scored and curve samples keep a trial near a minute
    "pixelcnn": ["budget.n_test=16", "budget.eval_samples=16", "budget.curve_samples=8", "budget.grid_samples=4"],
}


def run_args(family: str) -> list[str]:
    """The trial command line of a family: its tiny nets, RUN, and its EXTRA_ARGS (which replace RUN's keys they name)."""
    extra = EXTRA_ARGS.get(family, [])
    replaced = {a.partition("=")[0] for a in extra}
    return [f"model={family}", *families.get(family).tiny_overrides(), *(a for a in RUN if a.partition("=")[0] not in replaced), *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genzoo", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final(run_dir: Path) -> tuple[dict, dict]:
    """(last.ckpt state_dict, metrics.json) of a finished run."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"], json.loads((run_dir / "metrics.json").read_text())


def _same_record(reference: tuple[dict, dict], resumed: tuple[dict, dict]) -> list[str]:
    """What differs between the uninterrupted run's final state and the resumed one's (empty: the same record)."""
    (wa, ma), (wb, mb) = reference, resumed
    differ = []
    if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
        differ.append("weights")
    if mb["status"] != "completed":
        differ.append(f"status {mb['status']}")
    if ma["metrics"] != mb["metrics"]:
        differ.append("metrics " + ", ".join(k for k in ma["metrics"] if ma["metrics"].get(k) != mb["metrics"].get(k)))
    curve = [[(p["batches"], p["value"]) for p in m["quality_curve"]["points"]] for m in (ma, mb)]
    if curve[0] != curve[1]:
        differ.append("quality curve")
    return differ


def _phase(run_dir: Path, exit_code: int) -> str:
    """Where the signal landed: the interrupted record's phase, or what the directory shows."""
    path = run_dir / "metrics.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("status") == "interrupted":
        where = record["interruption"]
        return where.get("phase", "train") + (f" (step {where.get('step')})" if where.get("phase", "train") == "train" else "")
    if record.get("status") == "completed" and exit_code == 0:
        return "after the run ended"
    return "start-up (before the run directory was written)"


def _clean_stop(proc_returncode: int, stderr: str) -> bool:
    if proc_returncode == 0:
        return True  # it had finished before the signal came
    errors = [line for line in stderr.splitlines() if line.startswith("genzoo: error:")]
    return len(errors) == 1 and ("resume" in errors[0] or "run the same command again" in errors[0]) and "Traceback" not in stderr


WINDOWS = ("start-up and build", "fit", "test, scoring and record")


def _reference(args: list[str], run_dir: Path, work: Path) -> tuple[float, float, float]:
    """Run the uninterrupted reference; (seconds until config.yaml is written (build done), until fit ends, until exit)."""
    log = work / f"{run_dir.name}.stderr"
    with open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "genzoo", *args, f"hydra.run.dir={run_dir}"], cwd=work, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        built = fit_ended = None
        while proc.poll() is None:
            now = time.perf_counter() - start
            if built is None and (run_dir / "config.yaml").is_file():
                built = now
            if built is not None and fit_ended is None and "`Trainer.fit` stopped" in log.read_text():
                fit_ended = now
            time.sleep(0.01)
        wall = time.perf_counter() - start
    if proc.returncode != 0 or built is None or fit_ended is None:
        raise RuntimeError(f"reference run failed (exit {proc.returncode}): {log.read_text()[-2000:]}")
    return built, fit_ended, wall


def resume_trials(family: str, trials: int, work: Path, rng: random.Random) -> list[dict]:
    """Run the reference and `trials` kill-then-resume trials of one family; one dict per trial (printed as it ends).

    Trial i draws its moment uniformly within window i mod 3 of the reference's run
    (WINDOWS: start-up and build, fit, the rest), so every phase is hit; the phase a signal
    actually landed in (runs vary in speed) is read back from the interrupted record.
    """
    args = run_args(family)
    ref_dir = work / f"{family}-reference"
    built, fit_ended, wall = _reference(args, ref_dir, work)
    reference = _final(ref_dir)
    bounds = [(0.0, built), (built, fit_ended), (fit_ended, wall)]
    print(f"{family}: reference run {wall:.1f} s wall (built at {built:.1f} s, fit ended at {fit_ended:.1f} s)", flush=True)
    results = []
    for i in range(trials):
        run_dir = work / f"{family}-trial{i}"
        window = i % len(WINDOWS)
        delay = rng.uniform(*bounds[window])
        signum = signal.SIGINT if i % 2 else signal.SIGTERM
        proc = _cli([*args, f"hydra.run.dir={run_dir}"], work)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signum)
        _, err = proc.communicate()
        phase = _phase(run_dir, proc.returncode)
        resumed = _cli([*args, f"hydra.run.dir={run_dir}", "resume=auto"], work)
        _, rerr = resumed.communicate()
        differ = _same_record(reference, _final(run_dir)) if resumed.returncode == 0 else [f"resume failed: {rerr.strip()[-300:]}"]
        clean = _clean_stop(proc.returncode, err)
        results.append({"trial": i, "signal": signal.Signals(signum).name, "window": WINDOWS[window], "delay_s": round(delay, 2),
                        "phase": phase, "kill_exit": proc.returncode, "clean_stop": clean,
                        "message": (err.strip().splitlines() or [""])[-1][:140], "same_record": not differ, "differs": differ,
                        "passed": clean and not differ})
        print(json.dumps(results[-1]), flush=True)
    return results


def _warm_classifier(work: Path) -> None:
    """Train (or load) the domain classifier into the evaluation cache once, so trials measure the run, not that."""
    args = ["model=ae", *families.get("ae").tiny_overrides(), *RUN, "budget.max_epochs=1", "budget.limit_train_batches=1",
            f"hydra.run.dir={work / 'warm-classifier'}"]
    done = subprocess.run([sys.executable, "-m", "genzoo", *args], cwd=work, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the classifier warm-up run failed: {done.stderr[-2000:]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--families", default=",".join(families.names()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-catalogue", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    print(f"python {' '.join(sys.argv)}; torch {torch.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _warm_classifier(work)
        summary = {}
        for family in args.families.split(","):
            results = resume_trials(family, args.trials, work, rng)
            phases = sorted({r["phase"].split(" (")[0] for r in results})
            summary[family] = f"{sum(r['passed'] for r in results)}/{len(results)} passed (phases hit: {', '.join(phases)})"
            print(f"{family}: {summary[family]}", flush=True)
        if not args.skip_catalogue:
            from bad_input import run_catalogue  # noqa: PLC0415  (benchmarks/bad_input.py)

            clean, total = run_catalogue(work)
            summary["bad_input"] = f"{clean}/{total} clean"
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
