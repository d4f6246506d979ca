"""Locust for one cell: its command line (pushpull's options, master and workers) and the waits
for the files it writes (window.json when spawning ends, one loadgen-<pid>.json per process)."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

from pushpull.harness.config import BenchConfig, Cell
from pushpull.harness.manifest import PROJECT_ROOT
from pushpull.harness.procs import (
    HarnessError,
    Managed,
)

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"


def locust_command(
    config: BenchConfig,
    cell: Cell,
    urls: list[str],
    cell_dir: Path,
    run_time_s: float,
    clock_url: str | None = None,
) -> list[str]:
    """`urls`: where the clients connect (the network emulator's listeners when the cell has a
    network); `clock_url`: the server itself, whose /time the load generator reads without the
    emulated network in between (an asymmetric delay would bias the offset by half its skew)."""
    url = urls[0]
    spread = ["--server-urls", ",".join(urls)] if len(urls) > 1 else []
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary", "--reset-stats",
        "--host", url,
        "--users", str(cell.clients),
        "--spawn-rate", f"{config.spawn_rate:g}",
        "--run-time", f"{int(run_time_s) + 1}s",
        "--csv", str(cell_dir / "locust"),
        "--html", str(cell_dir / "locust.html"),
        "--transport", cell.transport,
        "--scenario", cell.scenario,
        "--send-rate", f"{cell.rate:g}",
        "--payload-bytes", str(cell.payload_bytes),
        "--client", cell.client or cell.spec.default_client,
        "--poll-interval", f"{cell.poll_interval or 0.5:g}",
        "--grace", f"{config.grace:g}",
        "--measure", f"{config.duration:g}",
        "--drain", f"{config.drain_s(cell):g}",
        "--pushpull-out", str(cell_dir),
        "--clock-url", clock_url or url,
        "--churn-every", f"{cell.churn_every:g}",
        "--churn-downtime", f"{cell.churn_downtime:g}",
        "--resume", "on" if cell.resume else "off",
        "--reconnect", "on" if cell.storm else "off",
        *(["--tls-ca", config.tls_files.ca] if cell.tls and config.tls_files else []),
        *(["--source-addresses", ",".join(config.source_addresses)] if config.source_addresses else []),
        *spread,
    ] + workers_options(config, cell)  # fmt: skip


def workers_options(config: BenchConfig, cell: Cell) -> list[str]:
    if cell.loadgen_workers:  # workers from elsewhere join the master at a known address
        return [
            "--master", "--expect-workers", str(cell.loadgen_workers),
            "--expect-workers-max-wait", f"{config.workers_wait_s:g}",
            "--master-bind-host", config.master_host, "--master-bind-port", str(config.master_port),
        ]  # fmt: skip
    return master_options(cell.loadgen_procs) if cell.loadgen_procs > 1 else []


def master_options(procs: int) -> list[str]:
    """Locust master and workers on loopback, on a free port (not *:5557, which a second run or
    another host could reach)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return [
        "--processes", str(procs),
        "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--master-host", "127.0.0.1", "--master-port", port,
    ]  # fmt: skip


def workers_joined(log_path: Path, expected: int) -> str:
    """How many Locust workers had joined, from the master's log ("N of M connected")."""
    try:  # "N workers connected" as each joins, "N of M connected" while the master waits
        found = re.findall(
            r"(\d+) (?:of \d+ |workers )connected", log_path.read_text(errors="replace")
        )
    except OSError:
        found = []
    return f"{found[-1]} of {expected}" if found else f"0 of {expected}"


def wait_for(path: Path, process: Managed, deadline_s: float, what: str, workers: int = 0) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if not process.alive():
            if workers and "Gave up waiting for workers" in process.log_path.read_text(
                errors="replace"
            ):
                raise HarnessError(
                    f"{workers_joined(process.log_path, workers)} Locust workers joined within the "
                    "deadline (start each with: pushpull worker --master HOST:PORT)"
                )
            raise HarnessError(f"Locust exited before {what}: {process.log_tail()}")
        time.sleep(0.1)
    raise HarnessError(
        f"Locust did not reach {what} within {deadline_s:.0f} s: {process.log_tail()}"
    )


def wait_for_files(
    cell_dir: Path, count: int, locust: Managed, deadline_s: float = 15.0
) -> list[Path]:
    """The measurement files of all `count` Locust processes (workers may write after the
    master exits)."""
    deadline = time.monotonic() + deadline_s
    while len(files := sorted(cell_dir.glob("loadgen-*.json"))) < count:
        if time.monotonic() > deadline:
            raise HarnessError(
                f"{len(files)} of {count} Locust processes wrote measurements: {locust.log_tail()}"
            )
        time.sleep(0.1)
    return files
