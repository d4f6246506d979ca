"""`pushpull bench`: run a sweep (every combination of the lists given), then draw its charts."""

from __future__ import annotations

import argparse

from pushpull.cli.finish import finish
from pushpull.cli.options import (
    add_client_option,
    add_load_options,
    add_placement_options,
    add_run_options,
    add_timing_options,
    build_config,
    transports_default,
)

NAME = "bench"


def add_parser(commands) -> None:
    bench = commands.add_parser(NAME, help="run a sweep, then draw its charts")
    add_load_options(
        bench,
        clients="10,100,500",
        transports=transports_default("bench"),
        duration="15",
        rate="2",
        poll_interval="0.5",
        spawn_rate="200",
        repeat="1",
        loadgen_procs="1",
        network="loopback",
        resume="off",
    )
    bench.add_argument(
        "--host", default="127.0.0.1", help="address the servers bind (default %(default)s)"
    )
    bench.add_argument(
        "--port", default="0", help="server port, 0 picks a free one per cell (default 0)"
    )
    add_scenario_options(bench)
    add_churn_options(bench)
    add_placement_options(bench)
    add_client_option(bench, bench=True)
    add_timing_options(bench)
    add_run_options(bench)
    bench.set_defaults(run=run)


def add_scenario_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--scenario",
        default="broadcast",
        help="broadcast (the server publishes at --rate) or chat (clients send at --send-rate)",
    )
    bench.add_argument(
        "--send-rate",
        default="0.2",
        help="chat: messages per second each client sends; a list sweeps (default %(default)s)",
    )
    bench.add_argument(
        "--payload-bytes",
        default="0",
        help="pad every event (and chat message) with this many bytes; a list sweeps (default 0)",
    )


def add_churn_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--churn-every",
        default="0",
        help="mean seconds between one client's disconnects (exponentially distributed); "
        "0 = off; a list sweeps (default 0)",
    )
    bench.add_argument(
        "--churn-downtime",
        default="1",
        help="seconds a churning client stays away before reconnecting (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.sweep import run_sweep

    status, run_dir = run_sweep(build_config(args), pin=not args.no_pin)
    return finish(args, status, run_dir)
