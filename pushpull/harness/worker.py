"""`pushpull worker --master HOST[:PORT]`: lend this machine's cores to a sweep run elsewhere.

A Locust worker with pushpull's locustfile (Locust's own master/worker mode). Every cell of the
sweep starts its own Locust master (`pushpull bench --loadgen-workers N --master-host ...`), so
the worker joins, measures the cell, sends its measurements to the master, and joins the next
cell's master; it stops on Ctrl-C, with --once after one cell, or when no master answers for
about five minutes (Locust's own retry limit). Its clock offset to the server is measured as on
every load-generator process; the run's manifest names its host, cores and CPU.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pushpull.harness.config import UsageError
from pushpull.harness.locust import LOCUSTFILE

DEFAULT_MASTER_PORT = 5557


def parse_master(text: str) -> tuple[str, int]:
    """'HOST', 'HOST:PORT' or '[IPv6]:PORT' -> (host, port)."""
    host, port = text, DEFAULT_MASTER_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--master: {text!r} is not HOST[:PORT] (e.g. 192.0.2.10:5557)")
            port = parse_port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = parse_port(text, rest)
    if not host:
        raise UsageError(
            f"--master: {text!r} names no host (expected HOST[:PORT], e.g. 192.0.2.10)"
        )
    return host, port


def parse_port(text: str, port: str) -> int:
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--master: {text!r} has no valid port (1-65535, default 5557)")
    return int(port)


def worker_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "pushpull.core.child", "--",
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--worker", "--master-host", host, "--master-port", str(port),
    ]  # fmt: skip


def run_worker(host: str, port: int, once: bool) -> int:
    """Run Locust workers one cell after another until interrupted (or once)."""
    print(f"pushpull worker: joining the master at {host}:{port} (Ctrl-C to stop)", flush=True)
    cells = 0
    while True:
        started = time.monotonic()
        process = subprocess.Popen(worker_command(host, port), stdin=subprocess.DEVNULL)
        try:
            status = process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(f"pushpull worker: stopped after {cells} cell(s)", file=sys.stderr)
            return 130
        if status != 0:
            print(
                f"pushpull worker: error: Locust's worker ended with status {status} after "
                f"{time.monotonic() - started:.0f} s (no master at {host}:{port}?)",
                file=sys.stderr,
            )
            return 1
        cells += 1
        if once:
            return 0
