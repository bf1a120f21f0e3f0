"""python -m genzoo.report <multirun dir or run dirs> --out <dir>: the comparison table and plots.

Writes table.md, table.csv and the four figures of genzoo.report.plots into --out, and
prints table.md. Runs of different datasets, machines or budgets are never averaged
together: each (dataset, device, budget) gets its own table, in --out/<data>-<device>/
(with -<budget> when budgets differ) when there are several, and always for a time budget. Equal-time runs (budget=equal_time) also get the
comparison of genzoo.report.equal_time (comparison.md and its figures: the ranking at
equal training time, the quality curves, the course notes' table checked cell by cell)
in --out (in --out/<data>-<device>/ when there are several machines). Each output
states the data, budget, seeds, hardware, versions and evaluation protocol its numbers
came from.
"""

import argparse
import re
from pathlib import Path

from genzoo.errors import ConfigError, exit_with_error
from genzoo.report.equal_time import is_equal_time, write_comparison
from genzoo.report.plots import write_plots
from genzoo.report.table import collect_runs, split_tables, summarise, write_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m genzoo.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="multirun directories or run directories")
    parser.add_argument("--out", required=True, help="directory for table.md, table.csv and the plots")
    args = parser.parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        exit_with_error(ConfigError(f"--out {args.out} is a file: give a directory for table.md, table.csv and the plots"))
    try:
        runs = collect_runs(args.paths)
    except FileNotFoundError as err:
        exit_with_error(err)
    groups = split_tables(runs)
    machines = sorted({key[:2] for key in groups}, key=lambda k: tuple(map(str, k)))
    for key, mine in groups.items():
        # one dataset on one machine under one budget: the table directly in --out; several: one folder each,
        # named by what differs between them, never averaged together
        out = Path(args.out) / _folder(key, groups) if len(groups) > 1 or _timed(key) else Path(args.out)
        md, csv_path = write_table(summarise(mine), out, protocol(mine))
        plots = write_plots(mine, out)
        print(md.read_text())
        print("written: " + ", ".join(str(p) for p in (md, csv_path, *plots)))
    for machine in machines:
        timed = [r for r in runs if r["record"] and (r["data"], r["hardware"]) == machine and is_equal_time(r)]
        if timed:
            out = Path(args.out) / _slug(f"{machine[0]}-{machine[1]}") if len(machines) > 1 else Path(args.out)
            written = write_comparison(timed, out, protocol(timed))
            print("written: " + ", ".join(str(p) for p in written))


def _folder(key: tuple, groups: dict) -> str:
    """The folder of one table: <data>-<device>, and -<budget> when the tables' budgets differ."""
    data, hardware, tier = key
    name = f"{data}-{hardware or 'unknown-hardware'}"
    if len({k[2] for k in groups}) > 1 or _timed(key):
        name += f"-{tier or 'unknown-budget'}"
    return _slug(name)


def _timed(key: tuple) -> bool:
    """A table of runs under a time budget ("equal_time 10 min"): always in its own folder, beside comparison.md."""
    return bool(key[2]) and key[2].endswith(" min")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def protocol(runs) -> str:
    """A paragraph naming the data, budgets, seeds, hardware, versions and evaluation protocol of the runs."""
    done = [r["record"].to_dict() for r in runs if r["record"]]
    if not done:
        return ""

    def values(get):
        return _values(done, get)

    card = lambda p: p["protocol"]["metric_cards"]["fid_classifier"]  # noqa: E731
    versions = lambda name: values(lambda p: p["protocol"]["versions"][name])  # noqa: E731
    counts = "; ".join(
        f"{family} {_values([p for p in done if p['model'] == family], lambda p: card(p)['n_fake'])} "
        f"(curve {_values([p for p in done if p['model'] == family], lambda p: p['quality_curve']['card']['n_fake'])})"
        for family in sorted({p["model"] for p in done})
    )
    return (
        f"Data: {values(lambda p: p['data'])}; budget: {values(lambda p: p['protocol']['budget'])}; "
        f"seeds: {values(lambda p: p['protocol']['seed'])}; hardware: {values(lambda p: p['protocol']['hardware']['device'])} "
        f"({values(lambda p: p['protocol']['hardware']['precision'])}, {values(lambda p: p['protocol']['hardware'].get('world_size', 1))} process(es)); "
        f"torch {versions('torch')}, lightning {versions('lightning')}; genzoo commit {values(lambda p: p['protocol']['git_commit'])}. "
        f"Evaluation: {values(lambda p: card(p)['extractor'])} (weights sha256 {values(lambda p: card(p)['weights_sha256'][:12])}), "
        f"resize {values(lambda p: card(p)['resize'])}, against the first n images of the {values(lambda p: p['data'])} test split; "
        f"n generated = n real per family: {counts}. "
        "Cells: mean ± std across seeds; each run's metrics.json holds the full card of every number."
    )


def _values(payloads, get) -> str:
    """The distinct values of get(payload) over payloads, sorted and comma-separated ("—" if none)."""
    found = set()
    for p in payloads:
        try:
            found.add(str(get(p)))
        except (KeyError, TypeError):
            continue
    return ", ".join(sorted(found)) or "—"


if __name__ == "__main__":
    main()
