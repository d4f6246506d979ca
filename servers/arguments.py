"""The command line every server takes (docs/protocol.md lists it): the parser, with one-line
errors, and the checks of each option's value; and the warning for an address other machines
can reach."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from servers.events import RETAINED_BYTES, RETAINED_EVENTS

MAX_RATE = 10_000.0
MAX_PAD_BYTES = 1_000_000


def server_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=5000, help="TCP port, 0 for a free one (default 5000)"
    )
    parser.add_argument(
        "--rate",
        type=rate_value,
        default=2.0,
        help="ticks published per second, 0 for none (default 2)",
    )
    parser.add_argument(
        "--payload-bytes",
        type=pad_value,
        default=0,
        help="pad every tick with this many bytes of data (default 0)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin (e.g. http://localhost:8000) besides the server's own that may "
        "open its Socket.IO and WebSocket endpoints; repeat for more",
    )
    parser.add_argument(
        "--message-queue",
        metavar="URL",
        help="serve one event stream with other processes through Redis, e.g. "
        "redis://127.0.0.1:6379/0 (start them alike, on other ports; one publishes the ticks)",
    )
    parser.add_argument(
        "--queue-channel",
        default="pushpull",
        type=channel_name,
        help="Redis key prefix the processes of one stream share (default pushpull)",
    )
    parser.add_argument(
        "--retain-events",
        type=retain_value,
        default=RETAINED_EVENTS,
        help=f"newest events kept for resumes and polls (default {RETAINED_EVENTS})",
    )
    parser.add_argument(
        "--retain-bytes",
        type=retain_bytes_value,
        default=RETAINED_BYTES,
        help=f"and at most this many bytes of their JSON (default {RETAINED_BYTES})",
    )
    parser.add_argument(
        "--clock-offset-ms",
        type=clock_offset_value,
        default=0.0,
        metavar="MS",
        help="for tests: run this server's clock (t_pub, t_sched, GET /time) MS milliseconds "
        "ahead of the machine's (negative: behind), as a server on another machine could be",
    )
    parser.add_argument(
        "--tls-cert",
        type=readable_file,
        metavar="PEM",
        help="serve HTTPS and WSS with this certificate chain (with --tls-key); default plain",
    )
    parser.add_argument(
        "--tls-key", type=readable_file, metavar="PEM", help="the certificate's private key"
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="for benchmarks: serve POST /admin/drop, which drops every client connection at once",
    )
    return parser


def warn_if_exposed(prog: str, host: str) -> None:
    """One line when the server binds an address other machines can reach."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        sys.stderr.write(
            f"{prog}: warning: --host {host} is reachable from other machines and its endpoints "
            "have no authentication\n"
        )


def readable_file(text: str) -> str:
    try:
        with open(text, "rb"):
            return text
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.strerror.lower()}") from None


def channel_name(text: str) -> str:
    if not text or len(text) > 200 or not all(c.isalnum() or c in "-_.:" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a channel name (1 to 200 letters, digits, '-', '_', '.', ':')"
        )
    return text


def retain_bytes_value(text: str) -> int:
    value = _int(text, "a byte count")
    if not 1 <= value <= 2**40:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (1 to 2**40 bytes)")
    return value


def retain_value(text: str) -> int:
    value = _int(text, "an event count")
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (1 to 10000000 events)")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        cert, key = getattr(parsed, "tls_cert", None), getattr(parsed, "tls_key", None)
        if bool(cert) != bool(key):  # --tls-cert and --tls-key go together
            given, missing = ("--tls-cert", "--tls-key") if cert else ("--tls-key", "--tls-cert")
            self.error(f"{given} needs {missing} (a certificate and its private key)")
        return parsed


def port_number(text: str) -> int:
    value = _int(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def rate_value(text: str, maximum: float = MAX_RATE) -> float:
    value = _float(text, "a number (events per second)")
    if not 0 <= value <= maximum:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {maximum:g} events/s)")
    return value


def clock_offset_value(text: str) -> float:
    value = _float(text, "a number (milliseconds)")
    if not -3_600_000 <= value <= 3_600_000:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (-3600000 to 3600000 ms)")
    return value


def pad_value(text: str) -> int:
    value = _int(text, "a byte count")
    if not 0 <= value <= MAX_PAD_BYTES:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (0 to {MAX_PAD_BYTES} bytes)")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
