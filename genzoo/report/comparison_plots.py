"""The equal-time comparison's figures, as PNG, from run records alone (matplotlib, no display needed).

- quality_vs_minutes.png: each family's quality curve (classifier FID at the curve's n)
  against training minutes, log-log: the mean over seeds at the moments every seed reached,
  each seed's own curve thin beside it (so one seed extended to 30 minutes shows as its own
  line, not as a jump in the mean), with the real-data floor at that n drawn;
- quality_vs_flops.png: the same against training FLOPs (counted per batch by
  torch.utils.flop_counter, times batches);
- montage_equal_time.png: one row of samples per family at each training time (the
  lowest seed's samples_row.png, or the first row of its samples.png);
- course_notes.png: the course notes' table as a grid, each cell coloured by whether
  genzoo's measurement agrees (green), disagrees (red) or is not measured yet (grey).
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from genzoo.artifacts import save_figure
from genzoo.report.course_notes import COLUMNS, NOTES, cells
from genzoo.report.plots import _finish, sample_strip, strip_figure

FILES = ("quality_vs_minutes.png", "quality_vs_flops.png", "montage_equal_time.png", "course_notes.png")


def write_comparison_plots(runs: list[dict], out: Path, primary: float, facts) -> list[Path]:
    """Write FILES into `out` from equal-time runs; `primary` (minutes) and `facts` feed the course-notes grid."""
    out = Path(out)
    done = [r for r in runs if r["status"] == "completed"]
    figures = [_curves(done, "minutes"), _curves(done, "flops"), _montage(done), _notes_grid(facts, primary)]
    for name, fig in zip(FILES, figures):
        save_figure(fig, out / name)
    return [out / name for name in FILES]


def _points(run: dict, x: str) -> list[tuple[float, float]]:
    """(x, FID) of a run's curve points, x in training minutes (rounded to 0.1, so seeds' moments line up) or FLOPs."""
    points = (run["record"].quality_curve or {}).get("points") or []
    key = (lambda p: round(p["train_seconds"] / 60, 1)) if x == "minutes" else (lambda p: p.get("train_flops"))
    return [(key(p), p["value"]) for p in points if p.get("value") is not None and key(p)]


def mean_curve(runs: list[dict]) -> tuple[list[float], list[float]]:
    """(minutes, mean FID) over `runs` (one per seed) at the curve moments that every one of them reached."""
    per_run = [dict(_points(r, "minutes")) for r in runs]
    shared = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    return shared, [float(np.mean([p[at] for p in per_run])) for at in shared]


def _curves(done: list[dict], x: str) -> Figure:
    fig = Figure(figsize=(9.2, 4.8))
    ax = fig.add_subplot()
    floors = set()
    for family in sorted({r["family"] for r in done}):
        runs = [r for r in done if r["family"] == family]
        # the longest run of each seed carries the whole curve (an extended run repeats its shorter record's points)
        longest = {}
        for r in runs:
            seed = r["record"].protocol.get("seed")
            if seed not in longest or len(_points(r, "minutes")) > len(_points(longest[seed], "minutes")):
                longest[seed] = r
        if x == "minutes":
            # the mean only where every seed reached (a seed extended further adds its own thin line, not a jump in the mean)
            xs, ys = mean_curve(list(longest.values()))
            line = ax.plot(xs, ys, marker="o", label=f"{family} ({len(longest)} seed{'s' if len(longest) > 1 else ''})")
            for r in longest.values():
                pts = _points(r, x)
                if pts:
                    ax.plot(*zip(*pts), color=line[0].get_color(), linewidth=0.8, alpha=0.45)
        else:  # FLOPs differ between seeds' points: each seed its own line, one colour per family
            line = None
            for r in longest.values():
                pts = _points(r, x)
                if pts:
                    line = ax.plot(*zip(*pts), marker=".", color=None if line is None else line[0].get_color(),
                                   label=f"{family}" if line is None else None)
        for r in longest.values():
            floor = (r["record"].quality_curve or {}).get("floor")
            if floor:
                floors.add((floor["n"], round(floor["fid_classifier"], 3)))
    for n, value in sorted(floors)[:1]:
        ax.axhline(value, color="black", linestyle="--", linewidth=1, label=f"real-data floor at n = {n}")
    if ax.has_data():
        ax.set_xscale("log")
    xlabel = "training minutes (training clock: validation and scoring excluded; log)" if x == "minutes" else "training FLOPs (log)"
    title = ("Quality against training time (thick: mean over seeds where every seed reached; thin: each seed)" if x == "minutes"
             else "Quality against training compute (one line per seed)")
    _finish(ax, xlabel, "FID (classifier, curve samples)", title, log_y=True)
    if ax.get_legend() is not None:  # beside the axes: the curves fill the plot
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _montage(done: list[dict]) -> Figure:
    rows = []
    for minutes in sorted({float(r["record"].value("timing", "train_minutes_budget")) for r in done}):
        for family in sorted({r["family"] for r in done}):
            runs = sorted((r for r in done if r["family"] == family and float(r["record"].value("timing", "train_minutes_budget")) == minutes),
                          key=lambda r: r["record"].protocol.get("seed", 0))
            strip = next((s for s in (sample_strip(Path(r["dir"])) for r in runs) if s is not None), None)
            if strip is not None:
                name = family.replace("_", "_\n")  # a long name on two lines: the label stays inside the figure
                rows.append((f"{name}\n{minutes:g} min", strip))
    return strip_figure(rows, "Samples at equal training time (lowest seed, one row per family and time)", "no samples in these records", 9, width=8.6)


COLOURS = {"agrees": "#b7e1b0", "disagrees": "#f2b8b5", "—": "#e0e0e0"}


def _notes_grid(facts, primary: float) -> Figure:
    table = cells(facts)
    fig = Figure(figsize=(11, 7))
    ax = fig.add_subplot()
    rows = list(NOTES)
    for i, row in enumerate(rows):
        for j, col in enumerate(COLUMNS):
            entries = table[row][col]
            verdict = entries[0][1].verdict if len(entries) == 1 else ("—" if not entries else _joint([c.verdict for _, c in entries]))
            ax.add_patch(_rect(j, len(rows) - 1 - i, COLOURS[verdict]))
            text = f"notes: {NOTES[row][col]}\n" + "\n".join(f"{family}: {c.measured.split(' (')[0]}" for family, c in entries) if entries else \
                f"notes: {NOTES[row][col]}\nno family measured"
            ax.text(j + 0.5, len(rows) - 1 - i + 0.5, text, ha="center", va="center", fontsize=8, wrap=True)
    ax.set_xlim(0, len(COLUMNS))
    ax.set_ylim(0, len(rows))
    ax.set_xticks([j + 0.5 for j in range(len(COLUMNS))], COLUMNS)
    ax.set_yticks([len(rows) - 1 - i + 0.5 for i in range(len(rows))], rows)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_title(f"Course notes vs genzoo after {primary:g} training minutes: green agrees, red disagrees, grey not measured yet",
                 fontsize=10, pad=24)
    return fig


def _joint(verdicts: list[str]) -> str:
    """One colour for a cell several families answer for: agrees only if all measured ones agree."""
    measured = [v for v in verdicts if v != "—"]
    if not measured:
        return "—"
    return "agrees" if all(v == "agrees" for v in measured) else "disagrees"


def _rect(x: float, y: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", linewidth=2)
