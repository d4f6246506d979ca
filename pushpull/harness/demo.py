"""`pushpull demo`: the classic chat, side by side over every transport, measured in the browser.

    pushpull demo --port 8000        # then open http://127.0.0.1:8000/  (flags: pushpull/cli/demo.py)

Starts servers.demo (one process, one event log, every transport of the registry) as a child
process, prints the page's URL and runs until Ctrl-C (or SIGTERM/SIGHUP), then stops it: no
process is left behind. The page's panes come from the registry (name, label, colour), handed to
the server on its command line, since servers never import the harness.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from pushpull.core import networks, tls, transports
from pushpull.harness import certs, procs
from pushpull.harness.network import start_relay
from pushpull.harness.procs import HarnessError, Managed, wait_for_announce, wait_ready

ROOT = Path(__file__).resolve().parents[2]
SOCKETIO_CLIENT = ROOT / "node_modules" / "socket.io-client" / "dist"
MAX_RATE = 50.0  # servers.demo's bound for the ticker


class Stop(Exception):
    """SIGTERM or SIGHUP: stop the demo as Ctrl-C does."""


def panes() -> str:
    """The page's panes, in the registry's order, as the server's --transports JSON."""
    return json.dumps(
        [
            {"name": t.name, "label": t.label, "color": t.color, "role": t.role}
            for t in transports.REGISTRY
            if t.demo
        ]
    )


def server_command(host: str, port: int, rate: float, tls_files=None) -> list[str]:
    secure = [] if tls_files is None else ["--tls-cert", tls_files.cert, "--tls-key", tls_files.key]
    return procs.server_command(
        "servers.demo", host, port, rate,
        "--transports", panes(), "--socketio-client", str(SOCKETIO_CLIENT), *secure,
    )  # fmt: skip


def demo_certificates(args: argparse.Namespace, folder: Path):
    """The demo's TLS files: the user's (--tls-cert/--tls-key/--tls-ca), a CA made for this
    demo (--tls on), or None; the harness trusts that CA for its own readiness check."""
    tls_files = getattr(args, "tls_files", None)
    if tls_files is None and getattr(args, "tls", "off") == "on":
        tls_files = certs.make(folder / "tls", certs.address_names([args.host]))
    if tls_files is not None:
        tls.trust(tls_files.ca)
    return tls_files


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def page_url(listening: str, host: str) -> str:
    """The URL to open: the announced one, with a wildcard address made reachable."""
    if host in ("0.0.0.0", "::"):
        return listening.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]") + "/"
    return listening + "/"


def failure_line(server: Managed, host: str, port: int) -> str:
    """One line on why the server did not start."""
    tail = server.log_tail()
    if "address already in use" in tail:
        return f"{host}:{port} is already in use (choose another --port)"
    return tail or f"the demo server exited with status {server.popen.returncode}"


def main(args: argparse.Namespace) -> int:
    if not (SOCKETIO_CLIENT / "socket.io.min.js").is_file():
        print(
            "pushpull demo: error: socket.io-client is not installed "
            f"({SOCKETIO_CLIENT.relative_to(ROOT)}): run `make setup` (or `make demo`)",
            file=sys.stderr,
        )
        return 1

    def raise_stop(signum, frame):
        raise Stop

    previous = {sig: signal.signal(sig, raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    network = networks.parse(args.network) if getattr(args, "network", None) else None
    relay = None
    with tempfile.TemporaryDirectory(prefix="pushpull-demo-") as folder:
        tls_files = demo_certificates(args, Path(folder))
        server = Managed(
            "servers.demo",
            server_command(args.host, 0 if network else args.port, args.rate, tls_files),
            Path(folder) / "server.log",
            cpus=None,
            cwd=ROOT,
        )
        try:
            try:
                listening = wait_for_announce(server, deadline_s=20)["listening"]
                wait_ready(server, listening, deadline_s=20)
                if network is not None:  # the page and every pane behind the emulated network
                    relay, (listening,) = start_relay(
                        network, [listening], args.host, Path(folder), {}, port=args.port
                    )
            except HarnessError:
                if server.alive():
                    raise  # the server is up: the emulator failed, and says why in one line
                print(
                    f"pushpull demo: error: {failure_line(server, args.host, args.port)}",
                    file=sys.stderr,
                )
                return 1
            over = f", over {networks.describe(network)}" if network else ""
            print(
                f"pushpull demo: open {page_url(listening, args.host)}  (Ctrl-C stops it{over})",
                flush=True,
            )
            if tls_files is not None:
                print(f"pushpull demo: TLS: the certificate's CA is {tls_files.ca}", flush=True)
            if not loopback(args.host):
                print(
                    f"pushpull demo: warning: --host {args.host} is reachable from other "
                    "machines; the demo has no authentication",
                    file=sys.stderr,
                )
            while server.alive():
                time.sleep(0.5)
            print(
                f"pushpull demo: error: the demo server stopped: {failure_line(server, args.host, args.port)}",
                file=sys.stderr,
            )
            return 1
        except (KeyboardInterrupt, Stop):
            print("pushpull demo: stopped", file=sys.stderr)
            return 0
        finally:
            if relay is not None:
                relay.stop()
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
