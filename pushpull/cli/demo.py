"""`pushpull demo`: the flags of the live demo page (pushpull/harness/demo.py runs it)."""

from __future__ import annotations

import argparse

from pushpull.cli.options import add_tls_file_options
from pushpull.core import networks
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
    demo.add_argument(
        "--network",
        type=network_value,
        default=None,
        help="put the page and every pane behind an emulated network: a built-in profile "
        "(`pushpull networks`) or a spec, e.g. lte or rtt=100ms (default: none, loopback)",
    )
    demo.add_argument(
        "--tls",
        choices=("off", "on"),
        default="off",
        help="serve the page and every pane over https and wss, with a certificate from a CA "
        "made for this demo (its path is printed: import it into your browser), or "
        "--tls-cert/--tls-key/--tls-ca (default off)",
    )
    add_tls_file_options(demo, "the CA that signed it")
    demo.set_defaults(run=run)


def port_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def network_value(text: str) -> str | None:
    try:
        profile = networks.parse(text)
    except networks.NetworkSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return None if profile is None else profile["name"]


def rate_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (events per second)") from None
    if not 0 <= value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {MAX_RATE:g} events/s)")
    return value


def run(args: argparse.Namespace) -> int:
    from pushpull.harness.certs import given

    args.tls_files = given(args.tls_cert, args.tls_key, args.tls_ca)  # checked before starting
    return main(args)
