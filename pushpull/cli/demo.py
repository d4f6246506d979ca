"""`pushpull demo`: the flags of the live demo page (pushpull/harness/demo.py runs it)."""

from __future__ import annotations

import argparse

from pushpull.harness.demo import MAX_RATE, main

NAME = "demo"


def add_parser(commands) -> None:
    demo = commands.add_parser(
        NAME, help="serve a live page: the chat over every transport, measured in the browser"
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address the page is served on (default %(default)s)"
    )
    demo.add_argument(
        "--port", type=port_value, default=8000, help="TCP port (default %(default)s)"
    )
    demo.add_argument(
        "--rate",
        type=rate_value,
        default=1.0,
        help=f"ticks per second at start, 0 to {MAX_RATE:g}; the page changes it (default 1)",
    )
    demo.set_defaults(run=run)


def port_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def rate_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (events per second)") from None
    if not 0 <= value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {MAX_RATE:g} events/s)")
    return value


def run(args: argparse.Namespace) -> int:
    return main(args)
