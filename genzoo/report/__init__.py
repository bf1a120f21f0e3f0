"""The comparison table: `python -m genzoo.report <multirun dir or run dirs> --out <dir>`."""

from genzoo.report.table import COLUMNS, collect_runs, summarise, write_table

__all__ = ["COLUMNS", "collect_runs", "summarise", "write_table"]
