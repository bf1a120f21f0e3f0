"""The run record: metrics.json, one typed definition.

The runner writes it when a run completes or diverges, the interrupted path writes its
short form, the report reads it back by its fields (`RunRecord.read`), and re-scoring and
the floor write the same fields they share (model, data, metrics, timing, protocol).
Torch-free, so the report stays a light import.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATUSES = ("completed", "diverged", "interrupted", "failed")


@dataclass
class RunRecord:
    """What one run measured, as written to <run dir>/metrics.json.

    model: the family name (genzoo.families); data: the dataset name.
    run_id: the run's id (32 hex digits, kept across resumes; None in records written
        before genzoo kept one): the report counts each id once.
    previous_record: on a resumed run's interrupted or failed record, the file that keeps
        the run's earlier finished record ("metrics.previous.json"), else None.
    status: "completed", "diverged" (a non-finite loss stopped training; `divergence` gives
        the step, metric and value) or "interrupted" (SIGTERM/SIGINT; `interruption` gives
        the step, epoch and checkpoint saved) or "failed" (nothing was trained; `failure` says why).
    skipped_steps: optimiser steps skipped for non-finite gradients.
    metrics: test metrics (likelihoods in nats/image and bits/dim, reconstruction MSE) and
        the harness's sample-quality metrics, {name: float or None}; control metrics for a
        conditional model.
    quality_curve: {"card": how each point was scored, "points": [{"step", "train_seconds", "train_images", "value"}]}.
    timing: train seconds and images/s, time to quality, epochs, steps, params, sampling
        images/s and its sampler, evaluation seconds.
    resources: params, nfe_per_sample, flops_per_sample, peak memory (MiB) and its kind.
    protocol: split, test images, seed and seed offsets, budget, batch size, hardware,
        versions, git commit, the family's protocol and one card per metric.
    """

    model: str
    data: str
    status: str
    run_id: str | None = None
    previous_record: str | None = None
    divergence: dict | None = None
    interruption: dict | None = None
    failure: str | None = None
    skipped_steps: int = 0
    metrics: dict = field(default_factory=dict)
    quality_curve: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    def to_dict(self) -> dict:
        """The JSON payload: every field, except `interruption` and `failure` on runs that were not interrupted or failed, and an unset `previous_record`."""
        payload = asdict(self)
        if self.status != "interrupted":
            payload.pop("interruption")
        if self.status != "failed":
            payload.pop("failure")
        if self.previous_record is None:
            payload.pop("previous_record")
        return payload

    def write(self, path: Path) -> None:
        """Write metrics.json atomically (genzoo.artifacts.write_json: non-finite numbers as null)."""
        from genzoo.artifacts import write_json

        write_json(Path(path), self.to_dict())

    @classmethod
    def from_dict(cls, payload: dict) -> "RunRecord":
        """A record from a metrics.json payload; unknown keys are ignored, missing ones take their defaults.

        Raises ValueError when model, data or status is missing or the status is unknown.
        """
        missing = [k for k in ("model", "data", "status") if k not in payload]
        if missing:
            raise ValueError(f"not a genzoo run record: it lacks {', '.join(missing)}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})

    @classmethod
    def read(cls, path: Path) -> "RunRecord":
        """Read a metrics.json; raises ValueError (naming the file) when it is not valid JSON or not a record."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from err

    def value(self, section: str, key: str):
        """A number of the record, e.g. value("metrics", "fid_classifier"); None when absent."""
        part = getattr(self, section, None)
        return part.get(key) if isinstance(part, dict) else None
