"""`pushpull storm`: every connection dropped at once (the servers' POST /admin/drop), --before
seconds into the window; the clients come back with their real libraries' backoff
(loadtests/backoff.py) and the run times how they come back."""

from __future__ import annotations

import argparse

from pushpull.cli import values
from pushpull.cli.finish import finish
from pushpull.cli.options import (
    add_load_options,
    add_placement_options,
    add_run_options,
    add_timing_options,
    build_config,
    transports_default,
)

NAME = "storm"


def add_parser(commands) -> None:
    storm = commands.add_parser(
        NAME, help="drop every connection at once mid-run and time how clients come back"
    )
    add_load_options(
        storm,
        transports=(transports_default("storm"), "transports to storm (default %(default)s)"),
        clients=("1000", "clients; a list sweeps (default 1000)"),
        rate=("2", "events published per second (default %(default)s)"),
        spawn_rate="200",
        repeat=("1", "repeats per transport (default 1)"),
        loadgen_procs="1",
        network="loopback",
        resume="off",
    )
    storm.add_argument(
        "--before", default="5", help="seconds of steady state before the drop (default 5)"
    )
    storm.add_argument("--after", default="20", help="seconds measured after the drop (default 20)")
    add_placement_options(storm)
    add_timing_options(storm)
    add_run_options(storm)
    storm.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.sweep import run_sweep

    before = values.bounded_float("--before", args.before, "seconds", "5", 0.0, 600.0)
    after = values.bounded_float("--after", args.after, "seconds", "20", 0.0, 600.0)
    config = build_config(args, first_only=("rates",), duration=before + after, storm_at_s=before)
    status, run_dir = run_sweep(config, pin=not args.no_pin, command=NAME)
    return finish(args, status, run_dir)
