"""`pushpull worker`: a Locust worker on this machine that joins a sweep's master elsewhere."""

from __future__ import annotations

import argparse

NAME = "worker"


def add_parser(commands) -> None:
    worker = commands.add_parser(
        NAME, help="join a sweep's Locust master from this machine (a Locust worker)"
    )
    worker.add_argument(
        "--master", required=True, help="HOST[:PORT] of the sweep's master (port 5557 by default)"
    )
    worker.add_argument("--once", action="store_true", help="leave after one cell")
    worker.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.worker import parse_master, run_worker

    return run_worker(*parse_master(args.master), args.once)
