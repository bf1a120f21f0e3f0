"""The report's four figures, as PNG, from the collected runs (matplotlib, no display needed).

- fid_vs_training_time.png: each family's quality curve (mean over seeds at each curve
  point) against training seconds: time-to-quality at a glance.
- fid_vs_sampling_time.png: final FID against seconds per generated sample (log scale),
  mean ± std over seeds: the quality / sampling-cost trade-off.
- fid_per_seed.png: one panel per family, one curve per seed: training stability.
- montage.png: the first row of samples of each family's lowest-seed completed run (samples_row.png or samples.png).
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from genzoo.artifacts import save_figure

METRIC = "fid_classifier"
FILES = ("fid_vs_training_time.png", "fid_vs_sampling_time.png", "fid_per_seed.png", "montage.png")


def write_plots(runs: list[dict], out: Path) -> list[Path]:
    """Write the four figures of FILES into `out` from completed runs; returns their paths.

    `runs` as genzoo.report.collect_runs gives them. A family without a quality curve or a
    samples.png is left out of that figure; a figure with nothing to show says so in its
    title rather than being skipped, so the four files always exist.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = [r for r in runs if r["status"] == "completed"]
    families = sorted({r["family"] for r in done})
    by_family = {f: sorted((r for r in done if r["family"] == f), key=_seed) for f in families}
    figures = [_fid_vs_training_time(by_family), _fid_vs_sampling_time(by_family), _fid_per_seed(by_family), _montage(by_family)]
    paths = []
    for name, fig in zip(FILES, figures):
        paths.append(out / name)
        save_figure(fig, out / name)
    return paths


def _seed(run) -> int:
    return run["record"].protocol["seed"]


def _curve(run) -> list[dict]:
    points = (run["record"].quality_curve or {}).get("points") or []
    return [p for p in points if p.get("value") is not None]


def _fid_vs_training_time(by_family) -> Figure:
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for family, runs in by_family.items():
        curves = [c for c in map(_curve, runs) if c]
        if not curves:
            continue
        k = min(map(len, curves))  # seeds of one budget have the same points
        seconds = np.mean([[p["train_seconds"] for p in c[:k]] for c in curves], axis=0)
        fid = np.mean([[p["value"] for p in c[:k]] for c in curves], axis=0)
        ax.plot(seconds, fid, marker="o", label=f"{family} ({len(curves)} seeds)")
    _finish(ax, "training time (s, scoring excluded)", "FID (classifier, curve samples)", "FID during training, mean over seeds", log_y=True)
    return fig


def _fid_vs_sampling_time(by_family) -> Figure:
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for family, runs in by_family.items():
        pairs = [(1 / r["record"].timing["sample_images_per_second"], r["record"].metrics[METRIC]) for r in runs
                 if r["record"].metrics.get(METRIC) is not None and r["record"].timing.get("sample_images_per_second")]
        if not pairs:
            continue
        t, fid = np.array(pairs).T
        ax.errorbar(t.mean(), fid.mean(), xerr=t.std(ddof=1) if len(t) > 1 else None, yerr=fid.std(ddof=1) if len(t) > 1 else None,
                    marker="o", capsize=3, label=family)
        ax.annotate(family, (t.mean(), fid.mean()), textcoords="offset points", xytext=(6, 6))
    ax.set_xscale("log")
    _finish(ax, "seconds per sample (one batch of budget.grid_samples, log scale)", "final FID (classifier)", "Quality against sampling cost, mean ± std over seeds")
    return fig


def _fid_per_seed(by_family) -> Figure:
    families = [f for f, runs in by_family.items() if any(map(_curve, runs))]
    fig = Figure(figsize=(3.2 * max(1, len(families)), 3.4))
    axes = fig.subplots(1, max(1, len(families)), squeeze=False)[0]
    for ax, family in zip(axes, families):
        for run in by_family[family]:
            curve = _curve(run)
            if curve:
                ax.plot([p["train_images"] for p in curve], [p["value"] for p in curve], marker=".", label=f"seed {_seed(run)}")
        _finish(ax, "training images", "FID (classifier)" if ax is axes[0] else "", family, log_y=True)
    if not families:
        axes[0].set_title("no quality curves in these runs")
    fig.suptitle("FID across training, one line per seed")
    return fig


def _montage(by_family) -> Figure:
    rows = []
    for family, runs in by_family.items():
        strip = next((s for s in (sample_strip(Path(r["dir"])) for r in runs) if s is not None), None)
        if strip is not None:
            rows.append((family, strip))
    return strip_figure(rows, "Samples, one row per family (lowest seed)", "no samples.png in these runs")


def sample_strip(folder: Path) -> np.ndarray | None:
    """A run's first row of samples: its samples_row.png (a committed record), else the top row of samples.png; None if neither."""
    for name in ("samples_row.png", "samples.png"):
        if (folder / name).is_file():
            return _first_row(folder / name)
    return None


def strip_figure(rows: list[tuple[str, np.ndarray]], title: str, empty: str, fontsize: int = 11, width: float = 8) -> Figure:
    """One labelled image strip per row (label, H x W or H x W x 3 array in [0, 1]); `empty` is the title when there are none.

    `width` (inches): the strips keep their aspect, so a wider figure leaves more room for the labels.
    """
    fig = Figure(figsize=(width, 1.05 * max(1, len(rows)) + 0.45))
    axes = fig.subplots(max(1, len(rows)), 1, squeeze=False)[:, 0]
    for ax, (label, strip) in zip(axes, rows):
        ax.imshow(strip, cmap="gray" if strip.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
    if not rows:
        axes[0].set_title(empty)
        axes[0].axis("off")
    fig.suptitle(title)
    return fig


def _first_row(path: Path, per_row: int = 8) -> np.ndarray:
    """The top row of a samples.png grid (8 square images per row, 2-pixel padding, as genzoo writes it)."""
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    cell = (image.shape[1] - 2) // per_row
    strip = image[: cell + 2]
    return strip[..., 0] if np.allclose(strip[..., 0], strip[..., 1]) and np.allclose(strip[..., 0], strip[..., 2]) else strip


def _finish(ax, xlabel, ylabel, title, log_y=False):
    if not log_y and ax.get_xscale() == "linear":
        ax.ticklabel_format(useOffset=False)  # "+1.248e3" offsets hide the values
    if log_y and ax.has_data():
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title if ax.has_data() else f"{title}: no data", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
