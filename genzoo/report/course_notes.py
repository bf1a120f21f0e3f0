"""The course notes' comparison table, checked cell by cell against measured runs.

The notes (which genzoo was asked to reproduce) compare four kinds of model in words:
`NOTES` below, row by row. For each cell the report gives the notes' word, genzoo's
label measured under one protocol, the number behind it and whether the two agree. A
family answers for the column named by its `family.notes_column` trait
(genzoo/conf/model/<name>.yaml), so a new family joins a column by its config alone.

The thresholds (`RULES`, each row's `rule` text) were written down before any
equal-time run was made (commit "course-notes thresholds, before the runs") and are
not tuned afterwards to make cells agree. Each label uses the notes' own words for
that row, so agreement is equality of words.

Inputs per family (`FamilyFacts`) come from the completed records of one comparison
time (the report's equal-time tables): means across seeds, plus the per-seed values
stability needs.
"""

import math
from dataclasses import dataclass, field

COLUMNS = ("VAE", "GAN", "Autoregressive", "Diffusion")

NOTES = {
    "Quality": {"VAE": "Low", "GAN": "Moderate", "Autoregressive": "High", "Diffusion": "Exceptional"},
    "Speed": {"VAE": "Fast", "GAN": "Fast", "Autoregressive": "Slow", "Diffusion": "Slow"},
    "Training stability": {"VAE": "Stable", "GAN": "Unstable", "Autoregressive": "Stable", "Diffusion": "Stable"},
    "Control over generation": {"VAE": "Limited", "GAN": "Limited", "Autoregressive": "Flexible", "Diffusion": "Moderate"},
    "Facial manipulation": {"VAE": "No", "GAN": "Yes", "Autoregressive": "No", "Diffusion": "No"},
    "Novelty": {"VAE": "Limited", "GAN": "Limited", "Autoregressive": "High", "Diffusion": "High"},
    "Resource intensity": {"VAE": "Moderate", "GAN": "Moderate", "Autoregressive": "High", "Diffusion": "High"},
}

NOT_MEASURED = "not measured yet"

# The rules, in words, as the report prints them under the table (thresholds fixed before the runs).
RULES = {
    "Quality": "FID (classifier features) over the real-data floor at the same n (training images scored as samples): "
               "Exceptional if FID / floor ≤ 2, High if ≤ 5, Moderate if ≤ 20, else Low.",
    "Speed": "network evaluations per generated sample (hardware-independent; images/s on this machine beside it): "
             "Fast if ≤ 10, else Slow.",
    "Training stability": "Unstable if any seed diverged, or any seed's quality curve rose above 1.5 x its best earlier FID, "
                          "or the coefficient of variation (std / mean) of final FID across seeds exceeds 0.20; else Stable. "
                          "Needs 2 or more seeds. When the CV's 95% interval (chi-square, n - 1 degrees of freedom) contains 0.20, "
                          "the seeds cannot separate Stable from Unstable, and the cell says so.",
    "Control over generation": "class-conditional runs: the domain classifier's accuracy on samples asked for a class: "
                               "Flexible if ≥ 0.9, Moderate if ≥ 0.6, else Limited; not measured without conditional runs.",
    "Facial manipulation": "editing measured on the data's classes (genzoo/evaluation/editing.py): codes of class a moved "
                           "across a linear class boundary by alpha = 1 step of the class-mean gap: Yes if at least half "
                           "the edits flip to class b (edit_flip_rate ≥ 0.5) while at least half keep their identity "
                           "(edit_preservation ≥ 0.5); else No. A family without a latent code to move: No.",
    "Novelty": "High if recall (classifier features, k = 3) ≥ 0.5 and the memorisation rate ≤ 0.05; else Limited.",
    "Resource intensity": "FLOPs to draw one sample (at equal training time, training cost is equal by construction): "
                          "High if > 1e10, Moderate if > 1e8, else Low.",
}

CV_LIMIT, CURVE_RISE, QUALITY_CUTS, SPEED_NFE = 0.20, 1.5, ((2, "Exceptional"), (5, "High"), (20, "Moderate")), 10
EDIT_FLIP, EDIT_PRESERVATION = 0.5, 0.5


@dataclass
class FamilyFacts:
    """What one family measured at one comparison time (means over completed seeds unless named per seed).

    fid, floor: classifier FID and the real-data floor at the same n; fid_per_seed: each
    completed seed's final FID; curves: each seed's quality-curve values in order;
    diverged: runs that diverged; nfe, images_per_second, flops_per_sample: sampling cost;
    recall, memorisation: novelty; control_accuracy: from class-conditional runs, or None;
    has_latent: whether the family has a latent code to edit (None: not known); edit_flip_rate,
    edit_preservation: editing at the reported alpha, or None.
    """

    family: str
    column: str
    fid: float | None = None
    floor: float | None = None
    fid_per_seed: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    diverged: int = 0
    nfe: float | None = None
    images_per_second: float | None = None
    flops_per_sample: float | None = None
    recall: float | None = None
    memorisation: float | None = None
    control_accuracy: float | None = None
    has_latent: bool | None = None
    edit_flip_rate: float | None = None
    edit_preservation: float | None = None


@dataclass
class Cell:
    """One cell: the notes' word, genzoo's label (or "not measured yet"), the number behind it, and agreement."""

    notes: str
    measured: str
    evidence: str
    caveat: str = ""

    @property
    def verdict(self) -> str:
        """"agrees", "disagrees" or "—" (not measured)."""
        if self.measured == NOT_MEASURED or self.measured.startswith(NOT_MEASURED):
            return "—"
        return "agrees" if self.measured == self.notes else "disagrees"


def quality(f: FamilyFacts) -> tuple[str, str]:
    if f.fid is None or not f.floor:
        return NOT_MEASURED, ""
    ratio = f.fid / f.floor
    word = next((name for bound, name in QUALITY_CUTS if ratio <= bound), "Low")
    return word, f"FID {f.fid:.1f} = {ratio:.1f} x floor {f.floor:.1f}"


def speed(f: FamilyFacts) -> tuple[str, str]:
    if f.nfe is None:
        return NOT_MEASURED, ""
    rate = f" ({f.images_per_second:.3g} images/s here)" if f.images_per_second else ""
    return ("Fast" if f.nfe <= SPEED_NFE else "Slow"), f"{f.nfe:.0f} NFE per sample{rate}"


def stability(f: FamilyFacts) -> tuple[str, str, str]:
    """(label, evidence, caveat) from divergences, curve regressions and the spread of final FID across seeds."""
    rises = [_worst_rise(c) for c in f.curves if len(c) > 1]
    worst = max(rises, default=None)
    rise_text = f"worst curve rise {worst:.2f} x best so far" if worst is not None else "no curves"
    if f.diverged:
        return "Unstable", f"{f.diverged} run(s) diverged", ""
    if worst is not None and worst > CURVE_RISE:
        return "Unstable", rise_text, ""
    values = [v for v in f.fid_per_seed if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return f"{NOT_MEASURED} ({len(values)} seed)", rise_text, ""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    cv = std / mean if mean > 0 else float("inf")
    low, high = cv_interval(cv, len(values))
    word = "Stable" if cv <= CV_LIMIT else "Unstable"
    caveat = ""
    if low <= CV_LIMIT < high:
        caveat = f"{len(values)} seeds cannot separate Stable from Unstable (CV 95% interval {low:.2f}-{high:.2f} contains {CV_LIMIT})"
    return word, f"CV of FID {cv:.3f} over {len(values)} seeds; {rise_text}", caveat


def control(f: FamilyFacts) -> tuple[str, str]:
    if f.control_accuracy is None:
        return f"{NOT_MEASURED} (no class-conditional runs)", ""
    acc = f.control_accuracy
    return ("Flexible" if acc >= 0.9 else "Moderate" if acc >= 0.6 else "Limited"), f"class accuracy {acc:.3f}"


def manipulation(f: FamilyFacts) -> tuple[str, str]:
    if f.has_latent is False:
        return "No", "no latent code to move"
    if f.edit_flip_rate is None or f.edit_preservation is None:
        return NOT_MEASURED, ""
    word = "Yes" if f.edit_flip_rate >= EDIT_FLIP and f.edit_preservation >= EDIT_PRESERVATION else "No"
    return word, f"flip rate {f.edit_flip_rate:.3f}, preservation {f.edit_preservation:.3f}"


def novelty(f: FamilyFacts) -> tuple[str, str]:
    if f.recall is None or f.memorisation is None:
        return NOT_MEASURED, ""
    word = "High" if f.recall >= 0.5 and f.memorisation <= 0.05 else "Limited"
    return word, f"recall {f.recall:.3f}, memorisation {f.memorisation:.3f}"


def resources(f: FamilyFacts) -> tuple[str, str]:
    if f.flops_per_sample is None:
        return NOT_MEASURED, ""
    flops = f.flops_per_sample
    return ("High" if flops > 1e10 else "Moderate" if flops > 1e8 else "Low"), f"{flops:.3g} FLOPs per sample"


def cells(facts: list[FamilyFacts]) -> dict[str, dict[str, list[tuple[str, Cell]]]]:
    """{row: {column: [(family, Cell), ...]}} for every row of NOTES and every column with a measured family.

    A column no family answers for holds []. Several families may answer for one column
    (each gets its own cell).
    """
    table = {row: {col: [] for col in COLUMNS} for row in NOTES}
    for f in facts:
        if f.column not in COLUMNS:
            continue
        measured = {
            "Quality": quality(f), "Speed": speed(f), "Control over generation": control(f),
            "Facial manipulation": manipulation(f), "Novelty": novelty(f), "Resource intensity": resources(f),
        }
        word, evidence, caveat = stability(f)
        measured["Training stability"] = (word, evidence)
        for row in NOTES:
            label, number = measured[row]
            cell = Cell(NOTES[row][f.column], label, number, caveat if row == "Training stability" else "")
            table[row][f.column].append((f.family, cell))
    return table


def cv_interval(cv: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """A confidence interval for a coefficient of variation from n values: the chi-square interval of the std, over the mean.

    Treats the mean as known (its error is small beside the std's at n = 3); std_true lies in
    [s * sqrt((n-1) / chi2_hi), s * sqrt((n-1) / chi2_lo)] with probability `level` for normal values.
    """
    from scipy.stats import chi2

    alpha = 1 - level
    lo, hi = chi2.ppf(alpha / 2, n - 1), chi2.ppf(1 - alpha / 2, n - 1)
    return cv * math.sqrt((n - 1) / hi), cv * math.sqrt((n - 1) / lo)


def _worst_rise(values: list[float]) -> float:
    """The largest ratio of a curve value to the best (lowest) value before it: > 1 when quality got worse."""
    best, worst = values[0], 0.0
    for v in values[1:]:
        worst = max(worst, v / best)
        best = min(best, v)
    return worst
