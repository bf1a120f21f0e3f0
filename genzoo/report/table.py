"""Run directories -> one row per family: mean and std across seeds of each reported number.

A run directory is one with a config.yaml (written before training starts); its
metrics.json, if any, holds what it measured. A run without metrics.json, or whose status
is not "completed", counts as started but not completed (crashed, interrupted or
diverged; diverged runs are also counted apart, for training stability), and its
numbers, if any, stay out of the means. Beside the numbers each row gets the course-note
labels of genzoo.report.labels.
"""

import csv
import io
import math
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from genzoo.artifacts import atomic_write_bytes
from genzoo.families import of_target
from genzoo.paths import is_first_stage_of_a_run
from genzoo.report.labels import DIMENSIONS, labels, rules_markdown
from genzoo.training.record import RunRecord

# (column, where the number is in metrics.json, format); the order of the table.
COLUMNS = [
    ("fid_classifier", ("metrics", "fid_classifier"), ".1f"),
    ("kid_classifier", ("metrics", "kid_classifier"), ".2f"),
    ("fid_inception", ("metrics", "fid_inception"), ".1f"),
    ("kid_inception", ("metrics", "kid_inception"), ".4f"),
    ("precision_classifier", ("metrics", "precision_classifier"), ".3f"),
    ("recall_classifier", ("metrics", "recall_classifier"), ".3f"),
    ("precision_inception", ("metrics", "precision_inception"), ".3f"),
    ("recall_inception", ("metrics", "recall_inception"), ".3f"),
    ("is_classifier", ("metrics", "is_classifier"), ".2f"),
    ("is_inception", ("metrics", "is_inception"), ".2f"),
    ("class_coverage", ("metrics", "class_coverage"), ".2f"),
    ("bits_per_dim", ("metrics", "bits_per_dim"), ".3f"),
    ("ode_bits_per_dim", ("metrics", "ode_bits_per_dim"), ".3f"),  # the DDPM's probability-flow ODE likelihood beside its bound
    ("memorisation_rate", ("metrics", "memorisation_rate"), ".3f"),
    ("control_accuracy", ("metrics", "control_accuracy"), ".3f"),
    ("fid_per_class", ("metrics", "fid_per_class"), ".1f"),
    ("train_images_per_second", ("timing", "train_images_per_second"), ".0f"),
    ("train_seconds", ("timing", "train_seconds"), ".1f"),
    ("time_to_quality_seconds", ("timing", "time_to_quality_seconds"), ".1f"),
    ("sample_images_per_second", ("timing", "sample_images_per_second"), ".1f"),
    ("nfe_per_sample", ("resources", "nfe_per_sample"), ".0f"),
    ("flops_per_sample", ("resources", "flops_per_sample"), ".3g"),
    ("peak_memory_mib", ("resources", "peak_memory_mib"), ".0f"),
    ("params", ("timing", "params"), ".3g"),
]


def collect_runs(paths) -> list[dict]:
    """Every run under `paths` (run dirs or folders holding them), once each: {"dir", "status", "record", "family", "data", "hardware"}.

    record: the run's RunRecord (metrics.json), or None when it has none yet; while an
    extension of a finished run (resume with a larger budget) is interrupted, the finished
    record it keeps (metrics.previous.json). family: the record's `model`, or for a run
    without a record the registry's family of the `model._target_` in its config.yaml (so
    an unfinished run joins its family's row). data and hardware (the device that trained,
    None when unknown) say which table the run belongs to. Each run counts once: by its run
    id (a copied run directory is the same run; a note on stderr names the copy), and a
    directory reached twice (given twice, or inside another path given) once. A
    metrics.json or config.yaml that cannot be read is skipped with a warning on stderr that names it.
    Raises FileNotFoundError when a path does not exist or holds no run.
    """
    runs, seen, ids = [], set(), {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: pass a multirun directory or run directories")
        # a run's own first stage (<run dir>/first_stage/) is part of that run, not a run of its family
        dirs = sorted({p.parent for p in path.rglob("config.yaml") if ".hydra" not in p.parts and not is_first_stage_of_a_run(p.parent)})
        if not dirs:
            raise FileNotFoundError(f"no run directories (with config.yaml) under {path}")
        for d in dirs:
            if d.resolve() in seen:
                continue
            seen.add(d.resolve())
            metrics = d / "metrics.json"
            try:
                record = RunRecord.read(metrics) if metrics.is_file() else None
                if record and record.previous_record and record.status in ("interrupted", "failed") and (d / record.previous_record).is_file():
                    record = RunRecord.read(d / record.previous_record)
                config = None if record else OmegaConf.load(d / "config.yaml")
                family = record.model if record else of_target(config.model._target_).name
            except Exception as err:  # noqa: BLE001 - any unreadable run is named and skipped, never fatal
                print(f"genzoo: warning: skipped {d}: its record cannot be read ({type(err).__name__}: {err})", file=sys.stderr)
                continue
            run_id = record.run_id if record else OmegaConf.select(config, "run_id")
            point = (run_id, record.value("timing", "batches") if record else None)  # an extended run's records differ in batches
            if run_id and point in ids:
                print(f"genzoo: note: {d} holds run {run_id}, already counted from {ids[point]} (a copy): counted once", file=sys.stderr)
                continue
            if run_id:
                ids[point] = d
            data = record.data if record else OmegaConf.select(config, "data.name")
            hardware = (record.protocol.get("hardware") or {}).get("device") if record else None
            runs.append({"dir": str(d), "status": record.status if record else "not finished", "record": record,
                         "family": family, "data": data, "hardware": hardware, "tier": _tier(record, config)})
    return runs


def _tier(record, config) -> str | None:
    """The budget a run trained under, with its training minutes when it had a time budget: "fast", "equal_time 10 min"."""
    if record is not None:
        budget = record.protocol.get("budget")
        minutes = record.value("timing", "train_minutes_budget")
    else:
        budget, minutes = OmegaConf.select(config, "budget.name"), OmegaConf.select(config, "budget.train_minutes")
    return f"{budget} {minutes:g} min" if budget and minutes else budget


def split_tables(runs: list[dict]) -> dict[tuple, list[dict]]:
    """{(data, hardware, tier): runs}: one table each, so datasets, machines and budgets are never averaged together.

    tier: the budget, with its training minutes under a time budget ("equal_time 10 min").
    A run without a record (hardware unknown) joins the table of its dataset and tier (of
    any dataset, if its config names none) when there is exactly one, else a table of its own.
    """
    groups: dict[tuple, list[dict]] = {}
    for run in (r for r in runs if r["hardware"] is not None):
        groups.setdefault((run["data"], run["hardware"], run.get("tier")), []).append(run)
    for run in (r for r in runs if r["hardware"] is None):
        same = [key for key in groups if run["data"] in (None, key[0]) and key[1] is not None and run.get("tier") in (None, key[2])]
        groups.setdefault(same[0] if len(same) == 1 else (run["data"], None, run.get("tier")), []).append(run)
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))))


def summarise(runs: list[dict]) -> list[dict]:
    """One row per family: runs started and completed, and (mean, std, n) of each column over completed runs.

    std is the sample standard deviation across runs (seeds); None with fewer than 2 values.
    A number missing from a run (a metric its family does not define) is left out, not zeroed.
    """
    rows = []
    for family in sorted({r["family"] for r in runs}):
        mine = [r for r in runs if r["family"] == family]
        done = [r["record"] for r in mine if r["status"] == "completed"]
        row = {"family": family, "runs_started": len(mine), "runs_completed": len(done),
               "runs_diverged": sum(r["status"] == "diverged" for r in mine),
               "runs_not_completed": [f"{Path(r['dir']).name}: {r['status']}" for r in mine if r["status"] != "completed"]}
        for name, (section, key), _ in COLUMNS:
            values = [v for v in (rec.value(section, key) for rec in done) if isinstance(v, (int, float)) and math.isfinite(v)]
            row[name] = (
                statistics.fmean(values) if values else None,
                statistics.stdev(values) if len(values) > 1 else None,
                len(values),
            )
        row["labels"] = labels(row)
        rows.append(row)
    return rows


def _cell(value, fmt: str) -> str:
    mean, std, n = value
    if mean is None:
        return "—"
    return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if std is not None else "")


def write_table(rows: list[dict], out: Path, protocol: str = "") -> tuple[Path, Path]:
    """Write table.md and table.csv into `out`.

    table.md: the labels table (one row per family, the course-note dimensions), the
    numbers table (mean ± std across seeds; runs completed, diverged and started), the
    label rules and the runs not completed. table.csv: the same rows with mean, std and n
    columns per number and one column per label.
    """
    out = Path(out)
    label_lines = _markdown_table(["family", *DIMENSIONS], [[row["family"], *(row["labels"][d] for d in DIMENSIONS)] for row in rows])
    header = ["family", "runs completed / diverged / started", *[name for name, _, _ in COLUMNS]]
    number_lines = _markdown_table(header, [
        [row["family"], f"{row['runs_completed']} / {row['runs_diverged']} / {row['runs_started']}", *[_cell(row[name], fmt) for name, _, fmt in COLUMNS]]
        for row in rows
    ])
    notes = [f"- {row['family']}: {entry}" for row in rows for entry in row["runs_not_completed"]]
    parts = ([protocol, ""] if protocol else []) + ["## Labels", "", *label_lines, "", "## Numbers", "", *number_lines, "", "## How the labels are derived", "", rules_markdown()]
    if notes:
        parts += ["", "## Runs not completed", "", *notes]
    atomic_write_bytes(out / "table.md", ("\n".join(parts) + "\n").encode())

    fields = ["family", "runs_started", "runs_completed", "runs_diverged"] + [f"{name}_{part}" for name, _, _ in COLUMNS for part in ("mean", "std", "n")]
    fields += [f"label_{d.replace(' ', '_')}" for d in DIMENSIONS]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([
            row["family"], row["runs_started"], row["runs_completed"], row["runs_diverged"],
            *[v for name, _, _ in COLUMNS for v in row[name]], *(row["labels"][d] for d in DIMENSIONS),
        ])
    atomic_write_bytes(out / "table.csv", buffer.getvalue().encode())
    return out / "table.md", out / "table.csv"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]
