"""`pushpull compare`: the ratios of two runs' figures, with the run-to-run noise marked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "compare"


def add_parser(commands) -> None:
    compare = commands.add_parser(NAME, help="ratios of two runs' figures, noise marked")
    compare.add_argument("run_a", help="the baseline run folder (A)")
    compare.add_argument("run_b", help="the run compared with it (B)")
    compare.add_argument(
        "--out", default=None, help="folder for compare.md and compare.png (default: beside A)"
    )
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from analysis.compare import write_comparison
    from analysis.results import PlotError

    try:
        markdown, chart, text = write_comparison(
            Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None
        )
    except PlotError as exc:
        print(f"pushpull compare: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    print(f"pushpull: comparison in {markdown}" + (f" and {chart}" if chart else ""))
    return 0
