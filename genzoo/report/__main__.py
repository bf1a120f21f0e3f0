"""python -m genzoo.report <multirun dir or run dirs> --out <dir>: the comparison table."""

import argparse

from genzoo.errors import exit_with_error
from genzoo.report.table import collect_runs, summarise, write_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m genzoo.report", description=__doc__)
    parser.add_argument("paths", nargs="+", help="multirun directories or run directories")
    parser.add_argument("--out", required=True, help="directory for table.md and table.csv")
    args = parser.parse_args(argv)
    try:
        runs = collect_runs(args.paths)
    except FileNotFoundError as err:
        exit_with_error(err)
    protocol = _protocol(runs)
    md, csv_path = write_table(summarise(runs), args.out, protocol)
    print(md.read_text())
    print(f"written: {md}, {csv_path}")


def _protocol(runs) -> str:
    """One line naming the data, budgets, seeds, hardware and commits the runs came from."""
    done = [r["payload"] for r in runs if r["payload"]]
    if not done:
        return ""

    def values(get):
        return ", ".join(sorted({str(get(p)) for p in done}))

    return (
        f"Data: {values(lambda p: p['data'])}; budget: {values(lambda p: p['protocol']['budget'])}; "
        f"seeds: {values(lambda p: p['protocol']['seed'])}; hardware: {values(lambda p: p['protocol']['hardware']['device'])} "
        f"({values(lambda p: p['protocol']['hardware']['precision'])}); torch {values(lambda p: p['protocol']['versions']['torch'])}; "
        f"genzoo commit {values(lambda p: p['protocol']['git_commit'])}. Cells: mean ± std across seeds."
    )


if __name__ == "__main__":
    main()
