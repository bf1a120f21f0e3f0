"""The qualitative labels of the course-note table (Low / Moderate / High), derived from numbers.

Each label is a threshold rule on one summarised column, written once here; the report
prints the rules under its table (`rules_markdown`), so the docs and the code cannot
disagree. Thresholds are for Fashion-MNIST-sized images scored with genzoo's domain
classifier at the budget's sample count (FID is biased upwards at small n: compare
labels only between tables measured with the same n).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelRule:
    """A label from one number: `cuts` are (upper bound, label) pairs tried in order, then `above`."""

    dimension: str
    column: str
    cuts: tuple[tuple[float, str], ...]
    above: str
    meaning: str

    def label(self, value: float | None) -> str:
        if value is None:
            return "—"
        return next((name for bound, name in self.cuts if value <= bound), self.above)

    def describe(self) -> str:
        parts = [f"{name} if {self.column} ≤ {bound:g}" for bound, name in self.cuts]
        return f"**{self.dimension}** ({self.meaning}): " + "; ".join(parts) + f"; else {self.above}."


RULES = [
    LabelRule("quality", "fid_classifier", ((50, "High"), (250, "Moderate")), "Low",
              "sample quality; real data scores 1.1 at n = 10,000"),
    LabelRule("sampling speed", "nfe_per_sample", ((1, "High"), (100, "Moderate")), "Low",
              "network evaluations per sample, hardware-independent"),
    LabelRule("resource intensity", "flops_per_sample", ((1e8, "Low"), (1e10, "Moderate")), "High",
              "FLOPs to draw one sample"),
    LabelRule("control", "control_accuracy", ((0.6, "Low"), (0.9, "Moderate")), "High",
              "class-conditional runs: the domain classifier's accuracy on samples asked for a class; — for unconditional runs"),
]

STABILITY = (
    "**training stability** (across seeds): Low if any run diverged; else, with the coefficient of "
    "variation of fid_classifier across seeds (std / mean), High if ≤ 0.10, Moderate if ≤ 0.25, else Low; "
    "— with fewer than 2 completed runs."
)
NOVELTY = (
    "**novelty** (new samples rather than copies, covering the data): Low if memorisation_rate > 0.05; "
    "else High if recall_classifier ≥ 0.5, Moderate if ≥ 0.2, else Low."
)


def stability_label(fid_mean: float | None, fid_std: float | None, runs_diverged: int) -> str:
    """Training stability from divergences and the spread of FID across seeds (see STABILITY)."""
    if runs_diverged:
        return "Low"
    if fid_mean is None or fid_std is None or fid_mean <= 0:
        return "—"
    cv = fid_std / fid_mean
    return "High" if cv <= 0.10 else "Moderate" if cv <= 0.25 else "Low"


def novelty_label(memorisation: float | None, recall: float | None) -> str:
    """Novelty from the memorisation rate and recall (see NOVELTY)."""
    if memorisation is None or recall is None:
        return "—"
    if memorisation > 0.05:
        return "Low"
    return "High" if recall >= 0.5 else "Moderate" if recall >= 0.2 else "Low"


def labels(row: dict) -> dict:
    """{dimension: label} for one summarised row (values are (mean, std, n) triples)."""
    out = {rule.dimension: rule.label(row[rule.column][0]) for rule in RULES}
    out["training stability"] = stability_label(*row["fid_classifier"][:2], row["runs_diverged"])
    out["novelty"] = novelty_label(row["memorisation_rate"][0], row["recall_classifier"][0])
    return out


DIMENSIONS = ["quality", "sampling speed", "training stability", "novelty", "resource intensity", "control"]


def rules_markdown() -> str:
    """The label thresholds as a markdown list (printed under every table)."""
    return "\n".join(f"- {line}" for line in [*(r.describe() for r in RULES), STABILITY, NOVELTY])
