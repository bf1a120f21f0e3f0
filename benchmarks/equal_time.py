"""The equal-training-time sweep: every family, the same training minutes, records committed as they land.

    python benchmarks/equal_time.py --out docs/results/cpu-equal_time                 # seeds 0 1 2 at 10 min, seed 0 extended to 30
    python benchmarks/equal_time.py --out docs/results/cpu-equal_time --commit        # git-commit each record as it lands
    python benchmarks/equal_time.py --hardware gpu --minutes 1 --seeds 0 --extend 0 --out docs/results/gpu-equal_time

Runs `python -m genzoo model=<family> data=<data> budget=equal_time budget.train_minutes=<m>
hardware=<hw> seed=<s>` for every family of the registry (seed by seed, so one seed of every
family lands first), each in `<runs>/<family>-seed<s>/`, then extends seed `--extend-seed`
to `--extend` minutes by resuming the same run (`resume=auto budget.train_minutes=<extend>`:
the quality curve goes on, the record is rescored at the new time); where that run's directory
is gone (another machine), the extension trains afresh to `--extend` minutes, which gives the
same curve points from one run. After each run it copies
the record into `<out>/runs/<family>-seed<s>-<m>min/`: metrics.json, config.yaml and
samples_row.png (the first row of samples.png); `python -m genzoo.report <out>/runs --out <out>`
builds the tables and plots from those alone. The sweep can stop anywhere and be started
again with the same command: a run whose record is in `<out>/runs` is skipped, an unfinished
one resumes from its checkpoint (its training clock resumes too, so it still trains its minutes).

Equal time means nothing on a shared machine: before each run the sweep prints a warning
when other processes keep the cores busy (from /proc/stat, while the sweep waits), and each record
keeps the load sampled while it trained (protocol.hardware.load_while_training).

Nor on a machine whose speed changes under it. A virtual machine's host can slow it by half
for minutes at a time with nothing visible inside it (the gan seed-2 run of 2026-12-03 trained
652 images/s against its seeds' 1,339-1,369). So before each run the sweep measures the
machine against the records already in `<out>/runs`: the GAN's training images/s over
20 steps (genzoo/metrics/training_speed.py; about 10 s) against the GAN records' median,
or, before the GAN has a record there, the convolution probe
(genzoo/metrics/machine_speed.py) against the records' median probe. The step sees hosts
the probe does not (one read 70-144 GFLOP/s, as fast as the table's machine, and trained
the GAN at half its speed; its probe moved between 59 and 139 while its training speed
held). While the machine is more than
--speed-tolerance times slower it waits (up to --wait-minutes, re-measuring every minute),
then stops if the machine is still slow. After each run it
compares the record's training images/s with the median of the same family's records there
(the first record of a family, before the GAN has one: its speed probe with the records'
median); a record that fell
short by more than --speed-tolerance is not added to runs/ but kept, with the reason, in
`<out>/withdrawn/slow-machine-period/`, and its run directory is set aside so that the next
sweep trains it again.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from genzoo.families import names  # noqa: E402
from genzoo.training.record import RunRecord  # noqa: E402

WITHDRAWN = "withdrawn/slow-machine-period"
FINISHED = ("completed", "diverged")  # statuses of a run that ended on its own: a record the table keeps (diverged counts as a result)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="results folder: records go to <out>/runs/")
    parser.add_argument("--runs", default="outputs/equal_time", help="where the run directories live (checkpoints; not committed)")
    parser.add_argument("--families", nargs="+", default=None, help="default: every family in the registry")
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--hardware", default="cpu")
    parser.add_argument("--minutes", type=float, default=10, help="training minutes of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extend", type=float, default=30, help="extend one seed's runs to this many minutes (0: no extension)")
    parser.add_argument("--extend-seed", type=int, default=0)
    parser.add_argument("--commit", action="store_true", help="git-commit each record as it lands (only its folder)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every run (e.g. eval.batch_size=1000)")
    parser.add_argument("--speed-tolerance", type=float, default=1.25,
                        help="how much slower than the records already made the machine, or a run, may be (the report's warning ratio)")
    parser.add_argument("--wait-minutes", type=float, default=30, help="how long to wait for a slow machine before stopping")
    args = parser.parse_args(argv)
    if args.speed_tolerance < 1 or args.wait_minutes < 0:
        parser.error(f"--speed-tolerance must be >= 1 and --wait-minutes >= 0, got {args.speed_tolerance} and {args.wait_minutes}")

    families = args.families or names()
    unknown = sorted(set(families) - set(names()))
    if unknown:
        parser.error(f"unknown families {unknown}: choose from {', '.join(names())}")
    if args.extend and args.extend <= args.minutes:
        parser.error(f"--extend {args.extend:g} must be more than --minutes {args.minutes:g} (or 0 for none)")
    plan = [(f, s, args.minutes) for s in args.seeds for f in families]
    if args.extend:
        plan += [(f, args.extend_seed, args.extend) for f in families]
    out = Path(args.out)
    mixed = _recipe_mismatch(out / "runs", families, [f"data={args.data}", f"hardware={args.hardware}", *args.extra])
    if mixed:
        parser.error(mixed)
    failed = 0
    for family, seed, minutes in plan:
        dest = out / "runs" / f"{family}-seed{seed}-{minutes:g}min"
        if _read_record(dest / "metrics.json", FINISHED) is not None:
            print(f"== {dest.name}: record already in {dest}, skipped", flush=True)
            continue
        run_dir = Path(args.runs) / f"{args.hardware}-{family}-seed{seed}"
        cmd = [sys.executable, "-m", "genzoo", f"model={family}", f"data={args.data}", "budget=equal_time",
               f"budget.train_minutes={minutes:g}", f"hardware={args.hardware}", f"seed={seed}", "logger=csv",
               "progress_bar=false", f"hydra.run.dir={run_dir}", *args.extra]
        if (run_dir / "config.yaml").is_file():
            cmd.append("resume=auto")  # an unfinished run, or the shorter run this one extends
        print(f"== {dest.name}: {' '.join(cmd[1:])}", flush=True)
        if args.dry_run:
            continue
        _warn_if_busy()
        slow = _wait_for_speed(out / "runs", args.speed_tolerance, args.wait_minutes, [f"data={args.data}", f"hardware={args.hardware}"],
                               _device(args.hardware))
        if slow:
            print(f"== stopping: {slow}; run the same command when the machine is back to speed", flush=True)
            return 3
        start = time.time()
        code = subprocess.call(cmd, cwd=ROOT)
        print(f"== {dest.name}: exit {code} after {time.time() - start:.0f} s wall", flush=True)
        if code in (130, 143):  # interrupted (SIGINT/SIGTERM): its checkpoint is saved; the same command resumes it
            print("== interrupted: stopping the sweep; run the same command to continue", flush=True)
            return code
        if code != 0 or not (run_dir / "metrics.json").is_file():
            failed += 1
            continue
        short = _fell_short(RunRecord.read(run_dir / "metrics.json"), out / "runs", args.speed_tolerance)
        if short:
            kept = out / WITHDRAWN / f"{dest.name}-{time.strftime('%Y%m%d-%H%M')}"  # a rerun withdrawn again keeps both
            _keep(run_dir, kept)
            (kept / "withdrawn.json").write_text(json.dumps({"reason": short, "run_dir": str(run_dir)}, indent=2) + "\n")
            run_dir.rename(run_dir.with_name(f"{run_dir.name}-withdrawn-{time.strftime('%Y%m%d-%H%M%S')}"))  # the next sweep trains it anew
            print(f"== {dest.name}: withdrawn, not added to runs/: {short}", flush=True)
            if args.commit:
                _commit(kept, f"equal-time record withdrawn: {dest.name} ({short})")
            continue
        _keep(run_dir, dest)
        if args.commit:
            _commit(dest, f"equal-time record: {dest.name} ({args.hardware}, {args.data})")
    return 1 if failed else 0


def _records(runs: Path) -> list[RunRecord]:
    """The completed records in `runs` (each <name>/metrics.json)."""
    return [record for _, record in _read_records(runs, ("completed",))]


def _read_records(runs: Path, statuses: tuple[str, ...]) -> list[tuple[Path, RunRecord]]:
    """(folder, record) for each readable <name>/metrics.json in `runs` whose status is one of `statuses`, by name."""
    return [(path.parent, record) for path in sorted(runs.glob("*/metrics.json"))
            if (record := _read_record(path, statuses)) is not None]


def _read_record(path: Path, statuses: tuple[str, ...]) -> RunRecord | None:
    """The record in metrics.json at `path` if it reads and its status is one of `statuses`, else None."""
    try:
        record = RunRecord.read(path)
    except (OSError, ValueError):
        return None
    return record if record.status in statuses else None


def _recipe_mismatch(runs: Path, families: list[str], overrides: list[str]) -> str | None:
    """Why a family's new runs would train another recipe than its records in `runs`, or None (see _records_recipe).

    A family's seeds are averaged in one row, so they must share a recipe. A default
    changed since the records were made (the GAN's batch, 128 until 2026-12-07, then 64) is
    the case this catches before any run starts; the message gives the --extra overrides
    that continue the table with the records' recipe.
    """
    for family in families:
        then, now, where, batches = _records_recipe(runs, family, overrides)
        differ = sorted(k for k in then.keys() | now.keys() if then.get(k, _ABSENT) != now.get(k, _ABSENT))
        if len(batches) > 1 or differ == ["data.batch_size"]:
            return (f"{family}'s records here trained at batch {', '.join(map(str, batches))} but its runs now would at "
                    f"{now['data.batch_size']}: pass --extra data.batch_size={batches[0]} to continue this table "
                    f"(or --families without {family}), or start a new --out")
        if not differ:
            continue
        was = " ".join(f"{k}={_override(then.get(k, _ABSENT))}" for k in differ)
        would = " ".join(f"{k}={_override(now.get(k, _ABSENT))}" for k in differ)
        return (f"{family}'s records here ({where}) trained with {was} but its runs now would with {would}: "
                f"pass --extra {was} to continue this table (or --families without {family}), or start a new --out")
    return None


class _Recipes(NamedTuple):
    """A family's recipe in a table against the one its runs would train now (_records_recipe)."""

    then: dict  # the records' recipe
    now: dict  # what a run with the sweep's overrides would train
    where: str  # the record `then` was read from
    batches: list  # every batch size the family's records trained at, ascending


def _records_recipe(runs: Path, family: str, overrides: list[str], finished: list[tuple[Path, RunRecord]] | None = None) -> _Recipes:
    """`family`'s recipe in `runs` (its completed and diverged records, each a row's seed) against the one its runs would train now with `overrides`.

    A recipe is {"data.batch_size": n, "model.<argument>": value, ...}: the batch from the
    records' protocol (the smallest, where they differ), the model's constructor arguments
    with their nulls resolved (genzoo.models.build.model_recipe) from the first record's
    config.yaml that differs from now, else the first one's. All empty where the family has no record.
    `finished`: the table's completed and diverged records, where the caller has read them already.
    """
    from genzoo.config import load_config
    from genzoo.models.build import model_recipe

    if finished is None:
        finished = _read_records(runs, FINISHED)
    mine = [(folder, record) for folder, record in finished if record.model == family]
    if not mine:
        return _Recipes({}, {}, "", [])
    cfg = load_config([f"model={family}", *overrides])
    now = {"data.batch_size": cfg.data.batch_size, **_dotted(model_recipe(cfg.model), "model")}
    batches = sorted({r.protocol.get("batch_size") for _, r in mine} - {None})
    batch = {"data.batch_size": batches[0] if batches else now["data.batch_size"]}
    recipes = [(folder.name, {**batch, **_dotted(model_recipe(OmegaConf.load(folder / "config.yaml").model), "model")})
               for folder, _ in mine if (folder / "config.yaml").is_file()]
    if not recipes:  # no config.yaml kept: only the batch is known
        return _Recipes({**now, **batch}, now, mine[0][0].name, batches)
    where, then = next(((name, r) for name, r in recipes if r != now), recipes[0])
    return _Recipes(then, now, where, batches)


_ABSENT = "<not an option>"


def _dotted(values: dict, prefix: str) -> dict:
    """{"a": {"b": 1}} as {"<prefix>.a.b": 1}: one entry per override key."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _override(value) -> str:
    """`value` as a Hydra command-line value: null, true/false, [a,b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override(v) for v in value) + "]"
    return str(value)


def _probe(record: RunRecord) -> float | None:
    """The best speed-probe figure (GFLOP/s) a record's starts measured, or None."""
    probe = (record.protocol.get("hardware") or {}).get("speed_probe") or {}
    return probe.get("conv_gflops")


def _fell_short(record: RunRecord, runs: Path, tolerance: float) -> str | None:
    """Why `record` trained on a machine slower than its peers' by more than `tolerance`, or None.

    Its training images/s against the median of the same family's completed records in `runs`;
    for a family's first record, nothing once STEP_FAMILY has records there (the GAN's step
    timed before the run was the check: the probe is too noisy to overrule it), else its speed
    probe against the median probe of all records there.
    """
    records = _records(runs)
    others = [r for r in records if r.model == record.model and r.run_id != record.run_id]
    speed = record.timing.get("train_images_per_second")
    if others and speed:
        median = statistics.median(r.timing["train_images_per_second"] for r in others)
        if speed * tolerance < median:
            return f"trained {speed:.0f} images/s, against the median {median:.0f} of its family's {len(others)} record(s)"
        return None
    if any(r.model == STEP_FAMILY and r.run_id != record.run_id for r in records):
        return None
    median, mine = _median_probe(records), _probe(record)
    if median and mine and mine * tolerance < median:
        return f"its speed probe read {mine:.1f} GFLOP/s, against the records' median {median:.1f}"
    return None


def _median_probe(records: list[RunRecord]) -> float | None:
    """The median speed-probe figure of the records that have one, or None."""
    probes = [p for r in records if (p := _probe(r))]
    return statistics.median(probes) if probes else None


STEP_FAMILY = "gan"  # the family whose training step the sweep times before each run (about 10 s on a 2-core CPU)


def _slow_now(runs: Path, tolerance: float, overrides: list[str], device: str) -> str | None:
    """Why the machine is more than `tolerance` times slower than the one the records in `runs` came from right now, or None.

    Where STEP_FAMILY has records, its training images/s over 20 steps, composed with
    `overrides` (data, hardware) and trained to those records' recipe (_records_recipe: their batch
    size and model arguments, where today's defaults differ), against their
    median train_images_per_second decides; otherwise the convolution probe against the records' median probe. The step
    sees what the probe does not, both ways: one host read 70-144 GFLOP/s on the probe, as
    fast as the table's machine, and trained at half its speed; the same host's probe moved
    between 59 and 139 GFLOP/s while it trained the GAN at a steady 606-660 images/s. Both
    on `device` ("cpu" or "cuda"), where the runs train.
    """
    from genzoo.metrics.machine_speed import conv_gflops
    from genzoo.metrics.training_speed import training_images_per_second

    finished = _read_records(runs, FINISHED)  # read once: the speed medians and the recipe
    records = [record for _, record in finished if record.status == "completed"]
    step_records = [r for r in records if r.model == STEP_FAMILY and r.timing.get("train_images_per_second")]
    if step_records:
        median = statistics.median(r.timing["train_images_per_second"] for r in step_records)
        then, current, _, _ = _records_recipe(runs, STEP_FAMILY, overrides, finished)  # timed as its records trained
        recipe = [f"{k}={_override(v)}" for k, v in then.items() if k in current and current[k] != v]
        now = training_images_per_second([f"model={STEP_FAMILY}", *overrides, *recipe], device=device)
        if now * tolerance < median:
            return (f"the machine trains the {STEP_FAMILY} at {now:.0f} images/s, below {median / tolerance:.0f} "
                    f"(its records' median {median:.0f} / {tolerance:g})")
        return None
    median = _median_probe(records)
    if median is not None:
        now = conv_gflops(device, seconds=2.0)["conv_gflops"]
        if now * tolerance < median:
            return f"the machine measures {now:.1f} GFLOP/s, below {median / tolerance:.1f} (the records' median {median:.1f} / {tolerance:g})"
    return None


def _wait_for_speed(runs: Path, tolerance: float, wait_minutes: float, overrides: list[str], device: str = "cpu") -> str | None:
    """Wait while the machine measures more than `tolerance` times slower than the records in `runs` (_slow_now); None once it is not.

    Returns why it stopped waiting (still slow after `wait_minutes`), or None (at speed, or no
    record to compare with).
    """
    deadline = time.time() + 60 * wait_minutes
    while True:
        slow = _slow_now(runs, tolerance, overrides, device)
        if slow is None:
            return None
        if time.time() >= deadline:
            return slow
        print(f"== {slow}: waiting a minute", flush=True)
        time.sleep(60)


def _device(hardware: str) -> str:
    """Where runs under the hardware preset `hardware` train ("cpu" or "cuda"): genzoo's run_device of the composed preset."""
    from genzoo.config import load_config
    from genzoo.models.build import run_device

    return run_device(load_config([f"hardware={hardware}"]).hardware).type


def _keep(run_dir: Path, dest: Path) -> None:
    """Copy the record (metrics.json, config.yaml) and the first row of samples.png into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "config.yaml"):
        shutil.copyfile(run_dir / name, dest / name)
    if (run_dir / "samples.png").is_file():
        from PIL import Image

        grid = Image.open(run_dir / "samples.png")
        cell = (grid.width - 2) // 8  # 8 images per row, 2-pixel padding (torchvision.utils.make_grid)
        grid.crop((0, 0, grid.width, cell + 2)).save(dest / "samples_row.png")


def _commit(path: Path, message: str) -> None:
    """Commit only `path` (git commit --only), retrying while another git command holds the index."""
    path = path.resolve()  # the repository holding --out, which may be another checkout than the one running the sweep
    for attempt in range(10):
        add = subprocess.run(["git", "add", "--", str(path)], cwd=path, capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(["git", "commit", "-q", "-m", message, "--only", "--", str(path)],
                                                      cwd=path, capture_output=True, text=True).returncode == 0
        if done:
            print(f"== committed {path}", flush=True)
            return
        time.sleep(3 + attempt)
    print(f"== warning: could not commit {path}: commit it by hand", flush=True)


def busy_cores(seconds: float = 2.0) -> float | None:
    """Cores kept busy by other processes right now: 1 - idle share of /proc/stat over `seconds`, times the cores.

    Measured between runs, while the sweep itself sleeps, so it sees only the others (the
    1-minute load average would still count the run that just ended). None off Linux.
    """
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (1 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1)


def _warn_if_busy(threshold: float = 0.5) -> None:
    """Warn when other processes keep more than `threshold` cores busy just before a run starts."""
    busy = busy_cores()
    if busy is not None and busy > threshold:
        top = subprocess.run(["ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()[:4]
        print(f"== warning: other processes keep {busy:.1f} of {os.cpu_count()} cores busy before the run: equal training time "
              "then means less. Busiest (lifetime CPU %): " + " | ".join(line.strip() for line in top[1:]), flush=True)


if __name__ == "__main__":
    sys.exit(main())
