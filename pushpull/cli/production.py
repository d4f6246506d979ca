"""`pushpull production`: what each production layer costs, per transport, side by side in one
run (analysis/production.py): direct, TLS, nginx, nginx + TLS, nginx + TLS + 2 processes on
Redis, the same load on each; the table and chart the README shows (`make production`)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pushpull.cli import values
from pushpull.cli.finish import finish
from pushpull.cli.options import (
    add_load_options,
    add_run_options,
    add_timing_options,
    build_config,
    transports_default,
)

NAME = "production"


def add_parser(commands) -> None:
    production = commands.add_parser(
        NAME, help="what TLS, nginx and a second process on Redis cost, per transport"
    )
    add_load_options(
        production,
        transports=(transports_default(None), "transports to measure (default: all)"),
        clients=("100", "clients per cell (default %(default)s)"),
        duration=("10", "seconds per window (default %(default)s)"),
        rate=("2", "events published per second (default %(default)s)"),
        poll_interval=("0.5", "short-poll period (default %(default)s)"),
        spawn_rate="200",
        repeat=("1", "repeats per stack, interleaved (default %(default)s)"),
    )
    production.add_argument(
        "--message-queue",
        default="redis://127.0.0.1:6379/0",
        metavar="URL",
        help="the Redis of the two-process stack (default %(default)s)",
    )
    add_timing_options(production)
    add_run_options(production)
    production.set_defaults(run=run)


def stack_cells(config) -> list:
    """Per transport, the five stacks of analysis/production.py, repeats interleaved."""
    from analysis.production import STACKS

    queue = next(q for q in config.message_queues if q is not None)
    plain = replace(
        config, tls=[False], proxies=[None], server_procs=[1], message_queues=[None], repeat=1
    )
    cells = []
    for cell in plain.cells():  # one per transport (and poll interval): then its five stacks
        for _name, secure, proxy, procs in STACKS:
            cells.append(
                replace(
                    cell, tls=secure, proxy=proxy, server_procs=procs,
                    message_queue=queue if procs > 1 else None,
                )
            )  # fmt: skip
    return [replace(cell, repeat=k) for k in range(1, config.repeat + 1) for cell in cells]


def run(args: argparse.Namespace) -> int:
    from pushpull.harness import preflight
    from pushpull.harness.sweep import run_cells

    proxies = values.parse_proxies("none,nginx")  # nginx must be here: one line if it is not
    queues = values.parse_message_queues(args.message_queue, [2])
    config = build_config(args, first_only=("clients", "rates", "poll_intervals"))
    config = replace(
        config,
        tls=[False, True],
        proxies=proxies,
        server_procs=[1, 2],
        message_queues=queues,
        queue_info=preflight.check_queues(queues),
        source_addresses=list(values.DEFAULT_SPREAD),  # ip_hash spreads the two processes
    )
    cells = stack_cells(config)
    pending = iter(cells)
    status, run_dir = run_cells(
        config, not args.no_pin, lambda _done: next(pending, None), cells, NAME
    )
    status = finish(args, status, run_dir)
    if (run_dir / "production.md").exists():
        print((run_dir / "production.md").read_text())
    return status
