"""`pushpull report`: the charts, summary.md and a self-contained report.html of a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from pushpull.cli.finish import draw_report

NAME = "report"


def add_parser(commands) -> None:
    report = commands.add_parser(NAME, help="charts + a self-contained report.html of a run")
    report.add_argument("run_dir", help="a run folder, e.g. results/latest")
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return draw_report(Path(args.run_dir))
