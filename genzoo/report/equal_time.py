"""The comparison at equal training time, from equal-time run records (budget=equal_time).

`write_comparison` writes comparison.md and the figures of genzoo.report.comparison_plots:

- the ranking at each training time (10 min, 30 min, ...): every family's final FID at
  the same n with the real-data floor at that n, KID, and the training it got in that
  time (epochs, images, FLOPs), ranked by FID when every family was scored at the same
  n, else by KID (unbiased at any n), which the table then says;
- the samplers behind the numbers: a family's choice between equal-cost samplers (made
  on validation images) and its reference sampler scored on a subset;
- the course notes' table checked cell by cell (genzoo.report.course_notes) at the
  training time with the most completed runs;
- the machine's load while each run trained, its speed probe, and each record's training
  images/s against its family's median (the direct measure of what a minute bought).

Only records are read (metrics.json, config.yaml, samples_row.png or samples.png), so
the committed records under docs/results rebuild everything byte for byte.
"""

import math
import statistics
from pathlib import Path

from genzoo import families
from genzoo.artifacts import atomic_write_bytes
from genzoo.report.comparison_plots import write_comparison_plots
from genzoo.report.course_notes import COLUMNS, NOTES, RULES, FamilyFacts, cells


def is_equal_time(run: dict) -> bool:
    """Whether a collected run trained under a time budget (budget=equal_time, or any budget with train_minutes)."""
    record = run["record"]
    return record is not None and record.value("timing", "train_minutes_budget") is not None


def minutes(run: dict) -> float:
    """The run's training-time budget in minutes."""
    return float(run["record"].value("timing", "train_minutes_budget"))


def write_comparison(runs: list[dict], out: Path, protocol: str = "") -> list[Path]:
    """Write comparison.md and the comparison figures into `out` from equal-time runs; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times = sorted({minutes(r) for r in runs})
    completed = [r for r in runs if r["status"] == "completed"]
    primary = max(times, key=lambda m: (sum(minutes(r) == m for r in completed), -m))
    parts = ["# Families at equal training time", ""]
    if protocol:
        parts += [protocol, ""]
    parts += [*_load_lines(runs), _speed_line(runs), _rate_line(runs), *_extractor_lines(runs), ""]
    for m in times:
        parts += [f"## Ranking after {m:g} training minutes", "", *_ranking(runs, m), ""]
    parts += ["## Samplers behind the numbers", "", *_samplers(completed), ""]
    parts += [f"## The course notes' table, checked (after {primary:g} training minutes)", "", *_notes_lines(runs, primary), ""]
    figures = write_comparison_plots(runs, out, primary, _facts(runs, primary))
    parts += ["## Figures", "", *(f"- [{p.name}]({p.name})" for p in figures)]
    path = out / "comparison.md"
    atomic_write_bytes(path, ("\n".join(parts) + "\n").encode())
    return [path, *figures]


def _mean_std(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean, std, fmt: str) -> str:
    if mean is None:
        return "—"
    return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if std is not None else "")


def _by_family(runs: list[dict], m: float, status: str | None = "completed") -> dict[str, list[dict]]:
    chosen = [r for r in runs if minutes(r) == m and (status is None or r["status"] == status)]
    return {f: sorted((r for r in chosen if r["family"] == f), key=_seed) for f in sorted({r["family"] for r in chosen})}


def _seed(run: dict) -> int:
    return run["record"].protocol.get("seed", 0)


def _name(run: dict) -> str:
    """'<family> seed <s>': how the report's lines name a run."""
    return f"{run['family']} seed {_seed(run)}"


def _fid_card(run: dict) -> dict:
    """The record's metric card of the classifier FID ({} when it has none): n, extractor weights."""
    return (run["record"].protocol.get("metric_cards") or {}).get("fid_classifier") or {}


def _n(run: dict) -> int | None:
    return _fid_card(run).get("n_fake")


def _ranking(runs: list[dict], m: float) -> list[str]:
    """The ranking table after m training minutes: one row per family, best first."""
    by_family = _by_family(runs, m)
    started = _by_family(runs, m, status=None)
    if not by_family:
        return ["No completed run at this time yet."]
    ns = {f: sorted({_n(r) for r in rs}) for f, rs in by_family.items()}
    same_n = len({n for v in ns.values() for n in v}) == 1
    key = "fid_classifier" if same_n else "kid_classifier"
    rows = []
    for family, rs in by_family.items():
        rec = [r["record"] for r in rs]
        fid, kid = _mean_std([x.metrics.get("fid_classifier") for x in rec]), _mean_std([x.metrics.get("kid_classifier") for x in rec])
        floor = _mean_std([(x.metrics.get("floor") or {}).get("fid_classifier") for x in rec])[0]
        rows.append({
            "family": family, "key": (fid if key == "fid_classifier" else kid)[0], "seeds": ", ".join(str(_seed(r)) for r in rs),
            "runs": f"{len(rs)} / {sum(r['status'] == 'diverged' for r in started[family])} / {len(started[family])}",
            "n": "/".join(map(str, ns[family])), "fid": _fmt(*fid, ".1f"), "floor": "—" if floor is None else f"{floor:.1f}",
            "ratio": "—" if floor in (None, 0) or fid[0] is None else f"{fid[0] / floor:.1f}", "kid": _fmt(*kid, ".2f"),
            "epochs": _fmt(*_mean_std([x.timing.get("epochs") for x in rec]), ".0f"),
            "images": _fmt(*_mean_std([x.timing.get("train_images") for x in rec]), ".3g"),
            "flops": _fmt(_mean_std([x.timing.get("train_flops") for x in rec])[0], None, ".3g"),
            "seconds": _fmt(*_mean_std([x.timing.get("train_seconds") for x in rec]), ".0f"),
        })
    rows.sort(key=lambda row: (row["key"] is None, row["key"] if row["key"] is not None else 0))
    header = ["rank", "family", "seeds", "runs completed / diverged / started", "n scored", "FID (classifier)", "floor at n",
              "FID / floor", "KID (classifier)", "train seconds", "epochs begun", "train images", "train FLOPs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, row in enumerate(rows, 1):
        lines.append("| " + " | ".join([str(rank), row["family"], row["seeds"], row["runs"], row["n"], row["fid"], row["floor"], row["ratio"],
                                        row["kid"], row["seconds"], row["epochs"], row["images"], row["flops"]]) + " |")
    for family, rs in by_family.items():
        for name in sorted({name for r in rs for name in (r["record"].metrics.get("reference_samplers") or {})}):
            refs = [r["record"].metrics["reference_samplers"][name] for r in rs if name in (r["record"].metrics.get("reference_samplers") or {})]
            fid, kid = _mean_std([x["fid_classifier"] for x in refs]), _mean_std([x["kid_classifier"] for x in refs])
            main_kid = _mean_std([x["main_sampler_same_n"]["kid_classifier"] for x in refs])
            lines.append("| " + " | ".join(["ref.", f"{family} ({name})", ", ".join(str(_seed(r)) for r in rs), f"{len(refs)} scored",
                                            "/".join(sorted({str(x["n"]) for x in refs})), _fmt(*fid, ".1f"), "—", "—",
                                            _fmt(*kid, ".2f") + f" (main sampler at this n: {_fmt(*main_kid, '.2f')})", "", "", "", ""]) + " |")
    note = ("Ranked by FID: every family was scored at the same n." if same_n else
            "Ranked by KID: the families were scored at different n (a sampler too slow for the common n on this "
            "hardware), and FID's bias depends on n while KID is unbiased at any n.")
    note += (" Cells: mean ± std across seeds; FID and the floor at the same n, against the first n test images. A `ref.` row is a "
             "family's reference sampler on a subset of the same test images: its FID is at a smaller n (biased upwards), so compare its KID "
             "with the main sampler's KID at that n.")
    return lines + ["", note]


def _samplers(runs: list[dict]) -> list[str]:
    """Each run's sampler choice on validation images and its reference sampler rows."""
    lines = []
    for run in sorted(runs, key=lambda r: (r["family"], minutes(r), _seed(r))):
        metrics, where = run["record"].metrics, f"{_name(run)}, {minutes(run):g} min"
        choice = metrics.get("sampler_selection")
        if choice:
            scores = "; ".join(f"{name}: FID {s['fid_classifier']:.1f}" for name, s in choice["scores"].items())
            lines.append(f"- {where}: sampler **{choice['chosen']}** chosen on {choice['split']} ({scores})")
        for name, row in (metrics.get("reference_samplers") or {}).items():
            main = row["main_sampler_same_n"]
            lines.append(f"- {where}: reference **{name}** on n = {row['n']}: FID {row['fid_classifier']:.1f}, KID {row['kid_classifier']:.2f} "
                         f"({row['seconds']:.0f} s to draw" + (f", {row['nfe_per_sample']} NFE per sample" if row.get("nfe_per_sample") else "") + f") against the main sampler's FID {main['fid_classifier']:.1f}, KID "
                         f"{main['kid_classifier']:.2f} at the same n")
    return lines or ["No family here has a choice of sampler or a reference sampler."]


def _facts(runs: list[dict], m: float) -> list[FamilyFacts]:
    """The course-notes inputs of every family at m training minutes."""
    facts = []
    for family, started in _by_family(runs, m, status=None).items():
        done = [r["record"] for r in started if r["status"] == "completed"]
        column = families.get(family).notes_column if family in families.names() else None

        def mean(get):
            return _mean_std([get(x) for x in done])[0]

        facts.append(FamilyFacts(
            family=family, column=column, fid=mean(lambda x: x.metrics.get("fid_classifier")),
            floor=mean(lambda x: (x.metrics.get("floor") or {}).get("fid_classifier")),
            fid_per_seed=[x.metrics.get("fid_classifier") for x in done],
            curves=[[p["value"] for p in (x.quality_curve or {}).get("points") or [] if p.get("value") is not None] for x in done],
            diverged=sum(r["status"] == "diverged" for r in started), nfe=mean(lambda x: x.resources.get("nfe_per_sample")),
            images_per_second=mean(lambda x: x.timing.get("sample_images_per_second")),
            flops_per_sample=mean(lambda x: x.resources.get("flops_per_sample")), recall=mean(lambda x: x.metrics.get("recall_classifier")),
            memorisation=mean(lambda x: x.metrics.get("memorisation_rate")), control_accuracy=mean(lambda x: x.metrics.get("control_accuracy")),
            has_latent=families.get(family).latent is not None if family in families.names() else None,
            edit_flip_rate=mean(lambda x: x.metrics.get("edit_flip_rate")), edit_preservation=mean(lambda x: x.metrics.get("edit_preservation")),
        ))
    return facts


def _notes_lines(runs: list[dict], m: float) -> list[str]:
    """The notes' table with each cell as notes word -> measured label (number), and the rules under it."""
    facts = _facts(runs, m)
    table = cells(facts)
    lines = ["Each cell: the notes' word → genzoo's measured label (the number behind it); ✓ agrees, ✗ disagrees, "
             "— not measured yet.", "", "| | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    caveats, tally = [], {"agrees": 0, "disagrees": 0, "—": 0}
    for row in NOTES:
        out = []
        for col in COLUMNS:
            entries = table[row][col]
            if not entries:
                out.append(f"{NOTES[row][col]} → no family measured")
                continue
            texts = []
            for family, cell in entries:
                mark = {"agrees": "✓", "disagrees": "✗", "—": "—"}[cell.verdict]
                tally[cell.verdict] += 1
                evidence = f" ({cell.evidence})" if cell.evidence else ""
                texts.append(f"{cell.notes} → {mark} {cell.measured} [{family}]{evidence}")
                if cell.caveat:
                    caveats.append(f"- {row}, {col} [{family}]: {cell.caveat}.")
            out.append("<br>".join(texts))
        lines.append(f"| {row} | " + " | ".join(out) + " |")
    lines += ["", f"Cells: {tally['agrees']} agree, {tally['disagrees']} disagree, {tally['—']} not measured yet."]
    if caveats:
        lines += ["", "What the seeds cannot decide:", "", *caveats]
    unplaced = sorted(f.family for f in facts if f.column not in COLUMNS)
    if unplaced:
        lines += ["", f"Not in the notes' table (no `family.notes_column`): {', '.join(unplaced)}; their numbers are in the ranking above."]
    lines += ["", "How each measured label is derived (thresholds fixed before the runs, genzoo/report/course_notes.py):", ""]
    lines += [f"- **{row}**: {RULES[row]}" for row in NOTES]
    return lines


def _load_lines(runs: list[dict]) -> list[str]:
    """The machine's load while the runs trained, and a warning when another process competed for the cores."""
    loads = [(r, (r["record"].protocol.get("hardware") or {}).get("load_while_training")) for r in runs]
    loads = [(r, x) for r, x in loads if x]
    if not loads:
        return ["Machine load while training: not recorded in these records."]
    busy = [r for r, x in loads if x["load_1min_max"] > x["cpu_cores"] + 0.5]
    mean = statistics.fmean(x["load_1min_mean"] for _, x in loads)
    top = max(x["load_1min_max"] for _, x in loads)
    line = (f"Machine load while training (1-minute load average, sampled every {loads[0][1]['every_seconds']:g} s of fit): mean {mean:.2f}, "
            f"max {top:.2f} on {loads[0][1]['cpu_cores']} cores; a run alone shows about its own thread count.")
    if busy:
        names = ", ".join(f"{_name(r)} ({minutes(r):g} min)" for r in busy)
        line += f" **Another process competed for the cores during: {names}**: their training minutes bought less."
    return [line]


def _extractor_lines(runs: list[dict]) -> list[str]:
    """A warning when the records' FIDs come from different domain-classifier weights (each machine trains its own)."""
    weights = {}
    for r in runs:
        weights.setdefault(_fid_card(r).get("weights_sha256") or "not recorded", []).append(_name(r))
    if len(weights) < 2:
        return []
    groups = "; ".join(f"{sha[:12]}: {', '.join(sorted(set(names)))}" for sha, names in sorted(weights.items()))
    return [f"**The records' FIDs and KIDs come from {len(weights)} different domain-classifier weights ({groups})**: "
            "scores made with different extractors do not compare."]


SPEED_SPREAD_LIMIT = 1.25  # probe figures further apart than this: the runs' minutes bought different amounts of compute


def _speed_line(runs: list[dict]) -> str:
    """The machines' measured speed (protocol.hardware.speed_probe) and a warning when the runs' machines differ."""
    probes = [(r, ((r["record"].protocol.get("hardware") or {}).get("speed_probe") or {}).get("conv_gflops")) for r in runs]
    known = [(r, v) for r, v in probes if v]
    unknown = sorted({_name(r) for r, v in probes if not v})
    line = "Machine speed (genzoo.metrics.machine_speed, measured before each run trained): "
    if known:
        values = [v for _, v in known]
        line += f"{min(values):.1f} to {max(values):.1f} GFLOP/s over {len(known)} records."
        if max(values) / min(values) > SPEED_SPREAD_LIMIT:
            names = ", ".join(f"{_name(r)} ({v:.1f})" for r, v in sorted(known, key=lambda x: x[1]))
            line += (f" **The runs were made on machines of different speed ({names}; more than {SPEED_SPREAD_LIMIT:g}x apart)**: "
                     "their equal minutes are not equal compute.")
    else:
        line += "not recorded in any of these records."
    if known and unknown:
        line += f" Not recorded (made before the probe existed): {', '.join(unknown)}."
    return line


def _rate_line(runs: list[dict]) -> str:
    """Each record's training images/s against its family's median, with a warning for records further apart than SPEED_SPREAD_LIMIT.

    The speed probe times one convolution; a record's own images/s is what its minutes bought. A host that
    trains faster or slower than when the family's other records were made shows here (either direction).
    """
    rates = {}
    for r in runs:
        t = r["record"].timing
        if t.get("train_images") and t.get("train_seconds"):
            rates.setdefault(r["family"], []).append((r, t["train_images"] / t["train_seconds"]))
    if not rates:
        return "Training speed: not recorded in these records."
    spans, apart = [], []
    for family, pairs in sorted(rates.items()):
        median = statistics.median(v for _, v in pairs)
        values = [v for _, v in pairs]
        spans.append(f"{family} {min(values):,.0f}-{max(values):,.0f} (median {median:,.0f})")
        apart += [f"{_name(r)} ({minutes(r):g} min): {v / median:.2f}x" for r, v in pairs
                  if max(v / median, median / v) > SPEED_SPREAD_LIMIT]
    line = "Training images/s per record (train images over training-clock seconds): " + "; ".join(spans) + "."
    if apart:
        line += (f" **Records more than {SPEED_SPREAD_LIMIT:g}x from their family's median: {', '.join(apart)}**: "
                 "their minutes bought a different amount of training.")
    return line
