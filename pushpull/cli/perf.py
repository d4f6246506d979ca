"""`pushpull perf`: the load generator's own benchmark. Broadcast at 2 events/s per transport
(and client, and Locust process count), repeated and interleaved: the load generator's CPU per
delivery beside the server's."""

from __future__ import annotations

import argparse

from pushpull.cli.finish import measured
from pushpull.cli.options import (
    add_client_option,
    add_load_options,
    add_placement_options,
    add_run_options,
    add_timing_options,
    build_config,
    transports_default,
)

NAME = "perf"


def add_parser(commands) -> None:
    perf = commands.add_parser(
        NAME, help="benchmark the load generator: server vs Locust CPU per delivery, side by side"
    )
    add_load_options(
        perf,
        transports=(transports_default(None), "transports to measure (default: all)"),
        clients=("1000", "clients per cell (default %(default)s)"),
        duration=("20", "seconds per window (default %(default)s)"),
        repeat=("3", "repeats per variant (default %(default)s)"),
        loadgen_procs=("1", "Locust processes; a list compares (default 1)"),
        network="loopback",
    )
    add_placement_options(perf)
    add_client_option(perf)
    add_timing_options(perf)
    add_run_options(perf, plot=False)
    perf.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from analysis.perf import write_perf_report
    from pushpull.harness.sweep import run_sweep

    config = build_config(args, rates=[2.0])
    status, run_dir = run_sweep(config, pin=not args.no_pin, command=NAME)
    if measured(run_dir):
        report = write_perf_report(run_dir)
        print(report.read_text())
        print(f"pushpull: perf report in {report} and {report.with_suffix('.json')}")
    return status
