"""The comparison table: `python -m genzoo.report <multirun dir or run dirs> --out <dir>`."""

from genzoo.report.labels import labels
from genzoo.report.plots import write_plots
from genzoo.report.table import COLUMNS, collect_runs, summarise, write_table

__all__ = ["COLUMNS", "collect_runs", "labels", "summarise", "write_plots", "write_table"]
