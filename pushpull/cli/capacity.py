"""`pushpull capacity`: per transport, step the client count up until the p99 delivery latency
passes a limit, then bisect the bracket and measure its ends again; the capacity is a range."""

from __future__ import annotations

import argparse
from pathlib import Path

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
from pushpull.harness.config import UsageError

NAME = "capacity"


def add_parser(commands) -> None:
    capacity = commands.add_parser(
        NAME, help="step clients up per transport until p99 passes a limit"
    )
    add_load_options(
        capacity,
        transports=(transports_default("bench"), "transports to search (default %(default)s)"),
        duration=("10", "seconds per window (default %(default)s)"),
        rate=("2", "events published per second (default %(default)s)"),
        poll_interval=("0.5", "short-poll period (default %(default)s)"),
        spawn_rate="200",
        loadgen_procs=("1", "Locust processes per cell (one: the first given) (default 1)"),
        network=(
            "loopback",
            "the network between each client and the server (one: the first "
            "given; `pushpull networks`) (default %(default)s)",
        ),
    )
    capacity.add_argument(
        "--slo-p99", default="250", help="p99 delivery latency limit in ms (default %(default)s)"
    )
    capacity.add_argument("--start", default="100", help="first client count (default %(default)s)")
    capacity.add_argument(
        "--step", default="250", help="clients added per step (default %(default)s)"
    )
    capacity.add_argument("--max", default="5000", help="stop searching here (default %(default)s)")
    capacity.add_argument(
        "--capacity-repeats",
        default="3",
        help="then bisect the bracket and measure its ends this many times each; the capacity "
        "is reported as a range (1: the step search alone; default %(default)s)",
    )
    add_placement_options(capacity)
    add_timing_options(capacity)
    add_run_options(capacity)
    capacity.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.capacity import CapacitySearch
    from pushpull.harness.sweep import run_cells

    start = values.positive_int("--start", args.start, "a client count", "100")
    step = values.positive_int("--step", args.step, "a client step", "250")
    maximum = values.positive_int("--max", args.max, "a client count", "5000")
    if maximum < start:
        raise UsageError(f"--max: {maximum} is below --start {start}")
    config = build_config(
        args,
        first_only=(
            "rates",
            "poll_intervals",
            "networks",
            "tls",
            "proxies",
            "server_procs",
            "message_queues",
            "loadgen_procs",
        ),
        clients=[start],
    )
    slo = values.bounded_float("--slo-p99", args.slo_p99, "milliseconds", "250", 0.0, 60_000.0)
    repeats = values.positive_int(
        "--capacity-repeats", args.capacity_repeats, "a repeat count", "3", maximum=20
    )
    search = CapacitySearch(config, slo, start, step, maximum, repeats)

    def prepare(run_dir: Path) -> None:
        search.path = run_dir / "capacity.json"
        search.save()

    extra = {
        "capacity": {
            "slo_p99_ms": slo, "start": start, "step": step, "max": maximum, "repeats": repeats,
        }
    }  # fmt: skip
    status, run_dir = run_cells(
        config, not args.no_pin, search.next_cell, None, NAME, extra, prepare, search.failed
    )
    print(search.report())
    if (run_dir / "capacity.json").exists():
        status = finish(args, status, run_dir)
    return status
