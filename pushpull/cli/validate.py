"""`pushpull validate`: pushpull's own figures against truths set up in advance (docs/validate.md)."""

from __future__ import annotations

import argparse

from pushpull.cli import values
from pushpull.harness import preflight

NAME = "validate"


def add_parser(commands) -> None:
    validate = commands.add_parser(
        NAME,
        help="check pushpull's figures against known truths (a few minutes; docs/validate.md)",
    )
    validate.add_argument(
        "--out", default="results", help="folder for the validate folder (default %(default)s)"
    )
    validate.add_argument(
        "--trials", default="200", help="synthetic runs per interval model (default 200)"
    )
    validate.add_argument(
        "--duration", default="20", help="seconds measured per real cell (default 20)"
    )
    validate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.validate import run_validate

    trials = values.positive_int("--trials", args.trials, "a run count", "200", 100_000)
    duration = values.bounded_float("--duration", args.duration, "seconds", "20", 2.0, 600.0)
    return run_validate(preflight.check_out_dir(args.out), trials, duration)
