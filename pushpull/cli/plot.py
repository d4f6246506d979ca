"""`pushpull plot`: draw the charts of a run folder already measured (nothing is started)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "plot"


def add_parser(commands) -> None:
    plot = commands.add_parser(NAME, help="draw the charts of a run folder")
    plot.add_argument("run_dir", help="a run folder, e.g. results/latest")
    plot.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from analysis.plot import PlotError, plot_run

    try:
        written = plot_run(Path(args.run_dir))
    except PlotError as exc:
        print(f"pushpull plot: error: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"pushpull: charts in {written[0].parent}/ ({', '.join(p.name for p in written)})")
    return 0
